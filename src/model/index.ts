export { Cloud, UNPLACED } from "./cloud.ts";
export { ModelError } from "./errors.ts";
export { antiAffinityKey, findViolations, type Violation } from "./invariants.ts";
export { LoadHistory } from "./load.ts";
export { decayedPeak, dirtyRateAt, PEAK_DECAY, residentMemoryMiB } from "./memory.ts";
export { HP_ML110_G4, HP_ML110_G5, type PowerTable, powerAt, powerTableProblem } from "./power.ts";
export { type RandomSource, randomInt } from "./random.ts";
export { Rng } from "./rng.ts";
export {
  acceptsGuests,
  billedSeconds,
  type GuestDevices,
  type GuestRole,
  type GuestShape,
  type GuestSpec,
  type GuestVm,
  guestMips,
  guestSpec,
  HOST_VM_TRANSITIONS,
  type HostVm,
  type HostVmState,
  type HostVmType,
  hostVmGuestMemory,
  hostVmMips,
  isBilled,
  type PhysicalServer,
  secondsToNextBillingBoundary,
  serverMips,
} from "./topology.ts";

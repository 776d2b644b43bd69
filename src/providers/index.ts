export type { AgentDirectory, AgentHost } from "./agents/directory.ts";
export { AgentGuestPlane } from "./agents/plane.ts";
export { composeProvider } from "./compose.ts";
export { MIPS_PER_CORE as TESTBED_MIPS_PER_CORE } from "./machine.ts";
export {
  type OpenStackFlags,
  openStackOptionsFromEnv,
  openStackSettings,
  parseOpenrc,
} from "./openstack/credentials.ts";
export { OpenStackProvider, openStackOptionsFrom } from "./openstack/provider.ts";
export { OpenStackRental, type OpenStackRentalOptions } from "./openstack/rental.ts";
export * from "./placement/index.ts";
export { DEMO_HOST_VM_TYPE, type DemoOptions, demoWorld } from "./sim/demo.ts";
export { worldTrace } from "./sim/plane.ts";
export { SimProvider } from "./sim/provider.ts";
export type { World, WorldGuest, WorldHostVm } from "./sim/world.ts";
export { TestbedProvider, type TestbedProviderOptions, testbedDir } from "./testbed/provider.ts";
export {
  type ConsoleEndpoint,
  type GuestDataPlane,
  type GuestInventory,
  type GuestPowerControl,
  type GuestPowerEventView,
  type GuestSpec,
  type HostVmRental,
  type MigrationStatus,
  type MonitorSwitch,
  type PlacementTrialView,
  type PowerAnswer,
  type PowerRequest,
  type Provider,
  type ProviderClock,
  ProviderError,
  type ProviderGuest,
  type ProviderHostVm,
  type ProviderMigration,
  type ProviderSnapshot,
  type SecurityVmOptions,
  type StateStore,
} from "./types.ts";

export { DEMO_HOST_VM_TYPE, type DemoOptions, demoWorld } from "./sim/demo.ts";
export { SimProvider } from "./sim/provider.ts";
export type { World } from "./sim/world.ts";
export { TestbedProvider, type TestbedProviderOptions, testbedDir } from "./testbed/provider.ts";
export { MIPS_PER_CORE as TESTBED_MIPS_PER_CORE } from "./testbed/world.ts";
export {
  type GuestSpec,
  type MigrationStatus,
  type Provider,
  type ProviderClock,
  ProviderError,
  type ProviderGuest,
  type ProviderHostVm,
  type ProviderMigration,
  type ProviderSnapshot,
  type StateStore,
} from "./types.ts";

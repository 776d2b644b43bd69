export { DEMO_HOST_VM_TYPE, type DemoOptions, demoWorld } from "./sim/demo.ts";
export { SimProvider, type StateStore } from "./sim/provider.ts";
export type { World } from "./sim/world.ts";
export {
  type GuestSpec,
  type MigrationStatus,
  type Provider,
  ProviderError,
  type ProviderGuest,
  type ProviderHostVm,
  type ProviderMigration,
  type ProviderSnapshot,
} from "./types.ts";

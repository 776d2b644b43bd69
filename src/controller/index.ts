export {
  AUTOMATION_LEVELS,
  MIGRATION_MECHANISMS,
  MIGRATION_STATUSES,
  PLAN_STATUSES,
  POWER_ACTIONS,
  REJUVENATION_MODES,
  TOKEN_ROLES,
} from "./api/schemas/choices.ts";
export { buildServer } from "./api/server.ts";
export {
  createToken,
  hashToken,
  listTokens,
  mayAccess,
  type Principal,
  revokeToken,
  type TokenInfo,
  verifyToken,
} from "./auth.ts";
export { Controller, type ControllerOptions } from "./controller.ts";
export { ApiError, FencedError, PROVIDER_ERROR_STATUS } from "./errors.ts";
export { type CloudEvent, EventBus } from "./events.ts";
export type { Automation } from "./reconciler.ts";
export {
  ADMIN_TOKEN_FILE,
  durableRollout,
  type RunningController,
  runController,
  storeBackedState,
  type UpOptions,
} from "./run.ts";
export { openStore, redact, type Store, StoreError } from "./store/connect.ts";

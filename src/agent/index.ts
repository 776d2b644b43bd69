// Public entry of the agent module: the server and host-VM agents (HTTP services), their
// typed clients, the migration orchestrator, and running them on a testbed. Other modules
// import only this.

/** Guest ids an agent accepts: they name QEMU processes and files. */
export { GUEST_NAME_RE as AGENT_GUEST_ID_RE } from "../testbed/index.ts";
export type * from "./api-types.ts";
export { CONSOLE_PORT, POWER_ACTIONS } from "./api-types.ts";
export {
  AgentClient,
  AgentHttpError,
  AgentUnreachableError,
  type ClientOptions,
  HostVmAgentClient,
  ServerAgentClient,
} from "./client.ts";
export { type HostVmAgentConfig, loadAgentConfig, type ServerAgentConfig } from "./config.ts";
export { ConsoleRecords } from "./console-records.ts";
export { buildHostVmAgent, type HostVmAgent } from "./hostvm-agent.ts";
export { AgentError, createApp, errorBody } from "./http.ts";
export {
  agentCommand,
  agentLauncher,
  bootGuests,
  endpointOf,
  hostVmClient,
  type LauncherOptions,
  launcherOf,
  serverClient,
  testbedToken,
} from "./launcher.ts";
export { LedgerError, MemoryLedger } from "./ledger.ts";
export {
  type AgentEndpoint,
  type Mechanism,
  type MigrateRequest,
  MigrationFailedError,
  type MigrationHandle,
  type MigrationHooks,
  MigrationOrchestrator,
  type MigrationOutcome,
  type OrchestratorOptions,
} from "./migration-orchestrator.ts";
export {
  type AgentRestart,
  type GuestMove,
  REJUVENATION_MODES,
  type RejuvenateRequest,
  type RejuvenationMode,
  type RejuvenationProgress,
  type RejuvenationReport,
  Rejuvenator,
  type Wave,
} from "./rejuvenation.ts";
export { RelocationRefusedError, relocateHostVm } from "./relocate.ts";
export { buildServerAgent } from "./server-agent.ts";
export { bearerMatches, loadOrCreateToken, readToken } from "./token.ts";

/**
 * The controller's persistent state, as Kysely table types. The same schema runs on SQLite
 * (embedded default) and PostgreSQL (several controllers). Times are seconds (floating) on
 * the provider's clock; JSON columns are text so both databases treat them alike.
 */
import type { Generated } from "kysely";

/** The database behind the store (the SQL differs a little between the two). */
export type StoreKind = "sqlite" | "postgres";

export interface ServersTable {
  id: string;
  cores: number;
  mips_per_core: number;
  memory_mib: number;
  network_mbps: number;
  power: string; // JSON watts[11]
  host_vm_slots: number;
}

export interface HostVmTypesTable {
  name: string;
  vcpus: number;
  mips_per_vcpu: number;
  memory_mib: number;
  overhead_mib: number;
  price_per_hour: number;
  provision_seconds: number;
  billing_increment_seconds: number;
  minimum_billing_seconds: number;
}

export interface HostVmsTable {
  id: string;
  type: string;
  server_id: string | null;
  state: string;
  state_since: number;
  acquired_at: number;
  /** Acquired explicitly by an operator: released only by the operator or an approved plan. */
  kept: Generated<number>;
}

export interface GuestsTable {
  id: string;
  tenant: string;
  vcpus: number;
  mips_per_vcpu: number;
  memory_mib: number;
  dirty_rate_mibps: number;
  affinity_group: string | null;
  anti_affinity_group: string | null;
  role: string; // "tenant" | "security"
  targets: string; // JSON string[] (security VMs)
  monitoring: string | null; // JSON SecurityVmOptions (security VMs; null: the defaults)
  host_vm_id: string | null;
  power_state: string; // "running" | "stopped"
  automation: string | null; // null: the cloud's level
  created_at: number;
}

export interface PlansTable {
  id: Generated<number>;
  created_at: number;
  status: string;
  source: string;
  notes: string; // JSON string[]
  epoch: number;
}

export interface PlanActionsTable {
  plan_id: number;
  idx: number;
  kind: string;
  payload: string; // JSON
  depends_on: string; // JSON number[]
  status: string;
  started_at: number | null;
  finished_at: number | null;
  error: string | null;
}

export interface MigrationsTable {
  id: string;
  guest_id: string;
  from_host_vm: string;
  to_host_vm: string;
  mechanism: string;
  status: string;
  progress: number;
  detail: string; // JSON
  plan_id: number | null;
  started_at: number;
  finished_at: number | null;
  error: string | null;
}

export interface TokensTable {
  hash: string;
  /** Public id (a prefix of the hash): lists and revokes the token without its secret. */
  id: string;
  role: string;
  tenant: string | null;
  label: string;
  /** Wall-clock seconds (tokens made before migration 002: the provider's clock). */
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

/** The cloud's size and cost over time (provider clock), one row per change, bounded. */
export interface OverviewHistoryTable {
  at: number;
  host_vms: number;
  cost_per_hour: number;
  guests: number;
}

/** Ids of deleted guests: never handed out again (history refers to guests by id). */
export interface RetiredGuestIdsTable {
  id: string;
  tenant: string;
  retired_at: number;
}

/** The virtual AMT's event log, one row per event, bounded per guest (repositories/guest-events.ts). */
export interface GuestEventsTable {
  id: Generated<number>;
  guest_id: string;
  tenant: string;
  /** Wall-clock seconds. */
  at: number;
  kind: string;
  /** Who did it ("admin", "tenant:<name>", with the token's id); null: the guest or the cloud. */
  actor: string | null;
  detail: string;
}

export interface SettingsTable {
  key: string;
  value: string;
}

export interface LeadershipTable {
  id: number;
  holder: string;
  epoch: number;
  renewed_at: number;
}

export interface ProviderStateTable {
  key: string;
  value: string; // JSON
  epoch: number;
}

export interface Database {
  servers: ServersTable;
  host_vm_types: HostVmTypesTable;
  host_vms: HostVmsTable;
  guests: GuestsTable;
  plans: PlansTable;
  plan_actions: PlanActionsTable;
  migrations: MigrationsTable;
  tokens: TokensTable;
  retired_guest_ids: RetiredGuestIdsTable;
  overview_history: OverviewHistoryTable;
  settings: SettingsTable;
  guest_events: GuestEventsTable;
  leadership: LeadershipTable;
  provider_state: ProviderStateTable;
}

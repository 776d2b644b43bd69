/**
 * The store's repositories: each owns the SQL of its tables and turns rows into the
 * controller's typed objects (and back). Nothing outside src/controller/store builds a query.
 */
import type { Kysely } from "kysely";
import type { Database, StoreKind } from "../schema.ts";
import { GuestEventRepository } from "./guest-events.ts";
import { GuestRepository } from "./guests.ts";
import { HistoryRepository } from "./history.ts";
import { HostVmRepository } from "./host-vms.ts";
import { LeadershipRepository } from "./leadership.ts";
import { MigrationRepository } from "./migrations.ts";
import { PlanRepository } from "./plans.ts";
import { ProviderStateRepository } from "./provider-state.ts";
import { HostVmTypeRepository, ServerRepository } from "./servers.ts";
import { SettingsRepository } from "./settings.ts";
import { TokenRepository } from "./tokens.ts";

export type { StoredGuestEvent } from "./guest-events.ts";
export type { GuestIdStatus, PowerState, StoredGuest } from "./guests.ts";
export type { ReportedHostVm, StoredHostVm } from "./host-vms.ts";
export { AdvisoryLock } from "./leadership.ts";
export type { MigrationChange, StoredMigration } from "./migrations.ts";
export type { ActionChange, StoredAction, StoredPlan } from "./plans.ts";
export type { StoredToken } from "./tokens.ts";

/** Every repository, on one connection or inside one transaction. */
export interface Repositories {
  readonly servers: ServerRepository;
  readonly hostVmTypes: HostVmTypeRepository;
  readonly hostVms: HostVmRepository;
  readonly guests: GuestRepository;
  readonly guestEvents: GuestEventRepository;
  readonly plans: PlanRepository;
  readonly migrations: MigrationRepository;
  readonly tokens: TokenRepository;
  readonly settings: SettingsRepository;
  readonly history: HistoryRepository;
  readonly providerState: ProviderStateRepository;
  readonly leadership: LeadershipRepository;
}

/** The repositories on `db` (the store's pool, or a transaction). */
export function repositories(db: Kysely<Database>, kind: StoreKind): Repositories {
  return {
    servers: new ServerRepository(db),
    hostVmTypes: new HostVmTypeRepository(db),
    hostVms: new HostVmRepository(db),
    guests: new GuestRepository(db),
    guestEvents: new GuestEventRepository(db),
    plans: new PlanRepository(db),
    migrations: new MigrationRepository(db),
    tokens: new TokenRepository(db),
    settings: new SettingsRepository(db),
    history: new HistoryRepository(db),
    providerState: new ProviderStateRepository(db),
    leadership: new LeadershipRepository(db, kind),
  };
}

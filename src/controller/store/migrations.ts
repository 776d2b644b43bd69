/**
 * Schema migrations, applied in order at start-up by Kysely's Migrator. Append new ones;
 * never edit a released one.
 */
import { type Kysely, type Migration, type MigrationProvider, sql } from "kysely";
import type { StoreKind } from "./schema.ts";

const m001 = (kind: StoreKind): Migration => ({
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("servers")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("cores", "integer", (c) => c.notNull())
      .addColumn("mips_per_core", "real", (c) => c.notNull())
      .addColumn("memory_mib", "real", (c) => c.notNull())
      .addColumn("network_mbps", "real", (c) => c.notNull())
      .addColumn("power", "text", (c) => c.notNull())
      .addColumn("host_vm_slots", "integer", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("host_vm_types")
      .addColumn("name", "text", (c) => c.primaryKey())
      .addColumn("vcpus", "integer", (c) => c.notNull())
      .addColumn("mips_per_vcpu", "real", (c) => c.notNull())
      .addColumn("memory_mib", "real", (c) => c.notNull())
      .addColumn("overhead_mib", "real", (c) => c.notNull())
      .addColumn("price_per_hour", "real", (c) => c.notNull())
      .addColumn("provision_seconds", "real", (c) => c.notNull())
      .addColumn("billing_increment_seconds", "real", (c) => c.notNull())
      .addColumn("minimum_billing_seconds", "real", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("host_vms")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("server_id", "text")
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("state_since", "real", (c) => c.notNull())
      .addColumn("acquired_at", "real", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("guests")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("tenant", "text", (c) => c.notNull())
      .addColumn("vcpus", "integer", (c) => c.notNull())
      .addColumn("mips_per_vcpu", "real", (c) => c.notNull())
      .addColumn("memory_mib", "real", (c) => c.notNull())
      .addColumn("dirty_rate_mibps", "real", (c) => c.notNull())
      .addColumn("affinity_group", "text")
      .addColumn("anti_affinity_group", "text")
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("targets", "text", (c) => c.notNull())
      .addColumn("host_vm_id", "text")
      .addColumn("power_state", "text", (c) => c.notNull())
      .addColumn("automation", "text")
      .addColumn("created_at", "real", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("guests_tenant").on("guests").column("tenant").execute();
    await db.schema
      .createTable("plans")
      // SQLite's INTEGER PRIMARY KEY and PostgreSQL's serial both hand out ids.
      .addColumn("id", kind === "sqlite" ? "integer" : "serial", (c) => c.primaryKey())
      .addColumn("created_at", "real", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("source", "text", (c) => c.notNull())
      .addColumn("notes", "text", (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("plan_actions")
      .addColumn("plan_id", "integer", (c) => c.notNull())
      .addColumn("idx", "integer", (c) => c.notNull())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("payload", "text", (c) => c.notNull())
      .addColumn("depends_on", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("started_at", "real")
      .addColumn("finished_at", "real")
      .addColumn("error", "text")
      .addPrimaryKeyConstraint("plan_actions_pk", ["plan_id", "idx"])
      .execute();
    await db.schema
      .createTable("migrations")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("guest_id", "text", (c) => c.notNull())
      .addColumn("from_host_vm", "text", (c) => c.notNull())
      .addColumn("to_host_vm", "text", (c) => c.notNull())
      .addColumn("mechanism", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("progress", "real", (c) => c.notNull())
      .addColumn("detail", "text", (c) => c.notNull())
      .addColumn("plan_id", "integer")
      .addColumn("started_at", "real", (c) => c.notNull())
      .addColumn("finished_at", "real")
      .addColumn("error", "text")
      .execute();
    await db.schema.createIndex("migrations_guest").on("migrations").column("guest_id").execute();
    await db.schema
      .createTable("tokens")
      .addColumn("hash", "text", (c) => c.primaryKey())
      .addColumn("role", "text", (c) => c.notNull())
      .addColumn("tenant", "text")
      .addColumn("label", "text", (c) => c.notNull())
      .addColumn("created_at", "real", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("settings")
      .addColumn("key", "text", (c) => c.primaryKey())
      .addColumn("value", "text", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("leadership")
      .addColumn("id", "integer", (c) => c.primaryKey())
      .addColumn("holder", "text", (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .addColumn("renewed_at", "real", (c) => c.notNull())
      .execute();
    await db.schema
      .createTable("provider_state")
      .addColumn("key", "text", (c) => c.primaryKey())
      .addColumn("value", "text", (c) => c.notNull())
      .addColumn("epoch", "integer", (c) => c.notNull())
      .execute();
    await sql`insert into leadership (id, holder, epoch, renewed_at) values (1, '', 0, 0)`.execute(db);
  },
});

/** Token ids, expiry and revocation; retired guest ids. */
const m002: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable("tokens").addColumn("id", "text").execute();
    await db.schema.alterTable("tokens").addColumn("expires_at", "real").execute();
    await db.schema.alterTable("tokens").addColumn("revoked_at", "real").execute();
    await sql`update tokens set id = 'tok_' || substr(hash, 1, 16)`.execute(db);
    await db.schema.createIndex("tokens_id").on("tokens").column("id").unique().execute();
    await db.schema
      .createTable("retired_guest_ids")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("tenant", "text", (c) => c.notNull())
      .addColumn("retired_at", "real", (c) => c.notNull())
      .execute();
  },
};

/** Host VMs an operator acquired (kept); the cloud's size and cost over time. */
const m003: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable("host_vms")
      .addColumn("kept", "integer", (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .createTable("overview_history")
      .addColumn("at", "real", (c) => c.primaryKey())
      .addColumn("host_vms", "integer", (c) => c.notNull())
      .addColumn("cost_per_hour", "real", (c) => c.notNull())
      .addColumn("guests", "integer", (c) => c.notNull())
      .execute();
  },
};

/** The virtual AMT's event log: what happened to each guest (power, boots, panics, moves, consoles) and who did it. */
const m004 = (kind: StoreKind): Migration => ({
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable("guest_events")
      .addColumn("id", kind === "sqlite" ? "integer" : "serial", (c) => c.primaryKey())
      .addColumn("guest_id", "text", (c) => c.notNull())
      .addColumn("tenant", "text", (c) => c.notNull())
      .addColumn("at", "real", (c) => c.notNull())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("actor", "text")
      .addColumn("detail", "text", (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex("guest_events_guest")
      .on("guest_events")
      .columns(["guest_id", "id"])
      .execute();
  },
});

/** A security VM's monitors, signatures and rules (issue 13): JSON, null for the defaults. */
const m005: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable("guests").addColumn("monitoring", "text").execute();
  },
};

export function migrationsFor(kind: StoreKind): MigrationProvider {
  return {
    async getMigrations() {
      return {
        "001_initial": m001(kind),
        "002_tokens_retired_ids": m002,
        "003_kept_history": m003,
        "004_guest_events": m004(kind),
        "005_secvm_monitoring": m005,
      };
    },
  };
}

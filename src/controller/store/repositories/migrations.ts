/** Migrations of guests, as the executor started them and the provider reports them. */
import type { Kysely, Selectable } from "kysely";
import type { Database, MigrationsTable } from "../schema.ts";

export interface StoredMigration {
  readonly id: string;
  readonly guest: string;
  readonly from: string;
  readonly to: string;
  readonly mechanism: string;
  /** running, completed, failed or cancelled. */
  readonly status: string;
  readonly progress: number;
  /** remainingBytes and etaSeconds as last seen (null: not a finite number). */
  readonly detail: Readonly<Record<string, number | null>>;
  readonly plan: number | null;
  readonly startedAt: number;
  readonly finishedAt: number | null;
  readonly error: string | null;
}

/** What a reading of the provider may change (fields left out stay). */
export type MigrationChange = Partial<
  Pick<StoredMigration, "status" | "progress" | "detail" | "finishedAt" | "error">
>;

export class MigrationRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Newest first, each with its guest's tenant; only those of `tenant`'s guests if given. */
  async list(opts: {
    tenant?: string;
    status?: string;
    limit: number;
  }): Promise<Array<StoredMigration & { tenant: string }>> {
    let q = this.db
      .selectFrom("migrations")
      .innerJoin("guests", "guests.id", "migrations.guest_id")
      .selectAll("migrations")
      .select("guests.tenant")
      .orderBy("migrations.started_at", "desc")
      .limit(opts.limit);
    if (opts.tenant !== undefined) q = q.where("guests.tenant", "=", opts.tenant);
    if (opts.status) q = q.where("migrations.status", "=", opts.status);
    return (await q.execute()).map((r) => ({ ...toMigration(r), tenant: r.tenant }));
  }

  async running(): Promise<StoredMigration[]> {
    const rows = await this.db.selectFrom("migrations").selectAll().where("status", "=", "running").execute();
    return rows.map(toMigration);
  }

  async countRunning(): Promise<number> {
    const row = await this.db
      .selectFrom("migrations")
      .select((eb) => eb.fn.countAll().as("n"))
      .where("status", "=", "running")
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async get(id: string): Promise<StoredMigration | undefined> {
    const row = await this.db.selectFrom("migrations").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toMigration(row);
  }

  /** Guests whose migration ended (any outcome) at or after `at`. */
  async guestsSettledSince(at: number): Promise<Set<string>> {
    const rows = await this.db
      .selectFrom("migrations")
      .select("guest_id")
      .where("status", "!=", "running")
      .where("finished_at", ">=", at)
      .execute();
    return new Set(rows.map((m) => m.guest_id));
  }

  /** When each guest last finished a completed migration. */
  async lastCompleted(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom("migrations")
      .select(["guest_id", "finished_at"])
      .where("status", "=", "completed")
      .execute();
    const out = new Map<string, number>();
    for (const m of rows)
      if (m.finished_at !== null) out.set(m.guest_id, Math.max(out.get(m.guest_id) ?? 0, m.finished_at));
    return out;
  }

  /** Records a migration the provider started, unless it is recorded already. */
  async recordStarted(m: StoredMigration): Promise<void> {
    const exists = await this.db
      .selectFrom("migrations")
      .select("id")
      .where("id", "=", m.id)
      .executeTakeFirst();
    if (exists) return;
    await this.db
      .insertInto("migrations")
      .values({
        id: m.id,
        guest_id: m.guest,
        from_host_vm: m.from,
        to_host_vm: m.to,
        mechanism: m.mechanism,
        status: m.status,
        progress: m.progress,
        detail: JSON.stringify(m.detail),
        plan_id: m.plan,
        started_at: m.startedAt,
        finished_at: m.finishedAt,
        error: m.error,
      })
      .execute();
  }

  async update(id: string, change: MigrationChange): Promise<void> {
    await this.db.updateTable("migrations").set(columns(change)).where("id", "=", id).execute();
  }

  /**
   * A reading of a migration's progress, stored unless the stored one is newer: a running
   * migration's progress only moves forward (readings from older snapshots arrive late).
   * False when nothing was stored.
   */
  async recordProgress(id: string, change: MigrationChange & { progress: number }): Promise<boolean> {
    const r = await this.db
      .updateTable("migrations")
      .set(columns(change))
      .where("id", "=", id)
      .where((eb) => eb.or([eb("progress", "<=", change.progress), eb("status", "!=", "running")]))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }
}

function columns(c: MigrationChange) {
  return {
    status: c.status,
    progress: c.progress,
    detail: c.detail === undefined ? undefined : JSON.stringify(c.detail),
    finished_at: c.finishedAt,
    error: c.error,
  };
}

function toMigration(r: Selectable<MigrationsTable>): StoredMigration {
  return {
    id: r.id,
    guest: r.guest_id,
    from: r.from_host_vm,
    to: r.to_host_vm,
    mechanism: r.mechanism,
    status: r.status,
    progress: r.progress,
    detail: JSON.parse(r.detail) as Record<string, number | null>,
    plan: r.plan_id,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
  };
}

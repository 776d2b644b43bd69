/**
 * Leadership among controllers sharing a store: the fencing epoch (one row), and on
 * PostgreSQL the session advisory lock that elects the leader.
 */
import { type Kysely, sql } from "kysely";
import pg from "pg";
import type { Database, StoreKind } from "../schema.ts";

export class LeadershipRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly kind: StoreKind,
  ) {}

  /** Names the new leader and increments the epoch; returns the new epoch. */
  async takeLead(holder: string, now: number): Promise<number> {
    const row = await this.db
      .updateTable("leadership")
      .set({ holder, epoch: sql`epoch + 1`, renewed_at: now })
      .where("id", "=", 1)
      .returning("epoch")
      .executeTakeFirstOrThrow();
    return Number(row.epoch);
  }

  /**
   * The current epoch. `lock`: row-locked until the transaction ends (PostgreSQL), so that no
   * other controller can take the lead before this transaction's writes are in.
   */
  async epoch(opts: { lock?: boolean } = {}): Promise<number> {
    let q = this.db.selectFrom("leadership").select("epoch").where("id", "=", 1);
    if (opts.lock && this.kind === "postgres") q = q.forUpdate();
    return Number((await q.executeTakeFirstOrThrow()).epoch);
  }
}

/**
 * A PostgreSQL session advisory lock, held by its own connection: whoever holds it leads,
 * and it goes with the session (a controller that dies frees it).
 */
export class AdvisoryLock {
  private client: pg.Client | undefined;

  /** @param onLost told when the session failed (the lock is gone with it) */
  constructor(
    private readonly url: string,
    private readonly key: number,
    private readonly onLost: () => void,
  ) {}

  /** True when this session holds the lock (now or already). */
  async tryAcquire(): Promise<boolean> {
    if (!this.client) {
      this.client = new pg.Client({ connectionString: this.url });
      this.client.on("error", () => {
        this.client = undefined;
        this.onLost();
      });
      await this.client.connect();
    }
    const r = await this.client.query<{ ok: boolean }>("select pg_try_advisory_lock($1) as ok", [this.key]);
    return Boolean(r.rows[0]?.ok);
  }

  /** Ends the session (and with it the lock). */
  async release(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => {});
  }
}

/**
 * Leadership among controllers sharing a store. SQLite: one process, always the leader.
 * PostgreSQL: a session advisory lock decides who leads; taking the lead bumps a fencing
 * epoch, and every write of the leader checks it (a deposed leader cannot write).
 */
import { sql, type Transaction } from "kysely";
import pg from "pg";
import { FencedError } from "./errors.ts";
import type { Store } from "./store/connect.ts";
import type { Database } from "./store/schema.ts";

const LOCK_KEY = 7_360_251; // any constant shared by all nestcloud controllers

export class Leadership {
  epoch = 0;
  private client: pg.Client | undefined;
  private leading = false;

  constructor(
    private readonly store: Store,
    readonly holder: string,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /** Tries to become the leader; true when this controller leads (now or already). */
  async tryLead(now: number): Promise<boolean> {
    if (this.leading) return true;
    if (this.store.kind === "postgres") {
      if (!this.client) {
        this.client = new pg.Client({ connectionString: this.store.url });
        this.client.on("error", () => {
          this.leading = false;
          this.client = undefined;
        });
        await this.client.connect();
      }
      const r = await this.client.query<{ ok: boolean }>("select pg_try_advisory_lock($1) as ok", [LOCK_KEY]);
      if (!r.rows[0]?.ok) return false;
    }
    const row = await this.store.db
      .updateTable("leadership")
      .set({ holder: this.holder, epoch: sql`epoch + 1`, renewed_at: now })
      .where("id", "=", 1)
      .returning("epoch")
      .executeTakeFirstOrThrow();
    this.epoch = Number(row.epoch);
    this.leading = true;
    return true;
  }

  /** Throws FencedError unless the store still names this controller's epoch. */
  async check(): Promise<void> {
    const row = await this.store.db
      .selectFrom("leadership")
      .select("epoch")
      .where("id", "=", 1)
      .executeTakeFirstOrThrow();
    if (Number(row.epoch) !== this.epoch) {
      this.leading = false;
      throw new FencedError(this.epoch, Number(row.epoch));
    }
  }

  /**
   * Runs `fn` in a transaction that first checks this controller's epoch (row-locked on
   * PostgreSQL), so no write lands once another controller has taken the lead.
   */
  async fenced<T>(fn: (tx: Transaction<Database>) => Promise<T>): Promise<T> {
    return this.store.db.transaction().execute(async (tx) => {
      let q = tx.selectFrom("leadership").select("epoch").where("id", "=", 1);
      if (this.store.kind === "postgres") q = q.forUpdate();
      const row = await q.executeTakeFirstOrThrow();
      if (Number(row.epoch) !== this.epoch) {
        this.leading = false;
        throw new FencedError(this.epoch, Number(row.epoch));
      }
      return fn(tx);
    });
  }

  async resign(): Promise<void> {
    this.leading = false;
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => {});
  }
}

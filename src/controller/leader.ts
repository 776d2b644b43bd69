/**
 * Leadership among controllers sharing a store. SQLite: one process, always the leader.
 * PostgreSQL: a session advisory lock decides who leads; taking the lead bumps a fencing
 * epoch, and every write of the leader checks it (a deposed leader cannot write).
 */
import { FencedError } from "./errors.ts";
import type { Store } from "./store/connect.ts";
import { AdvisoryLock, type Repositories } from "./store/repositories/index.ts";

const LOCK_KEY = 7_360_251; // any constant shared by all nestcloud controllers

export class Leadership {
  epoch = 0;
  private lock: AdvisoryLock | undefined;
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
      // The lock's session dying takes the lead with it.
      this.lock ??= new AdvisoryLock(this.store.url, LOCK_KEY, () => {
        this.leading = false;
      });
      if (!(await this.lock.tryAcquire())) return false;
    }
    this.epoch = await this.store.repos.leadership.takeLead(this.holder, now);
    this.leading = true;
    return true;
  }

  /** Throws FencedError unless the store still names this controller's epoch. */
  async check(): Promise<void> {
    const current = await this.store.repos.leadership.epoch();
    if (current !== this.epoch) {
      this.leading = false;
      throw new FencedError(this.epoch, current);
    }
  }

  /**
   * Runs `fn` in a transaction that first checks this controller's epoch (row-locked on
   * PostgreSQL), so no write lands once another controller has taken the lead.
   */
  async fenced<T>(fn: (tx: Repositories) => Promise<T>): Promise<T> {
    return this.store.transaction(async (tx) => {
      const current = await tx.leadership.epoch({ lock: true });
      if (current !== this.epoch) {
        this.leading = false;
        throw new FencedError(this.epoch, current);
      }
      return fn(tx);
    });
  }

  async resign(): Promise<void> {
    this.leading = false;
    const lock = this.lock;
    this.lock = undefined;
    await lock?.release();
  }
}

/**
 * One simulated world shared by the simulated rental and the simulated data plane: its clock,
 * its lazy advance (provisioning that ended, migrations that finished) and its persistence
 * after every change, so that a restarted controller or a new leader continues it.
 */
import { ProviderError, type StateStore } from "../types.ts";
import type { World } from "./world.ts";

export class SimWorldState {
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    public world: World,
    private readonly store: StateStore,
    private readonly wallNow: () => number,
  ) {}

  /** Opens the persisted world, or starts `initial` if there is none. */
  static async open(store: StateStore, initial: () => World, wallNow: () => number): Promise<SimWorldState> {
    const text = await store.load();
    let world: World;
    if (text) {
      world = JSON.parse(text) as World;
      if (world.version !== 1)
        throw new ProviderError("invalid", `simulated world has version ${world.version}, expected 1`);
    } else world = initial();
    const s = new SimWorldState(world, store, wallNow);
    if (!text) await s.persist();
    return s;
  }

  /** Reloads the world as the last leader saved it. */
  async resume(): Promise<void> {
    await this.saving;
    const text = await this.store.load();
    if (text) {
      const world = JSON.parse(text) as World;
      if (world.version === 1) this.world = world;
    } else await this.persist();
  }

  get speed(): number {
    return this.world.clock.speed;
  }

  now(): number {
    const c = this.world.clock;
    return c.worldT0 + (this.wallNow() - c.wallT0) * c.speed;
  }

  /** Applies everything due by now: provisioning that ended, migrations that finished. */
  private advance(): boolean {
    const now = this.now();
    let changed = false;
    for (const h of this.world.hostVms) {
      if (h.state === "provisioning" && h.readyAt <= now) {
        h.state = "running";
        h.stateSince = h.readyAt;
        changed = true;
      }
    }
    for (const m of this.world.migrations) {
      if (m.status !== "running" || m.endsAt > now) continue;
      const guest = this.world.guests.find((g) => g.id === m.guest);
      const target = this.world.hostVms.find((h) => h.id === m.to);
      if (!guest || !target || target.state !== "running") {
        m.status = "failed";
        m.error = "destination host VM is gone";
      } else {
        guest.hostVm = m.to;
        m.status = "completed";
      }
      m.finishedAt = m.endsAt;
      changed = true;
    }
    // Keep the last few hundred finished migrations only.
    const done = this.world.migrations.filter((m) => m.status !== "running");
    if (done.length > 500) {
      const drop = new Set(done.slice(0, done.length - 500).map((m) => m.id));
      this.world.migrations = this.world.migrations.filter((m) => !drop.has(m.id));
      changed = true;
    }
    return changed;
  }

  async persist(): Promise<void> {
    const json = JSON.stringify(this.world);
    // Saves are serialized: a later save never lands before an earlier one.
    this.saving = this.saving.then(() => this.store.save(json));
    await this.saving;
  }

  /** Brings the world up to now (and saves it if that changed anything). */
  async sync(): Promise<void> {
    if (this.advance()) await this.persist();
  }

  nextId(prefix: string): string {
    return `${prefix}-${this.world.nextId++}`;
  }

  async close(): Promise<void> {
    await this.saving;
  }
}

/**
 * A simulated datacenter as a provider: host VMs are acquired and provisioned in virtual
 * time, guests' CPU load replays a seeded synthetic trace, migrations take the time the cost
 * models give. The world is saved after every change through a StateStore, so a controller
 * restart (or a follower taking over) continues the same world.
 */
import { DEFAULT_CALIBRATION, estimateMove } from "../../migration/index.ts";
import { syntheticTrace, type Trace, utilizationAt } from "../../sim/index.ts";
import {
  type GuestSpec,
  type Provider,
  ProviderError,
  type ProviderGuest,
  type ProviderHostVm,
  type ProviderMigration,
  type ProviderSnapshot,
  type StateStore,
} from "../types.ts";
import type { World, WorldHostVm, WorldMigration } from "./world.ts";

export class SimProvider implements Provider {
  readonly name = "sim";
  readonly clock = "simulated";
  private trace: Trace;
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private world: World,
    private readonly store: StateStore,
    private readonly wallNow: () => number,
  ) {
    this.trace = syntheticTrace({
      guests: world.series,
      seed: world.seed,
      medianPercent: 12,
      burstsPerDay: 3,
    });
  }

  /** Opens the persisted world, or starts `initial` if there is none. */
  static async open(
    store: StateStore,
    initial: () => World,
    wallNow = () => Date.now() / 1000,
  ): Promise<SimProvider> {
    const text = await store.load();
    let world: World;
    if (text) {
      world = JSON.parse(text) as World;
      if (world.version !== 1)
        throw new ProviderError("invalid", `simulated world has version ${world.version}, expected 1`);
    } else world = initial();
    const p = new SimProvider(world, store, wallNow);
    if (!text) await p.persist();
    return p;
  }

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

  private async persist(): Promise<void> {
    const json = JSON.stringify(this.world);
    // Saves are serialized: a later save never lands before an earlier one.
    this.saving = this.saving.then(() => this.store.save(json));
    await this.saving;
  }

  private async sync(): Promise<void> {
    if (this.advance()) await this.persist();
  }

  async describe() {
    return { servers: this.world.servers, hostVmTypes: this.world.hostVmTypes };
  }

  async snapshot(): Promise<ProviderSnapshot> {
    await this.sync();
    const now = this.now();
    return {
      now,
      hostVms: this.world.hostVms.map((h) => this.hostVmView(h)),
      guests: this.world.guests.map((g): ProviderGuest => {
        const u = g.running ? utilizationAt(this.trace, g.series % this.trace.names.length, now % 86400) : 0;
        return {
          id: g.id,
          spec: {
            id: g.id,
            tenant: g.tenant,
            vcpus: g.vcpus,
            mipsPerVcpu: g.mipsPerVcpu,
            memoryMiB: g.memoryMiB,
            dirtyRateMiBps: g.dirtyRateMiBps,
          },
          hostVm: g.hostVm,
          running: g.running,
          cpu: u,
          residentMiB: g.memoryMiB * Math.min(1, 0.4 + 0.6 * u),
          dirtyRateMiBps: g.dirtyRateMiBps * u,
        };
      }),
      migrations: this.world.migrations.map((m) => this.migrationView(m, now)),
    };
  }

  private hostVmView(h: WorldHostVm): ProviderHostVm {
    return {
      id: h.id,
      type: h.type,
      server: h.server,
      state: h.state,
      acquiredAt: h.acquiredAt,
      stateSince: h.stateSince,
    };
  }

  private migrationView(m: WorldMigration, now: number): ProviderMigration {
    const span = Math.max(1e-9, m.endsAt - m.startedAt);
    const progress = m.status === "completed" ? 1 : Math.min(1, Math.max(0, (now - m.startedAt) / span));
    return {
      id: m.id,
      guest: m.guest,
      from: m.from,
      to: m.to,
      mechanism: m.mechanism,
      status: m.status,
      progress,
      remainingBytes: Math.round(m.bytes * (1 - progress)),
      etaSeconds: m.status === "running" ? Math.max(0, m.endsAt - now) : 0,
      startedAt: m.startedAt,
      finishedAt: m.finishedAt,
      error: m.error,
    };
  }

  private id(prefix: string): string {
    return `${prefix}-${this.world.nextId++}`;
  }

  async acquireHostVm(type: string, server: string | undefined): Promise<ProviderHostVm> {
    await this.sync();
    const t = this.world.hostVmTypes.find((x) => x.name === type);
    if (!t) throw new ProviderError("invalid", `no host VM type ${type}`);
    const used = (s: string) =>
      this.world.hostVms.filter((h) => h.server === s && h.state !== "released").length;
    const candidates = this.world.servers.filter((s) => used(s.id) < s.hostVmSlots);
    // Dedicated-host style: the asked-for server if it has a slot, else the emptiest one.
    const chosen =
      candidates.find((s) => s.id === server) ??
      [...candidates].sort((a, b) => used(a.id) - used(b.id) || a.id.localeCompare(b.id))[0];
    if (!chosen) throw new ProviderError("capacity", "no physical server has a free host-VM slot");
    const now = this.now();
    const h: WorldHostVm = {
      id: `${chosen.id}-${this.id("hv")}`,
      type,
      server: chosen.id,
      state: "provisioning",
      acquiredAt: now,
      stateSince: now,
      readyAt: now + t.provisionSeconds,
    };
    this.world.hostVms.push(h);
    await this.persist();
    return this.hostVmView(h);
  }

  async releaseHostVm(id: string): Promise<void> {
    await this.sync();
    const h = this.hostVm(id);
    if (
      this.world.guests.some((g) => g.hostVm === id) ||
      this.world.migrations.some((m) => m.status === "running" && (m.to === id || m.from === id))
    ) {
      throw new ProviderError("conflict", `host VM ${id} still hosts guests or migrations`);
    }
    h.state = "released";
    h.stateSince = this.now();
    await this.persist();
  }

  private hostVm(id: string): WorldHostVm {
    const h = this.world.hostVms.find((x) => x.id === id);
    if (!h) throw new ProviderError("not-found", `no host VM ${id}`);
    return h;
  }

  async createGuest(spec: GuestSpec, hostVm: string): Promise<void> {
    await this.sync();
    if (this.world.guests.some((g) => g.id === spec.id))
      throw new ProviderError("exists", `guest ${spec.id} exists`);
    if (this.hostVm(hostVm).state !== "running")
      throw new ProviderError("conflict", `host VM ${hostVm} is not running`);
    this.world.guests.push({ ...spec, hostVm, running: true, series: this.world.guests.length });
    await this.persist();
  }

  async setGuestRunning(id: string, running: boolean): Promise<void> {
    await this.sync();
    const g = this.world.guests.find((x) => x.id === id);
    if (!g) throw new ProviderError("not-found", `no guest ${id}`);
    g.running = running;
    await this.persist();
  }

  async deleteGuest(id: string): Promise<void> {
    await this.sync();
    if (this.world.migrations.some((m) => m.status === "running" && m.guest === id))
      throw new ProviderError("conflict", `guest ${id} is migrating`);
    this.world.guests = this.world.guests.filter((g) => g.id !== id);
    await this.persist();
  }

  async migrate(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<ProviderMigration> {
    await this.sync();
    const g = this.world.guests.find((x) => x.id === guest);
    if (!g || g.hostVm === undefined) throw new ProviderError("not-found", `no placed guest ${guest}`);
    if (this.world.migrations.some((m) => m.status === "running" && m.guest === guest))
      throw new ProviderError("conflict", `guest ${guest} is migrating already`);
    const target = this.hostVm(to);
    if (target.state !== "running") throw new ProviderError("conflict", `host VM ${to} is ${target.state}`);
    const now = this.now();
    const estimate = estimateMove(
      mechanism === "instant" ? "same-server" : "cross-server",
      { memoryMiB: g.memoryMiB, residentMiB: g.memoryMiB * 0.6, dirtyRateMiBps: g.dirtyRateMiBps * 0.2 },
      10000,
      DEFAULT_CALIBRATION,
    );
    // A migration is never shorter than a few seconds of provider time, so it can be watched.
    const duration = Math.max(seconds, 2 * this.speed, 1);
    const m: WorldMigration = {
      id: this.id("mig"),
      guest,
      from: g.hostVm,
      to,
      mechanism,
      status: "running",
      startedAt: now,
      endsAt: now + duration,
      finishedAt: undefined,
      bytes: estimate?.bytes ?? 0,
      error: undefined,
    };
    this.world.migrations.push(m);
    await this.persist();
    return this.migrationView(m, now);
  }

  async migration(id: string): Promise<ProviderMigration | undefined> {
    await this.sync();
    const m = this.world.migrations.find((x) => x.id === id);
    return m ? this.migrationView(m, this.now()) : undefined;
  }

  async cancelMigration(id: string): Promise<void> {
    await this.sync();
    const m = this.world.migrations.find((x) => x.id === id);
    if (!m) throw new ProviderError("not-found", `no migration ${id}`);
    if (m.status !== "running") throw new ProviderError("conflict", `migration ${id} is ${m.status}`);
    m.status = "cancelled";
    m.finishedAt = this.now();
    await this.persist();
  }

  async close(): Promise<void> {
    await this.saving;
  }
}

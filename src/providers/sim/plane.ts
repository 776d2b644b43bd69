/**
 * Guests of the simulated datacenter: their CPU load replays a seeded synthetic trace,
 * migrations take the time the planner's cost model gave.
 */
import { DEFAULT_CALIBRATION, estimateMove } from "../../migration/index.ts";
import { guestSpec } from "../../model/index.ts";
import { syntheticTrace, type Trace, utilizationAt } from "../../sim/index.ts";
import {
  type GuestDataPlane,
  type GuestSpec,
  ProviderError,
  type ProviderGuest,
  type ProviderMigration,
} from "../types.ts";
import type { SimWorldState } from "./state.ts";
import type { WorldMigration } from "./world.ts";

export class SimGuestPlane implements GuestDataPlane {
  private readonly trace: Trace;

  constructor(private readonly s: SimWorldState) {
    this.trace = syntheticTrace({
      guests: s.world.series,
      seed: s.world.seed,
      medianPercent: 12,
      burstsPerDay: 3,
    });
  }

  private get w() {
    return this.s.world;
  }

  async observe(now: number) {
    await this.s.sync();
    const guests = this.w.guests.map((g): ProviderGuest => {
      const u = g.running ? utilizationAt(this.trace, g.series % this.trace.names.length, now % 86400) : 0;
      return {
        id: g.id,
        spec: guestSpec(g),
        hostVm: g.hostVm,
        running: g.running,
        cpu: u,
        residentMiB: g.memoryMiB * Math.min(1, 0.4 + 0.6 * u),
        dirtyRateMiBps: g.dirtyRateMiBps * u,
      };
    });
    return { guests, migrations: this.w.migrations.map((m) => migrationView(m, now)) };
  }

  async inUse(hostVm: string): Promise<boolean> {
    await this.s.sync();
    return (
      this.w.guests.some((g) => g.hostVm === hostVm) ||
      this.w.migrations.some((m) => m.status === "running" && (m.to === hostVm || m.from === hostVm))
    );
  }

  private runningHostVm(id: string): void {
    const h = this.w.hostVms.find((x) => x.id === id);
    if (!h) throw new ProviderError("not-found", `no host VM ${id}`);
    if (h.state !== "running") throw new ProviderError("conflict", `host VM ${id} is ${h.state}`);
  }

  async createGuest(spec: GuestSpec, hostVm: string): Promise<void> {
    await this.s.sync();
    if (this.w.guests.some((g) => g.id === spec.id))
      throw new ProviderError("exists", `guest ${spec.id} exists`);
    this.runningHostVm(hostVm);
    this.w.guests.push({ ...spec, hostVm, running: true, series: this.w.guests.length });
    await this.s.persist();
  }

  async setGuestRunning(id: string, running: boolean): Promise<void> {
    await this.s.sync();
    const g = this.w.guests.find((x) => x.id === id);
    if (!g) throw new ProviderError("not-found", `no guest ${id}`);
    g.running = running;
    await this.s.persist();
  }

  async deleteGuest(id: string): Promise<void> {
    await this.s.sync();
    if (this.w.migrations.some((m) => m.status === "running" && m.guest === id))
      throw new ProviderError("conflict", `guest ${id} is migrating`);
    this.w.guests = this.w.guests.filter((g) => g.id !== id);
    await this.s.persist();
  }

  async migrate(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<ProviderMigration> {
    await this.s.sync();
    const g = this.w.guests.find((x) => x.id === guest);
    if (!g || g.hostVm === undefined) throw new ProviderError("not-found", `no placed guest ${guest}`);
    if (this.w.migrations.some((m) => m.status === "running" && m.guest === guest))
      throw new ProviderError("conflict", `guest ${guest} is migrating already`);
    this.runningHostVm(to);
    const now = this.s.now();
    const estimate = estimateMove(
      mechanism === "instant" ? "same-server" : "cross-server",
      { memoryMiB: g.memoryMiB, residentMiB: g.memoryMiB * 0.6, dirtyRateMiBps: g.dirtyRateMiBps * 0.2 },
      10000,
      DEFAULT_CALIBRATION,
    );
    // As long as the mechanism's model says (an instant handover: milliseconds), so that its
    // duration, its ETA and the provider's clock agree.
    const duration = Math.max(seconds, 0.001);
    const m: WorldMigration = {
      id: this.s.nextId("mig"),
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
    this.w.migrations.push(m);
    await this.s.persist();
    return migrationView(m, now);
  }

  async migration(id: string): Promise<ProviderMigration | undefined> {
    await this.s.sync();
    const m = this.w.migrations.find((x) => x.id === id);
    return m ? migrationView(m, this.s.now()) : undefined;
  }

  async cancelMigration(id: string): Promise<void> {
    await this.s.sync();
    const m = this.w.migrations.find((x) => x.id === id);
    if (!m) throw new ProviderError("not-found", `no migration ${id}`);
    if (m.status !== "running") throw new ProviderError("conflict", `migration ${id} is ${m.status}`);
    m.status = "cancelled";
    m.finishedAt = this.s.now();
    await this.s.persist();
  }

  async close(): Promise<void> {}
}

function migrationView(m: WorldMigration, now: number): ProviderMigration {
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

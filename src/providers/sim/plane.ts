/**
 * Guests of the simulated datacenter: their CPU load replays a seeded synthetic trace,
 * migrations take the time the planner's cost model gave.
 */
import { DEFAULT_CALIBRATION, estimateMove } from "../../migration/index.ts";
import { decayedPeak, dirtyRateAt, guestSpec, residentMemoryMiB } from "../../model/index.ts";
import {
  DEFAULT_REJUVENATION_COST,
  renewalTimes,
  syntheticTrace,
  type Trace,
  utilizationAt,
} from "../../sim/index.ts";
import {
  type CoMigrationMove,
  type GuestDataPlane,
  type GuestInventory,
  type GuestPowerControl,
  type GuestPowerEventView,
  type GuestSpec,
  ProviderError,
  type ProviderGuest,
  type ProviderMigration,
  type ProviderRejuvenation,
  type RejuvenationModeName,
} from "../types.ts";
import type { SimWorldState } from "./state.ts";
import type { World, WorldGuest, WorldMigration, WorldRejuvenation } from "./world.ts";

/** The seeded synthetic trace a simulated world's guests replay (one day, repeated). */
export function worldTrace(world: Pick<World, "series" | "seed">): Trace {
  return syntheticTrace({ guests: world.series, seed: world.seed, medianPercent: 12, burstsPerDay: 3 });
}

/** Samples of the trace folded into a peak at most: older ones weigh less than 1e-7 (model/memory.ts). */
const PEAK_SAMPLES = 288;

export class SimGuestPlane implements GuestDataPlane {
  private readonly trace: Trace;

  constructor(private readonly s: SimWorldState) {
    this.trace = worldTrace(s.world);
  }

  private get w() {
    return this.s.world;
  }

  /** Guest g's load at provider time t (0 while it is stopped). */
  private load(g: WorldGuest, t: number): number {
    return g.running ? utilizationAt(this.trace, g.series % this.trace.names.length, t % 86400) : 0;
  }

  /**
   * Brings g's load peak up to the last trace sample at or before `now`, one sample at a time
   * as the simulator does at each round: returns whether it changed.
   */
  private foldPeak(g: WorldGuest, now: number): boolean {
    const step = this.trace.intervalSeconds;
    const last = Math.floor(now / step) * step;
    if (g.peak && g.peak.at >= last) return false;
    let t = g.peak ? Math.max(g.peak.at + step, last - (PEAK_SAMPLES - 1) * step) : last;
    let value = g.peak && t === g.peak.at + step ? g.peak.value : 0;
    for (; t <= last; t += step) value = decayedPeak(value, this.load(g, t));
    g.peak = { at: last, value };
    return true;
  }

  async observe(now: number) {
    await this.s.sync();
    let changed = false;
    for (const g of this.w.guests) if (this.foldPeak(g, now)) changed = true;
    if (changed) await this.s.persist();
    const guests = this.w.guests.map((g): ProviderGuest => {
      const u = this.load(g, now);
      return {
        id: g.id,
        spec: guestSpec(g),
        hostVm: g.hostVm,
        running: g.running,
        cpu: u,
        residentMiB: residentMemoryMiB(g.memoryMiB, g.peak?.value ?? 0),
        dirtyRateMiBps: dirtyRateAt(g.dirtyRateMiBps, u),
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

  // ---- the virtual AMT, modelled: guests honour ACPI, boot at once, never hang ----------

  /** Boots the model announces (the controller drains them into its event log). */
  private powerEvents: GuestPowerEventView[] = [];

  readonly power: GuestPowerControl = {
    act: async (id, req) => {
      await this.s.sync();
      const g = this.w.guests.find((x) => x.id === id);
      if (!g) throw new ProviderError("not-found", `no guest ${id}`);
      if (this.w.migrations.some((m) => m.status === "running" && m.guest === id))
        throw new ProviderError("conflict", `guest ${id} is migrating: power actions wait until it settled`);
      const was = g.running ? "on" : "off";
      const booted = () =>
        this.powerEvents.push({
          guest: id,
          at: Date.now() / 1000,
          kind: "booted",
          detail: `${g.boot?.mode ?? "normal"} boot`,
        });
      let detail: string;
      switch (req.action) {
        case "on":
          detail = g.running ? "already on" : "powered on (was off)";
          if (!g.running) booted();
          g.running = true;
          break;
        case "off":
        case "shutdown":
          detail = !g.running
            ? "already off"
            : req.action === "off"
              ? "powered off hard (was on)"
              : "the guest powered off (ACPI)";
          g.running = false;
          break;
        case "reset":
          detail = `reset (was ${was})`;
          g.running = true;
          booted();
          break;
        case "rescue":
        case "normal":
          if (req.action === "rescue")
            g.boot = { mode: "rescue", ...(req.append ? { append: req.append } : {}) };
          else delete g.boot;
          g.running = true;
          booted();
          detail = `restarted into the ${req.action} command line`;
          break;
      }
      if (this.powerEvents.length > 1000) this.powerEvents.splice(0, this.powerEvents.length - 1000);
      await this.s.persist();
      return {
        guestId: id,
        power: g.running ? "on" : "off",
        boot: g.boot?.mode ?? "normal",
        outcome: "done",
        detail,
      };
    },
    inventory: async (id): Promise<GuestInventory> => {
      await this.s.sync();
      const g = this.w.guests.find((x) => x.id === id);
      if (!g) throw new ProviderError("not-found", `no guest ${id}`);
      const host = this.w.hostVms.find((h) => h.id === g.hostVm);
      return {
        guestId: id,
        hostVm: g.hostVm ?? "",
        server: host?.server ?? "",
        cpus: g.vcpus,
        memoryMiB: Math.round(g.memoryMiB),
        disks: [],
        nics: [{ id: "net0", mac: simulatedMac(id), backend: "simulated" }],
        serials: [{ id: "console", logged: true }],
        firmware: "simulated",
        kernel: "vmlinuz",
        initrd: "initrd.gz",
        commandLine: [
          "console=ttyS0",
          g.boot ? `nestcloud.rescue=1${g.boot.append ? ` ${g.boot.append}` : ""}` : "",
        ]
          .filter((x) => x !== "")
          .join(" "),
        boot: g.boot?.mode ?? "normal",
        power: g.running ? "on" : "off",
        qemuStatus: null,
        pvpanic: false,
      };
    },
    drainEvents: async () => this.powerEvents.splice(0),
  };

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

  /**
   * Lock-step in virtual time: every member runs as long as the slowest (so all switch over
   * at one instant); a member that cannot start cancels those already started.
   */
  async coMigrate(moves: readonly CoMigrationMove[]): Promise<ProviderMigration[]> {
    const seconds = Math.max(...moves.map((m) => m.seconds));
    const started: ProviderMigration[] = [];
    try {
      for (const m of moves) started.push(await this.migrate(m.guest, m.to, m.mechanism, seconds));
    } catch (e) {
      for (const m of started) await this.cancelMigration(m.id).catch(() => {});
      throw e;
    }
    return started;
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
    for (const h of [g.hostVm, to]) this.refuseWhileRenewed(h, now, `move ${guest}`);
    this.foldPeak(g, now);
    const estimate = estimateMove(
      mechanism === "instant" ? "same-server" : "cross-server",
      {
        memoryMiB: g.memoryMiB,
        residentMiB: residentMemoryMiB(g.memoryMiB, g.peak?.value ?? 0),
        dirtyRateMiBps: dirtyRateAt(g.dirtyRateMiBps, this.load(g, now)),
      },
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
      pauseMs: estimate === undefined ? undefined : Math.round(estimate.downtimeSeconds * 1e6) / 1e3,
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

  // ---- rejuvenation (modelled: sim/rejuvenation-cost.ts, as the simulator's executor) -----

  /** The rejuvenation holding host VM h (renewed, or its spare) at `now`, if any. */
  private renewalOf(h: string, now: number): WorldRejuvenation | undefined {
    return (this.w.rejuvenations ?? []).find((r) => now < r.endsAt && (r.hostVm === h || r.spare === h));
  }

  private refuseWhileRenewed(h: string, now: number, doing: string): void {
    const r = this.renewalOf(h, now);
    if (r) throw new ProviderError("conflict", `${doing}: host VM ${h} is being rejuvenated (${r.id})`);
  }

  async rejuvenate(hostVm: string, mode: RejuvenationModeName): Promise<ProviderRejuvenation> {
    await this.s.sync();
    this.runningHostVm(hostVm);
    const now = this.s.now();
    this.refuseWhileRenewed(hostVm, now, "rejuvenate");
    if (this.w.migrations.some((m) => m.status === "running" && (m.from === hostVm || m.to === hostVm)))
      throw new ProviderError("conflict", `rejuvenate: host VM ${hostVm} takes part in a migration`);
    const guests = this.w.guests.filter((g) => g.hostVm === hostVm);
    let spare: string | null = null;
    if (mode === "evacuate") {
      spare = this.spareFor(hostVm, guests, now);
      if (spare === null)
        throw new ProviderError(
          "conflict",
          `evacuate ${hostVm}: no other running host VM of its server has room for its guests`,
        );
    }
    const c = DEFAULT_REJUVENATION_COST;
    const t = renewalTimes(c, guests.length, mode);
    const r: WorldRejuvenation = {
      id: this.s.nextId("rejuv"),
      hostVm,
      mode,
      spare,
      guests: guests.map((g) => g.id),
      startedAt: now,
      prepareSeconds: t.prepareSeconds,
      switchSeconds: t.switchSeconds,
      pausePerGuestSeconds: t.pausePerGuestSeconds,
      restartSeconds: c.restartSeconds,
      endsAt: now + t.totalSeconds,
    };
    (this.w.rejuvenations ??= []).push(r);
    // Finished ones are history the controller's journal keeps: the world keeps the last few.
    if (this.w.rejuvenations.length > 64)
      this.w.rejuvenations = this.w.rejuvenations.filter((x) => now < x.endsAt);
    await this.s.persist();
    return rejuvenationView(r, now);
  }

  async rejuvenation(id: string): Promise<ProviderRejuvenation | undefined> {
    await this.s.sync();
    const r = (this.w.rejuvenations ?? []).find((x) => x.id === id);
    return r ? rejuvenationView(r, this.s.now()) : undefined;
  }

  /** A running host VM of hostVm's server, not held, with memory free for `guests`. */
  private spareFor(hostVm: string, guests: readonly WorldGuest[], now: number): string | null {
    const server = this.w.hostVms.find((h) => h.id === hostVm)?.server;
    const need = guests.reduce((n, g) => n + g.memoryMiB, 0);
    for (const h of this.w.hostVms) {
      if (h.id === hostVm || h.server !== server || h.state !== "running" || this.renewalOf(h.id, now))
        continue;
      const type = this.w.hostVmTypes.find((t) => t.name === h.type);
      if (!type) continue;
      const used = this.w.guests.filter((g) => g.hostVm === h.id).reduce((n, g) => n + g.memoryMiB, 0);
      if (used + need <= type.memoryMiB - type.hypervisorOverheadMiB) return h.id;
    }
    return null;
  }

  async close(): Promise<void> {}
}

function rejuvenationView(r: WorldRejuvenation, now: number): ProviderRejuvenation {
  const done = now >= r.endsAt;
  const switchStart = r.startedAt + r.prepareSeconds;
  const step = done
    ? "done"
    : now < switchStart
      ? "prepare"
      : now < switchStart + r.switchSeconds
        ? "switch"
        : "restart";
  const settled = done || step === "restart" ? r.guests.length : 0;
  const pauseMs = Math.round(r.pausePerGuestSeconds * 1e6) / 1e3;
  return {
    id: r.id,
    hostVm: r.hostVm,
    mode: r.mode,
    status: done ? "completed" : "running",
    step,
    settled,
    of: r.guests.length,
    startedAt: r.startedAt,
    finishedAt: done ? r.endsAt : undefined,
    error: undefined,
    result: done
      ? {
          mechanism: "simulated (x-ignore-shared model)",
          qemu: "simulated",
          spare: r.spare,
          guests: r.guests.map((guest) => ({ guest, outcome: "moved", pauseMs, error: null })),
          maxPauseMs: r.guests.length ? pauseMs : null,
          medianPauseMs: r.guests.length ? pauseMs : null,
          prepareMs: r.prepareSeconds * 1000,
          switchMs: r.switchSeconds * 1000,
          totalMs: (r.endsAt - r.startedAt) * 1000,
          bytesMoved: 0,
          agentRestartMs: r.restartSeconds * 1000,
        }
      : undefined,
  };
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
    pauseMs: m.status === "completed" ? m.pauseMs : undefined,
  };
}

/** A stable, locally administered unicast MAC for a simulated guest's NIC. */
function simulatedMac(id: string): string {
  let h = 2166136261;
  for (const ch of id) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  const b = [0x52, 0x54, 0x00, (h >>> 16) & 255, (h >>> 8) & 255, h & 255];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

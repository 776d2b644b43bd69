/**
 * Runs action plans in virtual time: an action starts once everything it depends on has
 * completed and the parallelism caps allow; a newer plan supersedes the actions of older
 * plans that have not started. Each action is checked again when it starts (the world may
 * have changed since it was planned): a move whose guest or target is no longer as planned
 * fails, and so does everything that depends on it.
 */
import type { MigrationEstimate } from "../migration/index.ts";
import { type Cloud, type HostVmType, hostVmGuestMemory } from "../model/index.ts";
import {
  type AcquireHostVmAction,
  type Action,
  type ActionPlan,
  type MigrateAction,
  type MoveReason,
  type ParallelismCaps,
  type RejuvenateAction,
  type ReleaseHostVmAction,
  unhandledKind,
} from "../planner/index.ts";
import { renewalTimes } from "./rejuvenation-cost.ts";
import type { RejuvenationModel } from "./scenario.ts";

export type ActionState = "waiting" | "running" | "done" | "failed" | "superseded";

interface Tracked {
  readonly action: Action;
  readonly deps: readonly number[];
  readonly caps: ParallelismCaps;
  state: ActionState;
  /** Host VM created by an acquisition, or the resolved target of a migration. */
  hostVm: number;
  acquireType?: HostVmType;
}

export interface ExecutorHooks {
  /** Ask for a completion event of global action `id` at `time`. */
  schedule(time: number, id: number): void;
  migrationStarted(guest: number, from: number, to: number, now: number): void;
  hostVmChanged(hostVm: number, now: number): void;
  /** A rejuvenation started: each of `guests` pauses `pauseSeconds` in all. */
  rejuvenationStarted(hostVm: number, guests: readonly number[], pauseSeconds: number, now: number): void;
  /** A rejuvenation completed: the host VM's hypervisor is new from `now`. */
  hostVmRenewed(hostVm: number, now: number): void;
}

/** What the rollout cost, as far as the executor sees it (the run's result reports it). */
export interface RejuvenationStats {
  done: number;
  /** Of those done, evacuated to a spare (the others in place). */
  evacuated: number;
  failed: number;
  /** Guest pauses (one per guest in place, two when evacuated and moved back). */
  guestPauses: number;
  pauseSeconds: number;
  maxPauseSeconds: number;
  /** Host-VM seconds held by renewals (the renewed one, and a spare while it holds the guests). */
  heldHostVmSeconds: number;
}

export interface ExecutionRules {
  readonly memory: "reserved" | "at-creation";
  readonly cpuOvercommit: number;
}

export interface ExecutorStats {
  started: Record<"instant" | "precopy" | "postcopy", number>;
  failed: number;
  superseded: number;
  migrationSeconds: number;
  downtimeSeconds: number;
  bytes: number;
  networkBytes: number;
  acquisitions: number;
  releases: number;
  /** Co-migrations submitted (each runs as its members' migrations). */
  coMigrations: number;
  /** Migrations started, by why the planner moved the guest and by mechanism. */
  byReason: Partial<Record<MoveReason, Record<"instant" | "precopy" | "postcopy", number>>>;
}

export class Executor {
  private readonly tracked: Tracked[] = [];
  private readonly waiting: number[] = [];
  /** Per guest: global id of its running migration, or -1 (arrays: these are hot paths). */
  private migrating = new Int32Array(0);
  private readonly migratingGuests = new Set<number>();
  /** Per host VM: guests arriving, and running migrations touching it. */
  private readonly incoming: number[][] = [];
  private readonly perHost: number[] = [];
  private running = 0;
  /** Guests migrating right now (any host VM): lets idle checks skip the map lookups. */
  private incomingCount = 0;
  readonly stats: ExecutorStats = {
    started: { instant: 0, precopy: 0, postcopy: 0 },
    failed: 0,
    superseded: 0,
    migrationSeconds: 0,
    downtimeSeconds: 0,
    bytes: 0,
    networkBytes: 0,
    acquisitions: 0,
    releases: 0,
    coMigrations: 0,
    byReason: {},
  };
  readonly rejuvenation: RejuvenationStats = {
    done: 0,
    evacuated: 0,
    failed: 0,
    guestPauses: 0,
    pauseSeconds: 0,
    maxPauseSeconds: 0,
    heldHostVmSeconds: 0,
  };
  /** Host VMs a running rejuvenation holds (renewed, or the spare): no move in or out, no release. */
  private readonly held = new Set<number>();
  /** Host VMs being renewed (a subset of held). */
  private readonly renewing = new Set<number>();
  /** Migrations started since the last call of takeStartedCounts, by mechanism. */
  private startedSince = { instant: 0, precopy: 0, postcopy: 0 };

  constructor(
    private readonly cloud: Cloud,
    private readonly hooks: ExecutorHooks,
    private readonly rules: ExecutionRules,
    /** How renewals cost; undefined: no rejuvenation is modelled and each fails. */
    private readonly rejuvenationModel?: RejuvenationModel,
  ) {}

  /** Marks the host VMs under renewal (the planner's `rejuvenating`). */
  fillRejuvenating(out: Uint8Array): void {
    out.fill(0);
    for (const h of this.renewing) if (h < out.length) out[h] = 1;
  }

  action(id: number): Action {
    return this.tracked[id].action;
  }

  targetOf(id: number): number {
    return this.tracked[id].hostVm;
  }

  private markMigrating(g: number, id: number): void {
    if (g >= this.migrating.length) {
      const next = new Int32Array(Math.max(g + 1, this.migrating.length * 2, 64)).fill(-1);
      next.set(this.migrating);
      this.migrating = next;
    }
    this.migrating[g] = id;
    this.migratingGuests.add(g);
  }

  isMigrating(g: number): boolean {
    return g < this.migrating.length && this.migrating[g] >= 0;
  }

  hasIncoming(h: number): boolean {
    return this.incomingCount > 0 && (this.incoming[h]?.length ?? 0) > 0;
  }

  incomingOf(h: number): readonly number[] | undefined {
    return this.incoming[h];
  }

  /** Marks the guests in migration and their targets; returns them. */
  fillInFlight(inMigration: Uint8Array, inboundTarget: Int32Array): number[] {
    const out: number[] = [];
    for (const g of this.migratingGuests) {
      const id = this.migrating[g];
      inMigration[g] = 1;
      inboundTarget[g] = this.tracked[id].hostVm;
      out.push(g);
    }
    return out;
  }

  takeStartedCounts(): { instant: number; precopy: number; postcopy: number } {
    const out = this.startedSince;
    this.startedSince = { instant: 0, precopy: 0, postcopy: 0 };
    return out;
  }

  /**
   * Adds a plan. By default it supersedes the actions of earlier plans that have not
   * started (a newer plan knows better); a reactive plan is added alongside them instead.
   */
  submit(
    plan: ActionPlan,
    now: number,
    acquireType: HostVmType | undefined,
    opts = { supersede: true },
  ): void {
    if (opts.supersede) {
      for (const id of this.waiting) {
        if (this.tracked[id].state === "waiting") {
          this.tracked[id].state = "superseded";
          this.stats.superseded++;
        }
      }
      this.waiting.length = 0;
    }
    const base = this.tracked.length;
    // A co-migration runs as its members' migrations (appended after the plan, ids beyond
    // it) and a barrier in its place that completes when all have: dependents wait for all.
    let extra = base + plan.actions.length;
    const members: Tracked[] = [];
    for (const a of plan.actions) {
      let deps = a.dependsOn.map((d) => d + base);
      if (a.kind === "co-migrate") {
        // Lock-step: no member switches over before the slowest is ready.
        const total = Math.max(...a.members.map((m) => m.estimate.totalSeconds));
        const ids: number[] = [];
        for (const m of a.members) {
          const id = extra++;
          ids.push(id);
          members.push({
            action: {
              kind: "migrate",
              id: id - base,
              guest: m.guest,
              from: m.from,
              to: a.to,
              route: m.route,
              estimate: { ...m.estimate, totalSeconds: total },
              dependsOn: a.dependsOn,
              reason: a.reason,
            },
            deps,
            caps: plan.caps,
            state: "waiting",
            hostVm: -1,
            acquireType,
          });
        }
        deps = ids;
        this.stats.coMigrations++;
      }
      this.tracked.push({ action: a, deps, caps: plan.caps, state: "waiting", hostVm: -1, acquireType });
      this.waiting.push(base + a.id);
    }
    for (const t of members) {
      this.waiting.push(this.tracked.length);
      this.tracked.push(t);
    }
    this.pump(now);
  }

  /** Starts every waiting action that can start now. */
  pump(now: number): void {
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (let i = 0; i < this.waiting.length; i++) {
        const id = this.waiting[i];
        const t = this.tracked[id];
        if (t.state !== "waiting") continue;
        let ready = true;
        let broken = false;
        for (const d of t.deps) {
          const s = this.tracked[d].state;
          if (s === "failed" || s === "superseded") broken = true;
          else if (s !== "done") ready = false;
        }
        if (broken) {
          t.state = "failed";
          this.stats.failed++;
          progressed = true;
          continue;
        }
        if (!ready) continue;
        // With the cloud-wide cap reached no migration can start: don't ask each one.
        if (t.action.kind === "migrate" && this.running >= t.caps.maxConcurrentMigrations) continue;
        const started = this.start(id, now);
        if (started === "started" || started === "failed") progressed = true;
      }
      if (progressed) {
        let w = 0;
        for (const id of this.waiting) if (this.tracked[id].state === "waiting") this.waiting[w++] = id;
        this.waiting.length = w;
      }
    }
  }

  private start(id: number, now: number): "started" | "failed" | "blocked" {
    const t = this.tracked[id];
    const a = t.action;
    switch (a.kind) {
      case "acquire-host-vm":
        return this.startAcquire(id, t, a, now);
      case "release-host-vm":
        return this.startRelease(t, a, now);
      case "migrate":
        return this.startMigration(id, t, a, now);
      case "rejuvenate":
        return this.startRejuvenation(id, t, a, now);
      case "co-migrate": // its members have all arrived (they are its dependencies)
        t.state = "done";
        return "started";
      default:
        return unhandledKind(a);
    }
  }

  private startAcquire(id: number, t: Tracked, a: AcquireHostVmAction, now: number): "started" | "failed" {
    const type = t.acquireType;
    const server = a.server;
    if (!type || type.name !== a.type || server === undefined || !this.slotFree(server)) return this.fail(t);
    const h = this.cloud.addHostVm(
      `${this.cloud.servers[server].id}/hv${this.cloud.hostVms.length}`,
      type,
      server,
      "provisioning",
      now,
    );
    t.hostVm = h;
    t.state = "running";
    this.stats.acquisitions++;
    this.hooks.hostVmChanged(h, now);
    this.hooks.schedule(now + type.provisionSeconds, id);
    return "started";
  }

  /**
   * A renewal of a host VM's hypervisor layer, modelled on the agents' Rejuvenator: destination
   * QEMUs start in waves of prepareParallel, switchovers run switchParallel at a time (each
   * guest pauses for its own), then the agent (in place) or the host VM (evacuate) restarts;
   * evacuated guests wait on a spare of the same server and come back (a second pass). The
   * guests stay accounted on their host VM; the spare is held (no move into it) meanwhile.
   * Without a model (no rollout in the scenario) it fails, as on a provider that cannot.
   */
  private startRejuvenation(id: number, t: Tracked, a: RejuvenateAction, now: number): "started" | "failed" {
    const m = this.rejuvenationModel;
    const h = a.hostVm;
    const host = this.cloud.hostVms[h];
    const refuse = () => {
      this.rejuvenation.failed++;
      return this.fail(t);
    };
    if (!m || host.state !== "running" || this.held.has(h) || (this.perHost[h] ?? 0) > 0) return refuse();
    const guests = [...this.cloud.hostGuests[h]];
    let spare = -1;
    if (a.mode === "evacuate") {
      spare = this.spareFor(h);
      if (spare < 0) return refuse();
    }
    const n = guests.length;
    const times = renewalTimes(m, n, a.mode);
    const { passes, totalSeconds: seconds, pausePerGuestSeconds: pause } = times;
    t.state = "running";
    t.hostVm = spare;
    this.held.add(h);
    this.renewing.add(h);
    if (spare >= 0) this.held.add(spare);
    const r = this.rejuvenation;
    r.guestPauses += passes * n;
    r.pauseSeconds += pause * n;
    if (n > 0) r.maxPauseSeconds = Math.max(r.maxPauseSeconds, m.pauseSeconds);
    r.heldHostVmSeconds += spare >= 0 ? 2 * seconds : seconds;
    this.hooks.rejuvenationStarted(h, guests, pause, now);
    this.hooks.schedule(now + seconds, id);
    return "started";
  }

  /** A running host VM of h's server, not held, with memory free for every guest of h. */
  private spareFor(h: number): number {
    const server = this.cloud.hostVms[h].server;
    const need = this.cloud.hostMemoryUsed[h];
    for (let s = 0; s < this.cloud.hostVms.length; s++) {
      const x = this.cloud.hostVms[s];
      if (s === h || x.server !== server || x.state !== "running" || this.held.has(s)) continue;
      let reserved = this.cloud.hostMemoryUsed[s];
      for (const g of this.incoming[s] ?? []) reserved += this.cloud.guests[g].memoryMiB;
      if (reserved + need <= hostVmGuestMemory(x.type) + 1e-9) return s;
    }
    return -1;
  }

  private startRelease(t: Tracked, a: ReleaseHostVmAction, now: number): "started" | "failed" {
    const h = a.hostVm;
    const host = this.cloud.hostVms[h];
    if (
      this.held.has(h) ||
      host.state !== "running" ||
      this.cloud.hostGuests[h].length > 0 ||
      (this.incoming[h]?.length ?? 0) > 0
    ) {
      return this.fail(t);
    }
    this.cloud.transition(h, "released", now);
    t.state = "done";
    this.stats.releases++;
    this.hooks.hostVmChanged(h, now);
    return "started";
  }

  private startMigration(
    id: number,
    t: Tracked,
    a: MigrateAction,
    now: number,
  ): "started" | "failed" | "blocked" {
    const to = a.to.kind === "existing" ? a.to.hostVm : this.tracked[this.depBase(id) + a.to.action].hostVm;
    if (this.running >= t.caps.maxConcurrentMigrations) return "blocked";
    if (
      (this.perHost[a.from] ?? 0) >= t.caps.maxPerHostVm ||
      (this.perHost[to] ?? 0) >= t.caps.maxPerHostVm
    ) {
      return "blocked";
    }
    if (!this.migrationStillValid(a.guest, a.from, to)) return this.fail(t);
    t.hostVm = to;
    t.state = "running";
    this.running++;
    this.perHost[a.from] = (this.perHost[a.from] ?? 0) + 1;
    this.perHost[to] = (this.perHost[to] ?? 0) + 1;
    this.markMigrating(a.guest, id);
    const list = this.incoming[to] ?? [];
    list.push(a.guest);
    this.incoming[to] = list;
    this.incomingCount++;
    this.count(a.estimate);
    const r = (this.stats.byReason[a.reason] ??= { instant: 0, precopy: 0, postcopy: 0 });
    r[a.estimate.mechanism]++;
    this.hooks.migrationStarted(a.guest, a.from, to, now);
    this.hooks.schedule(now + a.estimate.totalSeconds, id);
    return "started";
  }

  /** Global id of action 0 of the plan that holds global action `id`. */
  private depBase(id: number): number {
    const t = this.tracked[id];
    return id - t.action.id;
  }

  private count(e: MigrationEstimate): void {
    this.stats.started[e.mechanism]++;
    this.startedSince[e.mechanism]++;
    this.stats.migrationSeconds += e.totalSeconds;
    this.stats.downtimeSeconds += e.downtimeSeconds;
    this.stats.bytes += e.bytes;
    if (e.crossesNetwork) this.stats.networkBytes += e.bytes;
  }

  private migrationStillValid(g: number, from: number, to: number): boolean {
    if (to < 0 || this.cloud.guestHost[g] !== from || this.isMigrating(g)) return false;
    if (this.held.has(from) || this.held.has(to)) return false;
    const target = this.cloud.hostVms[to];
    if (target.state !== "running") return false;
    if (this.rules.memory === "reserved") {
      let reserved = this.cloud.hostMemoryUsed[to];
      for (const x of this.incoming[to] ?? []) reserved += this.cloud.guests[x].memoryMiB;
      if (reserved + this.cloud.guests[g].memoryMiB > hostVmGuestMemory(target.type) + 1e-9) return false;
    }
    return true;
  }

  private slotFree(server: number): boolean {
    let used = 0;
    for (const h of this.cloud.hostVms) if (h.server === server && h.state !== "released") used++;
    return used < this.cloud.servers[server].hostVmSlots;
  }

  private fail(t: Tracked): "failed" {
    t.state = "failed";
    this.stats.failed++;
    return "failed";
  }

  /** Marks a running action complete (the engine applies the move itself). */
  complete(id: number, now: number): void {
    const t = this.tracked[id];
    const a = t.action;
    t.state = "done";
    switch (a.kind) {
      case "acquire-host-vm":
        this.cloud.transition(t.hostVm, "running", now);
        this.hooks.hostVmChanged(t.hostVm, now);
        return;
      case "migrate": {
        this.running--;
        this.perHost[a.from] = (this.perHost[a.from] ?? 1) - 1;
        this.perHost[t.hostVm] = (this.perHost[t.hostVm] ?? 1) - 1;
        this.migrating[a.guest] = -1;
        this.migratingGuests.delete(a.guest);
        const list = this.incoming[t.hostVm];
        if (list) list.splice(list.indexOf(a.guest), 1);
        this.incomingCount--;
        return;
      }
      case "release-host-vm": // done when started: never scheduled
      case "co-migrate":
        return;
      case "rejuvenate":
        this.held.delete(a.hostVm);
        this.renewing.delete(a.hostVm);
        if (t.hostVm >= 0) {
          this.held.delete(t.hostVm);
          this.rejuvenation.evacuated++;
        }
        this.rejuvenation.done++;
        this.hooks.hostVmRenewed(a.hostVm, now);
        return;
      default:
        unhandledKind(a);
    }
  }
}

/**
 * The discrete-event simulator: replays a trace against a cloud, runs the planner every
 * interval and executes its plans in virtual time, with migration durations from the cost
 * models. Deterministic: events are ordered by (time, sequence) and every random draw comes
 * from a stream seeded by the scenario.
 *
 * The engine is the kernel: it keeps time, demand, placement and the executor's moves. What an
 * instant means (when rounds fall, how CPU is shared, what a migration costs, which moments are
 * accounted) belongs to the scenario's rule set, asked through SimulationRules (rules/; see
 * docs/architecture.md, "Two sets of simulation rules").
 */
import { Heap } from "heap-js";
import { DEFAULT_MECHANISM_POLICY, type MigrationCalibration } from "../migration/index.ts";
import {
  type Cloud,
  decayedPeak,
  dirtyRateAt,
  findViolations,
  guestMips,
  LoadHistory,
  Rng,
  residentMemoryMiB,
  UNPLACED,
} from "../model/index.ts";
import {
  type ActionPlan,
  HISTORY_LENGTH,
  type ParallelismCaps,
  type Placement,
  type PlannerInput,
  type Policy,
} from "../planner/index.ts";
import { Accounts } from "./accounts.ts";
import type { BuiltCloud } from "./build.ts";
import { Executor, type ExecutorHooks } from "./executor.ts";
import { HostLoad } from "./host-load.ts";
import { PairTime } from "./pair-time.ts";
import {
  type CompletedMigration,
  rulesFor,
  type SimulationKernel,
  type SimulationRules,
} from "./rules/index.ts";
import type { Scenario } from "./scenario.ts";
import { INCOMING, NORMAL, OUTGOING } from "./sharing.ts";
import { type Trace, utilizationAt } from "./trace.ts";

export interface SimulationOptions {
  readonly scenario: Scenario;
  readonly trace: Trace;
  readonly built: BuiltCloud;
  readonly policy: Policy;
  readonly calibration: MigrationCalibration;
  readonly seed: number;
  /** Called after each planning round with the fraction of the run done. */
  readonly onProgress?: (fraction: number) => void;
  /** Check every model invariant after each round (slow; tests). */
  readonly checkInvariants?: boolean;
  /** Sees each decision of the policy as it is made (the decision-equivalence test). */
  readonly onDecision?: (d: SimDecision) => void;
  /** Sees each migration as it starts (guest, source and target host VM, time). */
  readonly onMigrationStarted?: (guest: number, from: number, to: number, at: number) => void;
}

/** A decision of the policy: the initial placement (applied), a round's plan or a reflex's. */
export type SimDecision =
  | { readonly kind: "placement"; readonly at: number; readonly placement: Placement }
  | { readonly kind: "round" | "react"; readonly at: number; readonly plan: ActionPlan };

export interface RoundTiming {
  readonly plannerMs: number[];
  /** Reactive checks between rounds. */
  readonly reactMs: number[];
}

type SimEvent =
  | { readonly kind: "tick"; readonly time: number; readonly seq: number; readonly round: number }
  | { readonly kind: "done"; readonly time: number; readonly seq: number; readonly action: number }
  | { readonly kind: "poll"; readonly time: number; readonly seq: number }
  | { readonly kind: "end"; readonly time: number; readonly seq: number };

export class Simulation {
  readonly cloud: Cloud;
  readonly rules: SimulationRules;
  readonly accounts: Accounts;
  readonly executor: Executor;
  readonly timing: RoundTiming = { plannerMs: [], reactMs: [] };
  /** Time each security VM / target pair spent on each monitoring channel. */
  readonly pairTime: PairTime;
  /** As long as the planner reads (and the host load's summed histories keep). */
  readonly load = new LoadHistory(HISTORY_LENGTH);

  private readonly G: number;
  private readonly trace: Trace;
  private readonly requests: Float64Array;
  private readonly removed: Uint8Array;
  private readonly mips: Float64Array;
  private readonly vcpus: Int32Array;
  private readonly residentMiB: Float64Array;
  private readonly dirtyRate: Float64Array;
  private readonly lastMovedAt: Float64Array;
  private readonly loadPeak: Float64Array;
  private readonly queue = new Heap<SimEvent>((a, b) => a.time - b.time || a.seq - b.seq);
  private seq = 0;
  private lastProcessTime = 0;
  private readonly random: Rng;
  private readonly caps: ParallelismCaps;
  /** The engine's operations the rule set composes at the moments it owns. */
  private readonly kernel: SimulationKernel;
  /** Kept only under rules with host load reports. */
  private readonly hostLoad: HostLoad | undefined;
  private readonly scratch = {
    request: new Float64Array(64),
    vcpus: new Int32Array(64),
    migration: new Uint8Array(64),
    granted: new Float64Array(64),
    guests: new Int32Array(64),
  };

  constructor(private readonly opts: SimulationOptions) {
    const { scenario, trace, built } = opts;
    this.cloud = built.cloud;
    this.trace = trace;
    this.rules = rulesFor(scenario);
    this.G = this.cloud.guests.length;
    this.load.ensureGuests(this.G);
    this.requests = new Float64Array(this.G);
    this.removed = new Uint8Array(this.G);
    this.mips = Float64Array.from(this.cloud.guests, guestMips);
    this.vcpus = Int32Array.from(this.cloud.guests, (g) => g.vcpus);
    this.residentMiB = Float64Array.from(this.cloud.guests, (g) => g.memoryMiB);
    this.dirtyRate = new Float64Array(this.G);
    this.lastMovedAt = new Float64Array(this.G).fill(Number.NEGATIVE_INFINITY);
    this.loadPeak = new Float64Array(this.G);
    this.inMigrationBuf = new Uint8Array(this.G);
    this.inboundBuf = new Int32Array(this.G).fill(-1);
    this.random = Rng.derive(opts.seed, "planner");
    this.caps = {
      maxConcurrentMigrations: scenario.migration.maxConcurrent,
      maxPerHostVm: scenario.migration.maxPerHostVm,
    };
    this.accounts = new Accounts(this.cloud, this.G, this.rules);
    this.pairTime = new PairTime(this.cloud);
    this.hostLoad = this.rules.hostLoadReports
      ? new HostLoad(this.cloud, trace, this.mips, this.load)
      : undefined;
    this.kernel = {
      lastFullUpdate: () => this.lastProcessTime,
      readDemand: (t) => this.refreshRequests(t, false),
      updateAllHostVms: (t) => this.updateHosts(t, undefined),
      updateHostVms: (t, hosts, reread) => this.updateHosts(t, hosts, reread),
      applyMove: (m, t) => {
        this.pairTime.advance(t);
        this.executor.complete(m.action, t);
        this.moveGuest(m.guest, m.to);
        this.lastMovedAt[m.guest] = t;
      },
      anotherMigrationCompletesAt: (t) => {
        const next = this.queue.peek();
        return (
          next !== undefined &&
          next.kind === "done" &&
          next.time === t &&
          this.executor.action(next.action).kind === "migrate"
        );
      },
      loseDemand: (g, seconds) => this.accounts.downtime(g, this.requests[g], seconds),
    };
    const hooks: ExecutorHooks = {
      schedule: (time, action) => this.push({ kind: "done", time, seq: 0, action }),
      migrationStarted: (g, from, to, now) => {
        this.rules.migrationStarted(this.kernel, from, to, now);
        this.opts.onMigrationStarted?.(g, from, to, now);
      },
      hostVmChanged: (h, now) => this.accounts.hostVmStateChanged(h, now),
      rejuvenationStarted: (_h, guests, pause) => {
        for (const g of guests) this.accounts.downtime(g, this.requests[g], pause);
      },
      hostVmRenewed: (h, now) => {
        this.hypervisorSince[h] = now;
      },
    };
    this.executor = new Executor(this.cloud, hooks, this.rules.capacity, scenario.rejuvenation);
  }

  private push(e: SimEvent): void {
    this.queue.push({ ...e, seq: this.seq++ } as SimEvent);
  }

  /** Runs to the end of the scenario. */
  run(): void {
    const { scenario } = this.opts;
    const interval = scenario.intervalSeconds;
    const duration = scenario.durationSeconds;
    const rules = this.rules;
    this.placeInitialGuests();
    // Round 0: measure and plan right away (releases host VMs the placement left empty).
    if (rules.planAtStart) this.onTick(0);
    const times = rules.roundTimes(interval, duration);
    for (let k = 1; k <= times.length; k++) this.push({ kind: "tick", time: times[k - 1], seq: 0, round: k });
    if (rules.runEnd === "update-at-duration") this.push({ kind: "end", time: duration, seq: 0 });
    // Policies that watch load between rounds (cheap instant moves make that worth it).
    const every = this.opts.policy.reactIntervalSeconds;
    if (this.hostLoad && every !== undefined && every > 0 && every < interval) {
      for (let t = every; t < duration; t += every)
        if (t % interval !== 0) this.push({ kind: "poll", time: t, seq: 0 });
    }
    const total = times.length;
    while (this.queue.size() > 0) {
      const e = this.queue.pop()!;
      if (e.time >= duration && rules.runEnd === "at-last-update") break;
      if (e.kind === "tick") {
        this.onTick(e.time);
        this.opts.onProgress?.(e.round / total);
      } else if (e.kind === "done") this.onActionDone(e.time, e.action);
      else if (e.kind === "poll") this.onPoll(e.time);
      else {
        this.refreshRequests(e.time, false);
        this.updateHosts(e.time, undefined);
        break;
      }
    }
    const end = rules.runEnd === "at-last-update" ? this.lastProcessTime : duration;
    this.pairTime.advance(end);
    this.accounts.finish(end);
  }

  private placeInitialGuests(): void {
    const all = Array.from({ length: this.G }, (_, g) => g);
    for (let g = 0; g < this.G; g++)
      this.requests[g] = this.rules.initialDemandMips(this.mips[g], utilizationAt(this.trace, g, 0));
    const input = this.plannerInput(0, new Float64Array(this.cloud.hostVms.length));
    const placement = this.opts.policy.placeNew(input, all);
    if (placement.unplaced.length > 0) {
      const g = this.cloud.guests[placement.unplaced[0]];
      throw new SimulationError(
        `initial placement failed: ${placement.unplaced.length} guest VM(s) fit nowhere (first: ${g.id}, ${g.vcpus} vCPU, ${g.memoryMiB} MiB); add servers or host VM slots`,
      );
    }
    const acquired = placement.acquisitions.map((a) => {
      const type = this.opts.built.acquireType!;
      if (type.name !== a.type) throw new SimulationError(`policy asked for unknown host VM type ${a.type}`);
      const h = this.cloud.addHostVm(
        `${this.cloud.servers[a.server].id}/hv-init${this.cloud.hostVms.length}`,
        type,
        a.server,
        "running",
        0,
      );
      this.accounts.hostVmStateChanged(h, 0);
      return h;
    });
    for (const a of placement.assignments) {
      const h = a.to.kind === "existing" ? a.to.hostVm : acquired[a.to.action];
      this.cloud.assign(a.guest, h);
    }
    this.opts.onDecision?.({ kind: "placement", at: 0, placement });
  }

  private onTick(t: number): void {
    this.refreshRequests(t, true);
    this.hostLoad?.startRound(t, this.requests);
    this.updateHosts(t, undefined);
    this.planRound(t);
  }

  /** Reads every live guest's demand at t; at ticks also appends it to the load history. */
  private refreshRequests(t: number, tick: boolean): void {
    for (let g = 0; g < this.G; g++) {
      if (this.removed[g]) continue;
      const u = utilizationAt(this.trace, g, t);
      this.requests[g] = u * this.mips[g];
      if (tick) {
        this.load.push(g, u);
        this.updateMemoryModel(g, u);
      }
    }
  }

  /**
   * The documented rule for memory a trace does not give (model/memory.ts, one definition
   * for the simulator, the simulated provider and the controller): resident memory grows with
   * the highest CPU load seen recently, the dirty rate with the current load.
   */
  private updateMemoryModel(g: number, u: number): void {
    // Peak load with a one-hour half-life: O(1) per sample, close to "the last hour's max".
    const peak = decayedPeak(this.loadPeak[g], u);
    this.loadPeak[g] = peak;
    const guest = this.cloud.guests[g];
    this.residentMiB[g] = residentMemoryMiB(guest.memoryMiB, peak);
    this.dirtyRate[g] = dirtyRateAt(guest.dirtyRateMiBps, u);
  }

  /**
   * Recomputes CPU shares of the given host VMs (all when undefined) at time t and accounts
   * the interval since their last update. After an update of all, the rules may remove guests
   * whose demand is exactly zero.
   */
  private updateHosts(t: number, hosts: readonly number[] | undefined, reread = true): void {
    const H = this.cloud.hostVms.length;
    if (hosts === undefined) {
      for (let h = 0; h < H; h++) this.updateHost(h, t);
      this.accounts.closeEnergy(t, undefined);
      if (this.rules.removesGuestsAtZeroDemand) this.removeFinishedGuests(t);
      this.lastProcessTime = t;
    } else {
      // Demand moves between samples: read it again for the guests whose hosts we account.
      if (reread)
        for (const h of hosts) {
          for (const g of this.cloud.hostGuests[h])
            this.requests[g] = utilizationAt(this.trace, g, t) * this.mips[g];
        }
      for (const h of hosts) this.updateHost(h, t);
      this.accounts.closeEnergy(t, hosts);
    }
  }

  private updateHost(h: number, t: number): void {
    const host = this.cloud.hostVms[h];
    const list = this.cloud.hostGuests[h];
    // An idle host VM that was idle at its last update has nothing to account.
    if (list.length === 0 && !this.executor.hasIncoming(h) && this.accounts.idleSinceLastUpdate(h)) return;
    // Under CPU-share rules a migration runs at both ends: its source and its destination
    // list the guest, marked; otherwise a guest is listed where it runs, unmarked.
    const shares = this.rules.migrationLoss === "cpu-shares";
    const incoming = shares ? this.executor.incomingOf(h) : undefined;
    const n = list.length + (incoming?.length ?? 0);
    const s = this.ensureScratch(n);
    let i = 0;
    for (const g of list) {
      s.guests[i] = g;
      s.request[i] = this.requests[g];
      s.vcpus[i] = this.vcpus[g];
      s.migration[i] = shares && this.executor.isMigrating(g) ? OUTGOING : NORMAL;
      i++;
    }
    if (incoming) {
      for (const g of incoming) {
        s.guests[i] = g;
        s.request[i] = this.requests[g];
        s.vcpus[i] = this.vcpus[g];
        s.migration[i] = INCOMING;
        i++;
      }
    }
    const share = this.rules.shareCpu(
      {
        capacity: host.type.vcpus * host.type.mipsPerVcpu,
        perVcpu: host.type.mipsPerVcpu,
        request: s.request,
        vcpus: s.vcpus,
        migration: s.migration,
        n,
      },
      s.granted,
    );
    this.accounts.hostUpdated(
      h,
      t,
      share.usedMips,
      share.requestedMips,
      host.type.vcpus * host.type.mipsPerVcpu,
    );
    // PDM under CPU shares needs each guest's own grant history; with loss as downtime it is
    // accounted per move, and the requested total comes from the host VMs.
    if (shares) {
      for (let j = 0; j < list.length; j++)
        this.accounts.guestUpdated(s.guests[j], t, s.granted[j], s.request[j], s.migration[j] === OUTGOING);
    }
  }

  private ensureScratch(n: number) {
    if (this.scratch.request.length < n) {
      const size = Math.max(n, this.scratch.request.length * 2);
      this.scratch.request = new Float64Array(size);
      this.scratch.vcpus = new Int32Array(size);
      this.scratch.migration = new Uint8Array(size);
      this.scratch.granted = new Float64Array(size);
      this.scratch.guests = new Int32Array(size);
    }
    return this.scratch;
  }

  private removeFinishedGuests(t: number): void {
    for (let g = 0; g < this.G; g++) {
      if (this.removed[g] || this.executor.isMigrating(g) || this.requests[g] !== 0) continue;
      if (this.cloud.guestHost[g] === UNPLACED) continue;
      this.removed[g] = 1;
      this.cloud.assign(g, UNPLACED);
      this.accounts.guestRemoved(g, t);
    }
  }

  private plannerInput(t: number, measured: Float64Array): PlannerInput {
    // Reused between rounds: clear what the last round set, then mark who is in flight now.
    const inMigration = this.inMigrationBuf;
    const inboundTarget = this.inboundBuf;
    for (const g of this.inFlightLast) {
      inMigration[g] = 0;
      inboundTarget[g] = -1;
    }
    this.inFlightLast = this.executor.fillInFlight(inMigration, inboundTarget);
    const mech = this.opts.scenario.migration;
    return {
      cloud: this.cloud,
      now: t,
      intervalSeconds: this.opts.scenario.intervalSeconds,
      load: this.load,
      requestMips: this.requests,
      measuredMips: measured,
      inMigration,
      inboundTarget,
      inFlightGuests: this.inFlightLast,
      hostHistoryMips: this.hostLoad?.histories(),
      residentMiB: this.residentMiB,
      dirtyRateMiBps: this.dirtyRate,
      lastMovedAt: this.lastMovedAt,
      pendingAcquisitions: new Int32Array(this.cloud.servers.length),
      rules: this.rules.capacity,
      calibration: this.opts.calibration,
      mechanism: { ...DEFAULT_MECHANISM_POLICY, model: mech.model, postcopyFallback: mech.postcopyFallback },
      caps: this.caps,
      random: this.random,
      ...this.rejuvenationInput(),
    };
  }

  private planRound(t: number): void {
    this.accounts.sample(t, this.executor.takeStartedCounts());
    const input = this.plannerInput(t, this.accounts.usedMipsSnapshot());
    const started = performance.now();
    const plan: ActionPlan = this.opts.policy.plan(input);
    this.timing.plannerMs.push(performance.now() - started);
    this.opts.onDecision?.({ kind: "round", at: t, plan });
    this.executor.submit(plan, t, this.opts.built.acquireType);
    if (this.opts.checkInvariants) this.checkInvariants(t);
  }

  /**
   * A load report between rounds (rules with host load reports): each host VM's demand is
   * linear between trace samples, so it comes from two sums per host VM kept up to date on
   * every move — no pass over all guests. Only when some host VM is over the policy's level
   * are the guests on the hot servers read and the policy's reflex asked.
   */
  private onPoll(t: number): void {
    const policy = this.opts.policy;
    if (!policy.react || !this.hostLoad) return;
    const H = this.cloud.hostVms.length;
    const demand = this.hostLoad.demandAt(t);
    const level = policy.reactWhenAbove ?? 0;
    const hotServers = new Set<number>();
    for (let h = 0; h < H; h++) {
      const host = this.cloud.hostVms[h];
      if (host.server !== undefined && demand[h] > level * host.type.vcpus * host.type.mipsPerVcpu)
        hotServers.add(host.server);
    }
    if (hotServers.size === 0) return;
    for (let h = 0; h < H; h++) {
      const s = this.cloud.hostVms[h].server;
      if (s === undefined || !hotServers.has(s)) continue;
      for (const g of this.cloud.hostGuests[h])
        this.requests[g] = utilizationAt(this.trace, g, t) * this.mips[g];
    }
    const input = { ...this.plannerInput(t, this.accounts.usedMipsSnapshot()), hostDemandMips: demand };
    const started = performance.now();
    const plan = policy.react.call(policy, input);
    this.timing.reactMs.push(performance.now() - started);
    this.opts.onDecision?.({ kind: "react", at: t, plan });
    if (plan.actions.length > 0)
      this.executor.submit(plan, t, this.opts.built.acquireType, { supersede: false });
  }

  /** Per host VM: when its hypervisor started (acquisition, or its last renewal). */
  private hypervisorSince: number[] = [];

  /** The rollout's view of the host VMs, when the scenario rolls a rejuvenation out. */
  private rejuvenationInput(): Pick<PlannerInput, "hypervisorSince" | "rejuvenating"> {
    const model = this.opts.scenario.rejuvenation;
    if (!model) return {};
    const hosts = this.cloud.hostVms;
    // Host VMs of the start (acquired at 0) carry the scenario's initial age.
    for (let h = this.hypervisorSince.length; h < hosts.length; h++)
      this.hypervisorSince.push(hosts[h].acquiredAt === 0 ? -model.initialAgeSeconds : hosts[h].acquiredAt);
    const rejuvenating = new Uint8Array(hosts.length);
    this.executor.fillRejuvenating(rejuvenating);
    return { hypervisorSince: Float64Array.from(this.hypervisorSince), rejuvenating };
  }

  private readonly inMigrationBuf: Uint8Array = new Uint8Array(0);
  private readonly inboundBuf: Int32Array = new Int32Array(0);
  private inFlightLast: number[] = [];

  /** Moves a guest to host VM `to`, keeping the sample sums and host histories right. */
  private moveGuest(g: number, to: number): void {
    this.hostLoad?.move(g, this.cloud.guestHost[g], to);
    this.cloud.assign(g, to);
  }

  private onActionDone(t: number, action: number): void {
    const a = this.executor.action(action);
    if (a.kind !== "migrate") {
      this.executor.complete(action, t);
      // A host VM that came up (or a release that finished) may free actions that wait for
      // it: start them now, as a real controller does (and as ours does), for every policy.
      this.executor.pump(t);
      return;
    }
    const m: CompletedMigration = {
      action,
      guest: a.guest,
      from: this.cloud.guestHost[a.guest],
      to: this.executor.targetOf(action),
      downtimeSeconds: a.estimate.downtimeSeconds,
    };
    this.rules.migrationCompleted(this.kernel, m, t);
    this.executor.pump(t);
  }

  private checkInvariants(t: number): void {
    const v = findViolations(this.cloud).filter((x) => !this.rules.toleratedViolations.has(x.rule));
    if (v.length > 0) throw new SimulationError(`invariant broken at t=${t}: ${v[0].message}`);
  }
}

export class SimulationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimulationError";
  }
}

/**
 * nestcloud's own policy: rent as few host VMs as the guests' guarantees allow, and move
 * guests so that moves stay instant.
 *
 * - Demand is predicted per host VM from the aggregate history of its guests (a high
 *   quantile of the recent window, or the recent trend if higher), so correlated peaks are
 *   seen and uncorrelated ones multiplex.
 * - Overload relief moves the guests that free the most CPU per move, preferring host VMs
 *   on the same physical server (instant handover of the RAM file); it also runs between
 *   rounds on current load, since instant moves are cheap.
 * - Consolidation drains host VMs that have stayed under-used for several rounds, only
 *   while fewer host VMs would still meet the target, all-or-nothing, within a per-round
 *   move cap; guests moved recently stay put (no ping-pong).
 * - Host VMs are acquired ahead of need on servers that already carry the cloud's host VMs
 *   (so later moves are instant) and released when empty, keeping a configurable spare.
 */
import type { HostVmType } from "../model/index.ts";
import { buildPlan, type Move } from "./builder.ts";
import { balancedScore, memoryPerCpu } from "./hostvm-fit.ts";
import type { PlannerInput } from "./input.ts";
import {
  channelBetween,
  type MonitoringPair,
  meets,
  monitoringPairs,
  type PairPricing,
  type PairStepHooks,
  pairStep,
} from "./pairs.ts";
import type { ActionPlan, HostVmRef } from "./plan.ts";
import { type Placement, type Policy, PolicyError, resolvePotential } from "./policy-base.ts";
import { reflexPlan } from "./reflex.ts";
import { acquisitionServer, billingKeep, drainDue, occupiedPerServer } from "./rental.ts";
import { HISTORY_LENGTH, Workspace } from "./workspace.ts";

export interface NestcloudParams {
  /** Highest predicted utilization a host VM is packed to. */
  readonly targetUtilization: number;
  /**
   * Highest predicted utilization of all our host VMs on one physical server together:
   * the gap to targetUtilization is headroom that keeps overload relief on the server
   * (instant) instead of across the network.
   */
  readonly serverTargetUtilization: number;
  /** Predicted utilization above which a host VM is relieved. */
  readonly overloadUtilization: number;
  /** Quantile of the recent aggregate history used as the prediction. */
  readonly quantile: number;
  /** Samples in the prediction window. */
  readonly window: number;
  /** A host VM whose recent utilization stayed below this may be drained. */
  readonly drainBelow: number;
  /** ...for this many consecutive samples (hysteresis). */
  readonly drainRounds: number;
  /** A guest moved less than this long ago is not moved to consolidate (no ping-pong). */
  readonly minMoveIntervalSeconds: number;
  /** Cap on moves per round; 0 = 0.5 % of guests (at least 16). */
  readonly maxMovesPerRound: number;
  /** Empty running host VMs kept as spares (cloud-wide), on the busiest servers. */
  readonly spareHostVms: number;
  /** Drain a host VM only when its next billing increment starts within this many seconds. */
  readonly drainBeforeBillingSeconds: number;
  /** Check load between rounds every this many seconds (0 = off). */
  readonly reactIntervalSeconds: number;
  /** 1: between rounds, relieve across the network when the server has no room. */
  readonly reflexAcrossServers: number;
  /** Weight of keeping a host VM's memory share in step with its CPU share when placing (0 = CPU only). */
  readonly memoryBalance: number;
  /**
   * 1: security VMs and their targets are pairs (pairs.ts): security VMs follow their targets,
   * co-migrate with them, and no move breaks a required channel. 0: pairs are ignored (the
   * baseline the simulator compares against).
   */
  readonly pairAware: number;
  /** With pairAware: 1 the pair step runs every round too; 0: at first placement only (bench:pairs' attribution). */
  readonly pairRounds: number;
  /** Cost of one pair-hour of remote monitoring, in host-VM price units ($/h). */
  readonly remoteMonitoringPerHour: number;
  /** Hours a placement is expected to last when pricing remote monitoring against a move. */
  readonly pairHorizonHours: number;
}

export const NESTCLOUD_DEFAULTS: NestcloudParams = {
  targetUtilization: 0.97,
  serverTargetUtilization: 0.95,
  overloadUtilization: 0.99,
  quantile: 0.5,
  window: 12,
  drainBelow: 0.9,
  drainRounds: 1,
  minMoveIntervalSeconds: 3600,
  maxMovesPerRound: 0,
  spareHostVms: 0,
  drainBeforeBillingSeconds: 600,
  reactIntervalSeconds: 30,
  reflexAcrossServers: 0,
  memoryBalance: 2,
  pairAware: 1,
  pairRounds: 1,
  // A quarter of a 4 vCPU host VM's hour (0.834 $/h): remote memory checks take 3.6x the
  // local time and page traffic crosses the network (system.md).
  remoteMonitoringPerHour: 0.2,
  pairHorizonHours: 1,
};

export function nestcloudParams(raw: Readonly<Record<string, number | boolean | string>>): NestcloudParams {
  const out: Record<string, number> = { ...NESTCLOUD_DEFAULTS };
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in NESTCLOUD_DEFAULTS)) {
      throw new PolicyError(
        `policy.params.${k}: unknown parameter of nestcloud (known: ${Object.keys(NESTCLOUD_DEFAULTS).join(", ")})`,
      );
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
      throw new PolicyError(`policy.params.${k}: expected a non-negative number`);
    out[k] = v;
  }
  const p = out as unknown as NestcloudParams;
  if (
    !(p.targetUtilization > 0 && p.targetUtilization <= p.overloadUtilization && p.overloadUtilization <= 1.5)
  ) {
    throw new PolicyError("policy.params: need 0 < targetUtilization <= overloadUtilization <= 1.5");
  }
  if (!(p.quantile > 0 && p.quantile <= 1))
    throw new PolicyError("policy.params.quantile: must be in (0, 1]");
  if (!(p.window >= 1 && p.window <= HISTORY_LENGTH))
    throw new PolicyError(`policy.params.window: must be 1..${HISTORY_LENGTH}`);
  return p;
}

export function nestcloudPolicy(params: NestcloudParams, acquireType: HostVmType | undefined): Policy {
  return {
    name: "nestcloud",
    rentalRule:
      "rents host VMs ahead of predicted demand on servers it already uses; drains one only near the end of its paid increment and keeps an empty one until its paid time runs out",
    reactIntervalSeconds: params.reactIntervalSeconds > 0 ? params.reactIntervalSeconds : undefined,
    placeNew: (input, guests) => new Round(input, params, acquireType).placeNew(guests),
    plan: (input) => new Round(input, params, acquireType).plan(),
    react: (input) => reflexPlan(input, { ...params, acrossServers: params.reflexAcrossServers > 0 }),
    reactWhenAbove: params.overloadUtilization,
  };
}

/** One planning round's state and steps. */
class Round {
  private readonly ws: Workspace;
  private readonly buf = new Float64Array(HISTORY_LENGTH);
  private readonly sorted = new Float64Array(HISTORY_LENGTH);
  private readonly moves: Move[] = [];
  private readonly movedThisRound = new Set<number>();
  /** Bins that received guests this round: not drained this round. */
  private readonly receiving = new Set<number>();
  /** Bins being emptied: take no guests. */
  private readonly draining = new Set<number>();
  private readonly maxMoves: number;
  /** Per bin: predicted utilization (cached, refreshed when its guests change). */
  private pred: Float64Array;
  /** Per server: predicted MIPS and capacity of our usable, non-draining host VMs. */
  private readonly serverLoad: Float64Array;
  private readonly serverCap: Float64Array;

  constructor(
    readonly input: PlannerInput,
    readonly p: NestcloudParams,
    readonly acquireType: HostVmType | undefined,
  ) {
    const ws = new Workspace(input, p.window);
    this.ws = ws;
    this.maxMoves = p.maxMovesPerRound > 0 ? p.maxMovesPerRound : Math.max(16, Math.ceil(ws.guests * 0.005));
    this.pred = new Float64Array(Math.max(16, ws.binCount * 2));
    this.peaks = new Float64Array(ws.guests).fill(-1);
    this.serverLoad = new Float64Array(input.cloud.servers.length);
    this.serverCap = new Float64Array(input.cloud.servers.length);
    for (let b = 0; b < ws.binCount; b++) this.track(b);
  }

  private counts(b: number): boolean {
    return this.ws.usable[b] === 1 && this.ws.server[b] >= 0 && !this.draining.has(b);
  }

  /** Starts accounting a bin (new or existing). */
  private track(b: number): void {
    if (b >= this.pred.length) {
      const next = new Float64Array(this.pred.length * 2);
      next.set(this.pred);
      this.pred = next;
    }
    this.pred[b] = this.ws.lists[b].length > 0 ? this.predict(b) : 0;
    if (this.counts(b)) {
      this.serverLoad[this.ws.server[b]] += this.pred[b] * this.ws.cap[b];
      this.serverCap[this.ws.server[b]] += this.ws.cap[b];
    }
  }

  /** Recomputes a bin's prediction after its guests changed. */
  private refresh(b: number): void {
    const before = this.pred[b];
    this.pred[b] = this.ws.lists[b].length > 0 ? this.predict(b) : 0;
    if (this.counts(b)) this.serverLoad[this.ws.server[b]] += (this.pred[b] - before) * this.ws.cap[b];
  }

  private setDraining(b: number, on: boolean): void {
    this.occupied = undefined;
    const s = this.ws.server[b];
    const inServer = this.counts(b);
    if (on && inServer) {
      this.serverLoad[s] -= this.pred[b] * this.ws.cap[b];
      this.serverCap[s] -= this.ws.cap[b];
    }
    if (on) this.draining.add(b);
    else this.draining.delete(b);
    if (!on && this.counts(b)) {
      this.serverLoad[s] += this.pred[b] * this.ws.cap[b];
      this.serverCap[s] += this.ws.cap[b];
    }
  }

  // ---- prediction ------------------------------------------------------------------

  /**
   * Predicted utilization of bin b (optionally with guest `add`): the larger of the current
   * demand, a quantile of the recent aggregate history and its trend one step ahead.
   */
  predict(b: number, add = -1): number {
    const ws = this.ws;
    let current = ws.requestSum[b];
    if (add >= 0) current += ws.request[add];
    current /= ws.cap[b];
    if (ws.hist.length === 0) return current;
    const buf = this.buf;
    const n = ws.historyWindow(b, buf, add, this.p.window);
    if (n === 0) return current;
    if (n === 1) return Math.max(current, buf[0]);
    // Quantile by insertion sort: the window is a dozen values.
    const w = this.sorted;
    for (let i = 0; i < n; i++) {
      const v = buf[i];
      let j = i - 1;
      while (j >= 0 && w[j] > v) {
        w[j + 1] = w[j];
        j--;
      }
      w[j + 1] = v;
    }
    const q = w[Math.min(n - 1, Math.floor(this.p.quantile * n))];
    // Least-squares slope over the window (index 0 is the newest sample), one step ahead.
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let sxy = 0;
    for (let i = 0; i < n; i++) {
      const x = -i;
      sx += x;
      sy += buf[i];
      sxx += x * x;
      sxy += x * buf[i];
    }
    const slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    const ahead = buf[0] + (slope > 0 ? slope : 0);
    return current > q ? (current > ahead ? current : ahead) : q > ahead ? q : ahead;
  }

  /** Guest g's highest plausible demand, MIPS: current, window maximum or trend ahead. */
  private peakMips(g: number): number {
    const cached = this.peaks[g];
    if (cached >= 0) return cached;
    const ws = this.ws;
    const buf = this.buf;
    const n = this.input.load.newestFirst(g, buf, this.p.window);
    let peak = ws.request[g] / ws.mips[g];
    for (let i = 0; i < n; i++) if (buf[i] > peak) peak = buf[i];
    if (n >= 2) {
      let sx = 0;
      let sy = 0;
      let sxx = 0;
      let sxy = 0;
      for (let i = 0; i < n; i++) {
        sx -= i;
        sy += buf[i];
        sxx += i * i;
        sxy -= i * buf[i];
      }
      const slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
      if (slope > 0 && buf[0] + slope > peak) peak = buf[0] + slope;
    }
    return (this.peaks[g] = peak * ws.mips[g]);
  }

  private readonly peaks: Float64Array;

  // ---- feasibility and destinations -------------------------------------------------

  private movable(g: number, forConsolidation: boolean): boolean {
    const ws = this.ws;
    if (ws.fixed[g] || this.movedThisRound.has(g)) return false;
    if (this.input.cloud.guests[g].affinityGroup !== undefined) return false;
    if (forConsolidation && this.input.now - this.input.lastMovedAt[g] < this.p.minMoveIntervalSeconds)
      return false;
    return true;
  }

  /**
   * Can bin b take guest g (coming from bin `from`, -1 if new) within the targets? Returns
   * the bin's predicted utilization with g, or -1 if it cannot.
   */
  private canTake(b: number, g: number, from: number): number {
    const ws = this.ws;
    if (!ws.usable[b] || this.draining.has(b)) return -1;
    if (ws.vcpus[g] * ws.pe[b] > ws.cap[b] || ws.request[g] / ws.vcpus[g] > ws.pe[b]) return -1;
    if (ws.memUsed[b] + ws.memory[g] > ws.memCap[b] + 1e-9) return -1;
    // Prediction is never below current demand: a cheap bound before the full prediction.
    if ((ws.requestSum[b] + ws.request[g]) / ws.cap[b] > this.p.targetUtilization) return -1;
    if (ws.guaranteedSum[b] + ws.mips[g] > this.input.rules.cpuOvercommit * ws.cap[b] + 1e-9) return -1;
    if (ws.breaksAntiAffinity(g, b)) return -1;
    // Adding g raises the bin's prediction by at most g's own peak (quantile, trend and
    // current load are each subadditive): when even that fits, skip the exact prediction.
    const upper = this.pred[b] + this.peakMips(g) / ws.cap[b];
    const after = upper <= this.p.targetUtilization ? upper : this.predict(b, g);
    if (after > this.p.targetUtilization) return -1;
    const s = ws.server[b];
    if (s >= 0 && (from < 0 || ws.server[from] !== s)) {
      // Load arriving from elsewhere must leave the server its headroom.
      const load = this.serverLoad[s] + (after - this.pred[b]) * ws.cap[b];
      if (load > this.p.serverTargetUtilization * this.serverCap[s] + 1e-9) return -1;
    }
    return after;
  }

  /**
   * How good bin b is for guest g, given its predicted CPU share with g (higher is better):
   * that share, less memoryBalance x how far its memory share would stray from the cloud's
   * memory per CPU. Plain CPU best fit fills some host VMs with idle, memory-heavy guests
   * (memory full at 50-70 % CPU: relief takes the CPU-dense guests away) and those can
   * neither take load nor be drained.
   */
  private score(b: number, g: number, fill: number): number {
    if (!(this.p.memoryBalance > 0)) return fill;
    const ws = this.ws;
    this.mix ??= memoryPerCpu(ws);
    const mem = (ws.memUsed[b] + ws.memory[g]) / ws.memCap[b];
    return balancedScore(fill, mem, this.mix, this.p.memoryBalance);
  }

  private mix: number | undefined;

  /** Host VMs holding guests, per physical server (where moves can stay instant). */
  private binsPerServer(): Int32Array {
    if (this.occupied) return this.occupied;
    this.occupied = occupiedPerServer(this.ws, (b) => this.draining.has(b));
    return this.occupied;
  }

  /** Cached occupancy; dropped whenever a bin gains or loses its last guest. */
  private occupied: Int32Array | undefined;

  /** Bins per physical server, for same-server searches. */
  private binsOf(server: number): number[] {
    if (!this.byServer) {
      this.byServer = Array.from({ length: this.input.cloud.servers.length }, () => [] as number[]);
      for (let b = 0; b < this.ws.binCount; b++)
        if (this.ws.server[b] >= 0) this.byServer[this.ws.server[b]].push(b);
    }
    return this.byServer[server];
  }

  private byServer: number[][] | undefined;

  /**
   * Best bin for guest g leaving `from`: a bin on the same physical server if any can take it
   * (instant handover), else the tightest fit elsewhere, preferring servers that carry more
   * of our host VMs.
   */
  private destination(g: number, from: number): number {
    const ws = this.ws;
    const home = from >= 0 ? ws.server[from] : -1;
    let best = -1;
    let bestFill = Number.NEGATIVE_INFINITY;
    if (home >= 0) {
      for (const b of this.binsOf(home)) {
        if (b === from) continue;
        const f = this.canTake(b, g, from);
        const fill = f < 0 ? -1 : this.score(b, g, f);
        if (f >= 0 && fill > bestFill) {
          bestFill = fill;
          best = b;
        }
      }
      if (best >= 0) return best;
    }
    // Elsewhere: servers carrying more of our host VMs first (ties: lower index), and the
    // first server with room gives its tightest bin. (Looking for the tightest bin over all
    // servers would cost a pass over every bin per guest.)
    const order = this.serversByOccupancy();
    for (const s of order) {
      if (s === home) continue;
      for (const b of this.binsOf(s)) {
        if (b === from) continue;
        const f = this.canTake(b, g, from);
        const fill = f < 0 ? -1 : this.score(b, g, f);
        if (f >= 0 && fill > bestFill) {
          bestFill = fill;
          best = b;
        }
      }
      if (best >= 0) return best;
    }
    return best;
  }

  /** Servers by how many of our host VMs hold guests there, most first (ties: lower index). */
  private serversByOccupancy(): number[] {
    const perServer = this.binsPerServer();
    if (this.byOccupancy && this.byOccupancyOf === perServer) return this.byOccupancy;
    this.byOccupancy = Array.from({ length: perServer.length }, (_, s) => s).sort(
      (a, b) => perServer[b] - perServer[a] || a - b,
    );
    this.byOccupancyOf = perServer;
    return this.byOccupancy;
  }

  private byOccupancy: number[] | undefined;
  private byOccupancyOf: Int32Array | undefined;

  /** A new host VM (potential bin): on `preferServer` if it has a free slot, else where most of ours are. */
  private newBin(preferServer = -1): number {
    const ws = this.ws;
    if (!this.acquireType) return -1;
    const server = acquisitionServer(ws, preferServer, () => this.binsPerServer());
    if (server < 0) return -1;
    const b = ws.addPotentialBin(this.acquireType, server);
    this.track(b);
    this.byServer?.[server].push(b);
    this.occupied = undefined;
    return b;
  }

  private move(g: number, to: number, reason: Move["reason"]): void {
    const from = this.ws.hostOf[g];
    if ((from >= 0 && this.ws.lists[from].length === 1) || this.ws.lists[to].length === 0)
      this.occupied = undefined;
    this.ws.moveGuest(g, to);
    this.moves.push({ guest: g, to, reason });
    this.movedThisRound.add(g);
    this.receiving.add(to);
    if (from >= 0) this.refresh(from);
    this.refresh(to);
  }

  // ---- steps -------------------------------------------------------------------------

  /** Relieves bins above the overload level (predicted, or current load between rounds). */
  private relieve(): void {
    const ws = this.ws;
    const level = (b: number) => this.pred[b];
    const hot: number[] = [];
    for (let b = 0; b < ws.existing; b++) {
      if (ws.usable[b] && ws.lists[b].length > 0 && level(b) > this.p.overloadUtilization) hot.push(b);
    }
    hot.sort((a, b) => level(b) - level(a) || a - b);
    for (const b of hot) {
      let guard = ws.lists[b].length;
      while (level(b) > this.p.targetUtilization && guard-- > 0 && this.moves.length < this.maxMoves * 2) {
        const candidates = ws.lists[b].filter((g) => this.movable(g, false) && ws.request[g] > 0);
        if (candidates.length === 0) break;
        // Free the most CPU per byte moved: heaviest current load per MiB first.
        candidates.sort((x, y) => ws.request[y] / ws.memory[y] - ws.request[x] / ws.memory[x] || x - y);
        let moved = false;
        for (const g of candidates) {
          const d = this.destination(g, b);
          if (d >= 0) {
            this.move(g, d, "overload");
            moved = true;
            break;
          }
        }
        if (moved) continue;
        // Nothing has room: a new host VM, on this server if a slot is free.
        const fresh = this.newBin(ws.server[b]);
        if (fresh < 0) break;
        this.move(candidates[0], fresh, "overload");
      }
    }
  }

  /** Drains host VMs that stayed under-used while fewer host VMs would still do. */
  private consolidate(): void {
    const ws = this.ws;
    const p = this.p;
    let running = 0;
    let demand = 0;
    let capacity = 0;
    for (let b = 0; b < ws.binCount; b++) {
      if (!ws.usable[b]) continue;
      running++;
      demand += this.pred[b] * ws.cap[b];
      capacity += ws.cap[b];
    }
    if (running === 0) return;
    const binCap = capacity / running;
    const needed = Math.max(1, Math.ceil(demand / (p.serverTargetUtilization * binCap)));
    let surplus = running - needed - p.spareHostVms;
    if (surplus <= 0) return;

    const perServer = this.binsPerServer();
    const candidates: number[] = [];
    for (let b = 0; b < ws.existing; b++) {
      if (!ws.usable[b] || this.receiving.has(b) || ws.inbound[b] > 0) continue;
      if (ws.lists[b].length === 0) continue;
      if (!this.stayedBelow(b, p.drainBelow, p.drainRounds)) continue;
      // Emptying a host VM long before its paid time ends saves nothing and spends moves;
      // drain it when the next billing increment is about to start.
      if (!drainDue(this.input, b, p.drainBeforeBillingSeconds)) continue;
      candidates.push(b);
    }
    // Servers carrying few of our host VMs first (frees them, concentrates the rest), then
    // the cheapest host VMs to empty.
    candidates.sort(
      (a, b) =>
        perServer[ws.server[a]] - perServer[ws.server[b]] || ws.lists[a].length - ws.lists[b].length || a - b,
    );
    // Each attempt costs a placement search per guest: try a few more than needed.
    let attempts = Math.max(4, 3 * surplus);
    for (const b of candidates) {
      if (surplus <= 0 || this.moves.length >= this.maxMoves || attempts-- <= 0) break;
      const guests = ws.lists[b].slice();
      if (guests.length + this.moves.length > this.maxMoves) continue;
      if (!guests.every((g) => this.movable(g, true))) continue;
      guests.sort((x, y) => ws.request[y] - ws.request[x] || x - y);
      this.setDraining(b, true);
      const placed: Move[] = [];
      for (const g of guests) {
        const d = this.destination(g, b);
        // Filling an empty host VM to empty this one saves nothing: give up the drain.
        if (d < 0 || ws.isPotential(d) || ws.lists[d].length === 0) break;
        ws.moveGuest(g, d);
        this.refresh(d);
        placed.push({ guest: g, to: d, reason: "underload" });
      }
      const s = ws.server[b];
      const overServer =
        s >= 0 && this.serverLoad[s] > this.p.serverTargetUtilization * this.serverCap[s] + 1e-9;
      if (placed.length !== guests.length || overServer) {
        for (const m of placed) {
          ws.moveGuest(m.guest, b);
          this.refresh(m.to);
        }
        this.refresh(b);
        this.setDraining(b, false);
        continue;
      }
      this.occupied = undefined;
      for (const m of placed) {
        this.moves.push(m);
        this.movedThisRound.add(m.guest);
        this.receiving.add(m.to);
      }
      surplus--;
    }
  }

  /** Did bin b's utilization stay below `level` over its last `rounds` samples and now? */
  private stayedBelow(b: number, level: number, rounds: number): boolean {
    const ws = this.ws;
    if (ws.requestedUtilization(b) >= level) return false;
    const n = ws.history(b, this.buf);
    if (n < rounds) return false;
    for (let i = 0; i < rounds; i++) if (this.buf[i] >= level) return false;
    return true;
  }

  /**
   * Acquires host VMs ahead of need: on each server whose predicted load exceeds its target,
   * in a free slot of that server (so relief stays instant); if it has none, where most of
   * our host VMs are.
   */
  private acquireAhead(): void {
    if (!this.acquireType) return;
    const ws = this.ws;
    const binCap = this.acquireType.vcpus * this.acquireType.mipsPerVcpu;
    const coming = new Float64Array(this.input.cloud.servers.length);
    for (const h of this.input.cloud.hostVms) {
      if (h.state === "provisioning" && h.server !== undefined)
        coming[h.server] += h.type.vcpus * h.type.mipsPerVcpu;
    }
    for (let s = 0; s < this.serverLoad.length; s++) {
      const target = this.p.serverTargetUtilization;
      const missing = this.serverLoad[s] - target * (this.serverCap[s] + coming[s]);
      if (missing <= 0) continue;
      const count = Math.ceil(missing / (target * binCap));
      for (let i = 0; i < count; i++) if (this.newBin(s) < 0) break;
    }
  }

  plan(): ActionPlan {
    this.relieve();
    this.consolidate();
    this.acquireAhead();
    return this.finish([]);
  }

  private finish(notes: string[]): ActionPlan {
    const ws = this.ws;
    // Empty host VMs whose paid time runs past the next round cost nothing more to keep until
    // then (instant headroom meanwhile); spares on the busiest servers.
    const keep = billingKeep(ws, this.p.spareHostVms, () => this.binsPerServer());
    const pairs = this.p.pairRounds > 0 ? this.pairs() : undefined;
    if (!pairs) return buildPlan(ws, this.moves, { releaseEmpty: true, keep, notes, acquireUnused: true });
    const step = pairStep(ws, pairs, this.moves, this.pricing(), this.pairHooks());
    notes.push(...step.notes);
    // Potential bins that got no guest are acquisitions made ahead of need: acquire them too.
    return buildPlan(ws, step.moves, {
      releaseEmpty: true,
      keep,
      notes,
      acquireUnused: true,
      coMigrations: step.coMigrations,
    });
  }

  /** The cloud's monitoring pairs, when the policy minds them and there are any. */
  private pairs(): MonitoringPair[] | undefined {
    if (this.p.pairAware <= 0) return undefined;
    const pairs = monitoringPairs(this.input.cloud);
    return pairs.length > 0 ? pairs : undefined;
  }

  private pricing(): PairPricing {
    const ws = this.ws;
    let price = 0;
    for (let h = 0; h < ws.existing; h++)
      price = Math.max(price, this.input.cloud.hostVms[h].type.pricePerHour);
    return {
      remotePerHour: this.p.remoteMonitoringPerHour,
      horizonHours: this.p.pairHorizonHours,
      migrationPerHour: price > 0 ? price : 1,
    };
  }

  /** `placing`: first placements (no server's headroom is taken from another's). */
  private pairHooks(placing = false): PairStepHooks {
    return {
      canTake: (b, g) => b >= 0 && this.canTake(b, g, placing ? b : this.ws.hostOf[g]) >= 0,
      move: (g, b) => {
        const from = this.ws.hostOf[g];
        if ((from >= 0 && this.ws.lists[from].length === 1) || this.ws.lists[b].length === 0)
          this.occupied = undefined;
        this.ws.moveGuest(g, b);
        if (from >= 0) this.refresh(from);
        this.refresh(b);
      },
      migrationSeconds: (g, b) => this.ws.migrationSeconds(g, b),
      binsOf: (server) => this.binsOf(server),
      openBin: (server) =>
        this.input.cloud.servers[server].hostVmSlots - this.ws.slotsUsed[server] > 0
          ? this.newBin(server)
          : -1,
    };
  }

  /**
   * Places new guests server by server: fill the host VMs of the server that carries most of
   * ours, then open host VMs in its free slots, then go on to the next server. Concentrating
   * host VMs on few servers is what keeps later moves instant. Guests go largest first; the
   * last two servers stay open for the smaller ones that follow (linear in guests).
   */
  placeNew(guests: readonly number[]): Placement {
    const ws = this.ws;
    const cloud = this.input.cloud;
    const order = guests
      .slice()
      .sort((a, b) => ws.request[b] - ws.request[a] || ws.memory[b] - ws.memory[a] || a - b);
    const occupied = this.binsPerServer();
    const running = new Int32Array(cloud.servers.length);
    for (let b = 0; b < ws.existing; b++) if (ws.usable[b] && ws.server[b] >= 0) running[ws.server[b]]++;
    const servers = Array.from({ length: cloud.servers.length }, (_, s) => s).sort(
      (a, b) => occupied[b] - occupied[a] || running[b] - running[a] || a - b,
    );
    const open: number[] = [];
    let nextServer = 0;
    const assignments: { guest: number; to: HostVmRef }[] = [];
    const unplaced: number[] = [];
    const tryServer = (s: number, g: number): number => {
      let best = -1;
      let bestFill = Number.NEGATIVE_INFINITY;
      for (const b of this.binsOf(s)) {
        const f = this.canTake(b, g, b);
        const fill = f < 0 ? -1 : this.score(b, g, f);
        if (f >= 0 && fill > bestFill) {
          bestFill = fill;
          best = b;
        }
      }
      if (best < 0 && cloud.servers[s].hostVmSlots - ws.slotsUsed[s] > 0) {
        const fresh = this.newBin(s);
        if (fresh >= 0 && this.canTake(fresh, g, fresh) >= 0) best = fresh;
      }
      return best;
    };
    // A security VM is placed right after its first target, beside it if it can be.
    const pairs = this.pairs();
    const followers = new Map<number, number[]>();
    const leader = new Map<number, number>();
    if (pairs) {
      const placing = new Set(guests);
      for (const p of pairs) {
        if (!placing.has(p.secvm) || leader.has(p.secvm)) continue;
        leader.set(p.secvm, p.target);
        if (placing.has(p.target)) followers.set(p.target, [...(followers.get(p.target) ?? []), p.secvm]);
      }
    }
    const queue: number[] = [];
    for (const g of order) {
      if (followers.has(leader.get(g) ?? -1)) continue;
      queue.push(g);
      for (const f of followers.get(g) ?? []) queue.push(f);
    }
    const besideTarget = (g: number): number => {
      const t = leader.get(g);
      const tb = t === undefined ? -1 : ws.hostOf[t];
      if (tb < 0) return -1;
      if (this.canTake(tb, g, tb) >= 0) return tb;
      const srv = ws.server[tb];
      if (srv < 0) return -1;
      for (const b of this.binsOf(srv)) if (this.canTake(b, g, b) >= 0) return b;
      if (cloud.servers[srv].hostVmSlots - ws.slotsUsed[srv] > 0) {
        const fresh = this.newBin(srv);
        if (fresh >= 0 && this.canTake(fresh, g, fresh) >= 0) return fresh;
      }
      // No room beside it: the target (placed just now, nothing to migrate) moves to a bin
      // that takes both (the open servers first).
      for (const s of [...open, ...servers])
        for (const b of this.binsOf(s)) {
          if (b === tb || this.canTake(b, t!, b) < 0) continue;
          ws.moveGuest(t!, b);
          this.refresh(tb);
          this.refresh(b);
          if (this.canTake(b, g, b) >= 0) return b;
          ws.moveGuest(t!, tb);
          this.refresh(b);
          this.refresh(tb);
        }
      return -1;
    };
    for (const g of queue) {
      let best = besideTarget(g);
      if (best < 0) for (const s of open) if ((best = tryServer(s, g)) >= 0) break;
      while (best < 0 && nextServer < servers.length) {
        const s = servers[nextServer++];
        open.push(s);
        if (open.length > 2) open.shift();
        best = tryServer(s, g);
      }
      if (best < 0) {
        unplaced.push(g);
        continue;
      }
      ws.moveGuest(g, best);
      this.refresh(best);
      assignments.push({ guest: g, to: { kind: "existing", hostVm: best } });
    }
    this.occupied = undefined;
    if (!pairs) return resolvePotential(ws, assignments, unplaced);
    // New security VMs go where their targets are (a first placement costs no migration).
    const placing = new Set(assignments.map((a) => a.guest));
    const newPairs = pairs.filter((p) => placing.has(p.secvm));
    pairStep(
      ws,
      newPairs,
      [],
      { remotePerHour: 1, horizonHours: 1, migrationPerHour: 0 },
      this.pairHooks(true),
    );
    const serverOf = (b: number) => (b >= 0 && ws.server[b] >= 0 ? ws.server[b] : undefined);
    const out: { guest: number; to: HostVmRef }[] = [];
    for (const a of assignments) {
      const broken = newPairs.some(
        (p) =>
          (p.secvm === a.guest || p.target === a.guest) &&
          !meets(channelBetween(ws.hostOf[p.secvm], ws.hostOf[p.target], serverOf), p.requires),
      );
      // Never a placement whose required channel cannot be established: the guest stays unplaced.
      if (broken && pairs.some((p) => p.secvm === a.guest)) {
        ws.moveGuest(a.guest, -1);
        unplaced.push(a.guest);
      } else out.push({ guest: a.guest, to: { kind: "existing", hostVm: ws.hostOf[a.guest] } });
    }
    return resolvePotential(ws, out, unplaced);
  }
}

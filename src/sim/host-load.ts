/**
 * Per-host-VM load kept up to date as guests move, as nestcloud's agents report it (rule sets
 * with host load reports): the sums of the guests' demand at the current and next trace
 * samples, so a poll between rounds reads every host VM's demand without a pass over all
 * guests, and the summed MIPS history the planner takes instead of re-adding every guest's.
 */
import { type Cloud, type LoadHistory, UNPLACED } from "../model/index.ts";
import { HISTORY_LENGTH } from "../planner/index.ts";
import { type Trace, utilizationAt } from "./trace.ts";

export class HostLoad {
  /** Per host VM: sums of its guests' demand at the current and next trace samples (MIPS). */
  private sumNow = new Float64Array(0);
  private sumNext = new Float64Array(0);
  private sampleIndex = 0;
  /** Per host VM, HISTORY_LENGTH values newest first: its guests' summed MIPS history. */
  private history = new Float64Array(0);
  private readonly historyScratch = new Float64Array(HISTORY_LENGTH);

  constructor(
    private readonly cloud: Cloud,
    private readonly trace: Trace,
    /** Per guest: guaranteed MIPS. */
    private readonly mips: Float64Array,
    private readonly load: LoadHistory,
  ) {}

  /**
   * A round starts at t with these requests (MIPS per guest): the sums restart from the trace
   * sample at t, and every history moves back one place for the demand now.
   */
  startRound(t: number, requests: Float64Array): void {
    this.resetSampleSums(t);
    this.shiftHistory(requests);
  }

  /** Guest g moves from host VM `from` to `to` (either may be UNPLACED). */
  move(g: number, from: number, to: number): void {
    // Before the first round nothing is summed yet (the initial placement builds it).
    if (this.sumNow.length === 0) return;
    if (from !== UNPLACED) this.addToSums(g, from, -1);
    if (to !== UNPLACED) this.addToSums(g, to, 1);
    const n = this.load.newestFirst(g, this.historyScratch, HISTORY_LENGTH);
    const m = this.mips[g];
    this.ensureHistory(Math.max(from, to) + 1);
    for (let i = 0; i < n; i++) {
      const v = this.historyScratch[i] * m;
      if (from !== UNPLACED) this.history[from * HISTORY_LENGTH + i] -= v;
      if (to !== UNPLACED) this.history[to * HISTORY_LENGTH + i] += v;
    }
  }

  /** Per host VM: its guests' demand at t (MIPS), linear between the two samples summed. */
  demandAt(t: number): Float64Array {
    const H = this.cloud.hostVms.length;
    const demand = new Float64Array(H);
    const frac = (t - this.sampleIndex * this.trace.intervalSeconds) / this.trace.intervalSeconds;
    for (let h = 0; h < H; h++) demand[h] = this.sumNow[h] + (this.sumNext[h] - this.sumNow[h]) * frac;
    return demand;
  }

  /** The summed histories, HISTORY_LENGTH per host VM (PlannerInput.hostHistoryMips). */
  histories(): Float64Array {
    this.ensureHistory(this.cloud.hostVms.length);
    return this.history;
  }

  private resetSampleSums(t: number): void {
    const H = this.cloud.hostVms.length;
    this.sampleIndex = Math.floor(t / this.trace.intervalSeconds + 1e-9);
    this.sumNow = new Float64Array(Math.max(H, 16));
    this.sumNext = new Float64Array(Math.max(H, 16));
    for (let g = 0; g < this.cloud.guests.length; g++) {
      const h = this.cloud.guestHost[g];
      if (h !== UNPLACED) this.addToSums(g, h, 1);
    }
  }

  /** Moves guest g's share of the sample sums in (sign 1) or out of (-1) host VM h. */
  private addToSums(g: number, h: number, sign: 1 | -1): void {
    if (h >= this.sumNow.length) {
      const grow = (a: Float64Array) => {
        const next = new Float64Array(Math.max(h + 1, a.length * 2));
        next.set(a);
        return next;
      };
      this.sumNow = grow(this.sumNow);
      this.sumNext = grow(this.sumNext);
    }
    const k = this.sampleIndex;
    const I = this.trace.intervalSeconds;
    this.sumNow[h] += sign * utilizationAt(this.trace, g, k * I) * this.mips[g];
    this.sumNext[h] += sign * utilizationAt(this.trace, g, (k + 1) * I) * this.mips[g];
  }

  private shiftHistory(requests: Float64Array): void {
    const H = this.cloud.hostVms.length;
    this.ensureHistory(H);
    const hist = this.history;
    for (let h = 0; h < H; h++) {
      const base = h * HISTORY_LENGTH;
      hist.copyWithin(base + 1, base, base + HISTORY_LENGTH - 1);
      let sum = 0;
      for (const g of this.cloud.hostGuests[h]) sum += requests[g];
      hist[base] = sum;
    }
  }

  private ensureHistory(hosts: number): void {
    if (this.history.length >= hosts * HISTORY_LENGTH) return;
    const next = new Float64Array(
      Math.max(hosts, (this.history.length / HISTORY_LENGTH) * 2, 16) * HISTORY_LENGTH,
    );
    next.set(this.history);
    this.history = next;
  }
}

/**
 * Host overload detectors of Beloglazov & Buyya (CCPE 2012), as CloudSim 3.0.3 runs them:
 * THR (static threshold), IQR and MAD (adaptive thresholds from the utilization history),
 * LR and LRR (regression predicts the next interval). Each compares the *requested*
 * utilization of the bin's current guests, optionally with one more guest added.
 */

import { iqr, mad, olsOnIndex } from "./stats.ts";
import { HISTORY_LENGTH, type Workspace } from "./workspace.ts";

export interface OverloadDetector {
  readonly name: string;
  /** Is bin b overloaded with its current guests (plus guest `extra`, if >= 0)? */
  overloaded(ws: Workspace, b: number, extra?: number): boolean;
}

function requestedUtilization(ws: Workspace, b: number, extra: number): number {
  return (ws.requestSum[b] + (extra >= 0 ? ws.request[extra] : 0)) / ws.cap[b];
}

export class StaticThreshold implements OverloadDetector {
  readonly name: string;
  constructor(readonly threshold: number) {
    this.name = `thr-${threshold}`;
  }
  overloaded(ws: Workspace, b: number, extra = -1): boolean {
    return requestedUtilization(ws, b, extra) > this.threshold;
  }
}

/** History-based detectors fall back to THR 0.7 while the history is short. */
const FALLBACK = new StaticThreshold(0.7);

abstract class AdaptiveThreshold implements OverloadDetector {
  abstract readonly name: string;
  private readonly buf = new Float64Array(HISTORY_LENGTH);
  constructor(readonly safety: number) {}
  protected abstract spread(history: Float64Array, n: number): number;
  overloaded(ws: Workspace, b: number, extra = -1): boolean {
    const n = ws.history(b, this.buf, extra);
    if (n < 12) return FALLBACK.overloaded(ws, b, extra);
    const upper = 1 - this.safety * this.spread(this.buf, n);
    return requestedUtilization(ws, b, extra) > upper;
  }
}

export class InterQuartileRange extends AdaptiveThreshold {
  readonly name = `iqr-${this.safety}`;
  protected spread(h: Float64Array, n: number): number {
    return iqr(h, n);
  }
}

export class MedianAbsoluteDeviation extends AdaptiveThreshold {
  readonly name = `mad-${this.safety}`;
  protected spread(h: Float64Array, n: number): number {
    return mad(h, n);
  }
}

/**
 * LR: fit the last 10 history points, predict the utilization one migration time ahead,
 * overloaded if safety x prediction >= 1. CloudSim's "loess" weights never take effect
 * (its weighted branch needs >= 40 % zero weights), so LR and LRR are both plain OLS there;
 * LRR is kept as a name for the reference runs and gives identical results, as in CloudSim.
 */
export class LocalRegression implements OverloadDetector {
  readonly name: string;
  private readonly buf = new Float64Array(HISTORY_LENGTH);
  private readonly window = new Float64Array(10);
  constructor(
    readonly safety: number,
    robust = false,
  ) {
    this.name = `${robust ? "lrr" : "lr"}-${safety}`;
  }
  overloaded(ws: Workspace, b: number, extra = -1): boolean {
    const n = ws.history(b, this.buf, extra);
    const length = 10;
    if (n < length) return FALLBACK.overloaded(ws, b, extra);
    for (let i = 0; i < length; i++) this.window[i] = this.buf[length - i - 1];
    const [intercept, slope] = olsOnIndex(this.window, length);
    if (Number.isNaN(slope)) return FALLBACK.overloaded(ws, b, extra);
    const intervals = ws.migrationIntervals(b, extra);
    return (intercept + slope * (length + intervals)) * this.safety >= 1;
  }
}

/**
 * Power-Aware Best Fit Decreasing (Beloglazov & Buyya): give a guest to the bin whose
 * physical server's power grows least, among bins that can take it and would not become
 * overloaded. Ties keep the first bin, as CloudSim does.
 */
import type { OverloadDetector } from "./detectors.ts";
import type { Workspace } from "./workspace.ts";

export interface FitOptions {
  /** Creation time: memory and the per-host guest count bind even under CloudSim's rules. */
  readonly atCreation: boolean;
}

/** Can bin b take guest g now (capacity only; detectors are separate)? */
export function fits(ws: Workspace, g: number, b: number, opts: FitOptions): boolean {
  if (!ws.usable[b]) return false;
  const rules = ws.input.rules;
  const perVcpu = ws.request[g] / ws.vcpus[g];
  if (ws.pe[b] < perVcpu || ws.available(b) < ws.request[g]) return false;
  if (ws.vcpus[g] > ws.cap[b] / ws.pe[b]) return false;
  if (rules.memory === "reserved" || opts.atCreation) {
    if (ws.memUsed[b] + ws.memory[g] > ws.memCap[b] + 1e-9) return false;
  }
  if (opts.atCreation && ws.lists[b].length >= rules.maxGuestsAtCreation) return false;
  if (ws.guaranteedSum[b] + ws.mips[g] > rules.cpuOvercommit * ws.cap[b] + 1e-9) return false;
  return !ws.breaksAntiAffinity(g, b);
}

/**
 * The best bin for guest g, or -1. `excluded[b]` = 1 removes a bin from consideration.
 * Cheap power ranking first, the detector only for a bin that would win: same result as
 * checking every bin, at a fraction of the cost.
 */
export function findBinForGuest(
  ws: Workspace,
  g: number,
  excluded: Uint8Array,
  detector: OverloadDetector,
  opts: FitOptions = { atCreation: false },
  /** Bins worth looking at, in index order (default: all); excluded ones are still skipped. */
  candidates?: ArrayLike<number>,
): number {
  let best = -1;
  let min = Number.MAX_VALUE;
  const r = ws.request[g];
  // The hot loop of the reference policies: cheap tests inline, the rest only when needed.
  const perVcpu = r / ws.vcpus[g];
  const usable = ws.usable;
  const pe = ws.pe;
  const cap = ws.cap;
  const capped = ws.cappedSum;
  // Identical idle servers give identical answers and the first wins ties, so the default
  // search looks at busy bins and one idle bin per server shape.
  const order = candidates ?? ws.searchOrder();
  const n = order.length;
  for (let i = 0; i < n; i++) {
    const b = order[i];
    if (excluded[b] || !usable[b] || pe[b] < perVcpu) continue;
    // Free MIPS as the scheduler sees them (none once oversubscribed): ws.available(b) inlined.
    if ((capped[b] <= cap[b] ? cap[b] - capped[b] : 0) < r) continue;
    const diff = ws.powerIncrease(b, r);
    if (!(diff < min) || !fits(ws, g, b, opts)) continue;
    // CloudSim skips the check for a bin its scheduler grants nothing right now.
    if (ws.allocated(b) !== 0 && detector.overloaded(ws, b, g)) continue;
    min = diff;
    best = b;
  }
  return best;
}

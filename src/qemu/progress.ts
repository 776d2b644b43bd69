// Turns successive query-migrate answers into progress an operator can trust: remaining
// bytes, pass number, dirty rate, expected downtime, a percentage that never goes down and
// an ETA that never goes up (QEMU's own "remaining" jumps back up after every dirty sync,
// which is what makes naive progress bars run backwards). Also detects stalls: when the
// dirty set left at the start of each pass stops shrinking, pre-copy is not converging.
import type { MigrationInfo, MigrationStatus } from "./qmp-types.ts";

export interface MigrationProgress {
  status: MigrationStatus | "none";
  /** Since the migrate command was issued (QEMU's total-time when present). */
  elapsedMs: number;
  totalBytes: number;
  transferredBytes: number;
  remainingBytes: number;
  /** Dirty-bitmap sync count: 1 during the first full pass, +1 per later pass. */
  pass: number;
  dirtyRateBytesPerSec: number;
  throughputBytesPerSec: number;
  expectedDowntimeMs: number | null;
  cpuThrottlePercent: number;
  /** transferred / (transferred + remaining), never decreasing; 100 only when completed. */
  percent: number;
  /** Non-increasing estimate; null while there is no basis (not converging yet). */
  etaMs: number | null;
  /** The unclamped estimate behind etaMs (may go up and down). */
  rawEtaMs: number | null;
  /** Active pre-copy whose per-pass dirty set found no new low for the stall window. */
  stalled: boolean;
  msSinceImprovement: number;
}

/** What of a progress an operator is shown (the agents' API): without the tracker's bookkeeping. */
export type MigrationProgressReport = Omit<
  MigrationProgress,
  "cpuThrottlePercent" | "rawEtaMs" | "msSinceImprovement"
>;

export function progressReport(p: MigrationProgress): MigrationProgressReport {
  const { cpuThrottlePercent: _c, rawEtaMs: _r, msSinceImprovement: _m, ...report } = p;
  return report;
}

export class ProgressTracker {
  private percent = 0;
  private eta: number | null = null;
  private bestPassStart = Number.POSITIVE_INFINITY;
  private lastPass = 0;
  private passAtImprovement = 0;
  private lastImprovementAt: number;

  constructor(
    private readonly stallWindowMs: number,
    private readonly startedAt: number,
  ) {
    this.lastImprovementAt = startedAt;
  }

  update(info: MigrationInfo, now: number): MigrationProgress {
    const status = info.status ?? "none";
    const ram = info.ram;
    const total = ram?.total ?? 0;
    const transferred = ram?.transferred ?? 0;
    const remaining = ram?.remaining ?? 0;
    const pageSize = ram?.["page-size"] || 4096;
    const dirtyRate = (ram?.["dirty-pages-rate"] ?? 0) * pageSize;
    const throughput = ((ram?.mbps ?? 0) * 1e6) / 8;

    if (status === "completed") {
      this.percent = 100;
      this.eta = 0;
    } else if (ram) {
      const raw = transferred + remaining > 0 ? (100 * transferred) / (transferred + remaining) : 0;
      this.percent = Math.max(this.percent, Math.min(raw, 99.9));
    }

    // Within a pass "remaining" always falls towards zero, so it says nothing about
    // convergence. What matters is the dirty set found at each pass start (the first sample
    // after dirty-sync-count grew): pre-copy converges while that keeps reaching new lows.
    // The first pass is progress by definition; only active pre-copy can stall.
    const pass = ram?.["dirty-sync-count"] ?? 0;
    if (pass <= 1 || status !== "active") {
      this.lastImprovementAt = now;
      this.passAtImprovement = pass;
    } else if (pass > this.lastPass) {
      if (remaining < this.bestPassStart * 0.99 || remaining === 0) {
        this.bestPassStart = remaining;
        this.lastImprovementAt = now;
        this.passAtImprovement = pass;
      }
    }
    this.lastPass = Math.max(this.lastPass, pass);
    const sinceImprovement = now - this.lastImprovementAt;

    let rawEta: number | null = null;
    if (status === "completed") rawEta = 0;
    else if (ram && remaining === 0) rawEta = 0;
    else if (ram && throughput > dirtyRate) rawEta = (1000 * remaining) / (throughput - dirtyRate);
    if (rawEta !== null) this.eta = this.eta === null ? rawEta : Math.min(this.eta, rawEta);

    return {
      status,
      elapsedMs: info["total-time"] ?? now - this.startedAt,
      totalBytes: total,
      transferredBytes: transferred,
      remainingBytes: remaining,
      pass: ram?.["dirty-sync-count"] ?? 0,
      dirtyRateBytesPerSec: dirtyRate,
      throughputBytesPerSec: throughput,
      expectedDowntimeMs: info["expected-downtime"] ?? null,
      cpuThrottlePercent: info["cpu-throttle-percentage"] ?? 0,
      percent: this.percent,
      etaMs: this.eta === null ? null : Math.round(this.eta),
      rawEtaMs: rawEta === null ? null : Math.round(rawEta),
      // A later pass must have started without a new low: one long pass is not a stall.
      stalled: status === "active" && pass > this.passAtImprovement && sinceImprovement >= this.stallWindowMs,
      msSinceImprovement: sinceImprovement,
    };
  }
}

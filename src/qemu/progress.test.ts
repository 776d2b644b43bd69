import assert from "node:assert/strict";
import { test } from "node:test";
import { ProgressTracker, progressReport } from "./progress.ts";
import type { MigrationInfo } from "./qmp-types.ts";

const MiB = 1024 * 1024;
function info(
  status: MigrationInfo["status"],
  transferred: number,
  remaining: number,
  dirtyPages = 0,
  mbps = 800,
): MigrationInfo {
  return {
    status,
    "total-time": 1,
    ram: {
      transferred,
      remaining,
      total: 256 * MiB,
      duplicate: 0,
      normal: 0,
      "normal-bytes": 0,
      "dirty-pages-rate": dirtyPages,
      mbps,
      "dirty-sync-count": 1,
      "postcopy-requests": 0,
      "page-size": 4096,
    },
  };
}

test("percent never decreases and ETA never increases when remaining jumps back up", () => {
  const t = new ProgressTracker(10_000, 0);
  const a = t.update(info("active", 100 * MiB, 100 * MiB), 1000);
  const b = t.update(info("active", 150 * MiB, 160 * MiB, 2000), 2000); // dirty sync: remaining grew
  assert.ok(b.percent >= a.percent);
  assert.ok(a.etaMs !== null && b.etaMs !== null && b.etaMs <= a.etaMs);
  assert.ok(b.rawEtaMs! > a.rawEtaMs!, "the raw estimate did go up");
  assert.equal(b.dirtyRateBytesPerSec, 2000 * 4096);
  const done = t.update(info("completed", 300 * MiB, 0), 3000);
  assert.equal(done.percent, 100);
  assert.equal(done.etaMs, 0);
});

test("a per-pass dirty set that stops shrinking is a stall; a new low clears it", () => {
  const t = new ProgressTracker(5000, 0);
  const at = (pass: number, remaining: number, now: number) => {
    const i = info("active", 10 * MiB, remaining);
    i.ram!["dirty-sync-count"] = pass;
    return t.update(i, now);
  };
  assert.equal(at(1, 200 * MiB, 0).stalled, false);
  assert.equal(at(1, 1 * MiB, 9000).stalled, false, "first pass is progress");
  assert.equal(at(2, 50 * MiB, 10_000).stalled, false, "first pass start sets the low");
  assert.equal(at(2, 2 * MiB, 12_000).stalled, false, "falling within a pass is not convergence");
  assert.equal(at(3, 60 * MiB, 14_000).stalled, false);
  assert.equal(at(4, 55 * MiB, 16_000).stalled, true, "no new low of the pass-start dirty set for 6 s");
  assert.equal(at(5, 20 * MiB, 17_000).stalled, false);
  // One long pass is not a stall: only a later pass that fails to beat the low is.
  assert.equal(at(5, 5 * MiB, 40_000).stalled, false);
  assert.equal(at(6, 25 * MiB, 41_000).stalled, true);
});

test("not converging (dirty rate above throughput) gives no ETA basis", () => {
  const t = new ProgressTracker(5000, 0);
  const p = t.update(info("active", 10 * MiB, 50 * MiB, 1_000_000, 8), 100);
  assert.equal(p.etaMs, null);
  assert.equal(p.rawEtaMs, null);
});

test("a progress report is the progress without the tracker's bookkeeping", () => {
  const p = new ProgressTracker(5000, 0).update(info("active", 100 * MiB, 100 * MiB), 1000);
  const r = progressReport(p);
  for (const [k, v] of Object.entries(r)) assert.equal(v, p[k as keyof typeof p], k);
  assert.deepEqual(Object.keys(r).sort(), [
    "dirtyRateBytesPerSec",
    "elapsedMs",
    "etaMs",
    "expectedDowntimeMs",
    "pass",
    "percent",
    "remainingBytes",
    "stalled",
    "status",
    "throughputBytesPerSec",
    "totalBytes",
    "transferredBytes",
  ]);
});

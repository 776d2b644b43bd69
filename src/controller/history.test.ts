import assert from "node:assert/strict";
import { test } from "node:test";
import { downsample, History, type HistorySample } from "./history.ts";
import { openStore } from "./store/connect.ts";

const sample = (at: number, hostVms: number, costPerHour = hostVms * 0.25, guests = 48): HistorySample => ({
  at,
  hostVms,
  costPerHour,
  guests,
});

test("downsampling keeps the span, the count bound and every bucket's peak", () => {
  const series = Array.from({ length: 1000 }, (_, i) => sample(i * 10, 12 - Math.floor(i / 100)));
  series[503] = sample(5030, 40); // a spike must survive
  const out = downsample(series, 50);
  assert.ok(out.length <= 50, `${out.length} points`);
  assert.equal(out[0].at, 0);
  assert.equal(out.at(-1)!.at, 9990);
  assert.equal(Math.max(...out.map((s) => s.hostVms)), 40, "the spike is kept");
  assert.ok(
    out.every((s, i) => i === 0 || s.at > out[i - 1].at),
    "time runs forward",
  );
  assert.deepEqual(downsample(series.slice(0, 10), 50), series.slice(0, 10), "short series pass unchanged");
});

test("the store keeps one sample per change (or per interval)", async () => {
  const store = await openStore("sqlite::memory:");
  try {
    const h = new History(store, 100);
    await h.record(sample(0, 12));
    await h.record(sample(10, 12)); // unchanged, within the interval: not stored
    await h.record(sample(20, 11));
    await h.record(sample(130, 11)); // unchanged but an interval later: stored
    await h.record(sample(130, 10)); // the clock did not move: not stored
    assert.deepEqual(
      (await h.read(100)).map((s) => [s.at, s.hostVms]),
      [
        [0, 12],
        [20, 11],
        [130, 11],
      ],
    );
    assert.deepEqual(
      (await h.read(100, 20)).map((s) => s.at),
      [20, 130],
      "since",
    );
  } finally {
    await store.close();
  }
});

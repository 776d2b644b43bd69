import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Cloud } from "../model/index.ts";
import {
  InterQuartileRange,
  LocalRegression,
  MedianAbsoluteDeviation,
  StaticThreshold,
} from "./detectors.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";
import { Workspace } from "./workspace.ts";

/** One host VM of 4000 MIPS holding guests with the given histories (oldest first). */
function oneBin(histories: number[][], mips = 1000) {
  const cloud = new Cloud();
  cloud.addServer(server("s0"));
  cloud.addHostVm("h0", HOST_TYPE, 0, "running", 0);
  histories.forEach((_, i) => {
    cloud.place(cloud.addGuest(guest(`g${i}`, mips)), 0);
  });
  const load = withHistory(cloud, histories);
  return new Workspace(plannerInput(cloud, load), true);
}

describe("THR", () => {
  test("overloaded when requested utilization exceeds the threshold (strictly)", () => {
    // two guests at 1600 MIPS each = 3200 of 4000 = 0.8
    const ws = oneBin([[1.6 / 1.6], [1]], 1600);
    assert.equal(new StaticThreshold(0.8).overloaded(ws, 0), false);
    assert.equal(new StaticThreshold(0.79).overloaded(ws, 0), true);
  });

  test("counts a guest about to be added", () => {
    const cloud = new Cloud();
    cloud.addServer(server("s0"));
    cloud.addHostVm("h0", HOST_TYPE, 0, "running", 0);
    cloud.place(cloud.addGuest(guest("a", 2000)), 0);
    cloud.addGuest(guest("b", 2000));
    const ws = new Workspace(plannerInput(cloud, withHistory(cloud, [[1], [0.5]])), true);
    assert.equal(new StaticThreshold(0.7).overloaded(ws, 0), false); // 2000/4000
    assert.equal(new StaticThreshold(0.7).overloaded(ws, 0, 1), true); // 3000/4000
  });
});

describe("MAD and IQR", () => {
  const steady = Array.from({ length: 12 }, (_, i) => 0.3 + (i % 2) * 0.1); // 0.3,0.4,...
  test("fall back to THR 0.7 with fewer than 12 samples", () => {
    const ws = oneBin([steady.slice(0, 11).concat([0.75]).slice(1)], 4000); // 11 samples, last 0.75
    assert.equal(new MedianAbsoluteDeviation(2.5).overloaded(ws, 0), true);
    const calm = oneBin([steady.slice(0, 11)], 4000);
    assert.equal(new MedianAbsoluteDeviation(2.5).overloaded(calm, 0), false);
  });

  test("MAD threshold 1 - s x MAD, by hand", () => {
    // history 0.3/0.4 alternating: median 0.35, deviations all 0.05 -> MAD 0.05
    // threshold = 1 - 2.5 x 0.05 = 0.875; current = last sample 0.4 (one guest of 4000 MIPS)
    const ws = oneBin([steady], 4000);
    assert.equal(new MedianAbsoluteDeviation(2.5).overloaded(ws, 0), false);
    assert.equal(new MedianAbsoluteDeviation(13).overloaded(ws, 0), true); // 1 - 0.65 = 0.35 < 0.4
  });

  test("IQR threshold 1 - s x IQR, by hand", () => {
    // 12 samples, 6 at 0.3 and 6 at 0.4: q1 (index 2) = 0.3, q3 (index 9) = 0.4 -> IQR 0.1
    const ws = oneBin([steady], 4000);
    assert.equal(new InterQuartileRange(1.5).overloaded(ws, 0), false); // 0.85 > 0.4
    assert.equal(new InterQuartileRange(6.5).overloaded(ws, 0), true); // 0.35 < 0.4
  });
});

describe("LR", () => {
  test("predicts intercept + slope x (10 + migration intervals), scaled by the safety factor", () => {
    // Linear ramp: u_i = 0.05 i for i = 1..10 -> next (x = 11) = 0.55; x 1.2 = 0.66 < 1
    const ramp = Array.from({ length: 10 }, (_, i) => 0.05 * (i + 1));
    const ws = oneBin([ramp], 4000);
    assert.equal(new LocalRegression(1.2).overloaded(ws, 0), false);
    assert.equal(new LocalRegression(1.81).overloaded(ws, 0), false); // 0.55 x 1.81 = 0.9955
    assert.equal(new LocalRegression(1.82).overloaded(ws, 0), true); // 1.001
  });

  test("falls back to THR 0.7 with fewer than 10 samples", () => {
    const ws = oneBin([[0.1, 0.1, 0.75]], 4000);
    assert.equal(new LocalRegression(1.2).overloaded(ws, 0), true);
  });
});

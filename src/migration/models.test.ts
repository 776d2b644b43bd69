import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { CalibrationError, DEFAULT_CALIBRATION as cal, parseCalibration } from "./calibration.ts";
import { estimateMove, routeBetween } from "./mechanism.ts";
import {
  estimateCloudSim,
  estimateInstant,
  estimatePostcopy,
  estimatePrecopy,
  mbpsToMiBps,
} from "./models.ts";

const subject = fc.record({
  memoryMiB: fc.integer({ min: 64, max: 65536 }),
  residentFraction: fc.double({ min: 0.05, max: 1, noNaN: true }),
  dirtyRateMiBps: fc.double({ min: 0, max: 2000, noNaN: true }),
});
const link = fc.constantFrom(100, 1000, 10000, 25000);

describe("pre-copy model", () => {
  test("an idle guest converges after one pass plus the final pause", () => {
    const e = estimatePrecopy({ memoryMiB: 768, residentMiB: 77.7, dirtyRateMiBps: 0 }, 1000, cal);
    assert.equal(e.converged, true);
    assert.equal(e.rounds, 1);
    // pass 0 is bounded by the RAM walk (768 MiB at 280 MiB/s), not by the 77.7 MiB sent.
    assert.ok(
      Math.abs(e.totalSeconds - (0.02 + 768 / 280 + (0 + 0.6) / (mbpsToMiBps(1000) * 0.94) + 0.008)) < 1e-9,
    );
    assert.ok(e.downtimeSeconds < 0.02);
  });

  test("follows the recurrence V(i+1) = min(D*T(i), W) until V fits in downtime-limit", () => {
    const R = mbpsToMiBps(1000) * 0.94;
    const s = { memoryMiB: 1024, residentMiB: 1024, dirtyRateMiBps: 20 };
    let v = 1024;
    let t = 0.02;
    let rounds = 0;
    while (rounds === 0 || v > R * 0.3) {
      const T = Math.max(v / R, (rounds === 0 ? 1024 : v) / 280);
      t += T;
      v = Math.min(20 * T, 0.9 * 1024);
      rounds++;
    }
    const e = estimatePrecopy(s, 1000, cal);
    assert.equal(e.rounds, rounds);
    assert.ok(Math.abs(e.totalSeconds - (t + (v + 0.6) / R + 0.008)) < 1e-9);
  });

  test("non-convergence is detected when the dirty rate exceeds the link", () => {
    const e = estimatePrecopy({ memoryMiB: 2048, residentMiB: 2048, dirtyRateMiBps: 500 }, 1000, cal);
    assert.equal(e.converged, false);
    assert.equal(e.rounds, cal.precopy.maxRounds);
  });

  test("auto-converge throttles the guest until pre-copy converges", () => {
    const e = estimatePrecopy({ memoryMiB: 2048, residentMiB: 2048, dirtyRateMiBps: 500 }, 1000, cal, {
      autoConverge: true,
    });
    assert.equal(e.converged, true);
    assert.ok(e.throttlePercent >= 20);
  });

  test("monotonic in memory and in dirty rate (without auto-converge)", () => {
    fc.assert(
      fc.property(subject, link, fc.double({ min: 1, max: 4, noNaN: true }), (s0, mbps, k) => {
        const s = {
          memoryMiB: s0.memoryMiB,
          residentMiB: s0.memoryMiB * s0.residentFraction,
          dirtyRateMiBps: s0.dirtyRateMiBps,
        };
        const base = estimatePrecopy(s, mbps, cal);
        const bigger = estimatePrecopy(
          { ...s, memoryMiB: s.memoryMiB * k, residentMiB: s.residentMiB * k },
          mbps,
          cal,
        );
        const dirtier = estimatePrecopy({ ...s, dirtyRateMiBps: s.dirtyRateMiBps * k + 1 }, mbps, cal);
        for (const other of [bigger, dirtier]) {
          assert.ok(other.totalSeconds >= base.totalSeconds - 1e-9, "time must not fall");
          assert.ok(other.bytes >= base.bytes - 1e-3, "bytes must not fall");
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("post-copy model", () => {
  test("pause is only the device state, whatever the dirty rate", () => {
    const a = estimatePostcopy({ memoryMiB: 2048, residentMiB: 2048, dirtyRateMiBps: 0 }, 1000, cal);
    const b = estimatePostcopy({ memoryMiB: 2048, residentMiB: 2048, dirtyRateMiBps: 900 }, 1000, cal);
    assert.equal(a.downtimeSeconds, b.downtimeSeconds);
    assert.ok(b.totalSeconds > a.totalSeconds);
  });

  test("monotonic in memory and in dirty rate", () => {
    fc.assert(
      fc.property(subject, link, fc.double({ min: 1, max: 4, noNaN: true }), (s0, mbps, k) => {
        const s = {
          memoryMiB: s0.memoryMiB,
          residentMiB: s0.memoryMiB * s0.residentFraction,
          dirtyRateMiBps: s0.dirtyRateMiBps,
        };
        const base = estimatePostcopy(s, mbps, cal);
        assert.ok(
          estimatePostcopy({ ...s, memoryMiB: s.memoryMiB * k, residentMiB: s.residentMiB * k }, mbps, cal)
            .totalSeconds >=
            base.totalSeconds - 1e-9,
        );
        assert.ok(
          estimatePostcopy({ ...s, dirtyRateMiBps: s.dirtyRateMiBps * k + 1 }, mbps, cal).totalSeconds >=
            base.totalSeconds - 1e-9,
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe("instant handover model", () => {
  test("independent of the dirty rate, nearly independent of memory, nothing on the network", () => {
    const small = estimateInstant({ memoryMiB: 256, residentMiB: 256, dirtyRateMiBps: 0 }, cal);
    const big = estimateInstant({ memoryMiB: 2048, residentMiB: 2048, dirtyRateMiBps: 800 }, cal);
    assert.equal(big.crossesNetwork, false);
    assert.ok(big.totalSeconds >= small.totalSeconds);
    assert.ok(big.totalSeconds < 2 * small.totalSeconds);
    assert.ok(big.bytes < 2 * 1024 * 1024);
    const pre = estimatePrecopy({ memoryMiB: 768, residentMiB: 768, dirtyRateMiBps: 10 }, 1000, cal);
    assert.ok(
      pre.totalSeconds /
        estimateInstant({ memoryMiB: 768, residentMiB: 768, dirtyRateMiBps: 10 }, cal).totalSeconds >
        100,
    );
  });
});

describe("CloudSim model", () => {
  test("RAM / (bandwidth / 2): 870 MB over 1 Gbit/s takes 13.92 s", () => {
    assert.ok(
      Math.abs(
        estimateCloudSim({ memoryMiB: 870, residentMiB: 870, dirtyRateMiBps: 99 }, 1000).totalSeconds - 13.92,
      ) < 1e-9,
    );
  });
});

describe("mechanism choice", () => {
  test("route follows placement; unknown servers count as remote", () => {
    assert.equal(routeBetween({ hostVm: 1, server: 0 }, { hostVm: 1, server: 0 }), "same-host-vm");
    assert.equal(routeBetween({ hostVm: 1, server: 0 }, { hostVm: 2, server: 0 }), "same-server");
    assert.equal(routeBetween({ hostVm: 1, server: 0 }, { hostVm: 2, server: 1 }), "cross-server");
    assert.equal(
      routeBetween({ hostVm: 1, server: undefined }, { hostVm: 2, server: undefined }),
      "cross-server",
    );
  });

  test("same server -> instant; converging -> pre-copy; not converging -> post-copy", () => {
    const calm = { memoryMiB: 1024, residentMiB: 512, dirtyRateMiBps: 5 };
    const wild = { memoryMiB: 1024, residentMiB: 1024, dirtyRateMiBps: 400 };
    assert.equal(estimateMove("same-host-vm", calm, 1000, cal), undefined);
    assert.equal(estimateMove("same-server", calm, 1000, cal)?.mechanism, "instant");
    assert.equal(estimateMove("cross-server", calm, 1000, cal)?.mechanism, "precopy");
    assert.equal(estimateMove("cross-server", wild, 1000, cal)?.mechanism, "postcopy");
    const noPost = estimateMove("cross-server", wild, 1000, cal, {
      model: "qemu",
      postcopyFallback: false,
      instant: true,
    });
    assert.equal(noPost?.mechanism, "precopy");
    assert.ok((noPost?.throttlePercent ?? 0) > 0);
  });
});

describe("calibration file", () => {
  test("partial documents take defaults; bad fields are named", () => {
    const c = parseCalibration({ source: "t", instant: { setupSeconds: 0.5 } });
    assert.equal(c.instant.setupSeconds, 0.5);
    assert.equal(c.precopy.scanMiBps, cal.precopy.scanMiBps);
    assert.throws(
      () => parseCalibration({ instant: { setupSecs: 1 } }),
      /calibration\.instant: unknown field setupSecs/,
    );
    assert.throws(() => parseCalibration({ precopy: { scanMiBps: -1 } }), CalibrationError);
    assert.throws(
      () => parseCalibration({ precopy: { autoConverge: { initialPercent: "x" } } }),
      /autoConverge\.initialPercent/,
    );
  });
});

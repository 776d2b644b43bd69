// The lower bound on host-VM hours (lower-bound.ts): worked out by hand on tiny traces, and
// below what real runs use.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { lowerBound } from "./lower-bound.ts";
import { runScenario } from "./run.ts";
import { parseScenario } from "./scenario.ts";
import type { Trace } from "./trace.ts";

/** Host VMs of 4 x 1000 MIPS and 16 GiB (1 GiB of it the hypervisor's); guests of 2000 MIPS. */
const scenario = (guests: number, memoryMiB: number, durationSeconds = 1200) =>
  parseScenario(
    `
name: bound
durationSeconds: ${durationSeconds}
nesting: nested
servers:
  - { prefix: s, count: 2, cores: 16, mipsPerCore: 1000, memoryMiB: 262144, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 1000, memoryMiB: 16384, hypervisorOverheadMiB: 1024, pricePerHour: 1 }
hostVms: { type: hv, perServer: 1 }
guests:
  types: [{ name: a, vcpus: 2, mipsPerVcpu: 1000, memoryMiB: ${memoryMiB} }]
trace: { kind: synthetic, guests: ${guests} }
policy: { name: nestcloud }
`,
    "bound.yaml",
  );

/** `percents[k]`: every guest's CPU percent in interval k. */
function flatTrace(guests: number, percents: number[]): Trace {
  const data = new Uint8Array(guests * percents.length);
  for (let g = 0; g < guests; g++) data.set(percents, g * percents.length);
  return {
    source: "test",
    intervalSeconds: 300,
    samples: percents.length,
    names: Array.from({ length: guests }, (_, g) => `g${g}`),
    data,
  };
}

describe("lower bound on host-VM hours", () => {
  test("per interval, the host VMs the total CPU demand needs when CPU binds", () => {
    // Four 2000-MIPS guests: at 50 % they ask 4000 MIPS, one host VM; at 60 %, 4800: two;
    // at 100 %, 8000: two; at 0 %, memory still needs one (4 GiB of 15).
    const b = lowerBound(scenario(4, 1024), flatTrace(4, [50, 60, 100, 0]))!;
    assert.deepEqual([...b.hostVms], [1, 2, 2, 1]);
    assert.equal(b.hostVmHours, (6 * 300) / 3600);
  });

  test("memory binds when the guests are large and idle; the last sample holds to the end", () => {
    // Ten 4 GiB guests: 40 GiB in host VMs of 15 GiB is three, whatever the CPU (10 % = 2000 MIPS).
    const b = lowerBound(scenario(10, 4096, 1800), flatTrace(10, [10, 10]))!;
    assert.deepEqual([...b.hostVms], [3, 3, 3, 3, 3, 3]);
    assert.equal(b.hostVmHours, (3 * 1800) / 3600);
  });

  test("a partial last interval counts its share", () => {
    const b = lowerBound(scenario(4, 1024, 450), flatTrace(4, [50, 60]))!;
    assert.deepEqual([...b.hostVms], [1, 2]);
    assert.equal(b.hostVmHours, (300 + 2 * 150) / 3600);
  });

  test("runs report it, and use more host-VM hours than it; bare metal has none", () => {
    const sc = scenario(60, 1740, 6 * 3600);
    for (const policy of ["nestcloud", "lr-mmt-1.2", "lr-mmt-1.2+billing+hostvm+react"]) {
      const r = runScenario(sc, { policy }).result;
      assert.ok(r.lowerBoundHostVmHours !== null && r.lowerBoundHostVmHours > 0);
      assert.ok(
        r.hostVmHours >= r.lowerBoundHostVmHours,
        `${policy}: ${r.hostVmHours} vs ${r.lowerBoundHostVmHours}`,
      );
    }
    const bare = parseScenario(
      `
name: bare
durationSeconds: 1800
nesting: none
servers:
  - { prefix: g5, count: 4, cores: 2, mipsPerCore: 2660, memoryMiB: 4096, networkMbps: 1000, power: hp-ml110-g5 }
guests:
  types: [{ name: micro, mipsPerVcpu: 500, memoryMiB: 613 }]
trace: { kind: synthetic, guests: 6 }
policy: { name: lr-mmt-1.2 }
`,
      "bare.yaml",
    );
    assert.equal(runScenario(bare).result.lowerBoundHostVmHours, null);
  });
});

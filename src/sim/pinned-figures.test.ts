// Pins the figures of a small synthetic day under each set of simulation rules, to the last
// bit: a refactor of the engine, the accounts or the rules must leave them exactly as they
// are. A change that means to move them updates them here, in the same commit, saying why.
// Synthetic traces only, so this runs without ../shared.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runScenario } from "./run.ts";
import { parseScenario } from "./scenario.ts";

/** CloudSim's reference experiment in small: 40 G4 + 40 G5 hosts, 100 VMs, no nesting. */
const cloudsim = parseScenario(
  `
name: pinned-cloudsim
compat: cloudsim-3.0.3
seed: 1
nesting: none
servers:
  - { prefix: g4, count: 40, cores: 2, mipsPerCore: 1860, memoryMiB: 4096, networkMbps: 1000, power: hp-ml110-g4 }
  - { prefix: g5, count: 40, cores: 2, mipsPerCore: 2660, memoryMiB: 4096, networkMbps: 1000, power: hp-ml110-g5 }
guests:
  types:
    - { name: high-cpu, mipsPerVcpu: 2500, memoryMiB: 870 }
    - { name: extra-large, mipsPerVcpu: 2000, memoryMiB: 1740 }
    - { name: small, mipsPerVcpu: 1000, memoryMiB: 1740 }
    - { name: micro, mipsPerVcpu: 500, memoryMiB: 613 }
trace: { kind: synthetic, guests: 100, seed: 5 }
migration: { model: cloudsim }
policy: { name: lr-mmt-1.2 }
`,
  "pinned-cloudsim.yaml",
);

/** nestcloud's own rules: 300 guests in rented host VMs on 4 servers, billed per hour. */
const nested = parseScenario(
  `
name: pinned-nested
seed: 3
nesting: nested
servers:
  - { prefix: s, count: 4, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, hypervisorOverheadMiB: 1024, pricePerHour: 0.4, provisionSeconds: 120, billingIncrementSeconds: 3600 }
hostVms: { type: hv, perServer: 2 }
guests:
  tenants: 4
  antiAffinityPairsEvery: 5
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
    - { name: b, mipsPerVcpu: 1000, memoryMiB: 1740, dirtyRateMiBps: 20 }
trace: { kind: synthetic, guests: 300 }
migration: { model: qemu, maxConcurrent: 4, maxPerHostVm: 2 }
policy: { name: nestcloud }
`,
  "pinned-nested.yaml",
);

interface Pinned {
  readonly energyKWh: number;
  readonly migrations: number;
  readonly instant: number;
  readonly slatah: number;
  readonly pdm: number;
  readonly hostVmHours: number;
  readonly cost: number;
  readonly acquisitions: number;
  readonly releases: number;
}

const cases: readonly { name: string; scenario: typeof nested; policy: string; pinned: Pinned }[] = [
  {
    name: "cloudsim rules, lr-mmt-1.2",
    scenario: cloudsim,
    policy: "lr-mmt-1.2",
    pinned: {
      energyKWh: 4.690171248212873,
      migrations: 522,
      instant: 0,
      slatah: 0.03162666449412459,
      pdm: 0.00039052564740316197,
      hostVmHours: 43.96964888888894,
      cost: 0,
      acquisitions: 0,
      releases: 0,
    },
  },
  {
    name: "cloudsim rules, thr-mmt-0.8",
    scenario: cloudsim,
    policy: "thr-mmt-0.8",
    pinned: {
      energyKWh: 4.836704562314781,
      migrations: 704,
      instant: 0,
      slatah: 0.0333868255987529,
      pdm: 0.0005848670903390795,
      hostVmHours: 45.53652444444443,
      cost: 0,
      acquisitions: 0,
      releases: 0,
    },
  },
  {
    name: "nested rules, nestcloud",
    scenario: nested,
    policy: "nestcloud",
    // memoryBalance 2 (issue 11): places and moves keeping memory in step with CPU; on this
    // small day memory never binds and it costs 0.9 % (was 146.08 h, 174 migrations).
    pinned: {
      energyKWh: 5.733652666761563,
      migrations: 227,
      instant: 194,
      slatah: 0.0019228466621633463,
      pdm: 1.5961720072225933e-6,
      hostVmHours: 147.33333333333334,
      cost: 58.933333333333344,
      acquisitions: 11,
      releases: 14,
    },
  },
  {
    name: "nested rules, lr-mmt-1.2",
    scenario: nested,
    policy: "lr-mmt-1.2",
    // Moves into a host VM start the moment it runs (issue 11): plain lr-mmt-1.2 returns
    // every empty host VM at once and rents again, so its moves into fresh host VMs now go
    // ahead instead of being superseded by the next round (was 257.58 h, 1894 migrations).
    pinned: {
      energyKWh: 9.640925349487544,
      migrations: 2484,
      instant: 1038,
      slatah: 0.020274204536975638,
      pdm: 3.7946977998652315e-6,
      hostVmHours: 301.9166666666667,
      cost: 120.76666666666674,
      acquisitions: 178,
      releases: 179,
    },
  },
];

describe("pinned figures of a synthetic day", () => {
  for (const c of cases) {
    test(c.name, () => {
      const { result: r } = runScenario(c.scenario, { policy: c.policy });
      const got: Pinned = {
        energyKWh: r.energyKWh,
        migrations: r.migrations.total,
        instant: r.migrations.instant,
        slatah: r.slatah,
        pdm: r.pdm,
        hostVmHours: r.hostVmHours,
        cost: r.cost,
        acquisitions: r.hostVmAcquisitions,
        releases: r.hostVmReleases,
      };
      if (process.env.PRINT_PINNED) console.log(c.name, JSON.stringify(got));
      assert.deepEqual(got, c.pinned);
    });
  }
});

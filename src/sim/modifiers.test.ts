// What each modifier of the reference policies (+billing, +hostvm, +react) does over a small
// synthetic day: 300 guests in rented host VMs on 4 servers, against the plain policy on the
// same day. The assertions compare runs of this day, so they hold for what the rules do, not
// for pinned numbers (those are in pinned-figures.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { NESTCLOUD_DEFAULTS, type PlannerInput, type Policy, PolicyError } from "../planner/index.ts";
import { buildCloud } from "./build.ts";
import { Simulation } from "./engine.ts";
import { createPolicy } from "./policies.ts";
import type { SimulationResult } from "./results.ts";
import { loadCalibration, loadTrace, policyParamsFor, runScenario } from "./run.ts";
import { parseScenario } from "./scenario.ts";

/** The pinned nested day's cloud, billed per started hour or per second (60 s minimum). */
const day = (billingIncrementSeconds: number) =>
  parseScenario(
    `
name: modifiers-${billingIncrementSeconds}
seed: 3
nesting: nested
servers:
  - { prefix: s, count: 4, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, hypervisorOverheadMiB: 1024, pricePerHour: 0.4, provisionSeconds: 120, billingIncrementSeconds: ${billingIncrementSeconds}, minimumBillingSeconds: 60 }
hostVms: { type: hv, perServer: 2 }
guests:
  tenants: 4
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
    - { name: b, mipsPerVcpu: 1000, memoryMiB: 1740, dirtyRateMiBps: 20 }
trace: { kind: synthetic, guests: 300 }
migration: { model: qemu, maxConcurrent: 4, maxPerHostVm: 2 }
policy: { name: nestcloud }
`,
    `modifiers-${billingIncrementSeconds}.yaml`,
  );
const hourly = day(3600);
const perSecond = day(1);

const runs = new Map<string, SimulationResult>();
function run(scenario: typeof hourly, policy: string): SimulationResult {
  const key = `${scenario.name}/${policy}`;
  let r = runs.get(key);
  if (!r) runs.set(key, (r = runScenario(scenario, { policy }).result));
  return r;
}

/** Mean number of host VMs holding guests at the rounds. */
const meanActive = (r: SimulationResult) =>
  r.series.reduce((s, p) => s + p.activeHostVms, 0) / Math.max(1, r.series.length);

describe("+billing over a day billed per started hour", () => {
  for (const base of ["lr-mmt-1.2", "thr-mmt-0.8"]) {
    test(`${base}+billing re-acquires less and pays fewer host-VM hours than ${base}`, () => {
      const plain = run(hourly, base);
      const billing = run(hourly, `${base}+billing`);
      assert.ok(
        billing.hostVmAcquisitions < plain.hostVmAcquisitions / 2,
        `acquisitions ${billing.hostVmAcquisitions} vs ${plain.hostVmAcquisitions}`,
      );
      assert.ok(
        billing.hostVmHours < plain.hostVmHours,
        `hours ${billing.hostVmHours} vs ${plain.hostVmHours}`,
      );
      // The plain policy gives back host VMs with paid time left, and pays again for new ones.
      const rounding = (r: SimulationResult) =>
        r.rentals.types.reduce((s, t) => s + t.billedHours - t.rentedHours, 0);
      assert.ok(
        rounding(billing) < rounding(plain),
        `paid but unused ${rounding(billing)} vs ${rounding(plain)}`,
      );
    });
  }
});

describe("+hostvm over a day billed per second", () => {
  for (const base of ["lr-mmt-1.2", "thr-mmt-0.8"]) {
    test(`${base}+hostvm packs guests into fewer host VMs than ${base}`, () => {
      const plain = run(perSecond, base);
      const hostvm = run(perSecond, `${base}+hostvm`);
      assert.ok(meanActive(hostvm) < meanActive(plain), `mean ${meanActive(hostvm)} vs ${meanActive(plain)}`);
      assert.ok(
        hostvm.hostVmHours < plain.hostVmHours,
        `hours ${hostvm.hostVmHours} vs ${plain.hostVmHours}`,
      );
      assert.ok(
        hostvm.hostVmAcquisitions < plain.hostVmAcquisitions,
        `acquisitions ${hostvm.hostVmAcquisitions} vs ${plain.hostVmAcquisitions}`,
      );
    });
  }
});

describe("+react: nestcloud's between-round checks", () => {
  test("asked between rounds only, every reactIntervalSeconds (nestcloud's), moving guests within a server", () => {
    const sc = perSecond;
    const trace = loadTrace(sc, undefined, sc.seed);
    const built = buildCloud(sc, trace);
    const inner = createPolicy("lr-mmt-1.2+react", {}, { acquireType: built.acquireType });
    const asked: number[] = [];
    let reactive = 0;
    const policy: Policy = {
      ...inner,
      react(input: PlannerInput) {
        asked.push(input.now);
        const plan = inner.react!(input);
        for (const a of plan.actions) {
          assert.equal(a.kind === "migrate" && a.route, "same-server");
          reactive++;
        }
        return plan;
      },
    };
    const sim = new Simulation({
      scenario: sc,
      trace,
      built,
      policy,
      calibration: loadCalibration(sc),
      seed: 1,
    });
    sim.run();
    const every = NESTCLOUD_DEFAULTS.reactIntervalSeconds;
    assert.equal(inner.reactIntervalSeconds, every);
    assert.ok(asked.length > 0, "some host VM ran hot between rounds");
    for (const t of asked) {
      assert.equal(t % every, 0, `asked at ${t}`);
      assert.notEqual(t % sc.intervalSeconds, 0, `asked at ${t}, a round`);
    }
    assert.ok(reactive > 0, "and it moved guests");
    assert.equal(sim.timing.reactMs.length, asked.length);
  });

  for (const base of ["lr-mmt-1.2", "thr-mmt-0.8"]) {
    test(`${base}+react: reactive moves, all instant, and less time overloaded than ${base}`, () => {
      const plain = run(perSecond, base);
      const react = run(perSecond, `${base}+react`);
      const r = react.migrationsByReason.reactive;
      assert.ok(r && r.instant > 0 && r.precopy === 0 && r.postcopy === 0, JSON.stringify(r));
      assert.equal(plain.migrationsByReason.reactive, undefined);
      assert.ok(react.slatah < plain.slatah, `SLATAH ${react.slatah} vs ${plain.slatah}`);
    });
  }
});

test("all three together: fewer host-VM hours and less SLA violation than the plain policy", () => {
  for (const sc of [hourly, perSecond]) {
    const plain = run(sc, "lr-mmt-1.2");
    const all = run(sc, "lr-mmt-1.2+billing+hostvm+react");
    assert.ok(
      all.hostVmHours < plain.hostVmHours,
      `${sc.name}: hours ${all.hostVmHours} vs ${plain.hostVmHours}`,
    );
    assert.ok(all.slatah < plain.slatah, `${sc.name}: SLATAH ${all.slatah} vs ${plain.slatah}`);
  }
});

describe("parameters of any policy, from the scenario and from the run", () => {
  const text = `
name: params
durationSeconds: 1800
nesting: nested
servers:
  - { prefix: s, count: 2, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, pricePerHour: 0.4 }
hostVms: { type: hv, perServer: 2 }
guests:
  types: [{ name: a, mipsPerVcpu: 1000, memoryMiB: 1740 }]
trace: { kind: synthetic, guests: 40 }
policy: { name: nestcloud, params: { window: 6 } }
policyParams:
  lr-mmt-1.2+billing: { spareHostVms: 3, drainBeforeBillingSeconds: 300 }
  nestcloud: { window: 3, quantile: 0.9 }
`;
  const sc = parseScenario(text, "params.yaml");

  test("the scenario's policyParams, then its own policy's params, then the run's", () => {
    assert.deepEqual(policyParamsFor(sc, "lr-mmt-1.2+billing"), {
      spareHostVms: 3,
      drainBeforeBillingSeconds: 300,
    });
    assert.deepEqual(policyParamsFor(sc, "nestcloud"), { window: 6, quantile: 0.9 });
    assert.deepEqual(policyParamsFor(sc, "nestcloud", { nestcloud: { window: 2 } }), {
      window: 2,
      quantile: 0.9,
    });
    assert.deepEqual(policyParamsFor(sc, "lr-mmt-1.2"), {}, "by the exact name run");
  });

  test("a run uses them; a bad one is a user error naming it", () => {
    const r = runScenario(sc, { policy: "lr-mmt-1.2+billing" }).result;
    assert.match(r.rentals.rule, /plus 3 spare/);
    const more = runScenario(sc, {
      policy: "lr-mmt-1.2+billing",
      policyParams: { "lr-mmt-1.2+billing": { spareHostVms: 5 } },
    }).result;
    assert.match(more.rentals.rule, /plus 5 spare/);
    assert.throws(
      () =>
        runScenario(sc, {
          policy: "lr-mmt-1.2+billing",
          policyParams: { "lr-mmt-1.2+billing": { spare: 1 } },
        }),
      (e: Error) =>
        e instanceof PolicyError &&
        /policy\.params\.spare: unknown parameter of lr-mmt-1\.2\+billing/.test(e.message),
    );
  });
});

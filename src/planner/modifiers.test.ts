// The reference policies' modifiers (+billing, +hostvm, +react) on small hand-made clouds:
// names and parameters, and what each changes in one round (the day-long effects are in
// src/sim/modifiers.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Cloud, type HostVmType } from "../model/index.ts";
import { NESTCLOUD_DEFAULTS } from "./nestcloud.ts";
import type { ActionPlan } from "./plan.ts";
import { createPolicy, MODIFIER_PARAMS, REFERENCE_MODIFIERS } from "./policy.ts";
import { PolicyError } from "./policy-base.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

/** Watts that climb faster past half load: PABFD prefers an idle server to a busy one. */
const RISING_POWER = { watts: [100, 101, 102, 103, 104, 105, 110, 120, 130, 140, 150] };

const HOURLY: HostVmType = { ...HOST_TYPE, billingIncrementSeconds: 3600 };

function refused(name: string, params: Record<string, number> = {}): string {
  try {
    createPolicy(name, params, { acquireType: HOST_TYPE });
  } catch (e) {
    assert.ok(e instanceof PolicyError, `expected a PolicyError, got ${e}`);
    return e.message;
  }
  assert.fail(`${name} ${JSON.stringify(params)} was accepted`);
}

const releases = (plan: ActionPlan) =>
  plan.actions.flatMap((a) => (a.kind === "release-host-vm" ? [a.hostVm] : []));
const moves = (plan: ActionPlan) => plan.actions.filter((a) => a.kind === "migrate");

describe("modifier names and parameters", () => {
  test("modifiers combine in any order; only +react adds a between-round check, at nestcloud's interval", () => {
    for (const name of ["lr-mmt-1.2+billing+hostvm+react", "thr-mmt-0.8+react+hostvm"]) {
      const p = createPolicy(name, {}, { acquireType: HOST_TYPE });
      assert.equal(p.name, name);
      assert.equal(typeof p.react, "function");
      assert.equal(p.reactIntervalSeconds, NESTCLOUD_DEFAULTS.reactIntervalSeconds);
      assert.equal(p.reactWhenAbove, NESTCLOUD_DEFAULTS.overloadUtilization);
    }
    for (const name of ["lr-mmt-1.2", "lr-mmt-1.2+billing+hostvm"]) {
      const p = createPolicy(name, {}, { acquireType: HOST_TYPE });
      assert.equal(p.react, undefined);
      assert.equal(p.reactIntervalSeconds, undefined);
    }
    const slow = createPolicy("mad-mmt-2.5+react", { reactIntervalSeconds: 60 }, { acquireType: HOST_TYPE });
    assert.equal(slow.reactIntervalSeconds, 60);
  });

  test("the rental rule says what the modifiers change", () => {
    const plain = createPolicy("lr-mmt-1.2", {}, { acquireType: HOST_TYPE }).rentalRule!;
    const all = createPolicy("lr-mmt-1.2+billing+hostvm+react", {}, { acquireType: HOST_TYPE }).rentalRule!;
    assert.match(plain, /PABFD.*as soon as it is empty/);
    assert.match(all, /best fit over host VMs/);
    assert.match(all, /near the end of its paid increment/);
    assert.match(all, /every 30 s/);
  });

  test("an unknown or repeated modifier is refused, naming the allowed ones", () => {
    assert.match(
      refused("lr-mmt-1.2+biling"),
      /unknown modifier \+biling \(known: \+billing, \+hostvm, \+react\)$/,
    );
    assert.match(refused("lr-mmt-1.2+"), /unknown modifier \(empty\)/);
    assert.match(refused("lr-mmt-1.2+react+react"), /modifier \+react given twice/);
    assert.match(refused("nestcloud+billing"), /nestcloud takes no modifiers/);
    assert.match(refused("dvfs+hostvm"), /dvfs takes no modifiers/);
    assert.match(
      refused("best-fit+hostvm"),
      /unknown policy best-fit\+hostvm .*modifiers \+billing, \+hostvm, \+react/,
    );
  });

  test("parameters: each modifier's, with nestcloud's defaults; others refused with the allowed ones", () => {
    assert.deepEqual(Object.keys(MODIFIER_PARAMS).sort(), [...REFERENCE_MODIFIERS].sort());
    assert.equal(
      MODIFIER_PARAMS.billing.drainBeforeBillingSeconds,
      NESTCLOUD_DEFAULTS.drainBeforeBillingSeconds,
    );
    assert.equal(MODIFIER_PARAMS.billing.spareHostVms, NESTCLOUD_DEFAULTS.spareHostVms);
    assert.equal(MODIFIER_PARAMS.react.reactIntervalSeconds, NESTCLOUD_DEFAULTS.reactIntervalSeconds);
    assert.equal(MODIFIER_PARAMS.react.reactAcrossServers, NESTCLOUD_DEFAULTS.reflexAcrossServers);
    // Offered, but off: it costs the +hostvm fit hours (docs/benchmarks.md).
    assert.equal(MODIFIER_PARAMS.hostvm.memoryBalance, 0);
    assert.match(
      refused("lr-mmt-1.2", { spareHostVms: 1 }),
      /^policy\.params\.spareHostVms: unknown parameter of lr-mmt-1\.2 \(known: none; \+billing adds drainBeforeBillingSeconds, spareHostVms; \+hostvm adds memoryBalance; \+react adds reactIntervalSeconds, reactOverloadUtilization, reactTargetUtilization, reactAcrossServers; the detector's parameter is part of the name\)$/,
    );
    assert.match(
      refused("lr-mmt-1.2+billing", { reactIntervalSeconds: 10 }),
      /unknown parameter of lr-mmt-1\.2\+billing \(known: drainBeforeBillingSeconds, spareHostVms; \+hostvm adds memoryBalance; \+react adds/,
    );
    assert.match(refused("lr-mmt-1.2+billing", { spareHostVms: -1 }), /expected a non-negative number/);
    assert.match(refused("lr-mmt-1.2+react", { reactIntervalSeconds: 0 }), /must be > 0 with \+react/);
    assert.match(
      refused("lr-mmt-1.2+react", { reactTargetUtilization: 0.99, reactOverloadUtilization: 0.9 }),
      /reactTargetUtilization <= reactOverloadUtilization/,
    );
    assert.match(refused("dvfs", { spareHostVms: 1 }), /unknown parameter of dvfs \(known: none\)/);
    // Accepted: each modifier's own parameters.
    createPolicy("lr-mmt-1.2+billing+react", { spareHostVms: 2, reactIntervalSeconds: 10 }, {});
  });
});

/** One server, host VMs h0 (busy) and h1 (empty, or lightly loaded), all acquired at t = 0. */
function twoHostVms(type: HostVmType, h1Guests: number) {
  const cloud = new Cloud();
  cloud.addServer(server("s0", 4));
  cloud.addHostVm("s0/h0", type, 0, "running", 0);
  cloud.addHostVm("s0/h1", type, 0, "running", 0);
  const histories: number[][] = [];
  for (let i = 0; i < 2 + h1Guests; i++) {
    const g = cloud.addGuest(guest(`g${i}`, 1000, 1024));
    cloud.place(g, i < 2 ? 0 : 1);
    histories.push(Array(12).fill(0.2));
  }
  return { cloud, load: withHistory(cloud, histories) };
}

describe("+billing: nestcloud's renting rules", () => {
  test("an empty host VM is kept while its paid hour runs past the next round, released when it ends", () => {
    const { cloud, load } = twoHostVms(HOURLY, 0);
    const plain = createPolicy("lr-mmt-1.2", {}, { acquireType: HOURLY });
    const billing = createPolicy("lr-mmt-1.2+billing", {}, { acquireType: HOURLY });
    const early = plannerInput(cloud, load, { now: 600 });
    assert.deepEqual(releases(plain.plan(early)), [1], "CloudSim's rule: released as soon as it is empty");
    assert.deepEqual(releases(billing.plan(early)), [], "2,400 s still paid for: kept");
    const late = plannerInput(cloud, load, { now: 3600 - 200 });
    assert.deepEqual(releases(billing.plan(late)), [1], "its hour ends before the next round: released");
    // A spare is kept whatever its billing.
    const spare = createPolicy("lr-mmt-1.2+billing", { spareHostVms: 1 }, { acquireType: HOURLY });
    assert.deepEqual(releases(spare.plan(late)), []);
  });

  test("an under-used host VM is emptied only near the end of its paid hour", () => {
    const { cloud, load } = twoHostVms(HOURLY, 1);
    const plain = createPolicy("lr-mmt-1.2", {}, { acquireType: HOURLY });
    const billing = createPolicy("lr-mmt-1.2+billing", {}, { acquireType: HOURLY });
    const early = plannerInput(cloud, load, { now: 1200 });
    assert.ok(moves(plain.plan(early)).length > 0, "CloudSim's rule: drains it at once");
    assert.equal(moves(billing.plan(early)).length, 0, "40 min still paid for: nothing to save yet");
    const due = plannerInput(cloud, load, { now: 3600 - NESTCLOUD_DEFAULTS.drainBeforeBillingSeconds });
    const plan = billing.plan(due);
    assert.ok(moves(plan).length > 0, "within drainBeforeBillingSeconds of the boundary: drained");
    assert.deepEqual(releases(plan), [], "...and kept while its paid time runs past the next round");
    const last = billing.plan(plannerInput(cloud, load, { now: 3600 - 200 }));
    assert.ok(moves(last).length > 0);
    assert.equal(releases(last).length, 1, "its last round of paid time: drained and given back");
  });

  test("new host VMs go to the server that carries ours, not wherever power is cheapest", () => {
    // Server 0 holds our two host VMs (full slots but one); servers 1-3 are empty.
    const cloud = new Cloud();
    for (let s = 0; s < 4; s++) cloud.addServer({ ...server(`s${s}`, 3), power: RISING_POWER });
    cloud.addHostVm("s0/h0", HOST_TYPE, 0, "running", 0);
    cloud.addHostVm("s0/h1", HOST_TYPE, 0, "running", 0);
    const histories: number[][] = [];
    // Four 1000-MIPS guests per host VM at 100 %: both host VMs overloaded.
    for (let i = 0; i < 8; i++) {
      cloud.place(cloud.addGuest(guest(`g${i}`, 1000, 1024)), i % 2);
      histories.push(Array(12).fill(1));
    }
    // Load has just risen: measured at a quarter of today's demand, so server 0's power grows most.
    const input = plannerInput(cloud, withHistory(cloud, histories), {
      measuredMips: Float64Array.of(1000, 1000),
    });
    const plainPlan = createPolicy("thr-mmt-0.8", {}, { acquireType: HOST_TYPE }).plan(input);
    const plainServers = plainPlan.actions.flatMap((a) => (a.kind === "acquire-host-vm" ? [a.server] : []));
    assert.ok(plainServers.length > 0 && plainServers[0] !== 0, "PABFD: on an idle server (less power)");
    for (const name of ["thr-mmt-0.8+billing", "thr-mmt-0.8+billing+hostvm"]) {
      const plan = createPolicy(name, {}, { acquireType: HOST_TYPE }).plan(input);
      const acquired = plan.actions.flatMap((a) => (a.kind === "acquire-host-vm" ? [a.server] : []));
      assert.ok(acquired.length > 0, `${name} acquires`);
      assert.equal(acquired[0], 0, `${name}: first on the server that has ours and a free slot`);
    }
  });
});

describe("+hostvm: best fit over host VMs", () => {
  /** Four servers with two running host VMs each, nothing measured yet: a first placement. */
  function emptyCloud(guests: number) {
    const cloud = new Cloud();
    for (let s = 0; s < 4; s++) {
      cloud.addServer(server(`s${s}`, 4));
      for (let k = 0; k < 2; k++) cloud.addHostVm(`s${s}/h${k}`, HOST_TYPE, s, "running", 0);
    }
    const histories: number[][] = [];
    for (let i = 0; i < guests; i++) {
      cloud.addGuest(guest(`g${i}`, 500, 2048));
      histories.push([0.3]);
    }
    return { cloud, load: withHistory(cloud, histories) };
  }

  test("places new guests in fewer host VMs than PABFD, filling running ones before acquiring", () => {
    const { cloud, load } = emptyCloud(12);
    const input = plannerInput(cloud, load, { now: 0, measuredMips: new Float64Array(8) });
    const all = Array.from({ length: 12 }, (_, g) => g);
    const used = (name: string) => {
      const p = createPolicy(name, {}, { acquireType: HOST_TYPE }).placeNew(input, all);
      assert.equal(p.unplaced.length, 0);
      assert.equal(p.acquisitions.length, 0, `${name}: eight running host VMs are room enough`);
      return new Set(p.assignments.map((a) => (a.to.kind === "existing" ? a.to.hostVm : -1))).size;
    };
    const pabfd = used("lr-mmt-1.2");
    const hostvm = used("lr-mmt-1.2+hostvm");
    // 12 x 2 GiB in 16 GiB host VMs: two hold them all.
    assert.equal(hostvm, 2);
    assert.ok(hostvm < pabfd, `best fit ${hostvm} host VMs vs PABFD ${pabfd}`);
  });
});

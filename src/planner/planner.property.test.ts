// Property tests: whatever the cloud and its load, every policy's plan is a valid DAG with no
// guest in two concurrent moves, and applying it in order never breaks a guarantee
// (memory, vCPUs, host-VM slots) or an anti-affinity rule.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Cloud, findViolations, UNPLACED } from "../model/index.ts";
import { NESTCLOUD_DEFAULTS, nestcloudPolicy } from "./nestcloud.ts";
import { type ActionPlan, validatePlan } from "./plan.ts";
import { referencePolicy } from "./policy.ts";
import type { Policy } from "./policy-base.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

const scenarioOf = (hot: boolean) =>
  fc.record({
    servers: fc.integer({ min: 1, max: 4 }),
    slots: hot ? fc.constant(4) : fc.integer({ min: 1, max: 4 }),
    hostVmsPerServer: hot ? fc.integer({ min: 2, max: 4 }) : fc.integer({ min: 1, max: 2 }),
    guests: fc.array(
      fc.record({
        mips: fc.integer({ min: 100, max: 3000 }),
        memoryMiB: fc.integer({ min: 256, max: 6144 }),
        history: fc.array(fc.double({ min: hot ? 0.5 : 0, max: 1, noNaN: true }), {
          minLength: 0,
          maxLength: 16,
        }),
        antiAffinity: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
        migrating: fc.boolean(),
      }),
      { minLength: 1, maxLength: 40 },
    ),
  });
const scenario = scenarioOf(false);
/** Lightly loaded clouds with several host VMs per server: consolidation territory. */
const coolScenario = fc.record({
  servers: fc.integer({ min: 1, max: 3 }),
  slots: fc.constant(4),
  hostVmsPerServer: fc.integer({ min: 2, max: 4 }),
  guests: fc.array(
    fc.record({
      mips: fc.integer({ min: 100, max: 1500 }),
      memoryMiB: fc.integer({ min: 256, max: 4096 }),
      history: fc.array(fc.double({ min: 0, max: 0.3, noNaN: true }), { minLength: 0, maxLength: 16 }),
      antiAffinity: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      migrating: fc.constant(false),
    }),
    { minLength: 1, maxLength: 12 },
  ),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

/** `spread`: guests dealt round-robin over the host VMs (else first fit). */
function build(s: Scenario, spread = false) {
  const cloud = new Cloud();
  for (let i = 0; i < s.servers; i++) {
    cloud.addServer(server(`s${i}`, s.slots));
    for (let k = 0; k < Math.min(s.hostVmsPerServer, s.slots); k++)
      cloud.addHostVm(`s${i}/h${k}`, HOST_TYPE, i, "running", 0);
  }
  const histories: number[][] = [];
  const migrating: number[] = [];
  s.guests.forEach((g, i) => {
    const idx = cloud.addGuest(
      guest(
        `g${i}`,
        g.mips,
        g.memoryMiB,
        g.antiAffinity === undefined ? {} : { antiAffinityGroup: `aa${g.antiAffinity}` },
      ),
    );
    histories.push(g.history);
    // First fit that keeps every rule; guests that fit nowhere stay unplaced.
    for (let k = 0; k < cloud.hostVms.length; k++) {
      const h = spread ? (i + k) % cloud.hostVms.length : k;
      if (cloud.placementProblem(idx, h)) continue;
      cloud.place(idx, h);
      if (findViolations(cloud).length > 0) cloud.assign(idx, UNPLACED);
      else break;
    }
    if (g.migrating && cloud.guestHost[idx] !== UNPLACED) migrating.push(idx);
  });
  const load = withHistory(cloud, histories);
  const input = plannerInput(cloud, load);
  for (const g of migrating) input.inMigration[g] = 1;
  return { cloud, input };
}

/** Applies a plan in id order (dependencies always point backwards) to the cloud. */
function apply(cloud: Cloud, plan: ActionPlan): void {
  const created = new Map<number, number>();
  for (const a of plan.actions) {
    if (a.kind === "acquire-host-vm") {
      assert.ok(a.server !== undefined);
      created.set(a.id, cloud.addHostVm(`new${a.id}`, HOST_TYPE, a.server, "running", 0));
    } else if (a.kind === "migrate") {
      const to = a.to.kind === "existing" ? a.to.hostVm : created.get(a.to.action)!;
      assert.equal(cloud.guestHost[a.guest], a.from, `move ${a.id} starts where the guest is`);
      cloud.place(a.guest, to); // throws ModelError if capacity would break
    } else if (a.kind === "release-host-vm") {
      cloud.transition(a.hostVm, "released", 0); // throws if guests remain
    }
  }
}

const policies: Array<[string, () => Policy]> = [
  ["nestcloud", () => nestcloudPolicy(NESTCLOUD_DEFAULTS, HOST_TYPE)],
  ["lr-mmt-1.2", () => referencePolicy("lr-mmt-1.2", { acquireType: HOST_TYPE })],
  ["thr-mmt-0.8", () => referencePolicy("thr-mmt-0.8", { acquireType: HOST_TYPE })],
  ["mad-mc-2.5", () => referencePolicy("mad-mc-2.5", { acquireType: HOST_TYPE })],
  ["iqr-rs-1.5", () => referencePolicy("iqr-rs-1.5", { acquireType: HOST_TYPE })],
  [
    "lr-mmt-1.2+billing+hostvm+react",
    () => referencePolicy("lr-mmt-1.2+billing+hostvm+react", { acquireType: HOST_TYPE }),
  ],
  ["thr-mmt-0.8+hostvm", () => referencePolicy("thr-mmt-0.8+hostvm", { acquireType: HOST_TYPE })],
  [
    "mad-mmt-2.5+billing",
    () => referencePolicy("mad-mmt-2.5+billing", { acquireType: HOST_TYPE }, { spareHostVms: 1 }),
  ],
];

describe("planner invariants (property-based)", () => {
  for (const [name, make] of policies) {
    test(`${name}: plans are valid DAGs and keep every guarantee`, () => {
      let moves = 0;
      fc.assert(
        // Packed (first fit) and spread (round-robin) starting placements.
        fc.property(scenario, fc.boolean(), (s, spread) => {
          const { cloud, input } = build(s, spread);
          assert.deepEqual(findViolations(cloud), [], "starting cloud is valid");
          const plan = make().plan(input);
          validatePlan(plan);
          for (const a of plan.actions) {
            if (a.kind === "migrate")
              assert.equal(input.inMigration[a.guest], 0, "a guest in migration is not moved again");
          }
          apply(cloud, plan);
          assert.deepEqual(findViolations(cloud), []);
          moves += plan.actions.filter((a) => a.kind === "migrate").length;
        }),
        { numRuns: 150, seed: 20261126 },
      );
      assert.ok(moves > 20, `the generated clouds must make ${name} move guests (moved ${moves})`);
    });
  }

  test("nestcloud never drains a host VM into an empty one (that would save nothing)", () => {
    let drains = 0;
    fc.assert(
      fc.property(coolScenario, (s) => {
        const { cloud, input } = build(s, true);
        const heldGuests = cloud.hostGuests.map((gs) => gs.length);
        const plan = nestcloudPolicy({ ...NESTCLOUD_DEFAULTS, spareHostVms: 0 }, HOST_TYPE).plan(input);
        for (const a of plan.actions) {
          if (a.kind !== "migrate" || a.reason !== "underload") continue;
          drains++;
          assert.equal(a.to.kind, "existing", "a drain goes into a running host VM");
          if (a.to.kind === "existing")
            assert.ok(
              heldGuests[a.to.hostVm] > 0,
              `guest ${a.guest} drained into empty host VM ${a.to.hostVm}`,
            );
        }
      }),
      { numRuns: 300, seed: 11 },
    );
    assert.ok(drains > 10, `the generated clouds must make nestcloud drain (drained ${drains})`);
  });

  for (const [name, make] of [
    ["nestcloud", () => nestcloudPolicy(NESTCLOUD_DEFAULTS, HOST_TYPE)],
    ["lr-mmt-1.2+react", () => referencePolicy("lr-mmt-1.2+react", { acquireType: HOST_TYPE })],
  ] as const)
    test(`${name}: the between-round reflex only moves guests within a physical server`, () => {
      let moves = 0;
      fc.assert(
        fc.property(scenarioOf(true), (s) => {
          const { cloud, input } = build(s);
          const plan = make().react!(input);
          validatePlan(plan);
          for (const a of plan.actions) {
            assert.equal(a.kind, "migrate");
            if (a.kind === "migrate") assert.equal(a.route, "same-server");
          }
          apply(cloud, plan);
          assert.deepEqual(findViolations(cloud), []);
          moves += plan.actions.length;
        }),
        { numRuns: 150, seed: 7 },
      );
      assert.ok(moves > 5, `the generated clouds must trigger relief (moved ${moves})`);
    });
});

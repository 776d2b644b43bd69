// A move asked for through the API is planned by the planner: its target and mechanism, or a
// typed refusal naming why.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Cloud } from "../model/index.ts";
import { validatePlan } from "./plan.ts";
import { planMove } from "./requested.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

/** Two servers; s0 carries h0 (the guest's) and h1, s1 carries h2 with the most free memory. */
function world() {
  const cloud = new Cloud();
  const s0 = cloud.addServer(server("s0"));
  const s1 = cloud.addServer(server("s1"));
  const h0 = cloud.addHostVm("h0", HOST_TYPE, s0, "running", 0);
  const h1 = cloud.addHostVm("h1", HOST_TYPE, s0, "running", 0);
  const h2 = cloud.addHostVm("h2", HOST_TYPE, s1, "running", 0);
  const g = cloud.addGuest(guest("g", 1000, 2048));
  const filler = cloud.addGuest(guest("filler", 1000, 8192));
  cloud.assign(g, h0);
  cloud.assign(filler, h1);
  const load = withHistory(cloud, [[0.5], [0.5]]);
  return { cloud, load, g, h0, h1, h2 };
}

test("without a target: a host VM on the same server first, moved instantly", () => {
  const { cloud, load, g, h1 } = world();
  const d = planMove(plannerInput(cloud, load), g, { mechanism: "auto" });
  assert.ok(d.ok);
  validatePlan(d.plan);
  const [a] = d.plan.actions;
  assert.equal(a.kind, "migrate");
  if (a.kind !== "migrate") return;
  assert.deepEqual(a.to, { kind: "existing", hostVm: h1 });
  assert.equal(a.route, "same-server");
  assert.equal(a.estimate.mechanism, "instant");
  assert.equal(a.reason, "requested");
});

test("the estimate uses the input's resident memory and dirty rate", () => {
  const { cloud, load, g, h2 } = world();
  const small = planMove(plannerInput(cloud, load), g, { to: h2, mechanism: "precopy" });
  const resident = Float64Array.from(cloud.guests, (x) => x.memoryMiB);
  const big = planMove(plannerInput(cloud, load, { residentMiB: resident }), g, {
    to: h2,
    mechanism: "precopy",
  });
  assert.ok(small.ok && big.ok);
  const bytes = (p: typeof small) =>
    p.ok && p.plan.actions[0].kind === "migrate" ? p.plan.actions[0].estimate.bytes : Number.NaN;
  assert.ok(bytes(big) > bytes(small), `${bytes(big)} > ${bytes(small)}`);
});

test("a named mechanism is the one used; instant across servers is refused on the mechanism", () => {
  const { cloud, load, g, h1, h2 } = world();
  const post = planMove(plannerInput(cloud, load), g, { to: h1, mechanism: "postcopy" });
  assert.ok(post.ok);
  const a = post.plan.actions[0];
  assert.ok(a.kind === "migrate" && a.estimate.mechanism === "postcopy");
  const d = planMove(plannerInput(cloud, load), g, { to: h2, mechanism: "instant" });
  assert.deepEqual(d, {
    ok: false,
    refusal: {
      reason: "instant-across-servers",
      field: "mechanism",
      message: "instant handover needs a host VM on the same physical server",
    },
  });
});

test("refusals: own host VM, no room, migrating, not placed", () => {
  const { cloud, load, g, h0, h1 } = world();
  const input = plannerInput(cloud, load);
  const own = planMove(input, g, { to: h0, mechanism: "auto" });
  assert.ok(!own.ok && own.refusal.reason === "same-host-vm" && own.refusal.field === "to");
  assert.equal(!own.ok && own.refusal.message, "guest VM g runs on h0 already");
  // h1 full: 8 GiB taken of 16, a 9 GiB guest does not fit.
  const big = cloud.addGuest(guest("big", 1000, 9216));
  cloud.assign(big, h0);
  const full = planMove(plannerInput(cloud, withHistory(cloud, [[0.5], [0.5], [0.5]])), big, {
    to: h1,
    mechanism: "auto",
  });
  assert.ok(!full.ok && full.refusal.reason === "cannot-take");
  const moving = plannerInput(cloud, withHistory(cloud, [[0.5], [0.5], [0.5]]));
  moving.inMigration[g] = 1;
  const busy = planMove(moving, g, { mechanism: "auto" });
  assert.ok(!busy.ok && busy.refusal.reason === "migrating");
  const loose = cloud.addGuest(guest("loose"));
  const none = planMove(plannerInput(cloud, withHistory(cloud, [[0.5], [0.5], [0.5], [0.5]])), loose, {
    mechanism: "auto",
  });
  assert.ok(!none.ok && none.refusal.reason === "not-placed");
});

test("no host VM has room: refused as no-room", () => {
  const cloud = new Cloud();
  const s0 = cloud.addServer(server("s0"));
  const h0 = cloud.addHostVm("h0", HOST_TYPE, s0, "running", 0);
  const g = cloud.addGuest(guest("g"));
  cloud.assign(g, h0);
  const d = planMove(plannerInput(cloud, withHistory(cloud, [[0.1]])), g, { mechanism: "auto" });
  assert.deepEqual(d, {
    ok: false,
    refusal: { reason: "no-room", message: "no host VM has room for guest VM g" },
  });
});

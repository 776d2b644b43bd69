// Security VM / target pairs in the planner (issue 13 item 4): channels, the pair step
// (follow, co-migrate, refuse), the co-migrate action it builds, and nestcloud with and
// without pair awareness.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Cloud } from "../model/index.ts";
import { buildPlan } from "./builder.ts";
import { nestcloudParams, nestcloudPolicy } from "./nestcloud.ts";
import { channelBetween, meets, monitoringPairs, type PairStepHooks, pairStep } from "./pairs.ts";
import { validatePlan } from "./plan.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";
import { Workspace } from "./workspace.ts";

/** s0: h0, h1; s1: h2. Target T (g0) on h0, security VM S (g1) on `secvmAt`, filler g2 on h2. */
function pairCloud(secvmAt: number, requires: "local" | "direct" | "remote") {
  const cloud = new Cloud();
  cloud.addServer(server("s0", 4));
  cloud.addServer(server("s1", 4));
  cloud.addHostVm("s0/h0", HOST_TYPE, 0, "running", 0);
  cloud.addHostVm("s0/h1", HOST_TYPE, 0, "running", 0);
  cloud.addHostVm("s1/h2", HOST_TYPE, 1, "running", 0);
  cloud.place(cloud.addGuest(guest("T", 1000, 2048)), 0);
  cloud.place(
    cloud.addGuest(guest("S", 500, 512, { role: { kind: "security", targets: ["T"], requires } })),
    secvmAt,
  );
  cloud.place(cloud.addGuest(guest("F", 1000, 1024)), 2);
  const hist = (u: number) => Array.from({ length: 12 }, () => u);
  return plannerInput(cloud, withHistory(cloud, [hist(0.3), hist(0.3), hist(0.3)]));
}

/** Hooks over a bare workspace: `room` says which bins may take which guest. */
function hooks(ws: Workspace, room: (b: number, g: number) => boolean): PairStepHooks {
  return {
    canTake: room,
    move: (g, b) => ws.moveGuest(g, b),
    migrationSeconds: () => 5,
    binsOf: (s) => [0, 1, 2].filter((b) => ws.server[b] === s),
  };
}

const pricing = { remotePerHour: 0.2, horizonHours: 1, migrationPerHour: 1 };

describe("monitoring pairs", () => {
  test("channels follow placement: same host VM local, same server direct, else remote, unplaced none", () => {
    const serverOf = (h: number) => [0, 0, 1][h];
    assert.equal(channelBetween(0, 0, serverOf), "local");
    assert.equal(channelBetween(0, 1, serverOf), "direct");
    assert.equal(channelBetween(0, 2, serverOf), "remote");
    assert.equal(channelBetween(-1, 2, serverOf), "none");
    assert.equal(
      channelBetween(0, 2, () => undefined),
      "remote",
      "unknown servers are never shared",
    );
    assert.ok(meets("local", "direct") && meets("direct", "direct") && !meets("remote", "direct"));
    assert.ok(!meets("none", "remote"));
  });

  test("the cloud's pairs carry the security VM's requirement", () => {
    const input = pairCloud(1, "direct");
    assert.deepEqual(monitoringPairs(input.cloud), [{ secvm: 1, target: 0, requires: "direct" }]);
  });

  test("a target moved away is followed by its security VM, and the two co-migrate in one action", () => {
    const input = pairCloud(0, "remote");
    const ws = new Workspace(input, 12);
    ws.moveGuest(0, 2); // the policy moved T across servers
    const step = pairStep(
      ws,
      monitoringPairs(input.cloud),
      [{ guest: 0, to: 2, reason: "overload" }],
      pricing,
      hooks(ws, () => true),
    );
    assert.equal(ws.hostOf[1], 2, "S follows T to h2 (local again)");
    assert.deepEqual(
      step.moves.map((m) => [m.guest, m.to, m.reason]),
      [
        [0, 2, "overload"],
        [1, 2, "monitoring"],
      ],
    );
    assert.equal(step.coMigrations.get(0), step.coMigrations.get(1));
    const plan = buildPlan(ws, step.moves, { releaseEmpty: false, coMigrations: step.coMigrations });
    validatePlan(plan);
    assert.equal(plan.actions.length, 1);
    const a = plan.actions[0];
    assert.ok(a.kind === "co-migrate");
    assert.deepEqual(
      a.members.map((m) => [m.guest, m.from, m.route]),
      [
        [0, 0, "cross-server"],
        [1, 0, "cross-server"],
      ],
    );
    assert.deepEqual(a.to, { kind: "existing", hostVm: 2 });
  });

  test("a move that would break a required channel is undone when the security VM cannot follow", () => {
    const input = pairCloud(1, "direct");
    const ws = new Workspace(input, 12);
    ws.moveGuest(0, 2);
    const step = pairStep(
      ws,
      monitoringPairs(input.cloud),
      [{ guest: 0, to: 2, reason: "overload" }],
      pricing,
      hooks(ws, (b, g) => !(g === 1 && b === 2) && b !== 1),
    );
    assert.equal(ws.hostOf[0], 0, "T stays on s0");
    assert.equal(ws.hostOf[1], 1, "S stays");
    assert.deepEqual(step.moves, []);
    assert.match(step.notes.join(" "), /undone to keep required channels/);
  });

  test("a remote pair is mended only when the move pays for itself", () => {
    for (const [perHour, follows] of [
      [0.2, true],
      [0.0001, false],
    ] as const) {
      const input = pairCloud(2, "remote");
      const ws = new Workspace(input, 12);
      const step = pairStep(
        ws,
        monitoringPairs(input.cloud),
        [],
        { ...pricing, remotePerHour: perHour },
        hooks(ws, () => true),
      );
      assert.equal(step.moves.length, follows ? 1 : 0, `remote at ${perHour}/h`);
      if (follows) assert.equal(ws.hostOf[1], 0, "beside its target (local)");
    }
  });

  test("nestcloud moves a remote security VM beside its target; without pair awareness it does not", () => {
    const moved = (pairAware: number) => {
      // No consolidation (drainBelow 0): only the pair step can move S.
      const policy = nestcloudPolicy(nestcloudParams({ pairAware, drainBelow: 0 }), HOST_TYPE);
      const plan = policy.plan(pairCloud(2, "remote"));
      validatePlan(plan);
      return plan.actions.filter((a) => a.kind === "migrate" && a.guest === 1);
    };
    const aware = moved(1);
    assert.equal(aware.length, 1);
    assert.ok(aware[0].kind === "migrate" && aware[0].reason === "monitoring");
    assert.equal(moved(0).length, 0);
  });

  test("a new security VM is placed beside its target, or not at all when its requirement cannot be met", () => {
    const cloud = new Cloud();
    cloud.addServer(server("s0", 1));
    cloud.addServer(server("s1", 1));
    cloud.addHostVm("s0/h0", HOST_TYPE, 0, "running", 0);
    cloud.addHostVm("s1/h1", HOST_TYPE, 1, "running", 0);
    cloud.place(cloud.addGuest(guest("T", 1000, 15900)), 0); // h0's memory nearly full
    cloud.addGuest(guest("S", 500, 512, { role: { kind: "security", targets: ["T"], requires: "direct" } }));
    cloud.addGuest(guest("S2", 500, 512, { role: { kind: "security", targets: ["T"], requires: "remote" } }));
    const input = plannerInput(cloud, withHistory(cloud, [[0.3], [0.3], [0.3]]));
    const placement = nestcloudPolicy(nestcloudParams({}), undefined).placeNew(input, [1, 2]);
    assert.deepEqual(placement.unplaced, [1], "S needs s0, which has no room and no free slot");
    assert.deepEqual(placement.assignments, [{ guest: 2, to: { kind: "existing", hostVm: 1 } }]);
  });
});

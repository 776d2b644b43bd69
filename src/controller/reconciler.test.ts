// The reconciler stores the planner's plan as the planner made it: its order and its
// dependencies, split by automation level without a second copy of the rules.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_CALIBRATION, estimateInstant } from "../migration/index.ts";
import { Cloud } from "../model/index.ts";
import {
  type Action,
  type ActionPlan,
  type MigrateAction,
  UNLIMITED,
  validatePlan,
} from "../planner/index.ts";
import type { Automation } from "./api/schemas/common.ts";
import { split, toStored } from "./reconciler.ts";
import type { CloudView } from "./view.ts";

const TYPE = {
  name: "t",
  vcpus: 4,
  mipsPerVcpu: 1000,
  memoryMiB: 16384,
  hypervisorOverheadMiB: 0,
  pricePerHour: 1,
  provisionSeconds: 60,
  billingIncrementSeconds: 1,
  minimumBillingSeconds: 0,
  bareMetal: false,
};

function view(): CloudView {
  const cloud = new Cloud();
  const s = cloud.addServer({
    id: "s0",
    cores: 16,
    mipsPerCore: 1000,
    memoryMiB: 65536,
    networkMbps: 10000,
    power: { watts: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] },
    hostVmSlots: 4,
  });
  cloud.addHostVm("h0", TYPE, s, "running", 0);
  cloud.addHostVm("h1", TYPE, s, "running", 0);
  for (const id of ["g0", "g1"]) {
    const g = cloud.addGuest({
      id,
      tenant: "t",
      vcpus: 1,
      mipsPerVcpu: 1000,
      memoryMiB: 1024,
      dirtyRateMiBps: 1,
      role: { kind: "tenant" },
    });
    cloud.assign(g, 0);
  }
  return { cloud, hostVmIds: ["h0", "h1"], guestIds: ["g0", "g1"], serverIds: ["s0"], types: new Map() };
}

const estimate = estimateInstant(
  { memoryMiB: 1024, residentMiB: 512, dirtyRateMiBps: 1 },
  DEFAULT_CALIBRATION,
);
const move = (id: number, guest: number, to: MigrateAction["to"], dependsOn: number[]): Action => ({
  kind: "migrate",
  id,
  guest,
  from: 0,
  to,
  route: "same-server",
  estimate,
  dependsOn,
  reason: "underload",
});

/** Acquire, move g0 into it, move g1 to h1, release the emptied h0, rejuvenate h1. */
const plan: ActionPlan = {
  actions: [
    { kind: "acquire-host-vm", id: 0, type: "t", server: 0, dependsOn: [] },
    move(1, 0, { kind: "acquired", action: 0 }, [0]),
    move(2, 1, { kind: "existing", hostVm: 1 }, []),
    { kind: "release-host-vm", id: 3, hostVm: 0, dependsOn: [1, 2] },
    { kind: "rejuvenate", id: 4, hostVm: 1, mode: "in-place", dependsOn: [] },
  ],
  caps: UNLIMITED,
  notes: [],
};
validatePlan(plan);

const summary = (list: ReturnType<typeof toStored>) =>
  list.map((a) => [
    a.payload.kind,
    "guest" in a.payload ? a.payload.guest : "hostVm" in a.payload ? a.payload.hostVm : "",
    a.dependsOn,
  ]);

test("all automatic: the planner's order and dependencies, every kind kept (rejuvenate too)", () => {
  const v = view();
  const level = new Map<string, Automation>();
  const { automatic, suggested } = split(plan, v, level, "automatic", new Set());
  assert.deepEqual(automatic, toStored(plan, v));
  assert.deepEqual(summary(automatic), [
    ["acquire-host-vm", "", []],
    ["migrate", "g0", [0]],
    ["migrate", "g1", []],
    ["release-host-vm", "h0", [1, 2]],
    ["rejuvenate", "h1", []],
  ]);
  const m = automatic[1].payload;
  assert.ok(m.kind === "migrate" && "acquire" in m.to && m.to.acquire === 0);
  assert.deepEqual(suggested, []);
});

test("a guest in suggest: its move is proposed, and the release that waits for it is not applied", () => {
  const v = view();
  const { automatic, suggested } = split(plan, v, new Map([["g1", "suggest"]]), "automatic", new Set());
  assert.deepEqual(summary(automatic), [
    ["acquire-host-vm", "", []],
    ["migrate", "g0", [0]],
    ["rejuvenate", "h1", []],
  ]);
  assert.deepEqual(summary(suggested), [["migrate", "g1", []]]);
});

test("the cloud in suggest: moves of automatic guests applied, the release and rejuvenation proposed", () => {
  const v = view();
  const level = new Map<string, Automation>([
    ["g0", "automatic"],
    ["g1", "automatic"],
  ]);
  const { automatic, suggested } = split(plan, v, level, "suggest", new Set());
  assert.deepEqual(summary(automatic), [
    ["acquire-host-vm", "", []],
    ["migrate", "g0", [0]],
    ["migrate", "g1", []],
  ]);
  // The release no longer waits on moves applied in the other part: they are done by approval.
  assert.deepEqual(summary(suggested), [
    ["release-host-vm", "h0", []],
    ["rejuvenate", "h1", []],
  ]);
});

test("a move whose acquisition went to the other part is re-planned, and so is what waits for it", () => {
  const v = view();
  const both: ActionPlan = {
    ...plan,
    actions: [
      plan.actions[0],
      move(1, 0, { kind: "acquired", action: 0 }, [0]),
      move(2, 1, { kind: "acquired", action: 0 }, [0]),
      { kind: "release-host-vm", id: 3, hostVm: 0, dependsOn: [1, 2] },
    ],
  };
  validatePlan(both);
  const { automatic, suggested } = split(both, v, new Map([["g1", "suggest"]]), "automatic", new Set());
  assert.deepEqual(summary(automatic), [
    ["acquire-host-vm", "", []],
    ["migrate", "g0", [0]],
  ]);
  assert.deepEqual(suggested, []);
});

// Rolling rejuvenation's decisions: which host VM is renewed next, how, and when the rollout waits.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Cloud } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import { type ActionPlan, emptyPlan, UNLIMITED } from "./plan.ts";
import type { Policy } from "./policy-base.ts";
import {
  dueHostVms,
  nextRejuvenation,
  type RolloutPolicy,
  withRollingRejuvenation,
  withRolloutStep,
} from "./rolling-rejuvenation.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

const H = 3600;

/**
 * Two servers, two host VMs each, acquired at the given hours (s0: h0 h1, s1: h2 h3); each
 * host VM holds `guests[h]` guests of 1000 MIPS and 4 GiB at load `u`.
 */
function twoServers(acquired: number[], guests = [2, 1, 2, 1], u = 0.3, now = 48 * H, memoryMiB = 4096) {
  const cloud = new Cloud();
  cloud.addServer(server("s0"));
  cloud.addServer(server("s1"));
  acquired.forEach((at, h) => {
    cloud.addHostVm(`s${h < 2 ? 0 : 1}/h${h}`, HOST_TYPE, h < 2 ? 0 : 1, "running", at * H, at * H);
  });
  const histories: number[][] = [];
  guests.forEach((n, h) => {
    for (let i = 0; i < n; i++) {
      cloud.place(cloud.addGuest(guest(`g${histories.length}`, 1000, memoryMiB)), h);
      histories.push([u]);
    }
  });
  return plannerInput(cloud, withHistory(cloud, histories), { now });
}

const maxAge = (hours: number, mode: RolloutPolicy["mode"] = "in-place"): RolloutPolicy => ({
  kind: "max-age",
  maxAgeSeconds: hours * H,
  mode,
});

describe("rolling rejuvenation", () => {
  test("max age: host VMs older than the limit are due, oldest first", () => {
    const input = twoServers([10, 2, 1, 30]);
    assert.deepEqual(dueHostVms(maxAge(24), input), [2, 1, 0]);
    assert.deepEqual(dueHostVms(maxAge(100), input), []);
    assert.deepEqual(nextRejuvenation(maxAge(100), input), { kind: "idle" });
  });

  test("a version rollout: every hypervisor started before the version was installed", () => {
    const input = twoServers([0, 0, 0, 0], undefined, undefined, 10 * H);
    const since = Float64Array.from([0, 5 * H, 0, 0]);
    const policy: RolloutPolicy = {
      kind: "version",
      version: "7.2+dfsg-7",
      installedAt: 4 * H,
      mode: "in-place",
    };
    assert.deepEqual(dueHostVms(policy, { ...input, hypervisorSince: since }), [0, 2, 3]);
  });

  test("one at a time: nothing while a rejuvenation is planned or running", () => {
    const input = twoServers([1, 2, 3, 4]);
    const step = nextRejuvenation(maxAge(24), { ...input, rejuvenating: Uint8Array.from([0, 0, 1, 0]) });
    assert.equal(step.kind, "wait");
    assert.match(step.kind === "wait" ? step.note : "", /s1\/h2 is being renewed; 4 due/);
  });

  test("one server at a time: the server renewed last is finished before the next", () => {
    // h2 (s1) was renewed last, h3 on s1 is still due: s1 goes on although s0 holds older hypervisors.
    const input = twoServers([1, 2, 3, 4]);
    const since = Float64Array.from([1 * H, 2 * H, 47 * H, 4 * H]);
    const step = nextRejuvenation(maxAge(24), { ...input, hypervisorSince: since });
    assert.ok(step.kind === "rejuvenate");
    assert.equal(step.hostVm, 3);
    // s1 done: the oldest due (h0, s0) next.
    since[3] = 47.5 * H;
    const next = nextRejuvenation(maxAge(24), { ...input, hypervisorSince: since });
    assert.ok(next.kind === "rejuvenate" && next.hostVm === 0);
  });

  test("never under a move: a host VM with a guest migrating, or touched by the round's plan, waits", () => {
    const input = twoServers([1, 30, 30, 30]);
    const inMigration = new Uint8Array(input.cloud.guests.length);
    inMigration[0] = 1; // g0 leaves h0
    const moving = nextRejuvenation(maxAge(24), { ...input, inMigration, inFlightGuests: [0] });
    assert.equal(moving.kind, "wait");
    const busy = nextRejuvenation(maxAge(24), input, new Set([0]));
    assert.equal(busy.kind, "wait");
    assert.match(busy.kind === "wait" ? busy.note : "", /those on s0 are busy/);
    // Not waiting for other servers meanwhile: one server at a time.
    assert.ok(!("hostVm" in busy));
  });

  test("evacuate keeps capacity: only with a spare on the server that holds every guest, else in place", () => {
    // h1 (1 guest, 4 GiB of 16) can take h0's 2 guests (8 GiB, 600 MIPS of 4000).
    const input = twoServers([1, 30, 30, 30]);
    const step = nextRejuvenation(maxAge(24, "evacuate"), input);
    assert.ok(step.kind === "rejuvenate" && step.hostVm === 0 && step.mode === "evacuate");
    assert.match(step.note, /evacuate via s0\/h1/);
    // h1 full (3 guests, 12 GiB): no room for h0's 8 GiB: in place, said so.
    const full = twoServers([1, 30, 30, 30], [2, 3, 2, 1]);
    const fallback = nextRejuvenation(maxAge(24, "evacuate"), full);
    assert.ok(fallback.kind === "rejuvenate" && fallback.mode === "in-place");
    assert.match(fallback.note, /no spare on the server/);
    // Room in memory (6 GiB into 12 free) but not in CPU (2700 + 1800 MIPS > 4000): in place too.
    const hot = twoServers([1, 30, 30, 30], [3, 2, 2, 1], 0.9, 48 * H, 2048);
    const cpu = nextRejuvenation(maxAge(24, "evacuate"), hot);
    assert.ok(cpu.kind === "rejuvenate" && cpu.mode === "in-place");
  });

  test("in a plan: one rejuvenate action after the base plan's, visible in its notes; validated", () => {
    const input = twoServers([1, 30, 30, 30]);
    const plan = withRolloutStep(emptyPlan(UNLIMITED, ["base"]), maxAge(24), input);
    assert.deepEqual(plan.actions, [
      { kind: "rejuvenate", id: 0, hostVm: 0, mode: "in-place", dependsOn: [] },
    ]);
    assert.equal(plan.notes[0], "base");
    assert.match(
      plan.notes[1],
      /^rejuvenate s0\/h0: hypervisor 47\.0 h old > 24\.0 h, in-place; 0 more due$/,
    );
  });

  test("the wrapped policy: the base policy's plan, placements and reflex, plus the rollout step", () => {
    const input = twoServers([1, 30, 30, 30]);
    const move: ActionPlan = {
      ...emptyPlan(),
      actions: [
        {
          kind: "release-host-vm",
          id: 0,
          hostVm: 0,
          dependsOn: [],
        },
      ],
    };
    let reacted = 0;
    const base: Policy = {
      name: "base",
      placeNew: () => ({ assignments: [], acquisitions: [], unplaced: [] }),
      plan: () => move,
      react(this: Policy) {
        assert.equal(this, base);
        reacted++;
        return emptyPlan();
      },
      reactIntervalSeconds: 30,
    };
    const p = withRollingRejuvenation(base, maxAge(24));
    assert.equal(p.reactIntervalSeconds, 30);
    p.react?.(input as PlannerInput);
    assert.equal(reacted, 1);
    // h0 is released by the base plan: the rollout leaves it (and waits, one server at a time).
    const plan = p.plan(input);
    assert.equal(plan.actions.length, 1);
    assert.match(plan.notes.at(-1) ?? "", /busy/);
    assert.throws(() => withRollingRejuvenation(base, maxAge(0)), /maxAgeSeconds must be positive/);
  });
});

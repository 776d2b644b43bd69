// nestcloud's reflex between rounds: instant moves within a server, and (acrossServers) a
// network move when the server has no room.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Cloud } from "../model/index.ts";
import { reflexPlan } from "./reflex.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

/** s0: h0 overloaded (4 guests at 100 % of 1000 MIPS = 4000 of 4000), h1 full; s1: h2 idle. */
function hotServer(h1Room: boolean) {
  const cloud = new Cloud();
  cloud.addServer(server("s0", 4));
  cloud.addServer(server("s1", 4));
  cloud.addHostVm("s0/h0", HOST_TYPE, 0, "running", 0);
  cloud.addHostVm("s0/h1", HOST_TYPE, 0, "running", 0);
  cloud.addHostVm("s1/h2", HOST_TYPE, 1, "running", 0);
  const histories: number[][] = [];
  const add = (h: number, u: number) => {
    cloud.place(cloud.addGuest(guest(`g${histories.length}`, 1000, 1024)), h);
    histories.push([u]);
  };
  for (let i = 0; i < 4; i++) add(0, 1);
  for (let i = 0; i < 4; i++) add(1, h1Room ? 0.2 : 0.95);
  add(2, 0.1);
  return plannerInput(cloud, withHistory(cloud, histories));
}

const levels = { overloadUtilization: 0.99, targetUtilization: 0.97 };

describe("reflex", () => {
  test("relieves an overloaded host VM on its own server (instant)", () => {
    const plan = reflexPlan(hotServer(true), levels);
    assert.equal(plan.actions.length, 1);
    const a = plan.actions[0];
    assert.ok(a.kind === "migrate" && a.route === "same-server" && a.to.kind === "existing");
    assert.equal(a.to.kind === "existing" && a.to.hostVm, 1);
  });

  test("with no room on the server: nothing, or across the network with acrossServers", () => {
    assert.equal(reflexPlan(hotServer(false), levels).actions.length, 0);
    const plan = reflexPlan(hotServer(false), { ...levels, acrossServers: true });
    assert.equal(plan.actions.length, 1);
    const a = plan.actions[0];
    assert.ok(a.kind === "migrate" && a.route === "cross-server" && a.estimate.mechanism !== "instant");
    assert.equal(a.to.kind === "existing" && a.to.hostVm, 2);
  });
});

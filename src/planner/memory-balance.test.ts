// Packing by CPU and memory together (issue 11): nestcloud's memoryBalance and the +hostvm
// modifier's, on a hand-made cloud where CPU best fit alone picks the host VM that is
// already nearly full of memory.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Cloud } from "../model/index.ts";
import { balancedScore } from "./hostvm-fit.ts";
import { createPolicy } from "./policy.ts";
import { guest, HOST_TYPE, plannerInput, server, withHistory } from "./testkit.ts";

/**
 * One server, two 4000-MIPS / 16 GiB host VMs: h0 CPU-heavy (2 busy guests: CPU 0.5, memory
 * 0.125), h1 memory-heavy (12 light guests of 1200 MiB: CPU 0.6, memory 0.88); a new idle
 * guest of 1 GiB to place.
 */
function world() {
  const cloud = new Cloud();
  const s = cloud.addServer(server("s0"));
  const h0 = cloud.addHostVm("h0", HOST_TYPE, s, "running", 0);
  const h1 = cloud.addHostVm("h1", HOST_TYPE, s, "running", 0);
  const history: number[][] = [];
  for (let i = 0; i < 2; i++) {
    cloud.assign(cloud.addGuest(guest(`busy${i}`, 1000, 1024)), h0);
    history.push([1, 1, 1]);
  }
  for (let i = 0; i < 12; i++) {
    cloud.assign(cloud.addGuest(guest(`light${i}`, 1000, 1200)), h1);
    history.push([0.2, 0.2, 0.2]);
  }
  const fresh = cloud.addGuest(guest("idle", 1000, 1024));
  history.push([0.01, 0.01, 0.01]);
  return { cloud, load: withHistory(cloud, history), fresh, h0, h1 };
}

const placedOn = (name: string, params: Record<string, number>) => {
  const { cloud, load, fresh } = world();
  const placement = createPolicy(name, params, { acquireType: HOST_TYPE }).placeNew(
    plannerInput(cloud, load),
    [fresh],
  );
  assert.deepEqual(placement.unplaced, []);
  assert.equal(placement.assignments.length, 1);
  const to = placement.assignments[0].to;
  assert.equal(to.kind, "existing");
  return to.kind === "existing" ? to.hostVm : -1;
};

test("nestcloud with memoryBalance 0 fills the host VM with the most CPU, though its memory is nearly full", () => {
  const { h1 } = world();
  assert.equal(placedOn("nestcloud", { memoryBalance: 0 }), h1);
});

test("nestcloud by default keeps memory in step with CPU: the idle, memory-heavy guest joins the CPU-heavy host VM", () => {
  const { h0 } = world();
  assert.equal(placedOn("nestcloud", {}), h0);
});

test("+hostvm offers the same rule (memoryBalance), off by default", () => {
  const { h0, h1 } = world();
  assert.equal(placedOn("lr-mmt-1.2+billing+hostvm", {}), h1);
  assert.equal(placedOn("lr-mmt-1.2+billing+hostvm", { memoryBalance: 2 }), h0);
});

test("the balanced score: the CPU share, less the weighted stray of memory from the cloud's mix", () => {
  assert.equal(balancedScore(0.5, 0.25, 0.5, 2), 0.5);
  assert.equal(balancedScore(0.5, 0.75, 0.5, 2), 0.5 - 2 * 0.5);
  assert.equal(balancedScore(0.5, 0.75, 0.5, 0), 0.5);
});

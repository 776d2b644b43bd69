import assert from "node:assert/strict";
import { test } from "node:test";
import { agentTarget, unobservedMs } from "./secvms.ts";

const devices = [
  { kind: "serial" as const, id: "s1", log: true },
  { kind: "disk" as const, id: "ro", file: "base.img", readOnly: true },
  { kind: "disk" as const, id: "d0", file: "data.img" },
  { kind: "nic" as const, id: "n0" },
  { kind: "nic" as const, id: "n1" },
];

test("a pair's monitor watches memory, the first writable disk and the first NIC by default", () => {
  assert.deepEqual(agentTarget("t1", devices), { guestId: "t1", memory: true, disk: "d0", nic: "n0" });
});

test("only the monitors chosen, and only devices the target has", () => {
  assert.deepEqual(agentTarget("t1", devices, ["network"]), { guestId: "t1", memory: false, nic: "n0" });
  assert.deepEqual(agentTarget("t1", devices, ["memory", "disk"]), {
    guestId: "t1",
    memory: true,
    disk: "d0",
  });
  assert.deepEqual(agentTarget("t1", [devices[0], devices[1]]), { guestId: "t1", memory: true });
});

test("unobservedMs: an instant handover leaves none, another move from its completion to the new baseline, an unknown move null", () => {
  assert.equal(unobservedMs({ mechanism: "instant", at: 1000 }, 9000), 0, "the old view stayed live");
  assert.equal(unobservedMs({ mechanism: "precopy", at: 1000 }, 3500), 2500);
  assert.equal(unobservedMs({ mechanism: "postcopy", at: 1000 }, 1000), 0);
  assert.equal(unobservedMs({ mechanism: "precopy", at: 5000 }, 4000), 0, "never negative");
  assert.equal(unobservedMs(undefined, 4000), null);
});

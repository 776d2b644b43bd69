import assert from "node:assert/strict";
import { test } from "node:test";
import { agentTarget } from "./secvms.ts";

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

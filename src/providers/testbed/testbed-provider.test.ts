// The testbed rental's book-keeping without a testbed: slices as host VMs and types (world.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { HostVmRecord, TestbedState } from "../../testbed/index.ts";
import { memoryStore } from "../types.ts";
import { TestbedRental } from "./rental.ts";
import { describeTestbed, initialWorld, MIPS_PER_CORE, typeName } from "./world.ts";

function slice(server: string, name: string, cpus: number, memoryMiB: number): HostVmRecord {
  return {
    server,
    name,
    cpus,
    memoryMiB,
    stateDir: `/x/${server}/${name}`,
    qemuDir: `/x/${server}/${name}/q`,
    cgroupDirs: [],
    limits: null,
    agent: null,
  };
}

function testbed(hostVms: HostVmRecord[], placement?: "hidden" | "visible"): TestbedState {
  const servers = [...new Set(hostVms.map((h) => h.server))];
  return {
    version: 1,
    id: "tb1",
    createdAt: "2030-01-01T00:00:00.000Z",
    specFile: null,
    spec: { servers: [], placement } as unknown as TestbedState["spec"],
    stateDir: "/x",
    tokenFile: "/x/token",
    poolRoot: "/dev/shm/x",
    warnings: [],
    network: {
      mode: "loopback",
      subnet: null,
      hostAddress: null,
      bridgeNetns: null,
      rootLinks: [],
      namespaces: [],
    } as TestbedState["network"],
    cgroups: { mode: "none", dirs: [] } as unknown as TestbedState["cgroups"],
    servers: servers.map((name, index) => ({
      name,
      index,
      netns: null,
      address: `127.0.${index}.1`,
      iface: null,
      poolDir: `/dev/shm/x/${name}`,
      stateDir: `/x/${name}`,
      agent: null,
    })),
    hostVms,
    complete: true,
  };
}

describe("world: slices as rented host VMs", () => {
  const st = testbed([
    slice("a", "h1", 1, 1024),
    slice("a", "h2", 1, 1024),
    slice("b", "h1", 2, 2048),
    slice("b", "h2", 1, 1024),
  ]);

  test("every slice starts rented and running, named <server>-<slice>, from the testbed's start", () => {
    const w = initialWorld(st);
    const t = Date.parse(st.createdAt) / 1000;
    assert.equal(w.testbedId, "tb1");
    assert.equal(w.createdAt, st.createdAt);
    assert.deepEqual(
      w.rentals.map((r) => [r.id, r.server, r.slice, r.state, r.acquiredAt, r.stateSince]),
      [
        ["a-h1", "a", "h1", "running", t, t],
        ["a-h2", "a", "h2", "running", t, t],
        ["b-h1", "b", "h1", "running", t, t],
        ["b-h2", "b", "h2", "running", t, t],
      ],
    );
  });

  test("servers sum their slices; one host-VM type per shape, the most common first", () => {
    const { servers, hostVmTypes } = describeTestbed(st);
    assert.deepEqual(
      servers.map((s) => [s.id, s.cores, s.mipsPerCore, s.memoryMiB, s.hostVmSlots]),
      [
        ["a", 2, MIPS_PER_CORE, 2048, 2],
        ["b", 3, MIPS_PER_CORE, 3072, 2],
      ],
    );
    assert.deepEqual(
      hostVmTypes.map((t) => [t.name, t.vcpus, t.mipsPerVcpu, t.memoryMiB, t.hypervisorOverheadMiB]),
      [
        [typeName(1, 1024), 1, MIPS_PER_CORE, 1024, 0],
        [typeName(2, 2048), 2, MIPS_PER_CORE, 2048, 0],
      ],
    );
    assert.equal(typeName(1, 1024), "slice-1x1024");
    // Per-minute billing: idle slices can be returned within minutes.
    for (const t of hostVmTypes) {
      assert.equal(t.billingIncrementSeconds, 60);
      assert.ok(t.pricePerHour > 0);
    }
    // The ML110 G5's power table (two cores) scaled to the server's cores.
    const [a, b] = servers;
    assert.equal(a.power.watts.length, b.power.watts.length);
    assert.ok(Math.abs(b.power.watts.at(-1)! / a.power.watts.at(-1)! - 1.5) < 0.01);
  });
});

describe("placement: hidden", () => {
  const slices = [slice("a", "h1", 1, 1024), slice("b", "h1", 1, 1024)];

  test("a hidden testbed rents the same host VMs but names no server; a visible one does", async () => {
    const hidden = new TestbedRental(testbed(slices, "hidden"), memoryStore(), () => {});
    const visible = new TestbedRental(testbed(slices), memoryStore(), () => {});
    assert.equal(hidden.placementHidden, true);
    assert.deepEqual(
      (await hidden.hostVms()).map((h) => [h.id, h.server]),
      [
        ["a-h1", undefined],
        ["b-h1", undefined],
      ],
    );
    assert.deepEqual(
      (await visible.hostVms()).map((h) => [h.id, h.server]),
      [
        ["a-h1", "a"],
        ["b-h1", "b"],
      ],
    );
    // The servers themselves (their capacity) are still described: only the mapping is hidden.
    assert.deepEqual(
      (await hidden.describe()).servers.map((s) => s.id),
      ["a", "b"],
    );
  });
});

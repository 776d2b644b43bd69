// Placement discovery on a real testbed that hides placement (2 servers x 3 host VMs, real
// agents, real /dev/shm pools): the co-residency probe finds every host VM's server, a host
// VM moved by the testbed (as a provider's live migration) is noticed within 30 s, and an
// instant handover planned on stale placement falls back to pre-copy and corrects the map.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { relocateHostVm } from "../../src/agent/index.ts";
import { type Provider, placementCorrectness, TestbedProvider } from "../../src/providers/index.ts";
import { hostVmKey, readTestbedState } from "../../src/testbed/index.ts";
import { sleep } from "../support/waiting.ts";
import { assertOneIntactCopy, type Bed, bringUp, createVerifyGuest, tearDown } from "./testbed-helpers.ts";

let bed: Bed | undefined;
let provider: Provider | undefined;

/** Rented host-VM id -> the server it really is on now (from the testbed's own record). */
function truth(b: Bed): Map<string, string> {
  const st = readTestbedState(b.state.stateDir)!;
  return new Map(st.hostVms.map((h) => [hostVmKey(h).replace("/", "-"), h.server]));
}

async function discovered(p: Provider): Promise<Map<string, string | undefined>> {
  return new Map((await p.snapshot()).hostVms.map((h) => [h.id, h.server]));
}

before(async () => {
  bed = await bringUp({
    placement: "hidden",
    servers: [
      { name: "a", hostVms: ["a1", "a2", "a3"].map((name) => ({ name, memoryMiB: 512 })) },
      { name: "b", hostVms: ["b1", "b2", "b3"].map((name) => ({ name, memoryMiB: 512 })) },
    ],
  });
  provider = await TestbedProvider.open({
    testbed: bed.state.stateDir,
    discoveryIntervalMs: 2000,
    log: (m) => bed!.logs.push(m),
  });
});

after(async () => {
  await provider?.close();
  await tearDown(bed);
});

describe("placement discovery on a hidden-placement testbed", () => {
  test("the rental names no server; discovery by the shared-memory probe places all 6 right", async () => {
    const p = provider!;
    assert.ok((await p.rental.hostVms()).every((h) => h.server === undefined));
    const found = await discovered(p);
    assert.deepEqual(placementCorrectness(truth(bed!), found), { correct: 6, total: 6 });
    const report = await p.placement();
    assert.equal(report.mode, "discovered");
    for (const e of report.entries) {
      assert.equal(e.source, "shared-memory");
      assert.equal(e.confidence, 0.95);
      assert.equal(e.conflict, false);
      assert.ok(e.at !== undefined && p.now() - e.at < 30, "fresh evidence");
    }
  });

  test("a host VM the testbed moves to another server is placed right again within 30 s", async () => {
    const p = provider!;
    const t0 = Date.now();
    await relocateHostVm(bed!.state, "a", "a3", "b", bed!.launcher);
    const moved = Date.now();
    const server = await bed!.client("b", "a3").status();
    assert.equal(server.guests.length, 0);
    let correct = 0;
    while (Date.now() - moved < 30_000) {
      ({ correct } = placementCorrectness(truth(bed!), await discovered(p)));
      if (correct === 6) break;
      await sleep(250);
    }
    assert.equal(correct, 6, `all 6 right again after the move (${Date.now() - moved} ms after it)`);
    // The servers' ledgers follow the move: b accounts for a3 now, a no longer.
    const { serverClient } = await import("../../src/agent/index.ts");
    const [sa, sb] = await Promise.all([
      serverClient(bed!.state, "a").status(),
      serverClient(bed!.state, "b").status(),
    ]);
    assert.ok(!sa.hostVms.some((h) => h.name === "a3"));
    assert.ok(sb.hostVms.some((h) => h.name === "a3"));
    bed!.logs.push(`move took ${moved - t0} ms, detected within ${Date.now() - moved} ms`);
    // Refused: to the server it is on, and to an unknown one.
    await assert.rejects(relocateHostVm(bed!.state, "b", "a3", "b", bed!.launcher), /already/);
    await assert.rejects(relocateHostVm(bed!.state, "b", "a3", "z", bed!.launcher), /no server z/);
  });

  test("an instant handover planned on stale placement falls back to pre-copy and corrects the map", async () => {
    const p = provider!;
    // The guest on a1; a2 shares a's pool. Move a2 away, then ask for an instant handover to
    // it before discovery's next round (as a planner holding the old map would).
    await createVerifyGuest(bed!, "a", "a1", "pg1");
    const stale = await discovered(p);
    assert.equal(stale.get("a-a2"), stale.get("a-a1"), "a1 and a2 together before the move");
    await relocateHostVm(bed!.state, "a", "a2", "b", bed!.launcher);
    const m = await p.migrate("pg1", "a-a2", "instant", 5);
    assert.equal(m.mechanism, "precopy", "fell back to pre-copy");
    const report = await p.placement();
    const a2 = report.entries.find((e) => e.hostVm === "a-a2")!;
    const a1 = report.entries.find((e) => e.hostVm === "a-a1")!;
    assert.ok(a2.server === undefined || a2.server !== a1.server, "the map no longer puts a2 with a1");
    let done = await p.migration(m.id);
    const deadline = Date.now() + 120_000;
    while (done?.status === "running" && Date.now() < deadline) {
      await sleep(500);
      done = await p.migration(m.id);
    }
    assert.equal(done?.status, "completed", done?.error);
    await assertOneIntactCopy(bed!, "pg1", "b", "a2");
  });
});

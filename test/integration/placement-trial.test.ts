// The conclusive placement measurement on a real hidden-placement testbed (2 servers, real
// agents, real /dev/shm pools): a trial zero-copy handover of an empty probe guest. When the
// co-residency probe and the correlation of the front ends disagree (a host VM moved after
// guests were handed over to it), discovery starts a tiny probe guest on one host VM and
// hands it over to the other: refused = different servers, handed over = the same, with
// confidence 1 either way; the probe guest is gone afterwards wherever it ended.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { relocateHostVm, serverClient } from "../../src/agent/index.ts";
import {
  PROBE_GUEST_RE,
  type Provider,
  placementCorrectness,
  TestbedProvider,
} from "../../src/providers/index.ts";
import { hostVmKey, readTestbedState } from "../../src/testbed/index.ts";
import { sleep, waitFor } from "../support/waiting.ts";
import {
  allQemuPids,
  assertOneIntactCopy,
  type Bed,
  bringUp,
  createVerifyGuest,
  tearDown,
} from "./testbed-helpers.ts";

let bed: Bed | undefined;
let provider: Provider | undefined;

function truth(b: Bed): Map<string, string> {
  const st = readTestbedState(b.state.stateDir)!;
  return new Map(st.hostVms.map((h) => [hostVmKey(h).replace("/", "-"), h.server]));
}

async function discovered(p: Provider): Promise<Map<string, string | undefined>> {
  return new Map((await p.snapshot()).hostVms.map((h) => [h.id, h.server]));
}

async function migrateAndWait(p: Provider, guest: string, to: string): Promise<void> {
  const m = await p.migrate(guest, to, "instant", 5);
  assert.equal(m.mechanism, "instant");
  const done = await waitFor(
    `${guest} handed over to ${to}`,
    async () => {
      const v = await p.migration(m.id);
      return v && v.status !== "running" ? v : null;
    },
    120_000,
  );
  assert.equal(done.status, "completed", done.error);
}

/** No probe guest anywhere: no QEMU, no pool file, no ledger entry, not among the guests. */
async function assertNoProbeGuest(b: Bed, p: Provider): Promise<void> {
  const qemus = allQemuPids(b).length;
  const st = readTestbedState(b.state.stateDir)!;
  for (const s of st.servers) {
    const files = readdirSync(s.poolDir).filter((f) => f.startsWith("ncprobe-"));
    assert.deepEqual(files, [], `no probe guest's RAM file left in ${s.name}'s pool`);
    const status = await serverClient(b.state, s.name).status();
    for (const h of status.hostVms)
      assert.ok(
        !JSON.stringify(h).includes("ncprobe-"),
        `server ${s.name} accounts no probe guest on ${h.name}`,
      );
  }
  for (const h of st.hostVms) {
    const g = (await b.client(h.server, h.name).status()).guests;
    assert.ok(!g.some((x) => PROBE_GUEST_RE.test(x.guestId)), `no probe guest on ${h.server}/${h.name}`);
  }
  assert.ok(
    !(await p.snapshot()).guests.some((g) => PROBE_GUEST_RE.test(g.id)),
    "the plane hides probe guests",
  );
  assert.equal(qemus, 1, "only the tenant guest's QEMU runs");
}

before(async () => {
  bed = await bringUp({
    placement: "hidden",
    servers: [
      { name: "a", hostVms: ["a1", "a2"].map((name) => ({ name, memoryMiB: 512 })) },
      { name: "b", hostVms: [{ name: "b1", memoryMiB: 512 }] },
    ],
  });
  provider = await TestbedProvider.open({
    testbed: bed.state.stateDir,
    discoveryIntervalMs: 2000,
    trialsPerRound: 1,
    log: (m) => bed!.logs.push(`${new Date().toISOString().slice(11, 23)} ${m}`),
  });
});

after(async () => {
  await provider?.close();
  if (process.env.NESTCLOUD_TEST_LOGS) console.log(bed?.logs.join("\n"));
  await tearDown(bed);
});

describe("trial handover of an empty probe guest (hidden-placement testbed)", () => {
  test("probe and correlation disagree after a host VM moved: a trial handover settles it as apart, confidence 1, probe guest gone", async () => {
    const p = provider!;
    assert.deepEqual(placementCorrectness(truth(bed!), await discovered(p)), { correct: 3, total: 3 });
    // Guests handed over between a1 and a2 make the front ends' correlation say "together".
    await createVerifyGuest(bed!, "a", "a1", "tg1");
    await migrateAndWait(p, "tg1", "a-a2");
    await migrateAndWait(p, "tg1", "a-a1");
    const t0 = Date.now();
    // The cloud moves a2 (empty) to server b: the probe now says apart, the correlation still together.
    await relocateHostVm(bed!.state, "a", "a2", "b", bed!.launcher);
    const entry = await waitFor(
      "a trial handover's verdict on a-a2",
      async () => {
        const e = (await p.placement()).entries.find((x) => x.hostVm === "a-a2");
        return e?.source === "trial-handover" ? e : null;
      },
      120_000,
    );
    bed!.logs.push(`trial verdict ${Date.now() - t0} ms after the move`);
    assert.equal(entry.confidence, 1);
    assert.equal(entry.conflict, false);
    const line = bed!.logs.find((l) => /trial handover a-a1 -> a-a2 \(disagree\)/.test(l));
    assert.ok(line, "the trial was run for the disagreement");
    assert.match(line!, /: apart in \d+ ms/);
    assert.deepEqual(placementCorrectness(truth(bed!), await discovered(p)), { correct: 3, total: 3 });
    await assertNoProbeGuest(bed!, p);
    await assertOneIntactCopy(bed!, "tg1", "a", "a1");
  });

  test("a trial on demand: handed over between host VMs of one server (together), refused across servers (apart), cleaned up", async () => {
    const p = provider!;
    assert.ok(p.placementTrial, "the testbed provider offers trials");
    const same = await p.placementTrial!("b-b1", "a-a2");
    assert.equal(same.together, true, same.detail);
    const across = await p.placementTrial!("a-a1", "b-b1");
    assert.equal(across.together, false, across.detail);
    bed!.logs.push(`trials: together in ${same.ms} ms, apart in ${across.ms} ms`);
    const report = await p.placement();
    for (const h of ["a-a1", "a-a2", "b-b1"]) {
      const e = report.entries.find((x) => x.hostVm === h)!;
      assert.equal(e.source, "trial-handover", `${h} placed by a trial`);
      assert.equal(e.confidence, 1);
    }
    assert.deepEqual(placementCorrectness(truth(bed!), await discovered(p)), { correct: 3, total: 3 });
    await sleep(100);
    await assertNoProbeGuest(bed!, p);
  });
});

// Rolling rejuvenation of a 2-server testbed driven by the controller (QEMU under TCG): servers
// a (host VMs h1, h2) and b (h1), guest g1 on a-h1 and g2 on b-h1, each busy with the
// write-and-verify workload. The controller runs `--rollout-version v2 --rollout-mode in-place`
// with the cloud automatic (the guests themselves manual, spares kept, nothing drained: only
// the rollout acts). It is killed (SIGKILL) while its first renewal runs (past its start:
// new QEMUs starting, switching or the agent restarting) and restarted on the
// same data dir: the journal's action for it ends failed ("lost track"), the rollout takes the
// host VM up again (the version's installation time is kept in the store, so what was renewed
// stays renewed) and renews every host VM exactly once more, one server at a time. Afterwards
// each guest runs once where it was, same boot, heartbeats on, no lost write.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  api,
  type ControllerProcess,
  killHard,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { assertOneIntactCopy, type Bed, bringUp, tearDown, testbedOf } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-ctl-roll-"));
let bed: Bed | undefined;
let ctl: ControllerProcess | undefined;
let passed = false;

after(async () => {
  if (!passed && ctl) process.stderr.write(`controller output (tail):\n${ctl.output().slice(-8000)}\n`);
  if (ctl) await stopGently(ctl);
  try {
    await tearDown(bed);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface Action {
  kind: string;
  hostVm?: string;
  status: string;
  error: string | null;
  progress?: { step: string };
}
interface Plan {
  id: number;
  actions: Action[];
}

/** Every rejuvenate action of the journal, in plan order. */
async function renewals(c: ControllerProcess): Promise<Array<Action & { plan: number }>> {
  const plans = (await api(c, "GET", "/api/plans?limit=10000")).body as Plan[];
  return [...plans]
    .sort((x, y) => x.id - y.id)
    .flatMap((p) => p.actions.filter((a) => a.kind === "rejuvenate").map((a) => ({ ...a, plan: p.id })));
}

test("rolling rejuvenation from the controller, killed mid-rollout and restarted: every host VM renewed once, one server at a time, guests intact", async (t) => {
  bed = await bringUp(testbedOf({ a: ["h1", "h2"], b: ["h1"] }));
  const b = bed;
  const base = [
    ...["--provider", "testbed", "--testbed", b.state.stateDir],
    ...["--data-dir", dir, "--port", "0", "--interval", "3"],
    ...["--policy-param", "spareHostVms=3", "--policy-param", "drainBelow=0.0001"],
  ];
  // The guests first, with nothing automatic; then the rollout.
  ctl = await startControllerProcess(base, 90_000);
  assert.equal((await api(ctl, "PUT", "/api/settings", { automation: "manual" })).status, 200);
  const homes = { g1: ["a", "h1"], g2: ["b", "h1"] } as const;
  for (const [id, [server, h]] of Object.entries(homes)) {
    const r = await api(ctl, "POST", "/api/vms", {
      id,
      tenant: "acme",
      mipsPerVcpu: 500,
      memoryMiB: 256,
      hostVm: `${server}-${h}`,
      automation: "manual",
    });
    assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r.body));
    await b.client(server, h).startWorkload(id, { kind: "verify", mib: 16 });
  }
  const boots = new Map<string, string>();
  for (const [id, [server, h]] of Object.entries(homes))
    boots.set(id, (await b.client(server, h).guest(id)).bootId);
  await stopGently(ctl);

  const args = [...base, "--rollout-version", "v2", "--rollout-mode", "in-place"];
  const t0 = Date.now();
  ctl = await startControllerProcess(args, 90_000);
  assert.equal((await api(ctl, "PUT", "/api/settings", { automation: "automatic" })).status, 200);
  const first = ctl;
  // Killed once the renewal is under way (its guests' new QEMUs starting, or later): the
  // journal has its provider id and a step past the start.
  const killed = await until(
    "the rollout's first renewal to be under way",
    async () =>
      (await renewals(first)).find(
        (a) => a.status === "running" && a.progress !== undefined && a.progress.step !== "starting",
      ),
    180_000,
    100,
  );
  await killHard(first);
  t.diagnostic(
    `killed at ${((Date.now() - t0) / 1000).toFixed(1)} s, renewing ${killed.hostVm} (${killed.progress?.step})`,
  );

  ctl = await startControllerProcess(args, 90_000);
  const c = ctl;
  const all = ["a-h1", "a-h2", "b-h1"];
  const done = await until(
    "every host VM renewed",
    async () => {
      const r = await renewals(c);
      const ok = r.filter((a) => a.status === "done");
      return all.every((h) => ok.some((a) => a.hostVm === h)) && !r.some((a) => a.status === "running")
        ? r
        : undefined;
    },
    600_000,
    500,
  );
  t.diagnostic(
    `rollout ${((Date.now() - t0) / 1000).toFixed(1)} s: ${done.map((a) => `${a.hostVm} ${a.status}${a.error ? ` (${a.error})` : ""}`).join("; ")}`,
  );
  // The renewal the kill cut short ended failed, and was taken up again.
  const cut = done.find((a) => a.plan === killed.plan);
  assert.equal(cut?.status, "failed");
  assert.match(cut?.error ?? "", /lost track|not recorded/);
  const renewed = done.filter((a) => a.status === "done").map((a) => a.hostVm);
  assert.deepEqual([...renewed].sort(), all, "each host VM renewed exactly once");
  // One server at a time: the renewals of a server come together.
  const servers = renewed.map((h) => h!.split("-")[0]);
  assert.ok(
    servers.filter((s, i) => i > 0 && s !== servers[i - 1]).length <= 1,
    `one server at a time: ${renewed.join(", ")}`,
  );
  // Nothing more is due: a few more rounds add no renewal.
  await new Promise((r) => setTimeout(r, 10_000));
  assert.equal((await renewals(c)).length, done.length, "the rollout is over");
  for (const [id, [server, h]] of Object.entries(homes)) {
    const st = await assertOneIntactCopy(b, id, server, h);
    assert.equal(st.bootId, boots.get(id), `${id} was not rebooted`);
  }
  passed = true;
});

// Rejuvenation through the controller on a real testbed (QEMU under TCG): two guests made
// through the API on host VM a-h1, busy with the write-and-verify workload; `POST
// /api/hostvms/a-h1/rejuvenate` in place, then `nestcloud hostvms rejuvenate a-h1 --mode
// evacuate` from the CLI: the guests pass through a-h2, a-h1 is released and its slice rented
// again in its place (a-h1-2, a fresh agent), the guests move back to it. Then, with the spare
// released, evacuations that must rent their own spare: moving back (the spare released after)
// and with moveBack false (the guests stay on it). The plan's action reports progress and the
// result (each guest's pause, the mechanism, replacement and spare); afterwards both guests
// run once, same boot, heartbeats on, no lost write. Automation is manual: the planner moves
// nothing by itself.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import {
  api,
  type ControllerProcess,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { assertOneIntactCopy, type Bed, bringUp, tearDown, testbedOf } from "./testbed-helpers.ts";

const bin = resolve(import.meta.dirname, "../../bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nc-ctl-rej-"));
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

interface RejAction {
  kind: string;
  hostVm: string;
  mode: string;
  status: string;
  error: string | null;
  result?: {
    mechanism: string;
    qemu: string;
    spare: string | null;
    guests: Array<{ guest: string; outcome: string; pauseMs: number | null }>;
    maxPauseMs: number | null;
    agentRestartMs: number | null;
    replacement?: string | null;
    spareAcquired?: boolean;
    spareReleased?: boolean;
  };
}

interface HostVmRow {
  id: string;
  state: string;
  guests: string[];
}

test("rejuvenation from the API and the CLI: in place; evacuate replacing the host VM, through a spare it has or rents, moving back or not; both guests run on, intact", async (t) => {
  bed = await bringUp(testbedOf({ a: ["h1", "h2"] }));
  const b = bed;
  ctl = await startControllerProcess(
    [
      ...["--provider", "testbed", "--testbed", b.state.stateDir],
      ...["--data-dir", dir, "--port", "0", "--interval", "5"],
    ],
    90_000,
  );
  const c = ctl;
  assert.equal((await api(c, "PUT", "/api/settings", { automation: "manual" })).status, 200);
  for (const id of ["g1", "g2"]) {
    const r = await api(c, "POST", "/api/vms", {
      id,
      tenant: "acme",
      mipsPerVcpu: 500,
      memoryMiB: 256,
      hostVm: "a-h1",
    });
    assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r.body));
    await b.client("a", "h1").startWorkload(id, { kind: "verify", mib: 16 });
  }
  const boots = new Map<string, string>();
  for (const id of ["g1", "g2"]) boots.set(id, (await b.client("a", "h1").guest(id)).bootId);

  // In place, through the API.
  const r = await api(c, "POST", "/api/hostvms/a-h1/rejuvenate", { mode: "in-place" });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const steps = new Set<string>();
  const a = await until(
    "the in-place rejuvenation to end",
    async () => {
      const p = (await api(c, "GET", `/api/plans/${r.body.plan}`)).body as {
        actions: Array<RejAction & { progress?: { step: string } }>;
      };
      const x = p.actions[0];
      if (x.progress) steps.add(x.progress.step);
      return x.status === "done" || x.status === "failed" ? x : undefined;
    },
    180_000,
    200,
  );
  t.diagnostic(`in place: ${JSON.stringify(a.result)}; steps seen ${[...steps].join(", ")}`);
  assert.equal(a.status, "done", a.error ?? "");
  assert.equal(a.result?.mechanism, "x-ignore-shared");
  assert.deepEqual(a.result?.guests.map((g) => [g.guest, g.outcome]).sort(), [
    ["g1", "moved"],
    ["g2", "moved"],
  ]);
  assert.ok(
    a.result?.guests.every((g) => g.pauseMs !== null),
    "each guest's pause reported",
  );
  assert.ok(a.result?.agentRestartMs !== null, "the agent was restarted");
  for (const id of ["g1", "g2"]) {
    const st = await assertOneIntactCopy(b, id, "a", "h1");
    assert.equal(st.bootId, boots.get(id), `${id} was not rebooted`);
  }

  // Evacuate, from the CLI (it follows the plan and prints each guest's pause).
  const cli = await new Promise<{ code: number; out: string; err: string }>((res) =>
    execFile(
      process.execPath,
      [bin, "hostvms", "rejuvenate", "a-h1", "--mode", "evacuate", "--url", c.url, "--token", c.token],
      { encoding: "utf8", timeout: 300_000 },
      (e, out, err) => res({ code: e ? Number(e.code ?? 1) : 0, out, err }),
    ),
  );
  t.diagnostic(`CLI: ${cli.out}${cli.err}`);
  assert.equal(cli.code, 0, cli.err);
  assert.match(cli.out, /a-h1 rejuvenated by x-ignore-shared .* through a-h2: max pause/);
  assert.match(cli.out, /replaced by a-h1-2/);
  assert.match(cli.out, /g1 +│ moved/);
  const bad = await new Promise<{ code: number; err: string }>((res) =>
    execFile(
      process.execPath,
      [bin, "hostvms", "rejuvenate", "a-h1", "--mode", "reboot", "--url", c.url, "--token", c.token],
      { encoding: "utf8" },
      (e, _out, err) => res({ code: e ? Number(e.code ?? 1) : 0, err }),
    ),
  );
  assert.equal(bad.code, 2);
  assert.match(bad.err, /expected one of in-place, evacuate/);
  for (const id of ["g1", "g2"]) {
    const st = await assertOneIntactCopy(b, id, "a", "h1");
    assert.equal(st.bootId, boots.get(id), `${id} was not rebooted`);
  }
  const hostVms = async () => (await api(c, "GET", "/api/hostvms")).body as HostVmRow[];
  const guestsOn = async (want: string) =>
    until(
      `the controller to see both guests on ${want}`,
      async () => {
        const now = (await api(c, "GET", "/api/vms")).body as Array<{ id: string; hostVm: string }>;
        return now.length === 2 && now.every((v) => v.hostVm === want) ? now : undefined;
      },
      30_000,
    );
  await guestsOn("a-h1-2");
  assert.equal(
    (await hostVms()).find((h) => h.id === "a-h1")?.state,
    undefined,
    "a-h1 released (not listed)",
  );

  // No spare on the server: a-h2 released, so each evacuation rents one of its own.
  const rel = await api(c, "DELETE", "/api/hostvms/a-h2");
  assert.equal(rel.status, 202, JSON.stringify(rel.body));
  await until(
    "a-h2 to be released",
    async () => ((await hostVms()).some((h) => h.id === "a-h2") ? undefined : true),
    60_000,
  );
  const evacuate = async (hostVm: string, body: Record<string, unknown>) => {
    const q = await api(c, "POST", `/api/hostvms/${hostVm}/rejuvenate`, { mode: "evacuate", ...body });
    assert.equal(q.status, 202, JSON.stringify(q.body));
    const x = await until(
      `the evacuation of ${hostVm} to end`,
      async () => {
        const p = (await api(c, "GET", `/api/plans/${q.body.plan}`)).body as { actions: RejAction[] };
        const y = p.actions[0];
        return y.status === "done" || y.status === "failed" ? y : undefined;
      },
      240_000,
      250,
    );
    t.diagnostic(`evacuate ${hostVm} ${JSON.stringify(body)}: ${JSON.stringify(x.result)}`);
    assert.equal(x.status, "done", x.error ?? "");
    assert.deepEqual(
      x.result?.guests.map((g) => g.outcome),
      ["moved", "moved", ...(body.moveBack === false ? [] : ["moved", "moved"])],
    );
    return x;
  };
  // Moving back: the rented spare (slice h2 again, a-h2-2) is released once emptied.
  const e2 = await evacuate("a-h1-2", {});
  assert.equal(e2.result?.spare, "a-h2-2");
  assert.equal(e2.result?.spareAcquired, true);
  assert.equal(e2.result?.spareReleased, true);
  assert.equal(e2.result?.replacement, "a-h1-3");
  await guestsOn("a-h1-3");
  assert.deepEqual(
    (await hostVms()).map((h) => h.id).sort(),
    ["a-h1-3"],
    "the spare rented for it was released",
  );
  for (const id of ["g1", "g2"]) {
    const st = await assertOneIntactCopy(b, id, "a", "h1");
    assert.equal(st.bootId, boots.get(id), `${id} was not rebooted`);
  }
  // Not moving back: the guests stay on the rented spare, which is kept; a-h1-3 is replaced
  // by an empty a-h1-4.
  const e3 = await evacuate("a-h1-3", { moveBack: false });
  assert.equal(e3.result?.spare, "a-h2-3");
  assert.equal(e3.result?.spareAcquired, true);
  assert.equal(e3.result?.spareReleased, false);
  assert.equal(e3.result?.replacement, "a-h1-4");
  await guestsOn("a-h2-3");
  const end = await hostVms();
  assert.deepEqual(end.map((h) => h.id).sort(), ["a-h1-4", "a-h2-3"]);
  assert.deepEqual(end.find((h) => h.id === "a-h1-4")?.guests, []);
  for (const id of ["g1", "g2"]) {
    const st = await assertOneIntactCopy(b, id, "a", "h2");
    assert.equal(st.bootId, boots.get(id), `${id} was not rebooted`);
  }
  passed = true;
});

// The controller on a real testbed (QEMU under TCG), through `nestcloud up --provider testbed`:
// 4 guests created through the API on 2 servers x 2 host VMs; two guests of one host VM are
// made busy (the write-and-verify workload, which also proves their memory stays intact);
// the reconciler sees the host VM overloaded and relieves it with an instant handover to the
// other host VM of the same server; the API shows the migration's progress and the new
// placement; every guest kept running (same boot, heartbeats on, no lost write).
//
// Why these numbers: a slice is one core (its cgroup's CPU limit) and a host VM of
// 2660 MIPS. Each guest is guaranteed 800 MIPS, so a busy guest counts at its full 800 MIPS as
// soon as it gets 0.3 of a core: the two busy guests sharing a-h1's core put it at
// 1600/2660 = 0.60, above the overload level of 0.45, whatever else this machine runs. Moved
// apart, each host VM carries one busy guest (0.30) and at most an idle one (~0.02 each under
// TCG), under the target of 0.40, so one move settles it and nothing moves back. Consolidation
// is off (drainBelow 0) and empty host VMs are kept (spareHostVms): the only move the planner
// can make here is the relief.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { GuestStatus } from "../../src/agent/index.ts";
import {
  api,
  type ControllerProcess,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { sleep } from "../support/waiting.ts";
import {
  assertOneIntactCopy,
  type Bed,
  bringUp,
  qemuPidsOf,
  tearDown,
  testbedOf,
} from "./testbed-helpers.ts";

const MIPS = 800;
const OVERLOAD = 0.45;
const TARGET = 0.4;
const INTERVAL = 3;

interface VmView {
  id: string;
  hostVm: string | null;
  server: string | null;
  powerState: string;
  cpu: number | null;
}
interface HostVmView {
  id: string;
  server: string;
  state: string;
  guests: string[];
  cpu: number;
}
interface MigrationView {
  id: string;
  guest: string;
  from: string;
  to: string;
  mechanism: string;
  status: string;
  progress: number;
  detail: Record<string, number>;
  plan: number | null;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
}
interface SseEvent {
  kind: string;
  data: Record<string, unknown>;
}

const dir = mkdtempSync(join(tmpdir(), "nc-ctl-tb-"));
let bed: Bed | undefined;
let ctl: ControllerProcess | undefined;
let stream: AbortController | undefined;
let passed = false;

after(async () => {
  stream?.abort();
  // On failure, the controller's log is what explains it.
  if (!passed && ctl) process.stderr.write(`controller output (tail):\n${ctl.output().slice(-8000)}\n`);
  if (ctl) await stopGently(ctl);
  try {
    await tearDown(bed);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Collects the controller's server-sent events (what the dashboard listens to). */
async function listen(c: ControllerProcess, into: SseEvent[]): Promise<AbortController> {
  const abort = new AbortController();
  const res = await fetch(`${c.url}/api/events`, {
    headers: { authorization: `Bearer ${c.token}` },
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  void (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data) {
            const e = JSON.parse(data) as { kind: string; data: Record<string, unknown> };
            into.push({ kind: e.kind, data: e.data });
          }
        }
      }
    } catch {
      // aborted at the end
    }
  })();
  return abort;
}

test("testbed: 4 guests through the API, one host VM loaded, relieved by an instant migration", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  bed = await bringUp(testbedOf({ a: ["h1", "h2"], b: ["h1", "h2"] }, { cpus: 1 }));
  const b = bed;
  phase(`testbed ${b.state.id} up`);

  // `nestcloud up --provider testbed --testbed <folder>` as an operator starts it.
  ctl = await startControllerProcess(
    [
      ...["--provider", "testbed", "--testbed", b.state.stateDir],
      ...["--data-dir", dir, "--port", "0", "--interval", String(INTERVAL)],
      ...[
        "--policy-param",
        `overloadUtilization=${OVERLOAD}`,
        "--policy-param",
        `targetUtilization=${TARGET}`,
      ],
      ...["--policy-param", "drainBelow=0", "--policy-param", "spareHostVms=4"],
    ],
    90_000,
    { NESTCLOUD_LOG: "info" },
  );
  const c = ctl;
  phase(`controller on ${c.url}`);

  const hostVms = async () => (await api(c, "GET", "/api/hostvms")).body as HostVmView[];
  const vms = async () => (await api(c, "GET", "/api/vms")).body as VmView[];
  const migrations = async () => (await api(c, "GET", "/api/migrations")).body as MigrationView[];

  // The testbed's slices are the controller's host VMs: 2 servers x 2, all running.
  const before = await hostVms();
  assert.deepEqual(
    before.map((h) => [h.id, h.server, h.state, h.guests.length]),
    [
      ["a-h1", "a", "running", 0],
      ["a-h2", "a", "running", 0],
      ["b-h1", "b", "running", 0],
      ["b-h2", "b", "running", 0],
    ],
  );

  // 4 guests through the API: two on a-h1 (the host VM to be loaded), one on a-h2 (the
  // relief's destination must be able to take a busy guest next to it) and one on server b.
  const placement: Record<string, string> = { g1: "a-h1", g2: "a-h1", g3: "a-h2", g4: "b-h1" };
  const created = await Promise.all(
    Object.entries(placement).map(([id, hostVm]) =>
      api(c, "POST", "/api/vms", { id, tenant: "acme", mipsPerVcpu: MIPS, memoryMiB: 256, hostVm }),
    ),
  );
  for (const r of created) assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r.body));
  for (const r of created) assert.equal(r.body.hostVm, placement[r.body.id]);
  phase("4 guests created through the API");

  // Until the controller has measured every guest (a CPU rate needs two readings).
  const idle = await until(
    "every guest running and measured",
    async () => {
      const list = await vms();
      return list.length === 4 && list.every((v) => v.powerState === "running" && v.cpu !== null)
        ? list
        : undefined;
    },
    30_000,
    500,
  );
  assert.deepEqual(Object.fromEntries(idle.map((v) => [v.id, v.hostVm])), placement);
  const idleHosts = await hostVms();
  t.diagnostic(`idle: ${idleHosts.map((h) => `${h.id} ${h.cpu.toFixed(2)}`).join(", ")}`);
  for (const h of idleHosts)
    assert.ok(h.cpu < OVERLOAD, `${h.id} is not overloaded before the load (${h.cpu})`);
  assert.deepEqual(await migrations(), [], "nothing moved while the guests were idle");

  // Who each guest is before the load: its boot and its heartbeat so far.
  const where = (id: string) => placement[id].split("-") as [string, string];
  const boot: Record<string, { bootId: string; seq: number; uptime: number }> = {};
  for (const id of Object.keys(placement)) {
    const g = await b.client(...where(id)).guest(id);
    assert.equal(g.state, "running");
    boot[id] = { bootId: g.bootId, seq: g.heartbeat?.seq ?? 0, uptime: g.heartbeat?.uptime ?? 0 };
  }

  // Load a-h1: both its guests run the write-and-verify workload, which keeps a vCPU busy.
  const events: SseEvent[] = [];
  stream = await listen(c, events);
  for (const id of ["g1", "g2"]) await b.client("a", "h1").startWorkload(id, { kind: "verify", mib: 16 });
  phase("a-h1 loaded (g1, g2 busy)");

  // Watch the API closely: the host VM's load, and the migration from its first row on.
  const seen: MigrationView[] = [];
  let hottest = 0;
  let more: MigrationView[] | undefined;
  const moved = await until(
    "the reconciler's migration to complete",
    async () => {
      const [hosts, list] = await Promise.all([hostVms(), migrations()]);
      hottest = Math.max(hottest, hosts.find((h) => h.id === "a-h1")?.cpu ?? 0);
      if (list.length > 1) more = list;
      const [m] = list;
      if (!m) return undefined;
      seen.push(m);
      if (m.status === "running" && !more) return undefined;
      return m;
    },
    90_000,
    50,
  );
  assert.equal(more, undefined, `one migration only: ${JSON.stringify(more)}`);
  phase(`migration ${moved.id} ${moved.status}`);
  t.diagnostic(
    `progress seen: ${seen.map((m) => `${m.status}:${m.progress.toFixed(2)}`).join(" ")}; ` +
      `a-h1 peaked at ${hottest.toFixed(2)}`,
  );
  assert.ok(hottest > OVERLOAD, `the API showed a-h1 overloaded (peak ${hottest.toFixed(2)})`);

  // The relief: one of the busy guests, a-h1 -> a-h2, instant, completed.
  assert.equal(moved.status, "completed", `migration ${moved.id}: ${moved.error}`);
  assert.equal(moved.error, null);
  assert.equal(moved.mechanism, "instant");
  assert.equal(moved.from, "a-h1");
  assert.equal(moved.to, "a-h2");
  assert.ok(["g1", "g2"].includes(moved.guest), `a busy guest moved (${moved.guest})`);
  assert.equal(moved.progress, 1);
  assert.ok(moved.finishedAt !== null && moved.finishedAt >= moved.startedAt);

  // Progress: shown while it ran, never going back.
  const running = seen.filter((m) => m.status === "running");
  assert.ok(running.length > 0, "the API showed the migration running");
  assert.ok(running.every((m) => m.progress >= 0 && m.progress < 1));
  assert.ok(
    running.some((m) => m.progress > 0),
    "the API showed the migration's progress (destination prepared, handover) before it completed",
  );
  for (let i = 1; i < seen.length; i++)
    assert.ok(
      seen[i].progress >= seen[i - 1].progress,
      `progress never goes back: ${seen.map((m) => m.progress)}`,
    );

  // It was the reconciler's plan, made to relieve an overload, and applied.
  assert.ok(moved.plan !== null, "the migration belongs to a plan");
  type PlanView = {
    status: string;
    source: string;
    actions: Array<{ kind: string; guest?: string; reason?: string; mechanism?: string; status: string }>;
  };
  // The executor settles the move, then the plan (the next write).
  const plan = await until(
    `plan ${moved.plan} to finish`,
    async () => {
      const p = (await api(c, "GET", `/api/plans/${moved.plan}`)).body as PlanView;
      return p.status === "applying" ? undefined : p;
    },
    10_000,
    100,
  );
  assert.equal(plan.source, "reconciler");
  assert.equal(plan.status, "applied");
  assert.deepEqual(
    plan.actions.map((a) => [a.kind, a.guest, a.reason, a.mechanism, a.status]),
    [["migrate", moved.guest, "overload", "instant", "done"]],
  );

  // The event stream carried it too.
  await until(
    "the migration's events",
    async () =>
      events.some((e) => e.kind === "migration.completed" && e.data.id === moved.id) ? true : undefined,
    10_000,
    100,
  );
  const started = events.find((e) => e.kind === "migration.started" && e.data.id === moved.id);
  assert.ok(started, `migration.started seen: ${events.map((e) => e.kind).join(", ")}`);
  assert.equal(started.data.mechanism, "instant");

  // The API's final placement: the moved guest on a-h2, everything else where it was.
  const expected = { ...placement, [moved.guest]: "a-h2" };
  const stay = moved.guest === "g1" ? "g2" : "g1";
  const final = await vms();
  assert.deepEqual(Object.fromEntries(final.map((v) => [v.id, v.hostVm])), expected);
  assert.equal(final.find((v) => v.id === moved.guest)?.server, "a");
  assert.ok(final.every((v) => v.powerState === "running"));
  const hostsAfter = await hostVms();
  assert.deepEqual(hostsAfter.find((h) => h.id === "a-h2")?.guests.sort(), ["g3", moved.guest].sort());
  assert.deepEqual(hostsAfter.find((h) => h.id === "a-h1")?.guests, [stay]);

  // Relieved, and it stays so: a-h1 falls under the overload level in the API's figures, and
  // later rounds (several intervals) move nothing else, back or elsewhere.
  const relieved = await until(
    "a-h1 relieved in the API's figures",
    async () => {
      const h = (await hostVms()).find((x) => x.id === "a-h1")!;
      return h.cpu < OVERLOAD ? h : undefined;
    },
    15_000,
    500,
  );
  await sleep(3 * INTERVAL * 1000);
  const later = await migrations();
  assert.deepEqual(
    later.map((m) => m.id),
    [moved.id],
    "no further move after the relief",
  );
  const settled = await hostVms();
  t.diagnostic(
    `after: ${settled.map((h) => `${h.id} ${h.cpu.toFixed(2)} [${h.guests.join(",")}]`).join(", ")}`,
  );
  assert.ok(relieved.cpu < OVERLOAD);
  for (const h of settled) assert.ok(h.cpu < OVERLOAD, `${h.id} not overloaded after the relief (${h.cpu})`);

  // The agents agree, and every guest kept running throughout: exactly one QEMU each, the
  // same boot (no restart: its uptime only grew), heartbeats going on, and the busy guests'
  // write-and-verify reporting no lost write.
  for (const [id, hostVm] of Object.entries(expected)) {
    const [server, slice] = hostVm.split("-") as [string, string];
    let st: GuestStatus;
    if (id === "g1" || id === "g2") {
      st = await assertOneIntactCopy(b, id, server, slice, boot[id].seq);
      assert.ok((st.verify?.sweeps ?? 0) > 0, `${id} verified its memory`);
    } else {
      // The idle ones run no workload: one QEMU, running, heart-beating on.
      st = await until(
        `${id}'s next heartbeat`,
        async () => {
          const g = await b.client(server, slice).guest(id);
          return (g.heartbeat?.seq ?? 0) > boot[id].seq ? g : undefined;
        },
        10_000,
        250,
      );
      assert.equal(st.state, "running");
      assert.deepEqual(qemuPidsOf(b, id), [st.pid], `exactly one QEMU for ${id}`);
    }
    assert.equal(st.bootId, boot[id].bootId, `${id} was not rebooted`);
    assert.ok((st.heartbeat?.uptime ?? 0) > boot[id].uptime, `${id}'s uptime went on`);
  }
  assert.deepEqual(
    (await b.client("a", "h1").status()).guests.map((g) => g.guestId),
    [stay],
    "the source host VM no longer runs the moved guest",
  );
  assert.equal(qemuPidsOf(b, moved.guest).length, 1);
  phase("checked");
  passed = true;
});

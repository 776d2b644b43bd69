// A security VM's monitoring follows its target across moves, on real QEMU (TCG) guests under
// the controller (`nestcloud up --provider testbed`): a target t1 and its security VM sv1 are
// created through the API; while t1 keeps starting a new process every second (each with a
// name of its own, ev0001, ev0002, ..., alive for EVENT_LIFE_S), the target is moved by an
// instant handover (same server), then by pre-copy (to the other server), then the security
// VM itself is moved, then both are co-migrated in lock-step to the other server. After each move the pair's channel is the one placement implies, the
// memory monitor runs beside the target (made before the old one was broken; across the
// pre-copy attached to the destination while it waited paused, the hold bounded), and every
// process the guest started in that phase was reported through GET /api/alerts (none missed).
// The untouched guest raises no critical alert at all: no kernel-text false positive, and a
// target that migrated away is a move, not a loss.
//
// Readiness is the monitor's own signal, not a sleep: the generator starts only once the
// memory monitor's baseline alert has reached the controller (before that a new process
// would be part of the baseline, not an event). Waits are bounded by counts of the monitor's
// round period, with room for a loaded 2-core machine (a round takes 0.2-3 s under TCG).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { agentSecVmId, HOLD_BUDGET_MS } from "../../src/providers/agents/secvms.ts";
import { DEFAULT_GUEST_MODULES } from "../../src/qemu/index.ts";
import { cutLink } from "../../src/testbed/index.ts";
import {
  api,
  type ControllerProcess,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { DashboardWatch, dashboardBuilt } from "./secvm-dash.ts";
import { type Bed, bringUp, qemuPidsOf, tearDown, testbedOf } from "./testbed-helpers.ts";

/** The memory monitor's period under the controller (src/providers/agents/secvms.ts). */
const PERIOD_MS = 1000;
/** A bound of N rounds: a round (0.2-3 s under TCG on a loaded machine) plus its period. */
const rounds = (n: number) => n * (PERIOD_MS + 5000);
/** How long each event's process lives: far longer than any wait for a round below. */
const EVENT_LIFE_S = 240;
const TENANT = "acme";
/**
 * Disk and network artifacts: every ARTIFACT_S the guest writes a file matching the security
 * VM's ClamAV signature (/tmp/mNNNN on its data disk: malware), adds /etc/fNNNN (integrity)
 * and sends a DNS query naming ncfNNNN, which the tenant's rule of SID 1000000 + NNNN flags.
 */
const ARTIFACT_S = 4;
const ARTIFACTS = 300;
const MARKER = "NESTCLOUD-FOLLOW-MALWARE-7c1e";
const SIG = "Nestcloud.IT.Follow";
const RULES = Array.from(
  { length: ARTIFACTS + 1 },
  (_, i) =>
    `alert ip any any -> any any (msg:"ncfollow n${pad(i)}"; content:"ncf${pad(i)}"; priority:3; sid:${1_000_000 + i}; rev:1;)`,
).join("\n");
function pad(i: number): string {
  return String(i).padStart(4, "0");
}
/** The target's data disk: a small ext4 tree, with one signature match already in it (m0000). */
function makeImage(path: string): void {
  const tree = `${path}.tree`;
  const f = (p: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(tree, p, ".."), { recursive: true });
    writeFileSync(join(tree, p), data, { mode });
  };
  for (const [i, b] of ["sshd", "login"].entries())
    f(`bin/${b}`, Buffer.alloc(64 * 1024 + i * 4096, i + 1), 0o755);
  f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  for (let i = 0; i < 10; i++) f(`home/user/doc${i}.txt`, `document ${i}\n`.repeat(50));
  f("tmp/m0000", `${MARKER}-0000`);
  execFileSync("truncate", ["-s", String(16 * 1024 * 1024), path]);
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "data", "-d", tree, path]);
  rmSync(tree, { recursive: true, force: true });
}
/** How long a fault test cuts a server's link. */
const LINK_DOWN_MS = 15_000;

interface Vm {
  id: string;
  hostVm: string | null;
  server: string | null;
  powerState: string;
}
interface Pair {
  target: string;
  channel: string | null;
  monitor: {
    hostVm: string | null;
    state: string;
    rounds: number;
    lastMove?: { from: string; to: string; makeMs: number; heldMs: number | null; gapMs: number | null };
  } | null;
}
interface ApiAlert {
  id: number;
  time: number;
  target: string;
  monitor: string;
  severity: string;
  summary: string;
  evidence: Record<string, unknown>;
}

const dir = mkdtempSync(join(tmpdir(), "nc-follow-"));
let bed: Bed;
let ctl: ControllerProcess;
let passed = false;
const alerts: ApiAlert[] = [];
/** The dashboard, opened once as the tenant (secvm-dash.ts). */
let dash: DashboardWatch | undefined;

before(async () => {
  dashboardBuilt();
  bed = await bringUp(testbedOf({ a: ["h1", "h2"], b: ["h1"] }), {
    modules: [...DEFAULT_GUEST_MODULES, "ext4", "crc32c_generic"],
  });
  const a1 = bed.state.hostVms.find((h) => h.server === "a" && h.name === "h1");
  assert.ok(a1, "host VM a-h1");
  const images = join(dirname(a1.qemuDir), "images");
  mkdirSync(images, { recursive: true });
  makeImage(join(images, "follow.img"));
  ctl = await startControllerProcess(
    [
      ...["--provider", "testbed", "--testbed", bed.state.stateDir],
      ...["--data-dir", dir, "--port", "0", "--interval", "3"],
      // Only the test moves guests: no consolidation, empty host VMs kept, and the planner does
      // not bring the security VM to its target (pairAware=0): each move here is the test's.
      ...["--policy-param", "drainBelow=0", "--policy-param", "spareHostVms=3"],
      ...["--policy-param", "pairAware=0"],
    ],
    90_000,
    { NESTCLOUD_LOG: "info" },
  );
});

after(async () => {
  if (!passed && ctl) {
    process.stderr.write(`controller output (tail):\n${ctl.output().slice(-12_000)}\n`);
    process.stderr.write(
      `alerts:\n${alerts.map((a) => `  ${a.id} ${a.severity} ${a.summary}`).join("\n")}\n`,
    );
  }
  await dash?.close();
  if (ctl) await stopGently(ctl);
  try {
    await tearDown(bed?.state ? bed : undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Every alert of sv1 so far, read page by page through the API (cursor kept). */
async function readAlerts(): Promise<ApiAlert[]> {
  for (;;) {
    const after = alerts.at(-1)?.id ?? 0;
    const r = await api(ctl, "GET", `/api/alerts?secvm=sv1&after=${after}&limit=1000`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    alerts.push(...(r.body.alerts as ApiAlert[]));
    if (!r.body.more) return alerts;
  }
}

/** Names of the event processes the memory monitor reported started. */
async function detected(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const a of await readAlerts())
    if (a.monitor === "memory" && a.evidence.kind === "processes-changed")
      for (const s of (a.evidence.started as string[] | undefined) ?? []) {
        const m = /^\d+ (ev\d{4}) /.exec(s);
        if (m) out.add(m[1]);
      }
  return out;
}

/** Artifacts (NNNN) reported by each of the disk monitor's checks and the network monitor. */
async function artifactsDetected(): Promise<{
  malware: Set<string>;
  integrity: Set<string>;
  ids: Set<string>;
}> {
  const out = { malware: new Set<string>(), integrity: new Set<string>(), ids: new Set<string>() };
  for (const a of await readAlerts()) {
    const e = a.evidence;
    let m: RegExpExecArray | null;
    if (a.monitor === "disk" && typeof e.path === "string" && e.signature === `${SIG}.UNOFFICIAL`) {
      if ((m = /^\/tmp\/m(\d{4})$/.exec(e.path))) out.malware.add(m[1]);
    } else if (a.monitor === "disk" && e.change === "added" && typeof e.path === "string") {
      if ((m = /^\/etc\/f(\d{4})$/.exec(e.path))) out.integrity.add(m[1]);
    } else if (a.monitor === "network" && typeof e.signatureId === "number" && e.signatureId >= 1_000_000)
      out.ids.add(pad(e.signatureId - 1_000_000));
  }
  return out;
}

/** Whether an alert is one the test caused on purpose (a planted signature file, a flagged query). */
function planted(a: ApiAlert): boolean {
  return (
    (a.monitor === "disk" && a.evidence.signature === `${SIG}.UNOFFICIAL`) ||
    (a.monitor === "network" &&
      typeof a.evidence.signatureId === "number" &&
      a.evidence.signatureId >= 1_000_000)
  );
}

const vm = async (id: string) => (await api(ctl, "GET", `/api/vms/${id}`)).body as Vm;
const pair = async () => ((await api(ctl, "GET", "/api/security-vms/sv1/channels")).body as Pair[])[0];

/** Runs a command in t1 wherever it runs now. */
async function sh(command: string): Promise<string> {
  const at = await vm("t1");
  assert.ok(at.server && at.hostVm, "t1 is placed");
  const r = await bed.client(at.server, at.hostVm.slice(at.server.length + 1)).exec("t1", {
    command,
    timeoutMs: 60_000,
  });
  assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
  return r.output;
}

/** The events the guest has started so far (its own log). */
async function eventsSoFar(): Promise<string[]> {
  return [...(await sh("cat /tmp/ev.log 2>/dev/null; true")).matchAll(/\bev\d{4}\b/g)].map((m) => m[0]);
}

/** The channel placement implies (same host VM local, same server direct, else remote). */
function expectedChannel(sv: Vm, t: Vm): string {
  return sv.hostVm === t.hostVm ? "local" : sv.server === t.server ? "direct" : "remote";
}

/** Moves a guest through the API and waits for its plan to be applied. */
async function move(id: string, to: string, mechanism: string): Promise<void> {
  const r = await api(ctl, "POST", `/api/vms/${id}/migrate`, { to, mechanism });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const plan = await until(
    `plan ${r.body.plan} (${id} -> ${to}, ${mechanism})`,
    async () => {
      const p = (await api(ctl, "GET", `/api/plans/${r.body.plan}`)).body as { status: string };
      return ["proposed", "approved", "applying"].includes(p.status) ? undefined : p;
    },
    300_000,
    250,
  );
  const migrations = (await api(ctl, "GET", "/api/migrations")).body as Array<{
    guest: string;
    status: string;
    error: string | null;
    mechanism: string;
    startedAt: number;
  }>;
  const last = migrations
    .filter((m) => m.guest === id)
    .sort((a, b) => a.startedAt - b.startedAt)
    .at(-1);
  assert.equal(plan.status, "applied", `move of ${id}: ${JSON.stringify(plan)} ${JSON.stringify(last)}`);
  assert.equal(last?.mechanism, mechanism);
  assert.equal((await vm(id)).hostVm, to);
}

/**
 * After a move: the channel placement implies and the monitor running beside the target,
 * then every event the guest started since `before` (and a few more after the move) reported,
 * and (unless `artifacts` is false: the fault phases, which check processes only) its disk
 * and network artifacts since the last phase that looked.
 */
async function checkPhase(
  t: { diagnostic(m: string): void },
  what: string,
  before: Set<string>,
  o: { artifacts?: boolean } = {},
): Promise<{
  channel: string;
  missed: string[];
  events: number;
  pair: Pair;
  artifacts: number;
  artMissed: { malware: string[]; integrity: string[]; ids: string[] };
}> {
  const [sv, tg] = [await vm("sv1"), await vm("t1")];
  const want = expectedChannel(sv, tg);
  const p = await until(
    `${what}: channel ${want}, monitor on ${tg.hostVm}`,
    async () => {
      const x = await pair();
      return x.channel === want && x.monitor?.hostVm === tg.hostVm && x.monitor.state === "running"
        ? x
        : undefined;
    },
    rounds(20),
    250,
  );
  // Events started after the move too (the generator makes one a second).
  const first = (await eventsSoFar()).length;
  await until(
    "5 events after the move",
    async () => ((await eventsSoFar()).length >= first + 5 ? true : undefined),
    60_000,
    1000,
  );
  const phase = (await eventsSoFar()).filter((e) => !before.has(e));
  for (const e of phase) before.add(e);
  // Each seen within a few rounds of its start; the last ones started a moment ago.
  let seen = await detected();
  const end = Date.now() + rounds(6);
  while (phase.some((e) => !seen.has(e)) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, PERIOD_MS));
    seen = await detected();
  }
  const missed = phase.filter((e) => !seen.has(e));
  // The disk and network artifacts of the phase: each reported by each of its checks.
  const arts =
    o.artifacts === false ? [] : ((await sh("cat /tmp/art.log 2>/dev/null; true")).match(/\b\d{4}\b/g) ?? []);
  const artPhase = arts.filter((n) => !artifactsBefore.has(n));
  for (const n of artPhase) artifactsBefore.add(n);
  let got = await artifactsDetected();
  const unseen = () => ({
    malware: artPhase.filter((n) => !got.malware.has(n)),
    integrity: artPhase.filter((n) => !got.integrity.has(n)),
    ids: artPhase.filter((n) => !got.ids.has(n)),
  });
  // Disk rounds every 3 s (a full one after a move: a few seconds more under TCG).
  const artEnd = Date.now() + 120_000;
  while (Object.values(unseen()).some((l) => l.length > 0) && Date.now() < artEnd) {
    await new Promise((r) => setTimeout(r, 1000));
    got = await artifactsDetected();
  }
  const artMissed = unseen();
  t.diagnostic(
    `${what}: channel ${p.channel}, monitor on ${p.monitor?.hostVm} (${p.monitor?.rounds} rounds); ` +
      `${phase.length} events, ${missed.length} missed${missed.length ? ` (${missed.join(" ")})` : ""}; ` +
      `${artPhase.length} disk/network artifacts, missed: malware [${artMissed.malware.join(" ")}], ` +
      `integrity [${artMissed.integrity.join(" ")}], ids [${artMissed.ids.join(" ")}]`,
  );
  return {
    channel: p.channel as string,
    missed,
    events: phase.length,
    pair: p,
    artifacts: artPhase.length,
    artMissed,
  };
}

/** The dashboard as the tenant, opened once (its first test). */
async function openDashboard(): Promise<DashboardWatch> {
  const tok = await api(ctl, "POST", "/api/tokens", { role: "tenant", tenant: TENANT, label: "dashboard" });
  assert.equal(tok.status, 201, JSON.stringify(tok.body));
  return DashboardWatch.open(ctl.url, tok.body.token as string);
}

/** How much of the page's channel history the previous dashboard check had seen. */
let drawnSeen = 0;

/**
 * The map draws the pair's channel as the API gives it after a move, and the page went there
 * live: the channels it drew since the previous check (starting from the one drawn then), in
 * order, end with it; a change is drawn with the channel it left.
 */
async function drawnAfterMove(t: { diagnostic(m: string): void }, what: string): Promise<string[]> {
  assert.ok(dash, "the dashboard was opened");
  const want = (await pair()).channel as string;
  const d = await dash.channelDrawn("sv1", "t1", want);
  const history = await dash.history("sv1", "t1");
  const since = history.slice(Math.max(0, drawnSeen - 1));
  drawnSeen = history.length;
  const drawn = since.map((h) => h.channel).filter((c, i, all) => i === 0 || all[i - 1] !== c);
  t.diagnostic(`dashboard after the ${what}: drawn ${drawn.join(" -> ")} ("${d.label}")`);
  assert.equal(drawn.at(-1), want);
  if (drawn.length >= 2)
    assert.equal(
      since.findLast((h) => h.channel === want)?.switchedFrom,
      drawn.at(-2),
      "the switch is shown with the channel it left",
    );
  assert.deepEqual(dash.errors, [], "no errors in the page");
  await dash.screenshot(`secvm-dash-${what.replace(/\W+/g, "-")}.png`);
  return drawn;
}

const artifactsBefore = new Set<string>();
const noneMissed = { malware: [], integrity: [], ids: [] };
/** The running (or paused) copies of each guest across every host VM of the testbed. */
async function copies(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const [server, hostVms] of Object.entries({ a: ["h1", "h2"], b: ["h1"] }))
    for (const h of hostVms)
      for (const g of (await bed.client(server, h).status()).guests)
        if (g.state === "running" || g.state === "paused")
          out.set(g.guestId, [...(out.get(g.guestId) ?? []), `${server}-${h}:${g.state}`]);
  return out;
}

/** Asks for a co-migration of the pair; resolves with its plan's id. */
async function coMigrate(to: string): Promise<number> {
  const r = await api(ctl, "POST", "/api/security-vms/sv1/co-migrate", { to });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.plan as number;
}

/** A plan's final state (bounded: nothing may hang). */
async function planEnd(plan: number, boundMs: number): Promise<{ status: string }> {
  return until(
    `plan ${plan} to end`,
    async () => {
      const p = (await api(ctl, "GET", `/api/plans/${plan}`)).body as { status: string };
      return ["proposed", "approved", "applying"].includes(p.status) ? undefined : p;
    },
    boundMs,
    500,
  );
}

/**
 * After a fault: each guest has exactly one QEMU of this testbed and runs once, where the API
 * says it is (nothing left at a destination), within `boundMs`.
 */
async function assertOneCopyEach(what: string, boundMs: number): Promise<void> {
  const end = Date.now() + boundMs;
  for (;;) {
    const [sv, tg] = [await vm("sv1"), await vm("t1")];
    const c = await copies();
    const pids = { sv1: qemuPidsOf(bed, "sv1").length, t1: qemuPidsOf(bed, "t1").length };
    const ok =
      JSON.stringify(c.get("t1")) === JSON.stringify([`${tg.hostVm}:running`]) &&
      JSON.stringify(c.get("sv1")) === JSON.stringify([`${sv.hostVm}:running`]) &&
      pids.sv1 === 1 &&
      pids.t1 === 1;
    if (ok) return;
    if (Date.now() > end)
      assert.fail(
        `${what}: one copy of each (t1 at ${tg.hostVm}, sv1 at ${sv.hostVm}); found ` +
          `${JSON.stringify(Object.fromEntries(c))}, QEMUs ${JSON.stringify(pids)}`,
      );
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Waits for t1's destination QEMU of a move just asked for (a t1 QEMU not in `before`). */
async function destinationQemu(before: Set<number>): Promise<number> {
  return until(
    "t1's destination QEMU",
    async () => qemuPidsOf(bed, "t1").find((p) => !before.has(p)),
    120_000,
    20,
  );
}

describe("a security VM's monitoring follows its target", { timeout: 1_500_000 }, () => {
  const seenEvents = new Set<string>();

  test("the pair is made; the generator starts once the monitor's baseline reached the controller", async (t) => {
    const t0 = Date.now();
    const made = await api(ctl, "POST", "/api/vms", {
      id: "t1",
      tenant: TENANT,
      mipsPerVcpu: 800,
      memoryMiB: 256,
      hostVm: "a-h1",
      disk: { image: "follow.img" },
      nic: true,
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const sv = await api(ctl, "POST", "/api/security-vms", {
      id: "sv1",
      tenant: TENANT,
      targets: ["t1"],
      memoryMiB: 256,
      signatures: [{ name: SIG, hex: Buffer.from(MARKER).toString("hex") }],
      rules: RULES,
    });
    assert.equal(sv.status, 201, JSON.stringify(sv.body));
    await until(
      "t1 and sv1 running",
      async () =>
        (await vm("t1")).powerState === "running" && (await vm("sv1")).powerState === "running"
          ? true
          : undefined,
      300_000,
      500,
    );
    // The readiness signal: the monitor's baseline, read back through the controller.
    const baseline = await until(
      "the memory monitor's baseline through /api/alerts",
      async () => (await readAlerts()).find((a) => a.monitor === "memory" && a.evidence.kind === "baseline"),
      rounds(30),
      500,
    );
    t.diagnostic(
      `baseline through the API ${((Date.now() - t0) / 1000).toFixed(1)} s after create: ${baseline.summary}`,
    );
    // The data disk mounted, the NIC up; the disk monitor's first round (m0000 found) and the
    // network monitor's mirror (ncf0000 flagged) seen through the API before any artifact.
    await sh(
      "for b in /sys/block/vd*; do d=${b##*/}; [ $(cat $b/size) = 32768 ] && mkdir -p /mnt && mount -t ext4 /dev/$d /mnt; done; " +
        "ls /mnt/tmp; for n in /sys/class/net/eth*; do ip link set ${n##*/} up; ip addr add 10.0.2.15/24 dev ${n##*/}; done; true",
    );
    await until(
      "the disk monitor's first round through /api/alerts (m0000)",
      async () => ((await artifactsDetected()).malware.has("0000") ? true : undefined),
      rounds(30),
      1000,
    );
    await until(
      "the network monitor's first alert through /api/alerts (ncf0000)",
      async () => {
        await sh("(timeout 3 nslookup ncf0000.example 10.0.2.2 >/dev/null 2>&1 &)");
        return (await artifactsDetected()).ids.has("0000") ? true : undefined;
      },
      rounds(20),
      3000,
    );
    t.diagnostic(`disk and network monitors ready ${((Date.now() - t0) / 1000).toFixed(1)} s after create`);
    await sh(
      `(i=0; while [ $i -lt ${ARTIFACTS} ]; do i=$((i+1)); n=$(printf '%04d' $i); ` +
        `printf '%s-%s' '${MARKER}' $n > /mnt/tmp/m$n; echo $n > /mnt/etc/f$n; sync; ` +
        `(timeout 3 nslookup ncf$n.example 10.0.2.2 >/dev/null 2>&1 &); echo $n >> /tmp/art.log; ` +
        `sleep ${ARTIFACT_S}; done) </dev/null >/dev/null 2>&1 & echo started`,
    );
    // ev0001... each a script named after itself (its process's name), alive EVENT_LIFE_S.
    await sh(
      `mkdir -p /tmp/ev; (i=0; while [ $i -lt 900 ]; do i=$((i+1)); n=$(printf 'ev%04d' $i); ` +
        `printf '#!/bin/sh\\nsleep ${EVENT_LIFE_S}\\n' > /tmp/ev/$n; chmod +x /tmp/ev/$n; /tmp/ev/$n & ` +
        `echo $n >> /tmp/ev.log; sleep 1; done) </dev/null >/dev/null 2>&1 & echo started`,
    );
    // The kernel patches its own text once the RNG is seeded (the crng_is_ready static key):
    // seeded now, on purpose, so that the check below sees it (an untouched guest does it by
    // itself minutes after boot).
    assert.match(
      await sh("head -c 8 /dev/random >/dev/null; dmesg | grep -c 'crng init done'"),
      /^[1-9]/m,
      "the guest's RNG is seeded",
    );
    const r = await checkPhase(t, "before any move", seenEvents);
    assert.equal(r.channel, expectedChannel(await vm("sv1"), await vm("t1")));
    assert.ok(r.events >= 5, `events were made (${r.events})`);
    assert.deepEqual(r.missed, [], "every process started before any move was reported");
    assert.ok(r.artifacts >= 2, `disk/network artifacts were made (${r.artifacts})`);
    assert.deepEqual(
      r.artMissed,
      noneMissed,
      "every signature file, /etc addition and flagged query reported",
    );
  });

  test("dashboard: the tenant's panel lists the baseline and the processes, live; the map draws the pair's channel", async (t) => {
    dash = await openDashboard();
    await dash.alertShown("the memory monitor's baseline", (a) => a.kind === "baseline" && a.target === "t1");
    const shown = await dash.alertShown("a process started in t1", (a) => a.kind === "processes-changed");
    assert.match(await dash.evidence(shown.id), /ev\d{4}/, "its evidence names the process");
    const top = Math.max(...(await dash.alerts()).map((a) => a.id));
    const live = await dash.alertShown("an alert raised after the page opened", (a) => a.id > top);
    assert.equal((await dash.alerts())[0].id, live.id, "newest first");
    assert.ok(
      (await dash.alerts()).every((a) => a.tenant === TENANT),
      "the tenant's own alerts only",
    );
    // The pair watches its disk too: filtered to it, the panel shows disk alerts and nothing else.
    await dash.filterBy({ monitor: "disk" }, (x) => x.length > 0 && x.every((a) => a.monitor === "disk"));
    await dash.filterBy({ severity: "info" }, (x) => x.length > 0 && x.every((a) => a.severity === "info"));
    await dash.filterBy({}, (x) => x.some((a) => a.kind === "baseline"));
    const want = (await pair()).channel as string;
    assert.equal(want, expectedChannel(await vm("sv1"), await vm("t1")));
    const d = await dash.channelDrawn("sv1", "t1", want);
    drawnSeen = (await dash.history("sv1", "t1")).length;
    t.diagnostic(`dashboard: alert ${live.id} live, pair drawn ${d.channel} ("${d.label}")`);
  });

  test("target moved by an instant handover (same server): channel as placed, no event missed", async (t) => {
    await move("t1", "a-h2", "instant");
    // The guest's pause: its new monitor and mirror were started before it resumed there.
    const mig = (
      (await api(ctl, "GET", "/api/migrations")).body as Array<{
        guest: string;
        startedAt: number;
        detail?: { pauseMs?: number | null };
      }>
    )
      .filter((m) => m.guest === "t1")
      .sort((a, b) => a.startedAt - b.startedAt)
      .at(-1);
    t.diagnostic(`instant move: guest paused ${mig?.detail?.pauseMs ?? "?"} ms`);
    const r = await checkPhase(t, "after the instant move", seenEvents);
    assert.deepEqual(r.missed, [], "every process started around the instant move was reported");
    assert.deepEqual(
      r.artMissed,
      noneMissed,
      "every disk and network artifact around the instant move reported",
    );
  });

  test("dashboard: the map draws the channel after the instant move, switched live", async (t) => {
    await drawnAfterMove(t, "instant move");
  });

  test("target moved by pre-copy (another server): the monitor attached before it resumed, no event missed", async (t) => {
    await move("t1", "b-h1", "precopy");
    const r = await checkPhase(t, "after the pre-copy", seenEvents);
    assert.equal(r.channel, expectedChannel(await vm("sv1"), await vm("t1")));
    // The new monitor's baseline came from the paused destination and the old one's last round
    // from the stopped source: both the guest's state at the switchover.
    const mv = r.pair.monitor?.lastMove;
    t.diagnostic(`pre-copy: monitor made in ${mv?.makeMs} ms, destination held ${mv?.heldMs} ms`);
    assert.equal(mv?.from, "a-h2");
    assert.equal(mv?.to, "b-h1");
    assert.ok(mv?.heldMs !== null && mv?.heldMs !== undefined, "attached before the destination resumed");
    assert.ok(mv.heldMs <= HOLD_BUDGET_MS, `held ${mv.heldMs} ms, at most ${HOLD_BUDGET_MS}`);
    assert.deepEqual(r.missed, [], "every process started around the pre-copy was reported");
    assert.deepEqual(r.artMissed, noneMissed, "every disk and network artifact around the pre-copy reported");
  });

  test("dashboard: the map draws the channel after the pre-copy", async (t) => {
    await drawnAfterMove(t, "pre-copy");
  });

  test("metrics: the instant move and the pre-copy attached before it resumed left no monitoring gap", async (t) => {
    assert.equal((await pair()).monitor?.lastMove?.gapMs, 0, "the pre-copy's move: no gap");
    const res = await fetch(`${ctl.url}/metrics`, { headers: { authorization: `Bearer ${ctl.token}` } });
    const text = await res.text();
    const figure = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    const moves = figure("nestcloud_secvm_monitoring_gap_seconds_count");
    t.diagnostic(
      `monitor moves ${moves}, gaps summed ${figure("nestcloud_secvm_monitoring_gap_seconds_sum")} s`,
    );
    assert.ok(moves >= 2, `both moves counted (${moves})`);
    assert.equal(figure('nestcloud_secvm_monitoring_gap_seconds_bucket\\{le="0"\\}'), moves, "every gap 0");
  });

  test("the security VM moved: the channel changes, the monitor stays beside the target", async (t) => {
    const [sv, tg] = [await vm("sv1"), await vm("t1")];
    const to = sv.hostVm === tg.hostVm ? "a-h1" : (tg.hostVm as string);
    await move("sv1", to, sv.server === (to.startsWith("a-") ? "a" : "b") ? "instant" : "precopy");
    const r = await checkPhase(t, "after the security VM's move", seenEvents);
    assert.equal(r.channel, to === tg.hostVm ? "local" : "remote");
    assert.deepEqual(r.missed, []);
    assert.deepEqual(r.artMissed, noneMissed, "every disk and network artifact reported");
  });

  test("dashboard: the security VM's move changes the drawn channel, switched live", async (t) => {
    const drawn = await drawnAfterMove(t, "security VM's move");
    assert.ok(
      drawn.length >= 2 && drawn[0] !== drawn.at(-1),
      `the drawn channel changed: ${drawn.join(" -> ")}`,
    );
  });

  test("co-migrated together (POST /api/security-vms/:id/co-migrate, lock-step): local at the destination, no event missed, each runs once", async (t) => {
    const [sv, tg] = [await vm("sv1"), await vm("t1")];
    assert.equal(sv.hostVm, tg.hostVm, "the pair shares a host VM before the co-migration");
    const to = tg.server === "a" ? "b-h1" : "a-h1";
    const r0 = await api(ctl, "POST", "/api/security-vms/sv1/co-migrate", { to });
    assert.equal(r0.status, 202, JSON.stringify(r0.body));
    const members = r0.body.members as { guest: string; mechanism: string }[];
    assert.deepEqual(members.map((m) => m.guest).sort(), ["sv1", "t1"]);
    // A second request while it is in flight is refused, not queued behind it.
    const again = await api(ctl, "POST", "/api/security-vms/sv1/co-migrate", { to });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    const plan = await until(
      `co-migration plan ${r0.body.plan}`,
      async () => {
        const p = (await api(ctl, "GET", `/api/plans/${r0.body.plan}`)).body as { status: string };
        return ["proposed", "approved", "applying"].includes(p.status) ? undefined : p;
      },
      600_000,
      500,
    );
    assert.equal(plan.status, "applied", JSON.stringify(plan));
    assert.equal((await vm("sv1")).hostVm, to);
    assert.equal((await vm("t1")).hostVm, to);
    const r = await checkPhase(t, "after the co-migration", seenEvents);
    assert.equal(r.channel, "local");
    const mv = r.pair.monitor?.lastMove;
    t.diagnostic(`co-migration: monitor made in ${mv?.makeMs} ms, destination held ${mv?.heldMs} ms`);
    assert.equal(mv?.to, to);
    assert.ok(mv?.heldMs !== null && mv?.heldMs !== undefined, "attached before the target resumed");
    assert.ok(mv.heldMs <= HOLD_BUDGET_MS, `held ${mv.heldMs} ms, at most ${HOLD_BUDGET_MS}`);
    assert.deepEqual(r.missed, [], "every process started around the co-migration was reported");
    assert.deepEqual(
      r.artMissed,
      noneMissed,
      "every disk and network artifact around the co-migration reported",
    );
    // One running copy of each, across every host VM of the testbed.
    const all = await copies();
    assert.deepEqual(all.get("t1"), [`${to}:running`]);
    assert.deepEqual(all.get("sv1"), [`${to}:running`]);
  });

  // Faults during a switch (issue 13): the pair ends consistent and nothing hangs.
  test("a co-migration whose target's destination dies before it runs: both stay at the source, one copy of each, monitoring goes on, no event missed", async (t) => {
    const [sv, tg] = [await vm("sv1"), await vm("t1")];
    const to = tg.server === "a" ? "b-h1" : "a-h1";
    const before = new Set(qemuPidsOf(bed, "t1"));
    const t0 = Date.now();
    const plan = await coMigrate(to);
    const dest = await destinationQemu(before);
    process.kill(dest, "SIGKILL");
    const end = await planEnd(plan, 300_000);
    t.diagnostic(`destination QEMU ${dest} killed; the plan ended ${end.status} after ${Date.now() - t0} ms`);
    assert.equal(end.status, "failed", `the co-migration failed: ${JSON.stringify(end)}`);
    assert.equal((await vm("t1")).hostVm, tg.hostVm, "t1 stayed at its source");
    assert.equal((await vm("sv1")).hostVm, sv.hostVm, "sv1 stayed at its source (lock-step)");
    await assertOneCopyEach("after the destination died", 60_000);
    const r = await checkPhase(t, "after the failed co-migration", seenEvents, { artifacts: false });
    assert.equal(r.channel, "local");
    assert.deepEqual(r.missed, [], "every process started around the failed co-migration was reported");
  });

  test("the link to the destination cut during a co-migration: the pair ends consistent (one copy of each, the monitor beside the target), no event missed, nothing hangs", async (t) => {
    const tg = await vm("t1");
    const to = tg.server === "a" ? "b-h1" : "a-h1";
    const server = to.split("-")[0];
    const before = new Set(qemuPidsOf(bed, "t1"));
    const t0 = Date.now();
    const plan = await coMigrate(to);
    await destinationQemu(before);
    await cutLink(bed.state, server, false);
    try {
      // Longer than the orchestrator's bounds (5 failed lease renewals of the destination, 10 s
      // without progress): the move is given up, not ridden over (8 s was: TCP resumed).
      await new Promise((r) => setTimeout(r, LINK_DOWN_MS));
    } finally {
      await cutLink(bed.state, server, true);
    }
    const end = await planEnd(plan, 300_000);
    t.diagnostic(
      `link of ${server} down ${LINK_DOWN_MS} ms; the plan ended ${end.status} after ${Date.now() - t0} ms`,
    );
    assert.equal(end.status, "failed", `the co-migration was given up: ${JSON.stringify(end)}`);
    assert.equal((await vm("t1")).hostVm, tg.hostVm, "t1 stayed at its source");
    await assertOneCopyEach("after the link came back", 90_000);
    const r = await checkPhase(t, "after the cut link", seenEvents, { artifacts: false });
    assert.deepEqual(r.missed, [], "every process started around the cut was reported");
  });

  test("no critical alert on the untouched guest but what it planted: no kernel-text false positive, moves are not losses", async () => {
    const all = await readAlerts();
    // Apart from what the test planted (signature files, flagged queries), nothing critical.
    const critical = all.filter((a) => a.severity === "critical" && !planted(a));
    assert.deepEqual(
      critical.map((a) => a.summary),
      [],
      "no critical alert",
    );
    passed = true;
  });

  // After the check above: this fault is alerted critical on purpose.
  test("the old monitor's service killed during a co-migration: the loss alerted, monitoring resumed, nothing hangs, only events in the alerted loss missed", async (t) => {
    passed = false;
    const tg = await vm("t1");
    const to = tg.server === "a" ? "b-h1" : "a-h1";
    const [server, h] = (tg.hostVm as string).split("-");
    const agent = bed.client(server, h);
    const svc = (await agent.secVm(agentSecVmId("sv1", "t1"))).pid;
    assert.ok(svc, "the monitor's service runs beside t1");
    const before = new Set(qemuPidsOf(bed, "t1"));
    const lastAlert = (await readAlerts()).at(-1)?.id ?? 0;
    const plan = await coMigrate(to);
    await destinationQemu(before);
    // What the old service had reported when it died: anything else it had not seen yet.
    const reported = await detected();
    process.kill(svc, "SIGKILL");
    const end = await planEnd(plan, 300_000);
    const why = (end as { actions?: { error: string | null }[] }).actions
      ?.map((a) => a.error)
      .filter(Boolean);
    t.diagnostic(
      `service ${svc} killed; the plan ended ${end.status}${why?.length ? `: ${why.join("; ")}` : ""}`,
    );
    await assertOneCopyEach("after the service was killed", 90_000);
    // The loss alerted, then a baseline again (the restarted service's, or the new monitor's).
    const died = await until(
      "the loss alerted",
      async () =>
        (await readAlerts()).find(
          (a) => a.id > lastAlert && a.severity === "critical" && a.evidence.kind === "secvm-died",
        ),
      rounds(10),
      500,
    );
    await until(
      "monitoring resumed (a baseline after the loss)",
      async () =>
        (await readAlerts()).find(
          (a) => a.id > died.id && a.monitor === "memory" && a.evidence.kind === "baseline",
        ),
      rounds(20),
      500,
    );
    // Events started up to now were possibly inside the loss (not seen by the dead service).
    const inLoss = new Set((await eventsSoFar()).filter((e) => !reported.has(e)));
    const r = await checkPhase(t, "after the service was killed", seenEvents, { artifacts: false });
    const unexplained = r.missed.filter((e) => !inLoss.has(e));
    t.diagnostic(`missed inside the alerted loss: ${r.missed.length - unexplained.length}`);
    assert.ok(r.events - inLoss.size >= 5, `events after the loss were made (${r.events - inLoss.size})`);
    assert.deepEqual(unexplained, [], "every process started after monitoring resumed was reported");
    passed = true;
  });
});

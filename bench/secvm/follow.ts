/**
 * Monitoring that follows its target (npm run bench:secvm -- --follow [--quick]; issue 13,
 * "Measured"): a controller (`nestcloud up --provider testbed`) on a testbed of two servers
 * (a: h1, h2; b: h1) with a target t1 and its security VM sv1 made through the API, as in
 * test/integration/secvm-follow.test.ts. While t1 produces numbered events continuously (a
 * process every second for the memory monitor, a marked file every second for the disk
 * monitor, a marked packet every 50 ms for the network monitor: test/support/follow-events.ts),
 * the pair is moved REPS times in each scenario:
 *   target instant    t1 between the host VMs of server a (instant handover);
 *   target pre-copy   t1 between the servers;
 *   security VM move  sv1 to t1's host VM and away again (instant or pre-copy by placement);
 *   co-migration      both in lock-step between the servers (POST .../co-migrate).
 * Each move is timed from its request until the plan applied and the pair's channel and monitor
 * settled at the target's place; the guest's own pause (source stopped to destination resumed)
 * comes from the controller's log of the migration. Then every alert is read through
 * GET /api/alerts and matched to the events by their numbers (test/support/follow-analysis.ts):
 * an event made around a move and never reported is missed; the longest interval without an
 * observation across a move is its gap. A kind whose monitor the pair does not run is reported
 * "not monitored", a kind the guest cannot produce (no data disk, no NIC) "not produced".
 * Writes bench/results/secvm-follow.json and the bench:secvm-follow section of docs/benchmarks.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { agentLauncher, hostVmClient } from "../../src/agent/index.ts";
import { buildGuestImage } from "../../src/qemu/index.ts";
import { checkTestbedSpec, down, type TestbedSpec, type TestbedState, up } from "../../src/testbed/index.ts";
import {
  api,
  type ControllerProcess,
  startControllerProcess,
  stopGently,
  until,
} from "../../test/support/controller-process.ts";
import {
  EVENT_KINDS,
  type EventKind,
  type FollowAlert,
  type FollowRow,
  followRows,
  type MoveRecord,
  observe,
  steadyIntervals,
} from "../../test/support/follow-analysis.ts";
import {
  type GeneratorCounts,
  PACKET_DST_BASE,
  parseCounts,
  READ_COUNTS_COMMAND,
  STOP_GENERATORS_COMMAND,
  startGeneratorsCommand,
} from "../../test/support/follow-events.ts";
import { machine, median, table, writeDocsSection, writeResults } from "../lib.ts";

const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SERVERS = { a: ["h1", "h2"], b: ["h1"] } as const;
const TENANT = "acme";
/** The memory monitor's period under the controller (src/providers/agents/secvms.ts). */
const PERIOD_MS = 1000;
/** A bound of N monitor rounds on a loaded 2-core machine (a round takes 0.2-3 s under TCG). */
const rounds = (n: number) => n * (PERIOD_MS + 5000);
/** Events the guest must make after a move's settle before the move's record closes. */
const EVENTS_AFTER = 3;
/** The target: the longest unobserved interval at most the guest's own pause plus this. */
const GAP_SLACK_MS = 50;

export const SCENARIOS = ["target instant", "target pre-copy", "security VM move", "co-migration"] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Vm {
  id: string;
  hostVm: string | null;
  server: string | null;
  powerState: string;
}
interface Pair {
  channel: string | null;
  monitor: {
    hostVm: string | null;
    state: string;
    rounds: number;
    lastMove?: { from: string; to: string; makeMs: number; heldMs: number | null };
  } | null;
}
interface ApiAlert extends FollowAlert {
  id: number;
  severity: string;
  summary: string;
}

/** The channel placement implies (same host VM local, same server direct, else remote). */
function expectedChannel(sv: Vm, t: Vm): string {
  return sv.hostVm === t.hostVm ? "local" : sv.server === t.server ? "direct" : "remote";
}

class Run {
  readonly alerts: ApiAlert[] = [];
  constructor(
    readonly bed: TestbedState,
    readonly ctl: ControllerProcess,
  ) {}

  vm = async (id: string) => (await api(this.ctl, "GET", `/api/vms/${id}`)).body as Vm;
  pair = async () => ((await api(this.ctl, "GET", "/api/security-vms/sv1/channels")).body as Pair[])[0];

  /** Every alert of sv1 so far, read page by page (cursor kept). */
  async readAlerts(): Promise<ApiAlert[]> {
    for (;;) {
      const after = this.alerts.at(-1)?.id ?? 0;
      const r = await api(this.ctl, "GET", `/api/alerts?secvm=sv1&after=${after}&limit=1000`);
      if (r.status !== 200) throw new Error(`GET /api/alerts: ${r.status} ${JSON.stringify(r.body)}`);
      this.alerts.push(...(r.body.alerts as ApiAlert[]));
      if (!r.body.more) return this.alerts;
    }
  }

  /** Runs a command in t1 wherever it runs now. */
  async sh(command: string): Promise<string> {
    const at = await this.vm("t1");
    if (!at.server || !at.hostVm) throw new Error("t1 is not placed");
    const r = await hostVmClient(this.bed, at.server, at.hostVm.slice(at.server.length + 1)).exec("t1", {
      command,
      timeoutMs: 60_000,
    });
    if (r.exitCode !== 0) throw new Error(`${command}: ${r.output}`);
    return r.output;
  }

  counts = async (): Promise<GeneratorCounts> => parseCounts(await this.sh(READ_COUNTS_COMMAND));

  /** Waits for a plan to end; throws unless it was applied. */
  async applied(plan: number, what: string): Promise<void> {
    const p = await until(
      `plan ${plan} (${what})`,
      async () => {
        const x = (await api(this.ctl, "GET", `/api/plans/${plan}`)).body as { status: string };
        return ["proposed", "approved", "applying"].includes(x.status) ? undefined : x;
      },
      600_000,
      250,
    );
    if (p.status !== "applied") throw new Error(`${what}: plan ${plan} ${JSON.stringify(p).slice(0, 600)}`);
  }

  async migrate(id: string, to: string, mechanism: string): Promise<void> {
    const r = await api(this.ctl, "POST", `/api/vms/${id}/migrate`, { to, mechanism });
    if (r.status !== 202) throw new Error(`migrate ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    await this.applied(r.body.plan, `${id} -> ${to} (${mechanism})`);
  }

  async coMigrate(to: string): Promise<void> {
    const r = await api(this.ctl, "POST", "/api/security-vms/sv1/co-migrate", { to });
    if (r.status !== 202) throw new Error(`co-migrate: ${r.status} ${JSON.stringify(r.body)}`);
    await this.applied(r.body.plan, `co-migration -> ${to}`);
  }

  /** The pair settled: the channel placement implies, its monitor running beside the target. */
  async settled(): Promise<Pair> {
    const [sv, tg] = [await this.vm("sv1"), await this.vm("t1")];
    const want = expectedChannel(sv, tg);
    return until(
      `channel ${want}, monitor on ${tg.hostVm}`,
      async () => {
        const x = await this.pair();
        return x.channel === want && x.monitor?.hostVm === tg.hostVm && x.monitor.state === "running"
          ? x
          : undefined;
      },
      rounds(20),
      250,
    );
  }

  /** The guests' pauses the controller logged since `from` (its output's offset), by guest. */
  pausesSince(from: number): Map<string, number> {
    const out = new Map<string, number>();
    const re = /migration \S+ of (\S+) \S+ -> \S+ \(\S+\) completed in \d+ ms, guest paused (\d+) ms/g;
    for (const m of this.ctl.output().slice(from).matchAll(re))
      out.set(m[1], Math.max(out.get(m[1]) ?? 0, Number(m[2])));
    return out;
  }
}

/** The next move of a scenario from where the pair is now (null: placement does not allow it). */
function nextMove(
  scenario: Scenario,
  sv: Vm,
  tg: Vm,
): { guest: "t1" | "sv1" | "both"; to: string; mechanism: string } | null {
  const other = (server: string | null) => (server === "a" ? "b-h1" : "a-h1");
  switch (scenario) {
    case "target instant":
      if (tg.server !== "a") return null;
      return { guest: "t1", to: tg.hostVm === "a-h1" ? "a-h2" : "a-h1", mechanism: "instant" };
    case "target pre-copy":
      return { guest: "t1", to: other(tg.server), mechanism: "precopy" };
    case "security VM move": {
      // To the target's host VM, or away from it (to the other host VM of server a, else a-h1).
      const to = sv.hostVm !== tg.hostVm ? (tg.hostVm as string) : tg.hostVm === "a-h1" ? "a-h2" : "a-h1";
      return { guest: "sv1", to, mechanism: to.startsWith(`${sv.server}-`) ? "instant" : "precopy" };
    }
    case "co-migration":
      return { guest: "both", to: other(tg.server), mechanism: "lock-step" };
  }
}

const seqsOf = (c: GeneratorCounts): Record<EventKind, number> => ({
  memory: c.memory,
  disk: c.disk,
  network: c.network,
});

async function oneMove(run: Run, scenario: Scenario, rep: number): Promise<MoveRecord> {
  const [sv, tg] = [await run.vm("sv1"), await run.vm("t1")];
  const mv = nextMove(scenario, sv, tg);
  const pairBefore = await run.pair();
  const channelBefore = pairBefore.channel;
  const before = await run.counts();
  const mark = run.ctl.output().length;
  const from = Date.now();
  const base = { scenario, rep, from, channelBefore, seqBefore: seqsOf(before) };
  try {
    if (!mv) throw new Error(`no ${scenario} from t1@${tg.hostVm}, sv1@${sv.hostVm}`);
    if (mv.guest === "both") await run.coMigrate(mv.to);
    else await run.migrate(mv.guest, mv.to, mv.mechanism);
    const p = await run.settled();
    const to = Date.now();
    // Events made after the switch too, so that the monitor's first rounds there count.
    const first = (await run.counts()).memory;
    const after = await until(
      `${EVENTS_AFTER} events after the move`,
      async () => {
        const c = await run.counts();
        return c.memory >= first + EVENTS_AFTER ? c : undefined;
      },
      60_000,
      500,
    );
    const pauses = run.pausesSince(mark);
    // The monitor's switch of this move (the API keeps the last one: unchanged, it did not move).
    const sw = p.monitor?.lastMove;
    const moved = sw && JSON.stringify(sw) !== JSON.stringify(pairBefore.monitor?.lastMove) ? sw : undefined;
    return {
      ...base,
      to,
      channelAfter: p.channel,
      // The target's own pause: none when only the security VM moved.
      pauseMs: mv.guest === "sv1" ? 0 : (pauses.get("t1") ?? null),
      ok: true,
      seqAfter: seqsOf(after),
      makeMs: moved?.makeMs ?? null,
      heldMs: moved?.heldMs ?? null,
    };
  } catch (e) {
    const after = await run.counts().catch(() => before);
    return {
      ...base,
      to: Date.now(),
      channelAfter: (await run.pair().catch(() => null))?.channel ?? null,
      pauseMs: null,
      ok: false,
      error: (e as Error).message.slice(0, 400),
      seqAfter: seqsOf(after),
    };
  }
}

export interface FollowResult {
  rows: FollowRow[];
  moves: MoveRecord[];
  info: Record<string, unknown>;
}

async function measure(reps: number): Promise<FollowResult> {
  const image = await buildGuestImage();
  const root = mkdtempSync(join(tmpdir(), "nc-bench-follow-"));
  const dataDir = mkdtempSync(join(tmpdir(), "nc-bench-follow-ctl-"));
  log(`bench:secvm --follow: testbed a(h1,h2) b(h1), ${reps} moves per scenario`);
  const spec = {
    servers: Object.entries(SERVERS).map(([name, hs]) => ({
      name,
      hostVms: hs.map((h) => ({ name: h, memoryMiB: 1024 })),
    })),
  };
  const bed = await up(checkTestbedSpec(spec) as TestbedSpec, {
    launcher: agentLauncher({ image }),
    root,
    log: () => {},
  });
  let ctl: ControllerProcess | undefined;
  try {
    ctl = await startControllerProcess(
      [
        ...["--provider", "testbed", "--testbed", bed.stateDir],
        ...["--data-dir", dataDir, "--port", "0", "--interval", "3"],
        // Only the bench moves guests (as in secvm-follow.test.ts).
        ...["--policy-param", "drainBelow=0", "--policy-param", "spareHostVms=3"],
        ...["--policy-param", "pairAware=0"],
      ],
      90_000,
      { NESTCLOUD_LOG: "info" },
    );
    const run = new Run(bed, ctl);
    const made = await api(ctl, "POST", "/api/vms", {
      id: "t1",
      tenant: TENANT,
      mipsPerVcpu: 800,
      memoryMiB: 256,
      hostVm: "a-h1",
    });
    if (made.status !== 201) throw new Error(`create t1: ${JSON.stringify(made.body)}`);
    const sv = await api(ctl, "POST", "/api/security-vms", {
      id: "sv1",
      tenant: TENANT,
      targets: ["t1"],
      memoryMiB: 256,
    });
    if (sv.status !== 201) throw new Error(`create sv1: ${JSON.stringify(sv.body)}`);
    await until(
      "t1 and sv1 running",
      async () =>
        (await run.vm("t1")).powerState === "running" && (await run.vm("sv1")).powerState === "running"
          ? true
          : undefined,
      300_000,
      500,
    );
    // The generators start once the memory monitor's baseline reached the controller: before
    // that a new process would be part of the baseline, not an event.
    await until(
      "the memory monitor's baseline through /api/alerts",
      async () =>
        (await run.readAlerts()).find((a) => a.monitor === "memory" && a.evidence.kind === "baseline"),
      rounds(30),
      500,
    );
    await run.sh(startGeneratorsCommand());
    await run.sh("head -c 8 /dev/random >/dev/null; true"); // the RNG seeded now (see the test)
    log("generators started; steady state for 20 s");
    await sleep(20_000);
    const moves: MoveRecord[] = [];
    for (const scenario of SCENARIOS) {
      if (scenario === "co-migration") {
        // Lock-step moves a pair that shares a host VM: bring sv1 to t1 first (not counted).
        const [s, t] = [await run.vm("sv1"), await run.vm("t1")];
        if (s.hostVm !== t.hostVm) {
          await run
            .migrate("sv1", t.hostVm as string, s.server === t.server ? "instant" : "precopy")
            .catch((e) => log(`  bringing sv1 to t1 failed: ${(e as Error).message}`));
          await run.settled().catch(() => undefined);
        }
      }
      for (let rep = 1; rep <= reps; rep++) {
        const m = await oneMove(run, scenario, rep);
        moves.push(m);
        log(
          `  ${scenario} #${rep}: ${m.ok ? "ok" : `FAILED (${m.error})`} ${m.channelBefore} -> ${m.channelAfter}, ` +
            `${((m.to - m.from) / 1000).toFixed(1)} s, pause ${m.pauseMs ?? "?"} ms, held ${m.heldMs ?? "-"} ms; load ${loadavg()[0].toFixed(1)}`,
        );
        await run.readAlerts();
      }
    }
    // The last events reported (or not) within a few rounds; then the generators stop.
    const last = await run.counts();
    await run.sh(STOP_GENERATORS_COMMAND).catch((e) => log(`stopping the generators: ${e}`));
    const end = Date.now() + rounds(6);
    let obs = observe(await run.readAlerts(), "t1", PACKET_DST_BASE);
    while (Date.now() < end && obs.monitored.has("memory") && !obs.seen.memory.has(last.memory)) {
      await sleep(PERIOD_MS);
      obs = observe(await run.readAlerts(), "t1", PACKET_DST_BASE);
    }
    const produced: Record<EventKind, boolean> = {
      memory: last.memory > 0,
      disk: last.disk > 0,
      network: last.sent > 0,
    };
    const rows = followRows(moves, obs, produced);
    const windows = moves.map((m) => ({ from: m.from, to: m.to }));
    const steady = {} as Record<EventKind, { medianMs: number; maxMs: number; intervals: number } | null>;
    for (const k of EVENT_KINDS) {
      const xs = steadyIntervals(obs.times[k], windows);
      steady[k] = xs.length ? { medianMs: median(xs), maxMs: Math.max(...xs), intervals: xs.length } : null;
    }
    const info = {
      reps,
      events: { ...seqsOf(last), packetsSent: last.sent, packetErrors: last.errors, diskDir: last.diskDir },
      produced,
      monitored: EVENT_KINDS.filter((k) => obs.monitored.has(k)),
      steadyObservationIntervals: steady,
      alerts: run.alerts.length,
      criticalAlerts: run.alerts.filter((a) => a.severity === "critical").map((a) => a.summary),
      loadAtEnd: Number(loadavg()[0].toFixed(1)),
    };
    return { rows, moves, info };
  } finally {
    if (ctl) await stopGently(ctl);
    const rep = await down(bed);
    if (rep.problems.length) log(`teardown problems: ${rep.problems.join("; ")}`);
    rmSync(root, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const fmtMs = (x: number | null) => (x === null ? "never resumed" : x.toFixed(0));

function kindCell(r: FollowRow, k: EventKind): string {
  const x = r.kinds[k];
  if (x.status === "not produced")
    return k === "disk" ? "not produced (no data disk)" : "not produced (no NIC)";
  if (x.status !== "monitored") return `not monitored (${x.events} made)`;
  return `${x.missed} of ${x.events} (gap ${fmtMs(x.gapMs)})`;
}

function targetMet(r: FollowRow): string {
  if (r.moves === 0) return "no move";
  const gapOk = r.excessMs !== null && r.excessMs <= GAP_SLACK_MS;
  return `${r.missedEvents === 0 ? "yes" : "NO"} / ${gapOk ? "yes" : "NO"}`;
}

export async function runFollow(quick: boolean): Promise<void> {
  const reps = quick ? 2 : 10;
  const started = Date.now();
  const { rows, moves, info } = await measure(reps);
  const stamp = new Date().toISOString();
  const file = writeResults("secvm-follow", {
    date: stamp,
    machine: machine(),
    quick,
    durationS: Math.round((Date.now() - started) / 1000),
    info,
    rows,
    moves,
  });
  const tbl = table(
    [
      "scenario",
      "channel before",
      "channel after",
      "moves",
      "failed",
      "gapMs",
      "guest pause ms",
      "gap - pause ms",
      "missedEvents",
      "memory missed",
      "disk missed",
      "network missed",
      "held ms (max)",
      "missed = 0 / gap <= pause + 50 ms",
    ],
    rows.map((r) => [
      r.scenario,
      r.channelBefore ?? "-",
      r.channelAfter ?? "-",
      r.moves,
      r.failed,
      fmtMs(r.gapMs),
      r.pauseMs ?? "?",
      r.excessMs === null ? "?" : r.excessMs.toFixed(0),
      r.missedEvents,
      kindCell(r, "memory"),
      kindCell(r, "disk"),
      kindCell(r, "network"),
      r.maxHeldMs ?? "-",
      targetMet(r),
    ]),
  );
  process.stdout.write(`${tbl}\n`);
  const steady = info.steadyObservationIntervals as Record<
    string,
    { medianMs: number; maxMs: number } | null
  >;
  const steadyText = EVENT_KINDS.map((k) =>
    steady[k]
      ? `${k} median ${steady[k].medianMs.toFixed(0)} ms, max ${steady[k].maxMs.toFixed(0)} ms`
      : `${k} -`,
  ).join("; ");
  const failures = moves.filter((m) => !m.ok).map((m) => `${m.scenario} #${m.rep}: ${m.error}`);
  writeDocsSection(
    "bench:secvm-follow",
    `## Security VMs following their targets: channel switches, gaps, missed events

Command: \`npm run bench:secvm -- --follow${quick ? " --quick" : ""}\` — ${stamp.slice(0, 10)}, ${machine()}, 2 cores shared
with other work (load ${info.loadAtEnd} at the end), QEMU under TCG; ${reps} moves per scenario, ${Math.round((Date.now() - started) / 60000)} min.
A controller on a testbed (servers a: h1, h2; b: h1) with a target t1 (256 MiB) and its security VM sv1 made
through the API; t1 makes numbered events the whole time: a process every second (memory), a file with
nestcloud's AV marker every second on its data disk (disk), a UDP packet with the IDS test marker every 50 ms
(network). Target instant: t1 between a/h1 and a/h2; target pre-copy: t1 between the servers; security VM
move: sv1 to t1's host VM and away; co-migration: both in lock-step between the servers. A move is timed from
its request to the pair's channel and monitor settled at the target's place; gapMs is the longest interval
without an observation (an alert reporting an event) across a move, max over the moves and monitored kinds;
guest pause: the target's own (source stopped to destination resumed, from the controller's log; 0 when only
sv1 moved; it includes the time the destination was held paused for the monitor's attach, "held");
gap - pause: each move's gap less its guest pause, max over the moves; missedEvents: events made from just before the request until ${EVENTS_AFTER} s after the settle that
no alert reported; a kind is "not monitored" when the pair runs no monitor of it, "not produced" when the guest
cannot make it (no data disk, no NIC). Targets (issue 13): missedEvents = 0; gapMs <= guest pause + ${GAP_SLACK_MS} ms
(gap - pause <= ${GAP_SLACK_MS}). An observation needs an event to report, so no gap can be shorter than the
fastest monitored kind's event interval (1 s for processes, 50 ms for packets).

${tbl}

Observation intervals outside the moves (the monitors' own rhythm): ${steadyText}. Events made:
memory ${(info.events as GeneratorCounts).memory}, disk ${(info.events as GeneratorCounts).disk}, packets sent
${(info.events as { packetsSent: number }).packetsSent}; monitored: ${(info.monitored as string[]).join(", ") || "none"}.
${failures.length ? `\nFailed moves: ${failures.join("; ")}\n` : ""}`,
  );
  log(`wrote ${file}`);
}

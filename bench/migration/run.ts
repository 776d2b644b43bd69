/**
 * Real migrations on the testbed (npm run bench:migration [-- --quick]): guests of 256 MB,
 * 768 MB and 2 GB, dirtying memory at 0 / moderate / high rates (the image's dirty
 * workload; a 4 MiB write-and-verify workload runs throughout), moved by instant handover
 * (same server), pre-copy and post-copy (across two server namespaces), all through the
 * agents. Per move: total and downtime (the guest's real pause, source STOP to destination
 * RESUME, and QEMU's own figures), bytes over the network (QMP and the source server's
 * interface counters), CPU seconds of both QEMUs, and whether the guest survived
 * (heartbeats go on, no lost write). --quick: 768 MB, moderate dirtying only.
 *
 * Writes bench/results/migration.json (one row per move), the bench:migration section of
 * docs/benchmarks.md, and calibration/migration.json (the simulator's cost models), and
 * checks the acceptance targets, printing each with its figures.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  agentLauncher,
  endpointOf,
  type HostVmAgentClient,
  hostVmClient,
  MigrationOrchestrator,
  type MigrationOutcome,
  serverClient,
  testbedToken,
} from "../../src/agent/index.ts";
import {
  DEFAULT_CALIBRATION,
  estimateInstant,
  estimatePostcopy,
  estimatePrecopy,
  type MigrationCalibration,
  parseCalibration,
} from "../../src/migration/index.ts";
import { buildGuestImage } from "../../src/qemu/index.ts";
import { checkTestbedSpec, down, type TestbedState, up } from "../../src/testbed/index.ts";
import { machine, median, root, table, writeDocsSection, writeResults } from "../lib.ts";

const quick = process.argv.includes("--quick");
const log = (s: string) => process.stderr.write(`${s}\n`);
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** QEMU's default pre-copy link cap, kept: a 1 Gbit/s-class migration network. */
const MAX_BANDWIDTH = 128 * MiB;
const LEVELS = {
  none: { rateMiBps: 0, workingSetMiB: 0 },
  moderate: { rateMiBps: 20, workingSetMiB: 64 },
  high: { rateMiBps: 100, workingSetMiB: 128 },
} as const;
type Level = keyof typeof LEVELS;
const SIZES = quick ? [768] : [256, 768, 2048];
const LEVEL_ORDER: Level[] = quick ? ["moderate"] : ["none", "moderate", "high"];
const INSTANT_REPEATS = 3;

export interface Row {
  mechanism: "instant" | "precopy" | "postcopy";
  memoryMiB: number;
  dirtyLevel: Level;
  /** The dirty workload's configured rate. */
  dirtyRateMiBps: number;
  /** QEMU's calc-dirty-rate over 1 s before the move (includes the verify workload). */
  measuredDirtyRateMiBps: number | null;
  /** Pool-file pages backed by RAM before the move (what a copy has to consider). */
  residentMiB: number;
  /** migrate command to the guest running at the destination. */
  totalMs: number | null;
  /** The guest's real pause: source STOP to destination RESUME. */
  downtimeMs: number | null;
  qemuTotalMs: number | null;
  qemuDowntimeMs: number | null;
  qemuSetupMs: number | null;
  /** Bytes the source server's interface sent during the move (its namespace's eth0). */
  networkBytes: number | null;
  /** Bytes QEMU put on the migration channel (a unix socket for instant). */
  qmpTransferredBytes: number;
  /** Highest throughput QEMU reported during the copy (its mbps), bytes/s. */
  peakThroughputBytesPerSec: number | null;
  passes: number | null;
  sourceCpuSeconds: number | null;
  destinationCpuSeconds: number | null;
  prepareMs: number | null;
  endToEndMs: number | null;
  guestAlive: boolean;
  aliveDetail: string;
  error: string | null;
  run: string;
}

const runStamp = new Date().toISOString();

async function measureDirtyRate(c: HostVmAgentClient, guestId: string): Promise<number | null> {
  try {
    await c.qmp(guestId, { execute: "calc-dirty-rate", arguments: { "calc-time": 1 } });
    for (let i = 0; i < 20; i++) {
      await sleep(250);
      const r = (await c.qmp(guestId, { execute: "query-dirty-rate" })).return as {
        status: string;
        "dirty-rate"?: number;
      };
      if (r.status === "measured") return r["dirty-rate"] ?? null;
    }
  } catch (e) {
    log(`  (dirty rate not measured: ${(e as Error).message})`);
  }
  return null;
}

/** Heartbeats advance and the verify workload reports no lost write. */
async function checkAlive(
  c: HostVmAgentClient,
  guestId: string,
  hbBefore: number,
): Promise<[boolean, string]> {
  try {
    const deadline = Date.now() + 10_000;
    let st = await c.guest(guestId);
    while ((st.heartbeat?.seq ?? 0) <= hbBefore && Date.now() < deadline) {
      await sleep(300);
      st = await c.guest(guestId);
    }
    const hb = st.heartbeat?.seq ?? 0;
    const v = await c.exec(guestId, { command: "nc-wl status verify", timeoutMs: 15_000 });
    const ok = hb > hbBefore && /state=ok .*lost=0/.test(v.output) && (st.verify?.lostLines ?? 0) === 0;
    return [ok, `heartbeat ${hbBefore} -> ${hb}; ${v.output.trim()}`];
  } catch (e) {
    return [false, (e as Error).message];
  }
}

interface Place {
  server: string;
  hostVm: string;
}

async function move(
  state: TestbedState,
  orch: MigrationOrchestrator,
  guestId: string,
  from: Place,
  to: Place,
  mechanism: Row["mechanism"],
  memoryMiB: number,
  level: Level,
  measured: number | null,
): Promise<Row> {
  const src = hostVmClient(state, from.server, from.hostVm);
  const dst = hostVmClient(state, to.server, to.hostVm);
  const before = await src.guest(guestId);
  const srv = serverClient(state, from.server);
  const s0 = await srv.status();
  const resident = (s0.poolFiles.find((f) => f.name === `${guestId}.ram`)?.allocatedBytes ?? 0) / MiB;
  const hb = before.heartbeat?.seq ?? 0;
  let out: MigrationOutcome | null = null;
  let error: string | null = null;
  let peak = 0;
  try {
    out = await orch.migrate({
      onProgress: (p) => {
        peak = Math.max(peak, p.throughputBytesPerSec);
      },
      guestId,
      from: endpointOf(state, from.server, from.hostVm),
      to: endpointOf(state, to.server, to.hostVm),
      mechanism,
      options:
        mechanism === "instant"
          ? {}
          : { maxBandwidth: MAX_BANDWIDTH, autoConverge: true, timeoutMs: 300_000 },
    });
  } catch (e) {
    error = (e as Error).message;
  }
  const s1 = await srv.status();
  const sent = s0.iface && s1.iface ? s1.iface.txBytes - s0.iface.txBytes : null;
  const [alive, detail] = await checkAlive(out ? dst : src, guestId, hb);
  const row: Row = {
    mechanism,
    memoryMiB,
    dirtyLevel: level,
    dirtyRateMiBps: LEVELS[level].rateMiBps,
    measuredDirtyRateMiBps: measured,
    residentMiB: Math.round(resident),
    totalMs: out?.totalMs ?? null,
    downtimeMs: out?.downtimeMs ?? null,
    qemuTotalMs: out?.qemu?.totalTimeMs ?? null,
    qemuDowntimeMs: out?.qemu?.downtimeMs ?? null,
    qemuSetupMs: out?.qemu?.setupTimeMs ?? null,
    networkBytes: sent,
    qmpTransferredBytes: out?.transferredBytes ?? 0,
    peakThroughputBytesPerSec: peak > 0 ? peak : null,
    passes: out?.qemu?.passes ?? null,
    sourceCpuSeconds: out?.sourceCpuSeconds ?? null,
    destinationCpuSeconds: out?.destinationCpuSeconds ?? null,
    prepareMs: out?.prepareMs ?? null,
    endToEndMs: out?.endToEndMs ?? null,
    guestAlive: alive,
    aliveDetail: detail,
    error,
    run: runStamp,
  };
  log(
    `  ${mechanism.padEnd(8)} ${memoryMiB} MiB ${level.padEnd(8)} total ${fmt(row.totalMs)} ms, paused ${fmt(row.downtimeMs)} ms ` +
      `(QEMU ${row.qemuTotalMs ?? "-"}/${row.qemuDowntimeMs ?? "-"} ms), QMP ${(row.qmpTransferredBytes / MiB).toFixed(1)} MiB, ` +
      `eth0 ${sent === null ? "-" : (sent / MiB).toFixed(2)} MiB, alive ${alive}${error ? `, ERROR ${error}` : ""}`,
  );
  return row;
}

const fmt = (x: number | null, d = 1) => (x === null ? "-" : x.toFixed(d));

async function main(): Promise<Row[]> {
  const image = await buildGuestImage({ log });
  const spec = checkTestbedSpec({
    servers: [
      {
        name: "a",
        hostVms: [
          { name: "h1", cpus: 2, memoryMiB: 3072 },
          { name: "h2", cpus: 2, memoryMiB: 3072 },
        ],
      },
      { name: "b", hostVms: [{ name: "h1", cpus: 2, memoryMiB: 3072 }] },
    ],
  });
  const state = await up(spec, { launcher: agentLauncher({ image }), log });
  if (state.network.mode !== "netns") log(`WARNING: ${state.warnings.join("; ")}`);
  const orch = new MigrationOrchestrator(testbedToken(state), { log: (m) => log(`  [orchestrator] ${m}`) });
  const rows: Row[] = [];
  try {
    for (const mem of SIZES) {
      const guestId = `bench${mem}`;
      log(`booting ${guestId} (${mem} MiB) on a/h1`);
      const a1 = hostVmClient(state, "a", "h1");
      await a1.createGuest({ guestId, memoryMiB: mem, workloads: [{ kind: "verify", mib: 4 }] });
      let at: Place = { server: "a", hostVm: "h1" };
      if (mem === SIZES[0]) {
        // The agents' first migration runs cold code (JIT, first routes, lazy modules): one
        // unrecorded round of each mechanism first, back to a/h1.
        log(`${guestId}: warm-up moves (not recorded)`);
        for (const [mech, to] of [
          ["instant", { server: "a", hostVm: "h2" }],
          ["precopy", { server: "b", hostVm: "h1" }],
          ["postcopy", { server: "a", hostVm: "h1" }],
        ] as const) {
          const r = await move(state, orch, guestId, at, to, mech, mem, "none", null);
          if (r.error === null) at = to;
        }
      }
      for (const level of LEVEL_ORDER) {
        const c = hostVmClient(state, at.server, at.hostVm);
        const l = LEVELS[level];
        if (l.rateMiBps > 0)
          await c.startWorkload(guestId, {
            kind: "dirty",
            rateMiBps: l.rateMiBps,
            workingSetMiB: l.workingSetMiB,
          });
        await sleep(3000);
        const measured = await measureDirtyRate(c, guestId);
        log(
          `${guestId}: dirty level ${level} (${l.rateMiBps} MiB/s configured, ${measured ?? "?"} MB/s measured by QEMU)`,
        );
        for (let i = 0; i < INSTANT_REPEATS; i++) {
          const to = { server: "a", hostVm: at.hostVm === "h1" ? "h2" : "h1" };
          const r = await move(state, orch, guestId, at, to, "instant", mem, level, measured);
          rows.push(r);
          if (r.error === null) at = to;
        }
        for (const [mech, to] of [
          ["precopy", { server: "b", hostVm: "h1" }],
          ["postcopy", { server: "a", hostVm: "h1" }],
        ] as const) {
          const r = await move(state, orch, guestId, at, to, mech, mem, level, measured);
          rows.push(r);
          if (r.error === null) at = to;
        }
        if (l.rateMiBps > 0) await hostVmClient(state, at.server, at.hostVm).stopWorkload(guestId, "dirty");
      }
      await hostVmClient(state, at.server, at.hostVm).deleteGuest(guestId);
    }
  } finally {
    const r = await down(state, { log });
    if (r.problems.length > 0) log(`teardown problems: ${r.problems.join("; ")}`);
  }
  return rows;
}

// ---- summary, acceptance, calibration --------------------------------------------------

function med(rows: Row[], f: (r: Row) => number | null): number | null {
  const xs = rows.map(f).filter((x): x is number => x !== null && Number.isFinite(x));
  return xs.length ? median(xs) : null;
}

const pick = (rows: Row[], mech: Row["mechanism"], mem: number, level: Level) =>
  rows.filter(
    (r) => r.mechanism === mech && r.memoryMiB === mem && r.dirtyLevel === level && r.error === null,
  );

interface Check {
  what: string;
  measured: string;
  pass: boolean | null;
}

function acceptance(rows: Row[]): Check[] {
  const checks: Check[] = [];
  const inst = pick(rows, "instant", 768, "moderate");
  const pre = pick(rows, "precopy", 768, "moderate");
  const iTotal = med(inst, (r) => r.totalMs);
  const pTotal = med(pre, (r) => r.totalMs);
  checks.push({
    what: "768 MB, moderate dirtying: instant >= 100x faster than pre-copy",
    measured:
      iTotal && pTotal
        ? `${pTotal.toFixed(0)} ms / ${iTotal.toFixed(1)} ms = ${(pTotal / iTotal).toFixed(0)}x`
        : "no data",
    pass: iTotal && pTotal ? pTotal / iTotal >= 100 : false,
  });
  const iDown = med(inst, (r) => r.downtimeMs);
  checks.push({
    what: "768 MB, moderate: instant downtime <= 20 ms (guest's real pause)",
    measured:
      iDown === null
        ? "no data"
        : `${iDown.toFixed(1)} ms (QEMU's own: ${fmt(
            med(inst, (r) => r.qemuDowntimeMs),
            0,
          )} ms)`,
    pass: iDown !== null && iDown <= 20,
  });
  const iQmp = Math.max(0, ...inst.map((r) => r.qmpTransferredBytes));
  const iNet = Math.max(0, ...inst.map((r) => r.networkBytes ?? 0));
  checks.push({
    what: "768 MB, moderate: instant bytes no more than the device state (< 2 MB)",
    measured: `QMP ${(iQmp / 1e6).toFixed(2)} MB (unix socket), server interface ${(iNet / 1e6).toFixed(3)} MB (API calls only)`,
    pass: inst.length > 0 && iQmp < 2e6 && iNet < 2e6,
  });
  if (quick) {
    checks.push({
      what: "instant total within 2x between 256 MB and 2 GB",
      measured: "not run (--quick)",
      pass: null,
    });
  } else {
    const t256 = med(pick(rows, "instant", 256, "moderate"), (r) => r.totalMs);
    const t2g = med(pick(rows, "instant", 2048, "moderate"), (r) => r.totalMs);
    const ratio = t256 && t2g ? Math.max(t256, t2g) / Math.min(t256, t2g) : null;
    checks.push({
      what: "instant total within 2x between 256 MB and 2 GB (moderate)",
      measured:
        ratio === null ? "no data" : `${t256!.toFixed(1)} ms vs ${t2g!.toFixed(1)} ms (${ratio.toFixed(2)}x)`,
      pass: ratio !== null && ratio <= 2,
    });
  }
  const dead = rows.filter((r) => !r.guestAlive);
  checks.push({
    what: "the guest survives every move (heartbeats, no lost write)",
    measured: `${rows.length - dead.length}/${rows.length}${dead.length ? `; failed: ${dead.map((r) => `${r.mechanism} ${r.memoryMiB} ${r.dirtyLevel}`).join(", ")}` : ""}`,
    pass: dead.length === 0,
  });
  return checks;
}

/** Least squares y = a + b x. */
function fit(xs: number[], ys: number[]): { a: number; b: number } {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const b = sxx > 0 ? xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) / sxx : 0;
  return { a: my - b * mx, b };
}

function calibrate(rows: Row[], previous: MigrationCalibration): MigrationCalibration {
  const ok = rows.filter((r) => r.error === null && r.totalMs !== null);
  const inst = ok.filter((r) => r.mechanism === "instant");
  const pre = ok.filter((r) => r.mechanism === "precopy");
  const post = ok.filter((r) => r.mechanism === "postcopy");
  const s = (ms: number | null) => (ms === null ? null : ms / 1000);
  const devMiB = med(inst, (r) => r.qmpTransferredBytes / MiB) ?? previous.instant.deviceStateMiB;
  const localMiBps = previous.instant.localMiBps;
  // Instant: all of the switch is the guest's pause; fit pause = c + perGiB x memory.
  const sizes = [...new Set(inst.map((r) => r.memoryMiB))];
  const pts = sizes.map((m) => [
    m / 1024,
    med(
      inst.filter((r) => r.memoryMiB === m),
      (r) => r.downtimeMs,
    )! / 1000,
  ]);
  let perGiB = previous.instant.perGiBSeconds;
  let base: number;
  if (pts.length >= 2) {
    const f = fit(
      pts.map((p) => p[0]),
      pts.map((p) => p[1]),
    );
    perGiB = Math.max(0, f.b);
    base = f.b >= 0 ? f.a : median(pts.map((p) => p[1]));
  } else {
    base = (pts[0]?.[1] ?? previous.instant.switchoverSeconds) - perGiB * (pts[0]?.[0] ?? 0);
  }
  const instSetup = med(inst, (r) =>
    r.totalMs !== null && r.downtimeMs !== null ? r.totalMs - r.downtimeMs : null,
  );
  // Pre-copy: scan rate from the idle guests (page walking, not the link, bounds them).
  const idle = pre.filter((r) => r.dirtyLevel === "none" && r.qemuTotalMs && r.qemuSetupMs !== null);
  const scans = idle.map(
    (r) => r.memoryMiB / ((r.qemuTotalMs! - r.qemuSetupMs! - (r.qemuDowntimeMs ?? 0)) / 1000),
  );
  // The link's share: the best throughput QEMU reported against the cap (where pages are
  // dirty, the link and not page scanning bounds a pass).
  const streams = [...pre, ...post]
    .filter((r) => r.peakThroughputBytesPerSec !== null)
    .map((r) => r.peakThroughputBytesPerSec! / MAX_BANDWIDTH);
  // The fixed cost of a switch (stop, device state, orchestrated start) is what an instant
  // move pauses for; pre-copy adds its last dirty pages at link speed on top (the model does).
  const switchCost = med(inst, (r) => (r.downtimeMs !== null ? r.downtimeMs / 1000 : null));
  return parseCalibration({
    source: `bench:migration ${runStamp.slice(0, 10)}${quick ? " --quick" : ""}, QEMU 7.2 TCG on the testbed (${machine()})`,
    precopy: {
      ...previous.precopy,
      setupSeconds: s(med(pre, (r) => r.qemuSetupMs)) ?? previous.precopy.setupSeconds,
      scanMiBps: scans.length ? Math.round(Math.max(...scans)) : previous.precopy.scanMiBps,
      deviceStateMiB: Number(devMiB.toFixed(3)),
      switchoverSeconds:
        switchCost !== null ? Number(switchCost.toFixed(4)) : previous.precopy.switchoverSeconds,
      linkEfficiency: streams.length
        ? Number(Math.min(1, Math.max(...streams)).toFixed(3))
        : previous.precopy.linkEfficiency,
    },
    postcopy: { ...previous.postcopy, precopyRounds: post.length ? 1 : previous.postcopy.precopyRounds },
    instant: {
      setupSeconds:
        instSetup !== null ? Number((instSetup / 1000).toFixed(4)) : previous.instant.setupSeconds,
      deviceStateMiB: Number(devMiB.toFixed(3)),
      localMiBps,
      perGiBSeconds: Number(perGiB.toFixed(5)),
      switchoverSeconds: Number(Math.max(0, base - devMiB / localMiBps).toFixed(4)),
    },
  });
}

function loadPrevious(file: string): MigrationCalibration {
  try {
    return parseCalibration(JSON.parse(readFileSync(file, "utf8")), file);
  } catch {
    return DEFAULT_CALIBRATION;
  }
}

const rows = await main();
const resultsFile = writeResults("migration", rows);
const calFile = join(root, "calibration/migration.json");
const cal = calibrate(rows, loadPrevious(calFile));
mkdirSync(join(root, "calibration"), { recursive: true });
writeFileSync(calFile, `${JSON.stringify(cal, null, 2)}\n`);

const linkMbps = (MAX_BANDWIDTH * 8) / 1e6;
const groups: Row[][] = [];
for (const mem of SIZES)
  for (const level of LEVEL_ORDER)
    for (const mech of ["instant", "precopy", "postcopy"] as const) {
      const g = rows.filter((r) => r.memoryMiB === mem && r.dirtyLevel === level && r.mechanism === mech);
      if (g.length) groups.push(g);
    }
/** The guest's real writable working set: the dirty workload's, the verify workload's, a little kernel. */
const workingSetMiB = (r: Row) => LEVELS[r.dirtyLevel].workingSetMiB + 4 + 8;
const summary = groups.map((g) => {
  const r0 = g[0];
  // The simulator assumes 90 % of resident memory is writable (it does not know better);
  // here the working set is known, so the model is checked with it.
  const rowCal: MigrationCalibration = {
    ...cal,
    precopy: {
      ...cal.precopy,
      workingSetFraction: Math.min(1, workingSetMiB(r0) / Math.max(1, r0.residentMiB)),
    },
  };
  const okRows = g.filter((r) => r.error === null);
  const model =
    r0.mechanism === "instant"
      ? estimateInstant({ memoryMiB: r0.memoryMiB, residentMiB: r0.residentMiB, dirtyRateMiBps: 0 }, cal)
      : r0.mechanism === "precopy"
        ? estimatePrecopy(
            {
              memoryMiB: r0.memoryMiB,
              residentMiB: r0.residentMiB,
              dirtyRateMiBps: r0.measuredDirtyRateMiBps ?? r0.dirtyRateMiBps,
            },
            linkMbps,
            rowCal,
            { autoConverge: true },
          )
        : estimatePostcopy(
            {
              memoryMiB: r0.memoryMiB,
              residentMiB: r0.residentMiB,
              dirtyRateMiBps: r0.measuredDirtyRateMiBps ?? r0.dirtyRateMiBps,
            },
            linkMbps,
            rowCal,
          );
  return [
    r0.memoryMiB,
    `${r0.dirtyLevel} (${r0.dirtyRateMiBps}; ${fmt(r0.measuredDirtyRateMiBps, 0)})`,
    r0.mechanism + (g.length > 1 ? ` ×${g.length}` : ""),
    fmt(
      med(okRows, (r) => r.totalMs),
      r0.mechanism === "instant" ? 1 : 0,
    ),
    fmt(med(okRows, (r) => r.downtimeMs)),
    `${fmt(
      med(okRows, (r) => r.qemuTotalMs),
      0,
    )} / ${fmt(
      med(okRows, (r) => r.qemuDowntimeMs),
      0,
    )}`,
    fmt(
      med(okRows, (r) => r.qmpTransferredBytes / 1e6),
      2,
    ),
    fmt(
      med(okRows, (r) => (r.networkBytes ?? 0) / 1e6),
      2,
    ),
    `${fmt(
      med(okRows, (r) => r.sourceCpuSeconds),
      2,
    )} / ${fmt(
      med(okRows, (r) => r.destinationCpuSeconds),
      2,
    )}`,
    model ? (model.totalSeconds * 1000).toFixed(r0.mechanism === "instant" ? 1 : 0) : "-",
    g.every((r) => r.guestAlive) ? "yes" : `NO (${g.filter((r) => !r.guestAlive).length}/${g.length})`,
  ];
});
const head = [
  "MiB",
  "dirtying (MiB/s set; MB/s measured)",
  "mechanism",
  "total ms",
  "paused ms",
  "QEMU total / downtime ms",
  "QMP MB",
  "eth0 MB",
  "CPU s src / dst",
  "model ms",
  "guest alive",
];
const checks = acceptance(rows);
const checkRows = checks.map((c) => [
  c.what,
  c.measured,
  c.pass === null ? "not checked" : c.pass ? "yes" : "NO",
]);
const ratioLines = SIZES.filter(
  (m) => pick(rows, "instant", m, "moderate").length && pick(rows, "precopy", m, "moderate").length,
).map((m) => {
  const i = med(pick(rows, "instant", m, "moderate"), (r) => r.totalMs)!;
  const p = med(pick(rows, "precopy", m, "moderate"), (r) => r.totalMs)!;
  return `- ${m} MB, moderate dirtying: instant ${i.toFixed(1)} ms vs pre-copy ${p.toFixed(0)} ms, ${(p / i).toFixed(0)}x faster.`;
});
const md = `## Migration on the testbed (QEMU, real guests)

Command: \`npm run bench:migration\`${quick ? " (--quick)" : ""} — ${runStamp.slice(0, 10)}, ${machine()}, 2 cores, QEMU 7.2 under TCG.
Testbed: two servers (network namespaces on a private bridge), host VMs as slices with their
own agent; every move goes through the agents' HTTP APIs (src/agent/migration-orchestrator.ts).
Instant = same server, the destination maps the same tmpfs RAM file (x-ignore-shared), device
state over a unix socket; pre-copy and post-copy = across the two servers over TCP, link
capped at QEMU's default 128 MiB/s, auto-converge on, post-copy switching after the first pass.
Dirtying: the image's dirty workload (set rate over a working set) plus a 4 MiB write-and-verify
workload that runs throughout (QEMU's calc-dirty-rate of the whole guest is shown).

"total" runs from the migrate command to the guest running at the destination; "paused" is the
guest's real pause, from the source's STOP event to the destination's RESUME event. It includes
one orchestrator round trip, because a destination starts only when the orchestrator decides
(that is what makes rollbacks safe), so it is longer than QEMU's own downtime, which ends when
the source has sent everything. Starting the destination QEMU (~0.1–0.3 s) happens before the
migration and is not in "total". Instant rows are the median of ${INSTANT_REPEATS} moves; one
unrecorded move of each kind warms the agents up first. "model ms" is the simulator's
cost model with the calibration this run wrote (calibration/migration.json), given each guest's
resident memory, measured dirty rate and true working set (the simulator itself, not knowing
working sets, assumes 90 % of resident memory is writable, which is pessimistic for these guests).

${table(head, summary)}

${ratioLines.join("\n")}

Acceptance (768 MB, moderate dirtying, one run):

${table(["target", "measured", "met"], checkRows)}`;
writeDocsSection("bench:migration", md);
process.stdout.write(
  `${table(head, summary)}\n\n${ratioLines.join("\n")}\n\n${table(["target", "measured", "met"], checkRows)}\n`,
);
process.stdout.write(`wrote ${resultsFile}, ${calFile} and docs/benchmarks.md\n`);
if (checks.some((c) => c.pass === false)) process.exitCode = 1;

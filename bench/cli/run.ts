/**
 * Start-up of the nestcloud command, whole process (npm run bench:cli [-- --quick]):
 *  1. `nestcloud --version` (target < 0.3 s);
 *  2. `nestcloud vms` against a running controller (target < 0.5 s): a controller this
 *     bench starts as a child (simulated provider, port 0, a temporary data dir);
 *  3. `nestcloud simulate scenarios/cloudsim-planetlab.yaml --policy lr-mmt-1.2 --trace
 *     planetlab:20110303 --quiet` (target < 2 s), and its lead over CloudSim 3.0.3
 *     (goal >= 50x): run side by side when NESTCLOUD_CLOUDSIM_CMD names a command that runs
 *     CloudSim's lr-mmt-1.2 on that day, else against CloudSim's recorded time.
 * Each command runs through bin/nestcloud.js twice over: with the built JavaScript (dist/,
 * built first if stale) and with the sources through tsx (NESTCLOUD_NO_DIST=1, the baseline:
 * what runs while dist/ is stale), alternating, median of 10 (3 with --quick) after one
 * unrecorded run of each. CPU is the child's user + system time; the load average is
 * recorded because wall times on a shared machine follow it.
 * Prints a table, writes bench/results/cli.json and the section of docs/benchmarks.md.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { staleReason } from "../../bin/freshness.js";
import { loadScenario, resolvePlanetlabFolder, runScenario } from "../../src/sim/index.ts";
import { machine, median, root, table, writeDocsSection, writeResults } from "../lib.ts";

const quick = process.argv.includes("--quick");
const runs = quick ? 3 : 10;
const log = (s: string) => process.stderr.write(`${s}\n`);
const bin = join(root, "bin/nestcloud.js");
const tmp = mkdtempSync(join(tmpdir(), "nestcloud-bench-cli-"));

// CloudSim 3.0.3 rebuilt from source and run on this machine kind (JDK 17), lr-mmt-1.2 on
// 20110303, trace files in name order: the figure bench/sim quotes. Its runs took 60-120 s.
const CLOUDSIM_RECORDED_SECONDS = 91.0;
const CLOUDSIM_RECORDED_RANGE = [60, 120] as const;

type Mode = "dist" | "tsx";

interface Sample {
  wallSeconds: number;
  cpuSeconds: number;
}

/** Children's CPU time (user + system, seconds) this process has reaped so far. */
function childCpuSeconds(): number {
  // /proc/self/stat: fields 16 and 17 (cutime, cstime) in clock ticks, after the ")" of comm.
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** The measured command running now (stopped with the bench). */
let running: ChildProcess | undefined;

function runOnce(args: string[], mode: Mode): Promise<Sample> {
  const cpu0 = childCpuSeconds();
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: root,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, NESTCLOUD_NO_DIST: mode === "tsx" ? "1" : "" },
    });
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    running = child;
    child.once("error", reject);
    child.once("exit", (code) => {
      running = undefined;
      const wallSeconds = (performance.now() - t0) / 1000;
      if (code !== 0) reject(new Error(`nestcloud ${args.join(" ")} (${mode}) exited ${code}: ${err}`));
      else resolve({ wallSeconds, cpuSeconds: childCpuSeconds() - cpu0 });
    });
  });
}

interface Row {
  name: string;
  command: string;
  targetSeconds: number;
  dist: Sample[];
  tsx: Sample[];
}

async function measure(name: string, args: string[], targetSeconds: number): Promise<Row> {
  log(`bench:cli — ${name}: nestcloud ${args.join(" ")}`);
  await runOnce(args, "dist");
  await runOnce(args, "tsx");
  const row: Row = { name, command: `nestcloud ${args.join(" ")}`, targetSeconds, dist: [], tsx: [] };
  for (let i = 0; i < runs; i++) {
    for (const mode of ["dist", "tsx"] as const) {
      const s = await runOnce(args, mode);
      row[mode].push(s);
      log(`  ${mode} ${i + 1}/${runs}: ${s.wallSeconds.toFixed(2)} s wall, ${s.cpuSeconds.toFixed(2)} s CPU`);
    }
  }
  return row;
}

const summary = (xs: Sample[]) => ({
  medianWallSeconds: median(xs.map((x) => x.wallSeconds)),
  minWallSeconds: Math.min(...xs.map((x) => x.wallSeconds)),
  medianCpuSeconds: median(xs.map((x) => x.cpuSeconds)),
});

/** A controller on the simulated provider, as a child; resolves once it serves. */
async function startController(dataDir: string) {
  // --speed 1: the simulated cloud's own rounds (every 300 simulated s) then stay out of
  // the measured commands' way on a 2-core machine.
  const child = spawn(process.execPath, [bin, "up", "--port", "0", "--data-dir", dataDir, "--speed", "1"], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr.on("data", (d) => {
    err += d;
  });
  const deadline = Date.now() + 120_000;
  while (!existsSync(join(dataDir, "url"))) {
    if (child.exitCode !== null) throw new Error(`controller exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`controller not up after 120 s: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/**
 * The same day in this process (as bench:sim measures it): loading the trace and running the
 * simulation only, warm after the first run; what the whole process adds is the rest.
 */
function inProcess(): number {
  const sc = loadScenario(join(root, "scenarios/cloudsim-planetlab.yaml"));
  const walls: number[] = [];
  for (let i = 0; i <= Math.min(runs, 5); i++) {
    const t0 = performance.now();
    runScenario(sc, { policy: "lr-mmt-1.2", trace: "planetlab:20110303" });
    if (i > 0) walls.push((performance.now() - t0) / 1000);
  }
  log(`  in-process: ${walls.map((w) => w.toFixed(2)).join(", ")} s`);
  return median(walls);
}

/** CloudSim side by side: NESTCLOUD_CLOUDSIM_CMD (a shell command), timed once. */
function cloudsimSideBySide(): number | undefined {
  const cmd = process.env.NESTCLOUD_CLOUDSIM_CMD;
  if (!cmd) return undefined;
  log(`bench:cli — CloudSim: ${cmd}`);
  const t0 = performance.now();
  const r = spawnSync("bash", ["-c", cmd], { stdio: "ignore" });
  if (r.status !== 0) throw new Error(`NESTCLOUD_CLOUDSIM_CMD exited ${r.status}`);
  return (performance.now() - t0) / 1000;
}

// Built first (a no-op when fresh): the dist rows must run the built JavaScript.
const build = spawnSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });
if (build.status !== 0) throw new Error("npm run build failed");
const stale = staleReason(root);
if (stale !== null) throw new Error(`dist/ is not fresh after the build (${stale})`);

const loadBefore = loadavg()[0];
const rows: Row[] = [];
let skipped: string | undefined;
let cloudsimMeasured: number | undefined;
let inProcessSeconds: number | undefined;
const controllerDir = join(tmp, "controller");
let controller: Awaited<ReturnType<typeof startController>> | undefined;
// Interrupted: stop what this bench started and remove its temporary folder.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    running?.kill("SIGTERM");
    void (controller?.stop() ?? Promise.resolve()).finally(() => {
      rmSync(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  });
}
try {
  rows.push(await measure("--version", ["--version"], 0.3));
  log("bench:cli — starting a controller (simulated provider)");
  controller = await startController(controllerDir);
  rows.push(await measure("vms, running controller", ["vms", "--data-dir", controllerDir], 0.5));
  await controller.stop();
  controller = undefined;
  let day: string | undefined;
  try {
    day = resolvePlanetlabFolder("20110303", root);
  } catch (e) {
    skipped = (e as Error).message;
    log(`bench:cli — skipping the PlanetLab row: ${skipped}`);
  }
  if (day) {
    const args = [
      "simulate",
      "scenarios/cloudsim-planetlab.yaml",
      "--policy",
      "lr-mmt-1.2",
      "--trace",
      "planetlab:20110303",
      "--quiet",
      // Not the repository's out/: the files are the same, the folder a temporary one.
      "--out",
      join(tmp, "sim"),
    ];
    rows.push(await measure("PlanetLab day, lr-mmt-1.2, reference scenario", args, 2));
    inProcessSeconds = inProcess();
    cloudsimMeasured = cloudsimSideBySide();
  }
} finally {
  await controller?.stop();
  rmSync(tmp, { recursive: true, force: true });
}
// A source edited meanwhile would have sent the "built" rows through tsx without a word.
const staleAfter = staleReason(root);
if (staleAfter !== null) throw new Error(`dist/ went stale during the bench (${staleAfter}): run it again`);
const load = [loadBefore, loadavg()[0]];

const results = {
  date: new Date().toISOString(),
  machine: machine(),
  loadAverage1m: { before: load[0], after: load[1] },
  quick,
  runs,
  rows: rows.map((r) => {
    const d = summary(r.dist);
    const t = summary(r.tsx);
    return {
      name: r.name,
      command: r.command.replace(tmp, "<tmp>"),
      targetSeconds: r.targetSeconds,
      dist: { ...d, samples: r.dist },
      tsx: { ...t, samples: r.tsx },
      speedupWall: t.medianWallSeconds / d.medianWallSeconds,
      speedupCpu: t.medianCpuSeconds / d.medianCpuSeconds,
      targetMet: d.medianWallSeconds < r.targetSeconds,
    };
  }),
  planetlabSkipped: skipped ?? null,
  inProcessSimulationSeconds: inProcessSeconds ?? null,
  cloudsim: {
    measuredSeconds: cloudsimMeasured ?? null,
    recordedSeconds: CLOUDSIM_RECORDED_SECONDS,
    recordedRangeSeconds: CLOUDSIM_RECORDED_RANGE,
  },
};
const sim = results.rows.find((r) => r.name.startsWith("PlanetLab"));
const cloudsimSeconds = cloudsimMeasured ?? CLOUDSIM_RECORDED_SECONDS;
const lead = sim ? cloudsimSeconds / sim.dist.medianWallSeconds : undefined;
const leadBefore = sim ? cloudsimSeconds / sim.tsx.medianWallSeconds : undefined;
const file = writeResults("cli", {
  ...results,
  cloudsim: { ...results.cloudsim, leadWhole: lead ?? null, leadWholeBefore: leadBefore ?? null, goal: 50 },
});

const s = (x: number) => `${x.toFixed(2)} s`;
const head = [
  "command (whole process)",
  "built: wall median (min)",
  "CPU",
  "tsx (baseline): wall median",
  "CPU",
  "speed-up wall / CPU",
  "target",
  "met",
];
const tableRows = results.rows.map((r) => [
  r.name,
  `${s(r.dist.medianWallSeconds)} (${s(r.dist.minWallSeconds)})`,
  s(r.dist.medianCpuSeconds),
  s(r.tsx.medianWallSeconds),
  s(r.tsx.medianCpuSeconds),
  `${r.speedupWall.toFixed(1)}x / ${r.speedupCpu.toFixed(1)}x`,
  `< ${r.targetSeconds} s`,
  r.targetMet ? "yes" : "NO",
]);
const inProcessLine =
  inProcessSeconds === undefined || !sim
    ? ""
    : `The same day in one process, warm (trace and simulation only, as \`bench:sim\` measures it): ` +
      `${s(inProcessSeconds)} median. The whole built process takes ${s(sim.dist.medianWallSeconds - inProcessSeconds)} more: ` +
      `Node's start, loading the code and the scenario, writing results.json and report.html, and running ` +
      `the simulation cold (a fresh process has not yet optimized its hot code). `;
const cloudsimLine =
  inProcessLine +
  (lead === undefined
    ? `PlanetLab day: skipped (${skipped}).`
    : cloudsimMeasured !== undefined
      ? `CloudSim 3.0.3, same day and policy, run side by side (NESTCLOUD_CLOUDSIM_CMD): ${s(cloudsimMeasured)}; ` +
        `nestcloud whole process ${lead.toFixed(1)}x faster (before: ${leadBefore?.toFixed(1)}x); goal >= 50x: ${lead >= 50 ? "yes" : "NO"}.`
      : `Against CloudSim 3.0.3's recorded ${CLOUDSIM_RECORDED_SECONDS} s for the same day and policy (not re-run here: ` +
        `rebuilt from source on this machine kind, its runs took ${CLOUDSIM_RECORDED_RANGE[0]}-${CLOUDSIM_RECORDED_RANGE[1]} s): ` +
        `nestcloud whole process ${lead.toFixed(1)}x faster (before: ${leadBefore?.toFixed(1)}x; ` +
        `${(CLOUDSIM_RECORDED_RANGE[0] / (sim?.dist.medianWallSeconds ?? 1)).toFixed(1)}x against its fastest run); ` +
        `goal >= 50x: ${lead >= 50 ? "yes" : "NO"}.`);
const md = `## Start-up of the nestcloud command

Command: \`npm run bench:cli\`${quick ? " (--quick)" : ""} — ${results.date.slice(0, 10)}, ${results.machine}, 2 cores shared
with other work (load average ${load[0].toFixed(1)} at the start, ${load[1].toFixed(1)} at the end).
Whole process, from spawn to exit, median of ${runs}: \`bin/nestcloud.js\` running the built
JavaScript (dist/, \`npm run build\`) against the same command on the TypeScript sources through
tsx (\`NESTCLOUD_NO_DIST=1\`, what runs while dist/ is stale), alternating in one run. CPU is the
process's user + system time (less sensitive to the other users of the machine than wall time).
The tsx column already loads subcommands lazily; before this work every command loaded the whole
code base through tsx (\`nestcloud --version\`: 2.9–3.4 s CPU, 6.7–9.1 s wall on this machine;
the PlanetLab day about 7 s).
\`vms\` asks a controller the bench started (simulated provider, 48 guests); the PlanetLab row
writes its results and report to a temporary folder.

${table(head, tableRows)}

${cloudsimLine}`;
writeDocsSection("bench:cli", md);
process.stdout.write(`${table(head, tableRows)}\n${cloudsimLine}\nwrote ${file}\n`);

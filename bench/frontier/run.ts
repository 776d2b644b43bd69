/**
 * Frontiers (npm run bench:frontier [-- --quick] [--workers 1|2] [--days d1,d2]
 * [--scenario file]): on every public PlanetLab day, sweep each policy's main parameter —
 * the reference policies' detector parameter, plain and with all three modifiers
 * (+billing+hostvm+react), and nestcloud's packing target — and chart host-VM hours against
 * SLATAH, with the day's lower bound on host-VM hours drawn.
 *
 * Writes bench/results/frontier.json, one SVG chart per day in docs/frontier/, all of them
 * with their points in docs/frontier/report.html, and the bench:frontier section of
 * docs/benchmarks.md; prints the per-day table. Runs in at most 2 worker processes (the
 * machines are shared), with a progress line per run.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  loadScenario,
  loadTrace,
  planetlabDays,
  runScenario,
  type Scenario,
  type Trace,
} from "../../src/sim/index.ts";
import { machine, root, table, writeDocsSection, writeResults } from "../lib.ts";
import { type ChartSeries, frontierSvg } from "./chart.ts";

type Params = Record<string, number>;

/** One policy family's sweep: the policy (and parameters) for each value of its main parameter. */
interface Sweep {
  readonly family: string;
  readonly variant: string;
  readonly parameter: string;
  readonly values: readonly number[];
  readonly defaultValue: number;
  readonly color: string;
  readonly dashed: boolean;
  policy(value: number): { name: string; params: Params };
}

const STRONG = "+billing+hostvm+react";

/** The reference families: detector, its parameter's name, values swept, default, color. */
const FAMILIES = [
  {
    family: "lr-mmt",
    parameter: "safety",
    values: [1.1, 1.2, 1.3, 1.4, 1.5],
    defaultValue: 1.2,
    color: "#5470c6",
  },
  {
    family: "thr-mmt",
    parameter: "threshold",
    values: [0.6, 0.7, 0.8, 0.85, 0.9],
    defaultValue: 0.8,
    color: "#3ba272",
  },
  {
    family: "mad-mmt",
    parameter: "safety",
    values: [2.0, 2.5, 3.0, 4.0, 5.0],
    defaultValue: 2.5,
    color: "#e6a100",
  },
  {
    family: "iqr-mmt",
    parameter: "safety",
    values: [1.0, 1.5, 2.0, 2.5, 3.0],
    defaultValue: 1.5,
    color: "#9a60b4",
  },
] as const;

/**
 * nestcloud's main parameter: the packing target (targetUtilization), with the server target
 * and the overload level kept at their default distances from it (0.95 and 0.99 at 0.97).
 */
const NESTCLOUD_VALUES = [0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99];

function sweeps(quick: boolean): Sweep[] {
  const thin = (values: readonly number[], keep: number) =>
    quick ? values.filter((v, i) => v === keep || i === 0 || i === values.length - 1) : values;
  const out: Sweep[] = [];
  for (const f of FAMILIES) {
    for (const variant of ["", STRONG]) {
      out.push({
        family: f.family,
        variant,
        parameter: f.parameter,
        values: thin(f.values, f.defaultValue),
        defaultValue: f.defaultValue,
        color: f.color,
        dashed: variant === "",
        policy: (v) => ({ name: `${f.family}-${v}${variant}`, params: {} }),
      });
    }
  }
  out.push({
    family: "nestcloud",
    variant: "",
    parameter: "targetUtilization",
    values: thin(NESTCLOUD_VALUES, 0.97),
    defaultValue: 0.97,
    color: "#d62728",
    dashed: false,
    policy: (t) => ({
      name: "nestcloud",
      params: {
        targetUtilization: t,
        serverTargetUtilization: round(t - 0.02, 4),
        overloadUtilization: Math.min(1.5, round(t + 0.02, 4)),
      },
    }),
  });
  return out;
}

interface Task {
  readonly id: number;
  readonly day: string;
  readonly policy: string;
  readonly params: Params;
}

interface Outcome {
  readonly id: number;
  readonly guests: number;
  readonly hostVmHours: number;
  readonly lowerBoundHostVmHours: number;
  readonly slatah: number;
  readonly migrations: number;
  readonly instant: number;
  readonly acquisitions: number;
  readonly cost: number;
  readonly wallSeconds: number;
}

// ---- worker ----------------------------------------------------------------------------

function worker(scenarioFile: string): void {
  const sc = loadScenario(scenarioFile);
  let cached: { day: string; trace: Trace } | undefined;
  process.on("message", (t: Task) => {
    if (cached?.day !== t.day) cached = { day: t.day, trace: loadTrace(sc, `planetlab:${t.day}`, sc.seed) };
    const out = runScenario(sc, {
      policy: t.policy,
      policyParams: { [t.policy]: t.params },
      loadedTrace: cached.trace,
    });
    const r = out.result;
    const o: Outcome = {
      id: t.id,
      guests: r.guests,
      hostVmHours: r.hostVmHours,
      lowerBoundHostVmHours: r.lowerBoundHostVmHours ?? Number.NaN,
      slatah: r.slatah,
      migrations: r.migrations.total,
      instant: r.migrations.instant,
      acquisitions: r.hostVmAcquisitions,
      cost: r.cost,
      wallSeconds: out.timing.wallSeconds,
    };
    process.send!(o);
  });
}

// ---- coordinator ---------------------------------------------------------------------

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const pct = (x: number) => `${(x * 100).toFixed(2)} %`;

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Runs the tasks on `workers` child processes; resolves with the outcomes by task id. */
function runAll(
  scenarioFile: string,
  tasks: readonly Task[],
  workers: number,
): Promise<Map<number, Outcome>> {
  const self = fileURLToPath(import.meta.url);
  const results = new Map<number, Outcome>();
  const started = performance.now();
  let next = 0;
  return new Promise((done, fail) => {
    const children: ChildProcess[] = [];
    const give = (c: ChildProcess) => {
      if (next < tasks.length) c.send(tasks[next++]);
      else c.disconnect();
    };
    for (let w = 0; w < Math.min(workers, tasks.length); w++) {
      const c = fork(self, ["--worker", scenarioFile], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      children.push(c);
      c.on("message", (o: Outcome) => {
        results.set(o.id, o);
        const t = tasks[o.id];
        const elapsed = (performance.now() - started) / 1000;
        const params = Object.keys(t.params).length ? ` ${JSON.stringify(t.params)}` : "";
        log(
          `  [${results.size}/${tasks.length}] ${t.day} ${t.policy}${params}: ${o.hostVmHours.toFixed(1)} h, SLATAH ${pct(o.slatah)}, ${o.migrations} migrations (${o.wallSeconds.toFixed(1)} s; ${elapsed.toFixed(0)} s in)`,
        );
        if (results.size < tasks.length) give(c);
        else {
          // Every worker still connected waits for a task: let them all exit.
          for (const k of children) if (k.connected) k.disconnect();
          done(results);
        }
      });
      c.on("exit", (code) => {
        if (code !== 0 && results.size < tasks.length) fail(new Error(`a worker exited with code ${code}`));
      });
      give(c);
    }
  });
}

interface Point {
  readonly family: string;
  readonly variant: string;
  readonly parameter: string;
  readonly value: number;
  readonly isDefault: boolean;
  readonly policy: string;
  readonly params: Params;
  readonly hostVmHours: number;
  readonly toLowerBound: number;
  readonly slatah: number;
  readonly migrations: number;
  readonly instantShare: number;
  readonly acquisitions: number;
  readonly cost: number;
}

const seriesName = (p: { family: string; variant: string }) => `${p.family}${p.variant}`;
const pointLabel = (p: Point) => (p.family === "nestcloud" ? `nestcloud target ${p.value}` : `${p.policy}`);

/** Baseline points for which some nestcloud setting uses no more hours and has no more SLATAH. */
function dominance(points: readonly Point[]) {
  const ours = points.filter((p) => p.family === "nestcloud");
  const theirs = points.filter((p) => p.family !== "nestcloud");
  const undominated = theirs.filter(
    (b) => !ours.some((n) => n.hostVmHours <= b.hostVmHours && n.slatah <= b.slatah),
  );
  return { dominated: theirs.length - undominated.length, of: theirs.length, undominated };
}

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const workers = Math.max(1, Math.min(2, Number(arg("--workers") ?? 2)));
  const scenarioFile = resolve(arg("--scenario") ?? join(root, "scenarios/nested-planetlab.yaml"));
  const sc: Scenario = loadScenario(scenarioFile);
  const available = planetlabDays();
  const wanted = arg("--days")?.split(",") ?? (quick ? available.slice(0, 1) : available);
  const days = wanted.filter((d) => available.includes(d));
  if (days.length === 0) {
    log(
      `bench:frontier: no PlanetLab days${arg("--days") ? ` among ${arg("--days")}` : ""} (set NESTCLOUD_PLANETLAB_DIR to a folder of days; see README, "PlanetLab traces")`,
    );
    process.exitCode = 2;
    return;
  }
  const plan = sweeps(quick);
  const tasks: Task[] = [];
  const where: { day: string; sweep: Sweep; value: number }[] = [];
  for (const day of days) {
    for (const sweep of plan) {
      for (const value of sweep.values) {
        const p = sweep.policy(value);
        where.push({ day, sweep, value });
        tasks.push({ id: tasks.length, day, policy: p.name, params: p.params });
      }
    }
  }
  log(
    `bench:frontier — ${sc.name}, ${days.length} day(s), ${tasks.length} runs on ${workers} worker(s)${quick ? " (--quick)" : ""}`,
  );
  const t0 = performance.now();
  const outcomes = await runAll(scenarioFile, tasks, workers);
  const wallSeconds = (performance.now() - t0) / 1000;

  const perDay = days.map((day) => {
    const points: Point[] = [];
    let guests = 0;
    let bound = Number.NaN;
    tasks.forEach((t, i) => {
      if (t.day !== day) return;
      const o = outcomes.get(t.id)!;
      const { sweep, value } = where[i];
      guests = o.guests;
      bound = o.lowerBoundHostVmHours;
      points.push({
        family: sweep.family,
        variant: sweep.variant,
        parameter: sweep.parameter,
        value,
        isDefault: value === sweep.defaultValue,
        policy: t.policy,
        params: t.params,
        hostVmHours: o.hostVmHours,
        toLowerBound: o.hostVmHours / o.lowerBoundHostVmHours,
        slatah: o.slatah,
        migrations: o.migrations,
        instantShare: o.migrations > 0 ? o.instant / o.migrations : 1,
        acquisitions: o.acquisitions,
        cost: o.cost,
      });
    });
    return { day, guests, lowerBoundHostVmHours: bound, points, dominance: dominance(points) };
  });

  // ---- charts --------------------------------------------------------------------------
  const chartDir = join(root, "docs/frontier");
  mkdirSync(chartDir, { recursive: true });
  const charts = perDay.map((d) => {
    const series: ChartSeries[] = plan.map((s) => ({
      name: seriesName(s),
      color: s.color,
      dashed: s.dashed,
      points: d.points
        .filter((p) => p.family === s.family && p.variant === s.variant)
        .map((p) => ({
          slatah: p.slatah,
          hostVmHours: p.hostVmHours,
          label: pointLabel(p),
          isDefault: p.isDefault,
        })),
    }));
    const svg = frontierSvg(
      `PlanetLab ${d.day} (${d.guests} guests), ${sc.name}: host-VM hours vs SLATAH`,
      series,
      d.lowerBoundHostVmHours,
    );
    const file = join(chartDir, `${d.day}.svg`);
    writeFileSync(file, svg);
    return { day: d.day, file, svg };
  });

  // ---- tables --------------------------------------------------------------------------
  const find = (d: (typeof perDay)[number], family: string, variant: string) =>
    d.points.find((p) => p.family === family && p.variant === variant && p.isDefault)!;
  const bestUnder = (d: (typeof perDay)[number], ours: boolean, slatah: number) => {
    const pool = d.points.filter((p) => (p.family === "nestcloud") === ours && p.slatah <= slatah);
    return pool.sort((a, b) => a.hostVmHours - b.hostVmHours)[0];
  };
  const cell = (p: Point | undefined) =>
    p ? `${p.hostVmHours.toFixed(0)} h (${p.toLowerBound.toFixed(2)} x), ${pct(p.slatah)}` : "—";
  const head = [
    "day",
    "lower bound h",
    "nestcloud default",
    `lr-mmt-1.2${STRONG}`,
    "lr-mmt-1.2 plain",
    "fewest h, SLATAH <= 1 %: nestcloud",
    "fewest h, SLATAH <= 1 %: baselines",
    "baseline points dominated by a nestcloud setting",
  ];
  const rows = perDay.map((d) => {
    const bestBase = bestUnder(d, false, 0.01);
    return [
      `${d.day} (${d.guests})`,
      d.lowerBoundHostVmHours.toFixed(1),
      cell(find(d, "nestcloud", "")),
      cell(find(d, "lr-mmt", STRONG)),
      cell(find(d, "lr-mmt", "")),
      cell(bestUnder(d, true, 0.01)),
      bestBase ? `${cell(bestBase)} — ${bestBase.policy}` : "—",
      `${d.dominance.dominated} / ${d.dominance.of}`,
    ];
  });
  const summary = table(head, rows);

  const date = new Date().toISOString();
  const file = writeResults("frontier", {
    date,
    machine: machine(),
    quick,
    workers,
    wallSeconds,
    scenario: relative(root, scenarioFile),
    sweeps: plan.map((s) => ({
      series: seriesName(s),
      parameter: s.parameter,
      values: s.values,
      defaultValue: s.defaultValue,
    })),
    days: perDay.map((d) => ({
      day: d.day,
      guests: d.guests,
      lowerBoundHostVmHours: d.lowerBoundHostVmHours,
      chart: relative(root, join(chartDir, `${d.day}.svg`)),
      dominatedBaselinePoints: d.dominance.dominated,
      baselinePoints: d.dominance.of,
      undominated: d.dominance.undominated.map((p) => p.policy),
      points: d.points,
    })),
  });

  // ---- report.html ---------------------------------------------------------------------
  const esc = (s: string) =>
    s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
  const dayTables = perDay
    .map((d, i) => {
      const body = d.points
        .map(
          (p) =>
            `<tr${p.isDefault ? ' class="default"' : ""}><td class="text">${esc(seriesName(p))}</td><td>${p.parameter} ${p.value}</td><td>${p.hostVmHours.toFixed(1)}</td><td>${p.toLowerBound.toFixed(3)}</td><td>${pct(p.slatah)}</td><td>${p.migrations}</td><td>${(p.instantShare * 100).toFixed(0)} %</td><td>${p.acquisitions}</td></tr>`,
        )
        .join("\n");
      return `<h2>${d.day}: ${d.guests} guests, lower bound ${d.lowerBoundHostVmHours.toFixed(1)} host-VM hours</h2>
<figure>${charts[i].svg}</figure>
<p>Baseline points dominated by some nestcloud setting (no more hours and no more SLATAH): ${d.dominance.dominated} of ${d.dominance.of}.${d.dominance.undominated.length ? ` Not dominated: ${esc(d.dominance.undominated.map((p) => p.policy).join(", "))}.` : ""}</p>
<div class="scroll"><table><thead><tr><th class="text">policy</th><th>parameter</th><th>host-VM hours</th><th>x lower bound</th><th>SLATAH</th><th>migrations</th><th>instant</th><th>acquisitions</th></tr></thead>
<tbody>
${body}
</tbody></table></div>`;
    })
    .join("\n");
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nestcloud: frontiers, host-VM hours against SLATAH</title>
<style>
:root{font-family:system-ui,sans-serif;line-height:1.4;color:#1d1d1f}
body{margin:0;padding:1.25rem clamp(0.75rem,3vw,2.5rem)}
main{max-width:1200px;margin:0 auto}
h1{font-size:1.5rem}
h2{font-size:1.15rem;margin:2rem 0 .5rem}
p{max-width:70rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
thead th{background:#f4f4f4}
.text{text-align:left}
tr.default td{font-weight:600}
figure{margin:0}
figure svg{display:block;width:100%;height:auto}
</style></head><body><main>
<h1>Frontiers: host-VM hours against SLATAH</h1>
<p>Scenario <b>${esc(sc.name)}</b> (${esc(relative(root, scenarioFile))}), written by <code>npm run bench:frontier</code> on ${date.slice(0, 10)}.
Each line sweeps one policy's main parameter: the reference policies' detector parameter, plain (dashed, hollow points)
and with nestcloud's rules (<code>${STRONG}</code>, solid); nestcloud's packing target (targetUtilization, with the server
target 0.02 below and the overload level 0.02 above it). Large points are the defaults. The dotted line is the day's lower
bound: per 5-minute interval, the fewest host VMs that hold the interval's total CPU demand and memory. Down and to the
left is better.</p>
${dayTables}
</main></body></html>
`;
  const report = join(chartDir, "report.html");
  writeFileSync(report, html);

  // ---- docs ----------------------------------------------------------------------------
  const images = perDay.map((d) => `![frontier ${d.day}](frontier/${d.day}.svg)`).join("\n");
  writeDocsSection(
    "bench:frontier",
    `## Frontiers: host-VM hours against SLATAH, every day

Command: \`npm run bench:frontier\`${quick ? " (--quick)" : ""} — ${date.slice(0, 10)}, ${machine()}, ${workers} worker(s), ${wallSeconds.toFixed(0)} s.
Scenario \`${relative(root, scenarioFile)}\`. Each policy's main parameter is swept: the reference
policies' detector parameter (lr-mmt safety ${FAMILIES[0].values.join(", ")}; thr-mmt threshold
${FAMILIES[1].values.join(", ")}; mad-mmt safety ${FAMILIES[2].values.join(", ")}; iqr-mmt safety
${FAMILIES[3].values.join(", ")}), plain and with \`${STRONG}\`, and nestcloud's packing target
(targetUtilization ${NESTCLOUD_VALUES.join(", ")}, the server target 0.02 below it and the
overload level 0.02 above). Cells: host-VM hours (x the lower bound), SLATAH, at the default
parameters unless said. A baseline point is dominated when some nestcloud setting uses no more
hours with no more SLATAH. Charts: \`docs/frontier/<day>.svg\`, all with their points in
[docs/frontier/report.html](frontier/report.html); points in \`bench/results/frontier.json\`.

${summary}

${images}`,
  );
  process.stdout.write(`${summary}\n`);
  for (const c of charts) log(`wrote ${c.file}`);
  log(`wrote ${report}`);
  log(`wrote ${file}`);
}

if (process.argv.includes("--worker")) worker(process.argv[process.argv.indexOf("--worker") + 1]);
else
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });

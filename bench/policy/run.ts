/**
 * Policy quality (npm run bench:policy):
 *  - fidelity: the reference policies on the CloudSim scenario against CloudSim 3.0.3;
 *  - on the nested scenario, every PlanetLab day available: nestcloud against lr-mmt-1.2
 *    plain, with each of the modifiers +billing, +hostvm, +react and with all three, and
 *    against the day's lower bound on host-VM hours; billed per second
 *    (nested-planetlab.yaml) and per started hour (nested-planetlab-hourly.yaml).
 * Writes bench/results/policy.json and its sections of docs/benchmarks.md.
 */
import { join } from "node:path";
import {
  loadScenario,
  loadTrace,
  planetlabDays,
  runScenario,
  type Scenario,
  type SimulationResult,
} from "../../src/sim/index.ts";
import { machine, root, table, writeDocsSection, writeResults } from "../lib.ts";
import { CLOUDSIM_NOTES, CLOUDSIM_REBUILT_SORTED } from "./reference.ts";

const log = (s: string) => process.stderr.write(`${s}\n`);
const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const delta = (ours: number, ref: number) =>
  ref === 0 ? "—" : `${(((ours - ref) / ref) * 100).toFixed(1)} %`;

function fidelity() {
  const sc = loadScenario(join(root, "scenarios/cloudsim-planetlab.yaml"));
  const trace = loadTrace(sc, undefined, sc.seed);
  const rows: {
    policy: string;
    ours: SimulationResult;
    notes: (typeof CLOUDSIM_NOTES)[string];
    within: boolean;
  }[] = [];
  for (const policy of ["lr-mmt-1.2", "thr-mmt-0.8", "mad-mmt-2.5", "iqr-mmt-1.5", "thr-mmt-1.0", "dvfs"]) {
    const ours = runScenario(sc, { policy, loadedTrace: trace }).result;
    const ref = CLOUDSIM_NOTES[policy];
    const within =
      Math.abs(ours.energyKWh - ref.energyKWh) <= 0.15 * ref.energyKWh &&
      Math.abs(ours.migrations.total - ref.migrations) <= 0.15 * Math.max(1, ref.migrations) &&
      Math.abs(ours.slatah - ref.slatah) <= 0.02;
    rows.push({ policy, ours, notes: ref, within });
    log(
      `  fidelity ${policy}: ${ours.energyKWh.toFixed(2)} kWh, ${ours.migrations.total} migrations, SLATAH ${pct(ours.slatah)}`,
    );
  }
  return rows;
}

/** lr-mmt-1.2 plain, with each modifier, with all three; then nestcloud (the last). */
const BASELINES = [
  "lr-mmt-1.2",
  "lr-mmt-1.2+billing",
  "lr-mmt-1.2+hostvm",
  "lr-mmt-1.2+react",
  "lr-mmt-1.2+billing+hostvm+react",
] as const;
const STRONGEST = "lr-mmt-1.2+billing+hostvm+react";

/** Every baseline variant and nestcloud on every PlanetLab day of one nested scenario. */
function nestedDays(sc: Scenario) {
  const out = [];
  for (const day of planetlabDays()) {
    const trace = loadTrace(sc, `planetlab:${day}`, sc.seed);
    const runs: Record<string, SimulationResult> = {};
    for (const policy of [...BASELINES, "nestcloud"]) {
      const t0 = performance.now();
      const r = runScenario(sc, { policy, loadedTrace: trace }).result;
      runs[policy] = r;
      log(
        `  ${sc.name} ${day} ${policy}: ${r.hostVmHours.toFixed(1)} h (${(r.hostVmHours / r.lowerBoundHostVmHours!).toFixed(2)} x lower bound), SLATAH ${pct(r.slatah)}, ${r.migrations.total} migrations (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
      );
    }
    const nc = runs.nestcloud;
    const lr = runs["lr-mmt-1.2"];
    const strongest = runs[STRONGEST];
    const instantShare = nc.migrations.total > 0 ? nc.migrations.instant / nc.migrations.total : 1;
    const bound = nc.lowerBoundHostVmHours!;
    // Issue 11's targets: at most 0.90 x the strongest baseline's hours with no more SLATAH;
    // within 1.15 x the lower bound with SLATAH <= 1 %.
    const vsStrongest = nc.hostVmHours / strongest.hostVmHours;
    const targets = {
      vsStrongest,
      beatsStrongest: vsStrongest <= 0.9 && nc.slatah <= strongest.slatah,
      toLowerBound: nc.hostVmHours / bound,
      nearLowerBound: nc.hostVmHours <= 1.15 * bound && nc.slatah <= 0.01,
    };
    out.push({
      day,
      guests: nc.guests,
      lowerBoundHostVmHours: bound,
      runs,
      fewerHoursThanPlain: 1 - nc.hostVmHours / lr.hostVmHours,
      instantShare,
      targets,
    });
  }
  return out;
}

log("bench:policy — fidelity against CloudSim 3.0.3");
const fid = fidelity();
log("bench:policy — every baseline variant and nestcloud, billed per second (nested-planetlab.yaml)");
const days = nestedDays(loadScenario(join(root, "scenarios/nested-planetlab.yaml")));
log("bench:policy — the same billed per started hour (nested-planetlab-hourly.yaml)");
const daysHourly = nestedDays(loadScenario(join(root, "scenarios/nested-planetlab-hourly.yaml")));

const date = new Date().toISOString();
const file = writeResults("policy", {
  date,
  machine: machine(),
  fidelity: fid.map((r) => ({
    policy: r.policy,
    ours: {
      energyKWh: r.ours.energyKWh,
      migrations: r.ours.migrations.total,
      slatah: r.ours.slatah,
      pdm: r.ours.pdm,
      slav: r.ours.slav,
      esv: r.ours.esv,
    },
    cloudsimNotes: r.notes,
    cloudsimRebuiltSorted: CLOUDSIM_REBUILT_SORTED[r.policy] ?? null,
    withinAcceptance: r.within,
  })),
  nestedPerSecond: { scenario: "scenarios/nested-planetlab.yaml", days: days.map(summary) },
  nestedHourly: { scenario: "scenarios/nested-planetlab-hourly.yaml", days: daysHourly.map(summary) },
});

function summary(d: (typeof days)[number]) {
  const pick = (r: SimulationResult) => ({
    hostVmHours: r.hostVmHours,
    toLowerBound: r.hostVmHours / d.lowerBoundHostVmHours,
    cost: r.cost,
    migrations: r.migrations,
    slatah: r.slatah,
    pdm: r.pdm,
    energyKWh: r.energyKWh,
    acquisitions: r.hostVmAcquisitions,
    releases: r.hostVmReleases,
  });
  return {
    day: d.day,
    guests: d.guests,
    lowerBoundHostVmHours: d.lowerBoundHostVmHours,
    policies: Object.fromEntries(Object.entries(d.runs).map(([p, r]) => [p, pick(r)])),
    fewerHoursThanPlain: d.fewerHoursThanPlain,
    instantShare: d.instantShare,
    targets: d.targets,
  };
}

const fidTable = table(
  [
    "policy",
    "energy kWh (ours / CloudSim / Δ)",
    "migrations (ours / CloudSim / Δ)",
    "SLATAH (ours / CloudSim)",
    "PDM (ours / CloudSim)",
    "rebuilt CloudSim, files in name order",
    "within 15 % / 2 pt",
  ],
  fid.map((r) => {
    const g = CLOUDSIM_REBUILT_SORTED[r.policy];
    return [
      r.policy,
      `${r.ours.energyKWh.toFixed(2)} / ${r.notes.energyKWh.toFixed(2)} / ${delta(r.ours.energyKWh, r.notes.energyKWh)}`,
      `${r.ours.migrations.total} / ${r.notes.migrations} / ${delta(r.ours.migrations.total, r.notes.migrations)}`,
      `${pct(r.ours.slatah)} / ${pct(r.notes.slatah)}`,
      `${pct(r.ours.pdm)} / ${pct(r.notes.pdm)}`,
      g ? `${g.energyKWh.toFixed(2)} kWh, ${g.migrations}, ${pct(g.slatah)}` : "—",
      r.within ? "yes" : "NO",
    ];
  }),
);
/** One row per day and policy: hours, their ratio to the lower bound, SLATAH, migrations. */
const dayTable = (rows: typeof days) =>
  table(
    [
      "day",
      "policy",
      "host-VM hours",
      "x lower bound",
      "SLATAH",
      "migrations (instant)",
      "acquisitions",
      "cost $",
    ],
    rows.flatMap((d) =>
      Object.entries(d.runs).map(([policy, r], i) => [
        i === 0 ? `${d.day} (${d.guests} guests; bound ${d.lowerBoundHostVmHours.toFixed(1)} h)` : "",
        policy,
        r.hostVmHours.toFixed(1),
        (r.hostVmHours / d.lowerBoundHostVmHours).toFixed(2),
        pct(r.slatah),
        `${r.migrations.total} (${r.migrations.total ? ((r.migrations.instant / r.migrations.total) * 100).toFixed(0) : 0} %)`,
        r.hostVmAcquisitions,
        r.cost.toFixed(0),
      ]),
    ),
  );
/** Per day: nestcloud against the strongest baseline and the lower bound (issue 11's targets). */
const targetTable = (rows: typeof days) =>
  table(
    [
      "day",
      `nestcloud / ${STRONGEST} hours`,
      "SLATAH nestcloud / strongest",
      "<= 0.90 x, SLATAH no higher",
      "nestcloud / lower bound",
      "<= 1.15 x, SLATAH <= 1 %",
      "nestcloud / plain lr-mmt-1.2 hours",
    ],
    rows.map((d) => [
      d.day,
      d.targets.vsStrongest.toFixed(3),
      `${pct(d.runs.nestcloud.slatah)} / ${pct(d.runs[STRONGEST].slatah)}`,
      d.targets.beatsStrongest ? "yes" : "no",
      d.targets.toLowerBound.toFixed(3),
      d.targets.nearLowerBound ? "yes" : "no",
      (1 - d.fewerHoursThanPlain).toFixed(3),
    ]),
  );

writeDocsSection(
  "bench:policy:fidelity",
  `## Fidelity against CloudSim 3.0.3 (reference experiment)

Command: \`npm run bench:policy\` — ${date.slice(0, 10)}, ${machine()}.
Scenario \`scenarios/cloudsim-planetlab.yaml\`, PlanetLab day 20110303 (1,052 VMs, 800 hosts).
"CloudSim" is the measured CloudSim 3.0.3 output of ../shared/notes/consolidation.md; the
acceptance asks energy and migrations within 15 % and SLATAH within 2 points of it.

${fidTable}

Why the small differences: nestcloud takes trace files in name order; CloudSim takes them
in the directory's unsorted order, which decides which trace runs in which VM type. A
CloudSim 3.0.3 rebuilt from its source on this machine reproduces the notes' figures with
the unsorted order, and gives the "name order" column with ours (within ~1 % energy and
migrations).`,
);
writeDocsSection(
  "bench:policy:nested",
  `## nestcloud against every baseline variant on the nested scenario, every day

Command: \`npm run bench:policy\` — ${date.slice(0, 10)}, ${machine()}. Scenario
\`scenarios/nested-planetlab.yaml\`: memory-optimized 4 vCPU / 128 GiB host VMs at $0.834/h,
8 per 32-core server, **billed per second with a 60 s minimum** (as today's large clouds bill).
The baselines are lr-mmt-1.2 plain (CloudSim's policy: PABFD by server power, every empty host
VM returned at once, acting every 300 s) and with each of nestcloud's rules given to it:
\`+billing\` (nestcloud's renting rules), \`+hostvm\` (best fit over host VMs and their cost),
\`+react\` (nestcloud's between-round checks, every 30 s), and all three. "x lower bound" is the
policy's hours over the day's \`lowerBoundHostVmHours\` (per 5-minute interval, the fewest host
VMs that hold the interval's total CPU demand and memory). Parameters are the defaults.

${dayTable(days)}

Against issue 11's targets (nestcloud at most 0.90 x the strongest baseline's hours with no
more SLATAH; within 1.15 x the lower bound with SLATAH <= 1 %):

${targetTable(days)}

The same, **billed per started hour** (\`scenarios/nested-planetlab-hourly.yaml\`), where
giving back a host VM early or renting a new one pays for the whole hour it started:

${dayTable(daysHourly)}

${targetTable(daysHourly)}`,
);
process.stdout.write(
  `${fidTable}\n\n${dayTable(days)}\n\n${targetTable(days)}\n\n${dayTable(daysHourly)}\n\n${targetTable(daysHourly)}\nwrote ${file}\n`,
);

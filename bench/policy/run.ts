/**
 * Policy quality (npm run bench:policy):
 *  - fidelity: the reference policies on the CloudSim scenario against CloudSim 3.0.3;
 *  - nestcloud against lr-mmt-1.2 on the nested scenario, every PlanetLab day available;
 *  - the same with per-second billing (sensitivity).
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

function withPerSecondBilling(sc: Scenario): Scenario {
  const perSecond = (t: Scenario["hostVmTypes"][number]) => ({ ...t, billingIncrementSeconds: 1 });
  return {
    ...sc,
    name: `${sc.name} (per-second billing)`,
    hostVmTypes: sc.hostVmTypes.map(perSecond),
    initialHostVms: sc.initialHostVms && { ...sc.initialHostVms, type: perSecond(sc.initialHostVms.type) },
  };
}

function nestedDays(sc: Scenario) {
  const out = [];
  for (const day of planetlabDays()) {
    const trace = loadTrace(sc, `planetlab:${day}`, sc.seed);
    const lr = runScenario(sc, { policy: "lr-mmt-1.2", loadedTrace: trace }).result;
    const nc = runScenario(sc, { policy: "nestcloud", loadedTrace: trace }).result;
    const fewerHours = 1 - nc.hostVmHours / lr.hostVmHours;
    const instantShare = nc.migrations.total > 0 ? nc.migrations.instant / nc.migrations.total : 1;
    const pass =
      fewerHours >= 0.2 &&
      nc.slatah <= lr.slatah &&
      nc.migrations.total <= lr.migrations.total / 2 &&
      instantShare >= 0.8;
    out.push({ day, guests: nc.guests, lr, nestcloud: nc, fewerHours, instantShare, pass });
    log(
      `  ${sc.name} ${day}: ${(fewerHours * 100).toFixed(1)} % fewer host-VM hours, ${nc.migrations.total} vs ${lr.migrations.total} migrations, ${(instantShare * 100).toFixed(0)} % instant, SLATAH ${pct(nc.slatah)} vs ${pct(lr.slatah)}`,
    );
  }
  return out;
}

log("bench:policy — fidelity against CloudSim 3.0.3");
const fid = fidelity();
const nested = loadScenario(join(root, "scenarios/nested-planetlab.yaml"));
log("bench:policy — nestcloud vs lr-mmt-1.2, nested scenario (hourly billing)");
const days = nestedDays(nested);
log("bench:policy — the same with per-second billing");
const daysPerSecond = nestedDays(withPerSecondBilling(nested));

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
  nested: days.map(summary),
  nestedPerSecondBilling: daysPerSecond.map(summary),
});

function summary(d: (typeof days)[number]) {
  const pick = (r: SimulationResult) => ({
    hostVmHours: r.hostVmHours,
    cost: r.cost,
    migrations: r.migrations,
    slatah: r.slatah,
    pdm: r.pdm,
    energyKWh: r.energyKWh,
  });
  return {
    day: d.day,
    guests: d.guests,
    lr: pick(d.lr),
    nestcloud: pick(d.nestcloud),
    fewerHours: d.fewerHours,
    instantShare: d.instantShare,
    pass: d.pass,
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
const dayTable = (rows: typeof days) =>
  table(
    [
      "day",
      "guests",
      "host-VM hours lr / nestcloud",
      "fewer",
      "SLATAH lr / nestcloud",
      "migrations lr / nestcloud",
      "instant",
      "cost $ lr / nestcloud",
      "all targets",
    ],
    rows.map((d) => [
      d.day,
      d.guests,
      `${d.lr.hostVmHours.toFixed(0)} / ${d.nestcloud.hostVmHours.toFixed(0)}`,
      `${(d.fewerHours * 100).toFixed(1)} %`,
      `${pct(d.lr.slatah)} / ${pct(d.nestcloud.slatah)}`,
      `${d.lr.migrations.total} / ${d.nestcloud.migrations.total}`,
      `${(d.instantShare * 100).toFixed(0)} %`,
      `${d.lr.cost.toFixed(0)} / ${d.nestcloud.cost.toFixed(0)}`,
      d.pass ? "yes" : "no",
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
  `## nestcloud against lr-mmt-1.2 on the nested scenario, every day

Command: \`npm run bench:policy\` — ${date.slice(0, 10)}. Scenario \`scenarios/nested-planetlab.yaml\`
(memory-optimized 4 vCPU / 128 GiB host VMs at $0.834/h billed per started hour, 8 per
32-core server). Targets: at least 20 % fewer host-VM hours, SLATAH no worse, at most half
the migrations, at least 80 % of nestcloud's migrations instant.

${dayTable(days)}

Sensitivity — the same with per-second billing (modern clouds), where releasing a host VM
early always pays and the baseline's churn costs nothing extra:

${dayTable(daysPerSecond)}`,
);
process.stdout.write(`${fidTable}\n\n${dayTable(days)}\n\n${dayTable(daysPerSecond)}\nwrote ${file}\n`);

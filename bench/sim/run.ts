/**
 * Simulator and planner speed (npm run bench:sim [-- --quick]):
 *  1. one PlanetLab day with lr-mmt-1.2 on the CloudSim reference scenario (target < 2 s);
 *  2. a synthetic 100,000-guest nested day with nestcloud (target < 60 s);
 *  3. one planning round for 10,000 guests on 2,000 host VMs (target < 200 ms).
 * Prints a table, writes bench/results/sim.json and the section of docs/benchmarks.md.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_CALIBRATION, DEFAULT_MECHANISM_POLICY } from "../../src/migration/index.ts";
import { Cloud, LoadHistory } from "../../src/model/index.ts";
import { NESTED_RULES, type PlannerInput, type Policy, UNLIMITED } from "../../src/planner/index.ts";
import {
  createPolicy,
  loadScenario,
  parseScenario,
  Rng,
  runScenario,
  syntheticTrace,
} from "../../src/sim/index.ts";
import { machine, median, root, table, writeDocsSection, writeResults } from "../lib.ts";

const quick = process.argv.includes("--quick");
const log = (s: string) => process.stderr.write(`${s}\n`);

// CloudSim 3.0.3 rebuilt from source and run on this machine kind (JDK 17), same day,
// same policy, trace files in name order: see docs/benchmarks.md "Fidelity".
const CLOUDSIM_LR_DAY_SECONDS = 91.0;

function referenceDay() {
  const sc = loadScenario(join(root, "scenarios/cloudsim-planetlab.yaml"));
  const runs = quick ? 3 : 5;
  const walls: number[] = [];
  let plannerMean = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = runScenario(sc, { policy: "lr-mmt-1.2" });
    walls.push((performance.now() - t0) / 1000);
    plannerMean = out.timing.plannerMs.mean;
    log(`  reference day run ${i + 1}/${runs}: ${walls[i].toFixed(2)} s`);
  }
  return {
    runs,
    medianSeconds: median(walls),
    minSeconds: Math.min(...walls),
    walls,
    plannerMsMean: plannerMean,
  };
}

function syntheticDay(guests: number) {
  const text = readFileSync(join(root, "scenarios/synthetic-nested.yaml"), "utf8");
  const servers = Math.ceil((guests / 2000) * 16 * 1.3);
  const sc = parseScenario(
    text
      .replace("count: 16", `count: ${servers}`)
      .replace("guests: 2000, seed: 42", `guests: ${guests}, seed: 42`)
      // Concurrency limits grow with the datacenter (the default is sized for 16 servers).
      .replace("maxConcurrent: 8", `maxConcurrent: ${Math.ceil(servers / 2)}`),
    // Named as if beside the original, so its relative calibration path resolves.
    join(root, "scenarios/synthetic-scaled.yaml"),
  );
  const t0 = performance.now();
  let shown = -1;
  const out = runScenario(sc, {
    policy: "nestcloud",
    onProgress: (f) => {
      const step = Math.floor(f * 4);
      if (step > shown) {
        shown = step;
        log(`  synthetic ${guests}: ${step * 25}% after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
    },
  });
  return {
    guests,
    physicalServers: servers,
    wallSeconds: (performance.now() - t0) / 1000,
    plannerMsMean: out.timing.plannerMs.mean,
    plannerMsMax: out.timing.plannerMs.max,
    hostVmHours: out.result.hostVmHours,
    migrations: out.result.migrations.total,
    instant: out.result.migrations.instant,
    slatah: out.result.slatah,
  };
}

/** 10,000 guests spread over 2,000 running host VMs (250 servers x 8), 30 samples of history. */
function plannerState(guests = 10_000, hostVms = 2_000): PlannerInput {
  const cloud = new Cloud();
  const perServer = 8;
  const type = {
    name: "hvm.4x128",
    vcpus: 4,
    mipsPerVcpu: 2660,
    memoryMiB: 131072,
    hypervisorOverheadMiB: 1024,
    pricePerHour: 0.834,
    provisionSeconds: 120,
    billingIncrementSeconds: 3600,
    minimumBillingSeconds: 60,
    bareMetal: false,
  };
  const power = { watts: [374.8, 388, 404, 420, 440, 464, 484, 500, 516, 532, 540] };
  for (let s = 0; s < hostVms / perServer; s++) {
    cloud.addServer({
      id: `s${s}`,
      cores: 32,
      mipsPerCore: 2660,
      memoryMiB: 1 << 20,
      networkMbps: 25000,
      power,
      hostVmSlots: perServer,
    });
    for (let k = 0; k < perServer; k++) cloud.addHostVm(`s${s}/h${k}`, type, s, "running", 0);
  }
  const trace = syntheticTrace({ guests, seed: 7 });
  const kinds = [
    [2500, 870],
    [2000, 1740],
    [1000, 1740],
    [500, 613],
  ];
  const load = new LoadHistory(30, guests);
  const request = new Float64Array(guests);
  for (let g = 0; g < guests; g++) {
    const [mips, mem] = kinds[Math.floor((g * 4) / guests)];
    cloud.addGuest({
      id: `g${g}`,
      tenant: "t",
      vcpus: 1,
      mipsPerVcpu: mips,
      memoryMiB: mem,
      dirtyRateMiBps: 20,
      role: { kind: "tenant" },
    });
    cloud.place(g, g % hostVms);
    for (let i = 0; i < 30; i++) load.push(g, trace.data[g * trace.samples + 100 + i] / 100);
    request[g] = load.latest(g) * mips;
  }
  const measured = new Float64Array(cloud.hostVms.length);
  for (let g = 0; g < guests; g++) measured[cloud.guestHost[g]] += request[g];
  return {
    cloud,
    now: 36000,
    intervalSeconds: 300,
    load,
    requestMips: request,
    measuredMips: measured,
    inMigration: new Uint8Array(guests),
    inboundTarget: new Int32Array(guests).fill(-1),
    inFlightGuests: [],
    residentMiB: Float64Array.from(cloud.guests, (x) => x.memoryMiB * 0.6),
    dirtyRateMiBps: new Float64Array(guests).fill(5),
    lastMovedAt: new Float64Array(guests).fill(Number.NEGATIVE_INFINITY),
    pendingAcquisitions: new Int32Array(cloud.servers.length),
    rules: NESTED_RULES,
    calibration: DEFAULT_CALIBRATION,
    mechanism: DEFAULT_MECHANISM_POLICY,
    caps: UNLIMITED,
    random: new Rng(1),
  };
}

function plannerRound() {
  const input = plannerState();
  const type = input.cloud.hostVms[0].type;
  const out: Record<string, { medianMs: number; maxMs: number; actions: number }> = {};
  for (const name of ["nestcloud", "lr-mmt-1.2"]) {
    const policy: Policy = createPolicy(name, {}, { acquireType: type });
    const times: number[] = [];
    let actions = 0;
    for (let i = 0; i < (quick ? 5 : 11); i++) {
      const t0 = performance.now();
      const plan = policy.plan(input);
      times.push(performance.now() - t0);
      actions = plan.actions.length;
    }
    out[name] = { medianMs: median(times.slice(1)), maxMs: Math.max(...times.slice(1)), actions };
    log(`  planner round ${name}: ${out[name].medianMs.toFixed(1)} ms, ${actions} actions`);
  }
  return out;
}

log("bench:sim — reference day");
const ref = referenceDay();
log("bench:sim — planner round (10,000 guests / 2,000 host VMs)");
const round = plannerRound();
const guests = quick ? 20_000 : 100_000;
log(`bench:sim — synthetic day (${guests} guests)`);
const synth = syntheticDay(guests);

const results = {
  date: new Date().toISOString(),
  machine: machine(),
  quick,
  referenceDay: {
    ...ref,
    targetSeconds: 2,
    cloudsimSeconds: CLOUDSIM_LR_DAY_SECONDS,
    speedupVsCloudsim: CLOUDSIM_LR_DAY_SECONDS / ref.medianSeconds,
  },
  syntheticDay: { ...synth, targetSeconds: 60 },
  plannerRound: { guests: 10_000, hostVms: 2_000, targetMs: 200, policies: round },
};
const file = writeResults("sim", results);

const rows: (string | number)[][] = [
  [
    "PlanetLab day 20110303, lr-mmt-1.2, reference scenario",
    `${ref.medianSeconds.toFixed(2)} s (median of ${ref.runs}; min ${ref.minSeconds.toFixed(2)})`,
    "< 2 s",
    `${(CLOUDSIM_LR_DAY_SECONDS / ref.medianSeconds).toFixed(0)}x faster than CloudSim 3.0.3 (${CLOUDSIM_LR_DAY_SECONDS} s)`,
  ],
  [
    `synthetic day, ${synth.guests.toLocaleString("en")} guests, nestcloud`,
    `${synth.wallSeconds.toFixed(1)} s`,
    "< 60 s",
    `planner ${synth.plannerMsMean.toFixed(1)} ms/round (max ${synth.plannerMsMax.toFixed(0)})`,
  ],
  ...Object.entries(round).map(([p, r]) => [
    `one round, 10,000 guests / 2,000 host VMs, ${p}`,
    `${r.medianMs.toFixed(1)} ms`,
    "< 200 ms",
    `${r.actions} actions`,
  ]),
];
const md = `## Simulator and planner speed

Command: \`npm run bench:sim\`${quick ? " (--quick)" : ""} — ${results.date.slice(0, 10)}, ${results.machine}, 2 cores.

${table(["what", "measured", "target", "note"], rows)}

The CloudSim figure is CloudSim 3.0.3 rebuilt from source and run on this machine kind
(JDK 17) on the same day and policy; it is quoted, not re-run here.`;
writeDocsSection("bench:sim", md);
process.stdout.write(`${table(["what", "measured", "target", "note"], rows)}\nwrote ${file}\n`);

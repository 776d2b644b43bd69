/**
 * Runs a scenario end to end: trace, cloud, policy, simulation, result. The CLI, the
 * benchmarks and the tests all come through here.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DEFAULT_CALIBRATION, type MigrationCalibration, parseCalibration } from "../migration/index.ts";
import { type Policy, withRollingRejuvenation } from "../planner/index.ts";
import { buildCloud } from "./build.ts";
import { Simulation } from "./engine.ts";
import { ScenarioError, TraceError } from "./errors.ts";
import type { RejuvenationStats } from "./executor.ts";
import { lowerBound } from "./lower-bound.ts";
import { channelShares } from "./pair-time.ts";
import { loadPlanetlabFolder, resolvePlanetlabFolder } from "./planetlab.ts";
import { createPolicy } from "./policies.ts";
import {
  type MonitoringResult,
  type RolloutCost,
  type RolloutResult,
  type RunTiming,
  type SimulationResult,
  summarizeTiming,
} from "./results.ts";
import type { Scenario } from "./scenario.ts";
import { syntheticTrace } from "./synthetic.ts";
import { resizeTrace, type Trace } from "./trace.ts";

export interface RunOptions {
  /** Policy name overriding the scenario's. */
  readonly policy?: string;
  /**
   * Parameters by policy name (the CLI's --policy-param), over the scenario's: its
   * policyParams for that name, and policy.params when it is the scenario's own policy.
   */
  readonly policyParams?: Readonly<Record<string, PolicyParams>>;
  /** Trace spec overriding the scenario's: planetlab:<day-or-folder> or synthetic:<guests>[:<seed>]. */
  readonly trace?: string;
  readonly seed?: number;
  readonly onProgress?: (fraction: number) => void;
  readonly checkInvariants?: boolean;
  /** Reuse an already loaded trace (compare runs several policies on one input). */
  readonly loadedTrace?: Trace;
}

export interface RunOutput {
  readonly result: SimulationResult;
  readonly timing: RunTiming;
}

export function loadTrace(scenario: Scenario, override: string | undefined, seed: number): Trace {
  if (override !== undefined) return parseTraceSpec(override, seed);
  const t = scenario.doc.trace;
  if (t.kind === "planetlab") {
    const trace = loadPlanetlabFolder(resolvePlanetlabFolder(t.day), `planetlab:${t.day}`);
    return t.guests ? resizeTrace(trace, t.guests) : trace;
  }
  return syntheticTrace({
    guests: t.guests,
    seed: t.seed ?? seed,
    intervalSeconds: scenario.intervalSeconds,
    samples: Math.ceil(scenario.durationSeconds / scenario.intervalSeconds),
    medianPercent: t.medianPercent,
    burstsPerDay: t.burstsPerDay,
  });
}

export function parseTraceSpec(spec: string, seed: number): Trace {
  const m = /^(planetlab|synthetic):(.+)$/.exec(spec);
  if (!m)
    throw new TraceError(
      `--trace ${spec}: expected planetlab:<day-or-folder> or synthetic:<guests>[:<seed>]`,
    );
  if (m[1] === "planetlab") return loadPlanetlabFolder(resolvePlanetlabFolder(m[2]), spec);
  const [n, s] = m[2].split(":");
  const guests = Number(n);
  if (!Number.isInteger(guests) || guests < 1 || guests > 10_000_000)
    throw new TraceError(`--trace ${spec}: guest count must be an integer from 1 to 10,000,000`);
  const traceSeed = s === undefined ? seed : Number(s);
  if (!Number.isInteger(traceSeed)) throw new TraceError(`--trace ${spec}: seed must be an integer`);
  return syntheticTrace({ guests, seed: traceSeed });
}

export function loadCalibration(scenario: Scenario): MigrationCalibration {
  const file = scenario.migration.calibration;
  if (file === undefined) return DEFAULT_CALIBRATION;
  const path = resolve(dirname(scenario.file), file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new ScenarioError(`${scenario.file}: migration.calibration: cannot read ${path}`);
  }
  try {
    return parseCalibration(JSON.parse(text), path);
  } catch (e) {
    throw new ScenarioError(`${path}: ${(e as Error).message}`);
  }
}

type PolicyParams = Readonly<Record<string, number | boolean | string>>;

/**
 * The parameters a policy runs with: the scenario's policyParams for its name, then the
 * scenario's policy.params if it is the scenario's own policy, then `extra` (the CLI's).
 */
export function policyParamsFor(
  scenario: Scenario,
  name: string,
  extra?: Readonly<Record<string, PolicyParams>>,
): PolicyParams {
  return {
    ...scenario.policyParams[name],
    ...(scenario.policy.name === name ? scenario.policy.params : {}),
    ...extra?.[name],
  };
}

export function runScenario(scenario: Scenario, opts: RunOptions = {}): RunOutput {
  const started = performance.now();
  const seed = opts.seed ?? scenario.seed;
  const trace = opts.loadedTrace ?? loadTrace(scenario, opts.trace, seed);
  if (trace.intervalSeconds !== scenario.intervalSeconds) {
    throw new TraceError(
      `trace ${trace.source} has ${trace.intervalSeconds} s samples, scenario ${scenario.file} uses ${scenario.intervalSeconds} s`,
    );
  }
  const built = buildCloud(scenario, trace);
  const policyName = opts.policy ?? scenario.policy.name;
  const base: Policy = createPolicy(policyName, policyParamsFor(scenario, policyName, opts.policyParams), {
    acquireType: built.acquireType,
  });
  // A scenario's rollout runs beside whichever policy places and moves guests.
  const policy = scenario.rejuvenation ? withRollingRejuvenation(base, scenario.rejuvenation.rollout) : base;
  const calibration = loadCalibration(scenario);
  // Before the run: it reads the guests only, and the run adds host VMs to the cloud.
  const bound = lowerBound(scenario, trace, built.cloud);
  const sim = new Simulation({
    scenario,
    trace,
    built,
    policy,
    calibration,
    seed,
    onProgress: opts.onProgress,
    checkInvariants: opts.checkInvariants,
  });
  sim.run();
  const a = sim.accounts;
  const x = sim.executor.stats;
  const total = x.started.instant + x.started.precopy + x.started.postcopy;
  const energyKWh = a.joules / 3.6e6;
  const slatah = a.activeSeconds > 0 ? a.slaViolationSeconds / a.activeSeconds : 0;
  const pdm = a.requestedMipsSeconds > 0 ? a.migrationLossMipsSeconds / a.requestedMipsSeconds : 0;
  const slav = slatah * pdm;
  const result: SimulationResult = {
    scenario: scenario.name,
    policy: policy.name,
    trace: trace.source,
    seed,
    guests: trace.names.length,
    physicalServers: scenario.servers.length,
    durationSeconds: scenario.durationSeconds,
    nesting: scenario.nested ? "nested" : "none",
    hostVmHours: (scenario.nested ? a.billedSeconds : a.activeSeconds) / 3600,
    lowerBoundHostVmHours: bound?.hostVmHours ?? null,
    cost: a.cost,
    rentals: {
      rule: scenario.nested ? (policy.rentalRule ?? "") : "",
      types: scenario.nested
        ? [...a.rentals.values()].map((r) => ({
            type: r.type.name,
            vcpus: r.type.vcpus,
            mipsPerVcpu: r.type.mipsPerVcpu,
            memoryMiB: r.type.memoryMiB,
            pricePerHour: r.type.pricePerHour,
            billingIncrementSeconds: r.type.billingIncrementSeconds,
            minimumBillingSeconds: r.type.minimumBillingSeconds,
            hostVms: r.hostVms,
            rentedHours: r.rentedSeconds / 3600,
            billedHours: r.billedSeconds / 3600,
            cost: r.cost,
          }))
        : [],
    },
    energyKWh,
    migrations: { total, ...x.started, failed: x.failed, superseded: x.superseded },
    migrationsByReason: x.byReason,
    migrationSeconds: { total: x.migrationSeconds, mean: total > 0 ? x.migrationSeconds / total : 0 },
    downtimeSeconds: x.downtimeSeconds,
    networkBytes: x.networkBytes,
    hostVmAcquisitions: x.acquisitions,
    hostVmReleases: x.releases,
    slatah,
    pdm,
    slav,
    esv: energyKWh * slav,
    rounds: sim.timing.plannerMs.length,
    series: a.series,
    ...(scenario.rejuvenation ? { rollout: rolloutSummary(scenario, sim.executor.rejuvenation) } : {}),
    ...(sim.pairTime.pairs.length > 0 ? { monitoring: monitoringSummary(sim) } : {}),
  };
  return { result, timing: summarizeTiming((performance.now() - started) / 1000, sim.timing.plannerMs) };
}

/** The security VMs' part of a result: channel shares, follow moves, co-migrations. */
function monitoringSummary(sim: Simulation): MonitoringResult {
  const s = sim.pairTime.seconds;
  const follow = sim.executor.stats.byReason.monitoring;
  return {
    pairs: sim.pairTime.pairs.length,
    shares: channelShares(s),
    pairHours: (s.local + s.direct + s.remote + s.none) / 3600,
    followMoves: follow ? follow.instant + follow.precopy + follow.postcopy : 0,
    coMigrations: sim.executor.stats.coMigrations,
  };
}

/** The rollout's part of a result: renewals, guest pauses, host-VM hours it held. */
function rolloutSummary(scenario: Scenario, r: RejuvenationStats): RolloutResult {
  const p = scenario.rejuvenation!.rollout;
  return {
    policy:
      p.kind === "max-age"
        ? `max hypervisor age ${p.maxAgeSeconds / 3600} h, ${p.mode}`
        : `version ${p.version} installed at ${p.installedAt / 3600} h, ${p.mode}`,
    rejuvenations: r.done,
    evacuated: r.evacuated,
    failed: r.failed,
    guestPauses: r.guestPauses,
    pauseSeconds: r.pauseSeconds,
    maxPauseMs: r.maxPauseSeconds * 1000,
    heldHostVmHours: r.heldHostVmSeconds / 3600,
  };
}

/**
 * What a scenario's rolling rejuvenation costs: the run with it against the same run (trace,
 * seed, policy) without it.
 */
export function rolloutCost(scenario: Scenario, opts: RunOptions = {}): RolloutCost {
  if (!scenario.rejuvenation)
    throw new ScenarioError(`${scenario.file}: no rejuvenation to cost (add a rejuvenation key)`);
  const seed = opts.seed ?? scenario.seed;
  const trace = opts.loadedTrace ?? loadTrace(scenario, opts.trace, seed);
  const w = runScenario(scenario, { ...opts, seed, loadedTrace: trace }).result;
  const wo = runScenario(
    { ...scenario, rejuvenation: undefined },
    { ...opts, seed, loadedTrace: trace },
  ).result;
  return rolloutCostOf(w, wo);
}

/** The cost of a rollout from a run with it (`w`) and the same run without it (`wo`). */
export function rolloutCostOf(w: SimulationResult, wo: SimulationResult): RolloutCost {
  if (!w.rollout) throw new ScenarioError(`run ${w.scenario}/${w.policy} had no rollout`);
  return {
    rollout: w.rollout!,
    hostVmHours: { with: w.hostVmHours, without: wo.hostVmHours, extra: w.hostVmHours - wo.hostVmHours },
    cost: { with: w.cost, without: wo.cost, extra: w.cost - wo.cost },
    pdm: { with: w.pdm, without: wo.pdm },
    slatah: { with: w.slatah, without: wo.slatah },
    migrations: { with: w.migrations.total, without: wo.migrations.total },
  };
}

/** One line for the terminal: what the rollout did and cost. */
export function rolloutLine(c: RolloutCost): string {
  const r = c.rollout;
  const sign = (x: number) => (x >= 0 ? "+" : "");
  return (
    `rollout (${r.policy}): ${r.rejuvenations} host VMs renewed (${r.evacuated} evacuated, ${r.failed} refused), ` +
    `${r.guestPauses} guest pauses, ${r.pauseSeconds.toFixed(1)} s in all (max ${r.maxPauseMs.toFixed(0)} ms each); ` +
    `host-VM hours ${c.hostVmHours.with.toFixed(2)} vs ${c.hostVmHours.without.toFixed(2)} without ` +
    `(${sign(c.hostVmHours.extra)}${c.hostVmHours.extra.toFixed(2)} h, ${sign(c.cost.extra)}${c.cost.extra.toFixed(2)} cost); ` +
    `held ${r.heldHostVmHours.toFixed(2)} host-VM h; PDM ${(c.pdm.with * 100).toFixed(4)} % vs ${(c.pdm.without * 100).toFixed(4)} %`
  );
}

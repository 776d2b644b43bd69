/** `nestcloud simulate` and `nestcloud compare`. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PolicyError } from "../planner/index.ts";
import {
  createPolicy,
  loadScenario,
  loadTrace,
  policyParamsFor,
  type ReportRenderer,
  rolloutCostOf,
  rolloutLine,
  runScenario,
  type Scenario,
  startReportRenderer,
} from "../sim/index.ts";
import { wrote } from "./output.ts";
import { progress, type Row, resultsTable, toLowerBound } from "./terminal.ts";
import { UsageError } from "./usage.ts";

/** The scenario used when none is given: synthetic load, so it runs on any machine. */
export const DEFAULT_SCENARIO = resolve(
  dirname(fileURLToPath(import.meta.url)),
  "../../scenarios/synthetic-nested.yaml",
);

export interface SimulateOptions {
  policy?: string;
  policyParam?: string[];
  trace?: string;
  seed?: string;
  out?: string;
  quiet?: boolean;
  /** Run the scenario's rollout against the same run without it (rolloutCost). */
  rolloutCost?: boolean;
}

function seedOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`--seed ${v}: expected an integer`);
  return n;
}

/** A policy name, checked before anything runs (a typo in the last of several fails at once). */
function checkPolicy(flag: string, name: string, params: PolicyParams = {}): void {
  try {
    createPolicy(name, params, {});
  } catch (e) {
    if (e instanceof PolicyError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}

type PolicyParams = Record<string, number | boolean | string>;

/** Each policy's parameters, checked before anything runs: the CLI's, then with the scenario's. */
function checkParams(
  scenario: Scenario,
  policies: readonly string[],
  cli: Record<string, PolicyParams>,
): void {
  for (const p of policies) {
    try {
      if (cli[p]) createPolicy(p, cli[p], {});
    } catch (e) {
      // "policy.params.window: ..." -> "--policy-param nestcloud:window: ..."
      if (e instanceof PolicyError)
        throw new UsageError(e.message.replace(/^policy\.params[.:]/, `--policy-param ${p}:`));
      throw e;
    }
    checkPolicy(`${scenario.file}: ${p}`, p, policyParamsFor(scenario, p, cli));
  }
}

/**
 * --policy-param values by policy name: `<policy>:<name>=<value>`, or `<name>=<value>` when a
 * single policy runs (as `nestcloud up --policy-param` has it); each policy must be one of
 * those run. Values are numbers, true/false, or else strings (the policy checks them).
 */
export function parsePolicyParams(
  specs: readonly string[] | undefined,
  policies: readonly string[],
): Record<string, PolicyParams> {
  const out: Record<string, PolicyParams> = {};
  for (const spec of specs ?? []) {
    const m = /^(?:([^:=]+):)?([A-Za-z][A-Za-z0-9]*)=(.+)$/.exec(spec);
    if (!m) throw new UsageError(`--policy-param ${spec}: expected <policy>:<name>=<value>`);
    const [, given, name, text] = m;
    if (given === undefined && policies.length !== 1)
      throw new UsageError(
        `--policy-param ${spec}: several policies run (${policies.join(", ")}): say which, <policy>:<name>=<value>`,
      );
    const policy = given ?? policies[0];
    if (!policies.includes(policy))
      throw new UsageError(
        `--policy-param ${spec}: ${policy} is not a policy of this run (${policies.join(", ")})`,
      );
    const value =
      text === "true" ? true : text === "false" ? false : Number.isFinite(Number(text)) ? Number(text) : text;
    out[policy] = { ...out[policy], [name]: value };
  }
  return out;
}

/** A --trace value's form (the data itself is read later). */
function checkTraceSpec(spec: string | undefined): void {
  if (spec !== undefined && !/^(planetlab|synthetic):.+$/.test(spec))
    throw new UsageError(
      `--trace ${spec}: expected planetlab:<day-or-folder> or synthetic:<guests>[:<seed>]`,
    );
}

/** Writes a file and names it on stderr. */
function write(file: string, text: string): void {
  writeFileSync(file, text);
  wrote(file);
}

function load(file: string | undefined): Scenario {
  return loadScenario(file ?? DEFAULT_SCENARIO);
}

export async function simulate(file: string | undefined, opts: SimulateOptions): Promise<void> {
  if (opts.policy !== undefined) checkPolicy("--policy", opts.policy);
  checkTraceSpec(opts.trace);
  seedOf(opts.seed);
  const scenario = load(file);
  const policy = opts.policy ?? scenario.policy.name;
  const policyParams = parsePolicyParams(opts.policyParam, [policy]);
  checkParams(scenario, [policy], policyParams);
  // Started before the run: the report's code loads and warms up beside the simulation.
  const report = startReportRenderer();
  try {
    const bar = progress(`simulating ${scenario.name} with ${policy}`, opts.quiet);
    const out = runScenario(scenario, {
      policy: opts.policy,
      policyParams,
      trace: opts.trace,
      seed: seedOf(opts.seed),
      onProgress: (f) => bar.update(f),
    });
    bar.stop();
    const dir = resolve(opts.out ?? join("out", `${scenario.name}-${out.result.policy}`));
    mkdirSync(dir, { recursive: true });
    write(join(dir, "results.json"), `${JSON.stringify(out.result, null, 2)}\n`);
    write(join(dir, "timing.json"), `${JSON.stringify(out.timing, null, 2)}\n`);
    write(
      join(dir, "report.html"),
      await report.render([out.result], `nestcloud: ${scenario.name} / ${out.result.policy}`),
    );
    process.stdout.write(`${resultsTable([out])}\n`);
    if (out.result.rollout && opts.rolloutCost) {
      const without = runScenario(
        { ...scenario, rejuvenation: undefined },
        { policy: opts.policy, policyParams, trace: opts.trace, seed: seedOf(opts.seed) },
      ).result;
      const cost = rolloutCostOf(out.result, without);
      write(join(dir, "rollout.json"), `${JSON.stringify(cost, null, 2)}\n`);
      process.stdout.write(`${rolloutLine(cost)}\n`);
    } else if (out.result.rollout) {
      const r = out.result.rollout;
      process.stdout.write(
        `rollout (${r.policy}): ${r.rejuvenations} host VMs renewed, ${r.guestPauses} guest pauses (max ${r.maxPauseMs.toFixed(0)} ms); --rollout-cost compares with the run without it\n`,
      );
    } else if (opts.rolloutCost)
      throw new UsageError(`--rollout-cost: ${scenario.file} has no rejuvenation key`);
  } finally {
    report.close();
  }
}

export interface CompareOptions {
  policies: string;
  policyParam?: string[];
  trace?: string;
  seed?: string;
  json?: boolean;
  out?: string;
  quiet?: boolean;
}

export async function compare(file: string | undefined, opts: CompareOptions): Promise<void> {
  const policies = opts.policies
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (policies.length === 0) throw new UsageError("--policies: give at least one policy name");
  for (const p of policies) checkPolicy("--policies", p);
  const policyParams = parsePolicyParams(opts.policyParam, policies);
  checkTraceSpec(opts.trace);
  seedOf(opts.seed);
  const scenario = load(file);
  checkParams(scenario, policies, policyParams);
  const seed = seedOf(opts.seed) ?? scenario.seed;
  const report = opts.out ? startReportRenderer() : undefined;
  try {
    await compareRuns(scenario, policies, policyParams, seed, opts, report);
  } finally {
    report?.close();
  }
}

async function compareRuns(
  scenario: Scenario,
  policies: string[],
  policyParams: Record<string, PolicyParams>,
  seed: number,
  opts: CompareOptions,
  report: ReportRenderer | undefined,
): Promise<void> {
  const trace = loadTrace(scenario, opts.trace, seed);
  const rows: Row[] = [];
  for (const policy of policies) {
    const bar = progress(`${policy}`, opts.quiet || opts.json);
    rows.push(
      runScenario(scenario, {
        policy,
        policyParams,
        seed,
        loadedTrace: trace,
        onProgress: (f) => bar.update(f),
      }),
    );
    bar.stop();
  }
  if (opts.out && report) {
    const dir = resolve(opts.out);
    mkdirSync(dir, { recursive: true });
    write(
      join(dir, "results.json"),
      `${JSON.stringify(
        rows.map((r) => r.result),
        null,
        2,
      )}\n`,
    );
    write(
      join(dir, "report.html"),
      await report.render(
        rows.map((r) => r.result),
        `nestcloud: ${scenario.name} — ${policies.join(" vs ")}`,
      ),
    );
  }
  if (opts.json) {
    const summary = rows.map((r) => ({
      policy: r.result.policy,
      scenario: r.result.scenario,
      trace: r.result.trace,
      nesting: r.result.nesting,
      hostVmHours: r.result.hostVmHours,
      lowerBoundHostVmHours: r.result.lowerBoundHostVmHours,
      hostVmHoursToLowerBound: toLowerBound(r.result),
      cost: r.result.cost,
      energyKWh: r.result.energyKWh,
      migrations: {
        total: r.result.migrations.total,
        instant: r.result.migrations.instant,
        precopy: r.result.migrations.precopy,
        postcopy: r.result.migrations.postcopy,
      },
      slatah: r.result.slatah,
      pdm: r.result.pdm,
      slav: r.result.slav,
      esv: r.result.esv,
      networkBytes: r.result.networkBytes,
      plannerMsMean: r.timing.plannerMs.mean,
      wallSeconds: r.timing.wallSeconds,
    }));
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else process.stdout.write(`${resultsTable(rows)}\n`);
}

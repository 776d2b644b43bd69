#!/usr/bin/env node
/**
 * The `nestcloud` command. User mistakes (bad scenario, unknown policy, missing trace)
 * print one line naming what is wrong and exit with code 2; bugs keep their stack trace.
 *
 * Start-up cost: this file and the *-commands.ts files it registers load commander and
 * nothing else. Each action imports its implementation (simulate.ts, controller.ts,
 * client.ts, testbed.ts, vmi.ts) when it runs, so `--version`, `--help` and the API client
 * commands never load the simulator, the controller or the agents.
 */
import { Command, CommanderError } from "commander";
import { registerController } from "./controller-commands.ts";
import { registerSecVm } from "./secvm-commands.ts";
import { registerTestbed } from "./testbed-commands.ts";
import { UsageError } from "./usage.ts";
import { registerVmi } from "./vmi-commands.ts";

/** --policy-param, repeatable: a parameter of one of the policies run. */
const POLICY_PARAM_OPTION = [
  "--policy-param <[policy:]name=value>",
  "a parameter of a policy run, e.g. nestcloud:targetUtilization=0.9 or lr-mmt-1.2+billing:spareHostVms=1; the policy may be left out when only one runs (repeatable)",
  (value: string, previous: string[]) => [...previous, value],
  [] as string[],
] as const;

export function buildProgram(): Command {
  const program = new Command()
    .name("nestcloud")
    .description("Virtual IaaS cloud: nested guest VMs in rented host VMs, planned and simulated.")
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();

  program
    .command("simulate")
    .description("run a scenario through the simulator (default: a synthetic nested cloud)")
    .argument("[scenario]", "scenario YAML file")
    .option(
      "-p, --policy <name>",
      "policy (e.g. nestcloud, lr-mmt-1.2, thr-mmt-0.8, lr-mmt-1.2+billing+hostvm+react)",
    )
    .option(...POLICY_PARAM_OPTION)
    .option("-t, --trace <spec>", "planetlab:<day-or-folder> or synthetic:<guests>[:<seed>]")
    .option("-s, --seed <n>", "random seed")
    .option("-o, --out <dir>", "where results.json and report.html go")
    .option("-q, --quiet", "no progress output")
    .option(
      "--rollout-cost",
      "with a scenario's rejuvenation key: run it again without the rollout and print what the rollout cost",
    )
    .action(async (file, opts) => (await import("./simulate.ts")).simulate(file, opts));

  program
    .command("compare")
    .description("run several policies on the same input and show them side by side")
    .argument("[scenario]", "scenario YAML file")
    .requiredOption(
      "--policies <list>",
      "comma-separated policy names; reference policies take modifiers +billing, +hostvm, +react",
    )
    .option(...POLICY_PARAM_OPTION)
    .option("-t, --trace <spec>", "planetlab:<day-or-folder> or synthetic:<guests>[:<seed>]")
    .option("-s, --seed <n>", "random seed")
    .option("--json", "print a JSON array instead of a table")
    .option("-o, --out <dir>", "also write results.json and report.html here")
    .option("-q, --quiet", "no progress output")
    .action(async (file, opts) => (await import("./simulate.ts")).compare(file, opts));

  registerController(program);
  registerVmi(program);
  registerSecVm(program);
  registerTestbed(program);
  return program;
}

/**
 * How an error that is not a bug ends the command: its exit code and the one line printed,
 * or undefined for a bug (rethrown with its stack). The error classes live in modules that
 * only the commands throwing them load: the name picks a candidate without loading
 * anything, and instanceof, against a module that is then already loaded, confirms it.
 */
async function known(e: unknown): Promise<{ code: number; line: string } | undefined> {
  if (!(e instanceof Error)) return undefined;
  const is = (yes: boolean, code: number) => (yes ? { code, line: e.message } : undefined);
  if (e instanceof UsageError) return is(true, 2);
  switch (e.name) {
    case "ScenarioError":
    case "TraceError": {
      const { ScenarioError, TraceError } = await import("../sim/index.ts");
      return is(e instanceof ScenarioError || e instanceof TraceError, 2);
    }
    case "PolicyError":
      return is(e instanceof (await import("../planner/index.ts")).PolicyError, 2);
    case "CalibrationError":
      return is(e instanceof (await import("../migration/index.ts")).CalibrationError, 2);
    // Failures: a simulation invariant broken, a plan refused, a provider that cannot start
    // (e.g. `up --provider testbed` with no testbed up; by name: the cli reaches providers
    // only through the controller).
    case "SimulationError":
      return is(e instanceof (await import("../sim/index.ts")).SimulationError, 1);
    case "PlanError":
      return is(e instanceof (await import("../planner/index.ts")).PlanError, 1);
    case "ProviderError":
      return is(true, 1);
  }
  // Introspection failed on what the guest's memory holds (or the source broke off): exit 3
  // (no Linux kernel), 4 (still booting) or 5 (failed); see VMI_EXIT. Only vmi commands
  // throw these, and they carry a string code (as do Node's system errors, which are bugs).
  const code = (e as { code?: unknown }).code;
  if (typeof code !== "string") return undefined;
  const exit = (await import("./vmi.ts")).vmiExitCode(e);
  return exit === undefined ? undefined : { code: exit, line: `vmi: ${e.message} (${code})` };
}

/** Runs the command; resolves with the exit code (actions may set process.exitCode, e.g. vmi check). */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const k = await known(e);
    if (!k) throw e;
    process.stderr.write(`nestcloud: ${k.line}\n`);
    return k.code;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/cli/main.ts")) {
  process.exitCode = await main(process.argv);
}

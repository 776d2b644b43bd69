#!/usr/bin/env node
/**
 * The `nestcloud` command. User mistakes (bad scenario, unknown policy, missing trace)
 * print one line naming what is wrong and exit with code 2; bugs keep their stack trace.
 */
import { Command, CommanderError } from "commander";
import { CalibrationError } from "../migration/index.ts";
import { PlanError, PolicyError } from "../planner/index.ts";
import { SimulationError, UserError } from "../sim/index.ts";
import { VmiError } from "../vmi/index.ts";
import { registerController } from "./controller.ts";
import { compare, simulate } from "./simulate.ts";
import { registerTestbed } from "./testbed.ts";
import { registerVmi, vmiExitCode } from "./vmi.ts";

/** --policy-param, repeatable: a parameter of one of the policies run. */
const POLICY_PARAM_OPTION = [
  "--policy-param <policy:name=value>",
  "a parameter of a policy run, e.g. nestcloud:targetUtilization=0.9 or lr-mmt-1.2+billing:spareHostVms=1 (repeatable)",
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
    .action((file, opts) => simulate(file, opts));

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
    .action((file, opts) => compare(file, opts));

  registerController(program);
  registerVmi(program);
  registerTestbed(program);
  return program;
}

/** Runs the command; resolves with the exit code (actions may set process.exitCode, e.g. vmi check). */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UserError || e instanceof PolicyError || e instanceof CalibrationError) {
      process.stderr.write(`nestcloud: ${e.message}\n`);
      return 2;
    }
    // Introspection failed on what the guest's memory holds (or the source broke off): one line,
    // exit 3 (no Linux kernel), 4 (still booting) or 5 (failed); see VMI_EXIT.
    if (e instanceof VmiError) {
      process.stderr.write(`nestcloud: vmi: ${e.message} (${e.code})\n`);
      return vmiExitCode(e);
    }
    // A provider that cannot start (e.g. `up --provider testbed` with no testbed up): one line.
    // By name: the cli reaches providers only through the controller.
    if (
      e instanceof SimulationError ||
      e instanceof PlanError ||
      (e instanceof Error && e.name === "ProviderError")
    ) {
      process.stderr.write(`nestcloud: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/cli/main.ts")) {
  process.exitCode = await main(process.argv);
}

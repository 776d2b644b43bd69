/**
 * Registers `nestcloud secvm list|alerts`. Registering loads nothing but commander; each
 * action imports secvm.ts (agent clients, testbed state) when it runs.
 */
import type { Command } from "commander";

const load = () => import("./secvm.ts");

export function registerSecVm(program: Command): void {
  const secvm = program.command("secvm").description("security VMs on a testbed: their state and alerts");
  const common = (c: Command) =>
    c
      .option("--testbed <id>", "testbed id (optional when only one exists)")
      .option("--root <dir>", "where testbed state folders live")
      .option("--secvm <id>", "only this security VM")
      .option("-o, --output <format>", "table or json", "table");
  common(secvm.command("list").description("the security VMs of every host VM, with their state")).action(
    async (opts) => (await load()).secvmList(opts),
  );
  common(
    secvm
      .command("alerts")
      .description("the alerts of the security VMs' monitors (memory, disk, network), oldest first")
      .option("-f, --follow", "keep printing new alerts as they come (JSON: one object per line)")
      .option("--follow-ms <ms>", "stop following after this long"),
  ).action(async (opts) => (await load()).secvmAlerts(opts));
}

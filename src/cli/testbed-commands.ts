/**
 * Registers `nestcloud testbed up|down|status`. Registering loads nothing but commander;
 * each action imports testbed.ts (agents, QEMU, namespaces) when it runs.
 */
import type { Command } from "commander";

const load = () => import("./testbed.ts");

/** Adds `testbed up|down|status` to the program. */
export function registerTestbed(program: Command): void {
  const testbed = program
    .command("testbed")
    .description("a multi-server testbed on this machine: namespaces, memory pools, agents, guests");
  testbed
    .command("up")
    .description("build the testbed a YAML file describes, start its agents and boot its guests")
    .argument("<file>", "testbed YAML (servers, host VMs per server, guests)")
    .option("--root <dir>", "where testbed state folders live")
    .option("--loopback", "loopback addresses instead of network namespaces")
    .option("-q, --quiet", "no progress output")
    .action(async (file, opts) => (await load()).testbedUp(file, opts));
  testbed
    .command("down")
    .description("stop every agent and guest of a testbed and remove all it created")
    .argument("[id]", "testbed id (optional when only one exists)")
    .option("--root <dir>", "where testbed state folders live")
    .option("-q, --quiet", "no progress output")
    .action(async (id, opts) => (await load()).testbedDown(id, opts));
  testbed
    .command("status")
    .description("servers, host VMs, agents and guests of the running testbeds")
    .argument("[id]", "testbed id (default: all)")
    .option("-o, --output <format>", "table or json", "table")
    .option("--root <dir>", "where testbed state folders live")
    .action(async (id, opts) => (await load()).testbedStatus(id, opts));
  testbed
    .command("move")
    .description(
      "move a host VM (its agent) to another server, as the underlying cloud's live migration would",
    )
    .argument("<id>", "testbed id")
    .argument("<hostvm>", "the host VM, as server/name (e.g. a/h1)")
    .argument("<server>", "the server to move it to")
    .option("--root <dir>", "where testbed state folders live")
    .option("-q, --quiet", "no progress output")
    .action(async (id, hostVm, server, opts) => (await load()).testbedMove(id, hostVm, server, opts));
}

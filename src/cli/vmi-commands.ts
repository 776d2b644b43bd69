/**
 * Registers `nestcloud vmi ps|modules|info|check|serve`. Registering loads nothing but
 * commander; each action imports vmi.ts (the introspection itself) when it runs.
 * Exit codes (VMI_EXIT, also in `--help` and the README): 0 done (check: nothing found),
 * 1 check found something, 2 usage error (bad arguments, unreachable source, refused),
 * 3 no Linux kernel in the guest's memory, 4 kernel still booting, 5 introspection failed.
 */
import type { Command } from "commander";

import { VMI_EXIT_HELP } from "./vmi-exit.ts";

const load = () => import("./vmi.ts");

function sourceOptions(cmd: Command): Command {
  return cmd
    .option("--ram-file <path>", "the guest's RAM file (memory-backend-file share=on)")
    .option("--remote <host:port>", "a nestcloud page server")
    .option("--guest <id>", "guest id at the page server")
    .option("--token-file <file>", "shared secret for the page server")
    .option("--client-id <id>", "client name registered at the page server", "vmi-client")
    .option("--mode <mode>", "remote access style: optimized, cached or naive", "optimized")
    .option("--qmp <socket>", "QMP socket of a guest without a shared RAM file (slow)")
    .option("--machine <type>", "QEMU machine type: q35 or pc", "q35")
    .option("--profile-cache <dir>", "where kernel profiles are cached")
    .option("--no-profile-cache", "do not cache kernel profiles")
    .option("--no-fallback", "fail instead of using the banner/ksymtab fallback")
    .option("-o, --output <format>", "table or json", "table")
    .option("-v, --verbose", "print how the kernel was found (discovery notes) on stderr")
    .addHelpText("after", VMI_EXIT_HELP);
}

export function registerVmi(program: Command): void {
  const vmi = program
    .command("vmi")
    .description("introspect a guest's Linux kernel from outside (no debug symbols)")
    .addHelpText("after", VMI_EXIT_HELP);
  sourceOptions(vmi.command("ps").description("list the guest's processes")).action(async (o) =>
    (await load()).vmiPs(o),
  );
  sourceOptions(vmi.command("modules").description("list the guest's kernel modules")).action(async (o) =>
    (await load()).vmiModules(o),
  );
  sourceOptions(
    vmi.command("info").description("how the kernel was found: release, KASLR, path used"),
  ).action(async (o) => (await load()).vmiInfo(o));
  sourceOptions(
    vmi
      .command("check")
      .description(
        "IDS checks: syscall table, hidden processes, kernel text against its baseline (exit 1 on findings)",
      ),
  )
    .option("--baseline-dir <dir>", "where kernel text baselines are kept")
    .action(async (o) => (await load()).vmiCheck(o));
  vmi
    .command("serve")
    .description("run a page server for the given RAM files until interrupted")
    .option(
      "--guest <id=ramfile>",
      "serve this guest (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option("--token-file <file>", "shared secret clients must prove")
    .option("--client-id <id>", "the client name allowed to connect", "vmi-client")
    .option(
      "--tls",
      "TLS with client certificates (security VMs' credentials name their guests) instead of a token",
    )
    .option("--tls-ca <file>", "with --tls: the CA (PEM) that signs clients")
    .option("--tls-cert <file>", "with --tls: the server's certificate (PEM)")
    .option("--tls-key <file>", "with --tls: the server's key (PEM)")
    .option(
      "--revoked <file>",
      "with --tls: refused client certificates, SHA-256 fingerprints one a line (read again on SIGHUP)",
    )
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--port <n>", "listen port (0: any free port)", "0")
    .option("--machine <type>", "QEMU machine type: q35 or pc", "q35")
    .action(async (o) => (await load()).vmiServe(o));
}

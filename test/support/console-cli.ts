// `nestcloud console` in its own process for tests: stdin a pipe (keystrokes), stdout and
// stderr collected.
import { spawn } from "node:child_process";
import { resolve } from "node:path";

const bin = resolve(import.meta.dirname, "../../bin/nestcloud.js");

export type ConsoleCli = ReturnType<typeof spawnConsole>;

export function spawnConsole(args: string[]) {
  const child = spawn(process.execPath, [bin, "console", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let err = "";
  child.stdout!.on("data", (d: Buffer) => out.push(d));
  child.stderr!.on("data", (d) => (err += d));
  const exit = new Promise<number>((r) => child.once("exit", (code) => r(code ?? -1)));
  return {
    child,
    exit,
    stdout: () => Buffer.concat(out),
    text: () => Buffer.concat(out).toString("latin1"),
    stderr: () => err,
    type: (s: string) => child.stdin!.write(s),
    /** Ctrl-] q, and the exit code. */
    detach: async () => {
      child.stdin!.write("\x1dq");
      return exit;
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exit;
    },
  };
}

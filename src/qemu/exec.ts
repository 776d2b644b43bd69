// Runs a host program without a shell and collects its output, with a hard time bound.
// Arguments are passed as an array: nothing is ever interpolated into a shell string.
import { spawn } from "node:child_process";
import { setLevel } from "./priority.ts";

export class CommandError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

export interface ExecOptions {
  cwd?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Cap on captured stdout/stderr, each (default 16 MiB); the rest is dropped. */
  maxBytes?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export function execFileText(
  command: string,
  args: readonly string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    // Bulk work (image builds, exports' tools): at the guests' priority, not the control path's.
    if (child.pid !== undefined) setLevel(child.pid, "guest");
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout.on("data", (b: Buffer) => {
      if (outLen < maxBytes) out.push(b);
      outLen += b.length;
    });
    child.stderr.on("data", (b: Buffer) => {
      if (errLen < maxBytes) err.push(b);
      errLen += b.length;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const shown = [command, ...args].join(" ");
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new CommandError(`cannot run ${shown}: ${e.message}`, command, args, null, null, ""));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      if (timedOut) {
        reject(
          new CommandError(`${shown} timed out after ${timeoutMs} ms`, command, args, code, signal, stderr),
        );
      } else if (code !== 0) {
        const tail = stderr.trim().split("\n").slice(-5).join("\n");
        reject(
          new CommandError(
            `${shown} failed (exit ${code ?? signal}): ${tail || "(no stderr)"}`,
            command,
            args,
            code,
            signal,
            stderr,
          ),
        );
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

/**
 * Agent processes of a testbed: started detached (they outlive the `testbed up` command),
 * inside a server's network namespace through `ip netns exec` (which exec()s, so the pid we
 * get is the agent's), placed in their slice's cgroup, and stopped BY PID — only after the
 * pid's start time proves it is still the very process we started.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { setLevel } from "../qemu/index.ts";
import { placeInSlice } from "./cgroups.ts";
import type { ProcessRecord } from "./state.ts";

export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[22 - 3]);
  } catch {
    return null;
  }
}

/** True while the recorded process (same pid AND same start time) exists and is not a zombie. */
export function isAlive(rec: Pick<ProcessRecord, "pid" | "startTime">): boolean {
  try {
    const stat = readFileSync(`/proc/${rec.pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z" || rest[0] === "X") return false;
    return rec.startTime === null || Number(rest[22 - 3]) === rec.startTime;
  } catch {
    return false;
  }
}

export interface LaunchOptions {
  argv: string[];
  netns: string | null;
  cgroupDirs: readonly string[];
  logFile: string;
  readyFile: string;
  configFile: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts the process; the record is complete except `url` (set once ready). */
export function launch(opts: LaunchOptions): ProcessRecord {
  const fd = openSync(opts.logFile, "a", 0o600);
  const [cmd, ...args] = opts.netns ? ["ip", "netns", "exec", opts.netns, ...opts.argv] : opts.argv;
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: opts.env ?? process.env,
      shell: false,
    });
    if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
    child.unref();
    // Into the slice before the agent has had time to start any QEMU: children inherit it.
    placeInSlice(opts.cgroupDirs, child.pid);
    // At the original priority of a raised launcher (a controller or bench hosting the
    // orchestrator): the agent raises itself from there, above the guests it starts.
    setLevel(child.pid, "guest");
    return {
      pid: child.pid,
      startTime: processStartTime(child.pid),
      argv: [cmd, ...args],
      logFile: opts.logFile,
      readyFile: opts.readyFile,
      configFile: opts.configFile,
      url: null,
      startedAt: new Date().toISOString(),
    };
  } finally {
    closeSync(fd);
  }
}

/**
 * The host-VM agents' supervisor (plain JavaScript: see its header), run from the sources
 * in every case: the build does not bundle it (it is started as a script, not imported).
 * Named from the package root: this code runs from src/testbed/ and, built, from
 * dist/chunks/, both two levels below it (scripts/build.mjs keeps every output there).
 */
export const SUPERVISOR_SCRIPT = fileURLToPath(new URL("../../src/testbed/supervisor.mjs", import.meta.url));

/** What the supervisor writes about the agent it runs now. */
export interface SupervisedRecord {
  pid: number;
  startTime: number | null;
  startedAt: string;
  /** Restarts so far (0: the first agent). */
  restarts: number;
  supervisorPid: number;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
}

export function readSupervisedRecord(file: string): SupervisedRecord | null {
  try {
    const r = JSON.parse(readFileSync(file, "utf8")) as SupervisedRecord;
    return Number.isInteger(r.pid) && r.pid > 0 ? r : null;
  } catch {
    return null;
  }
}

/**
 * Starts `argv` under a supervisor: the returned record is the supervisor's; the agent it
 * runs is found through `recordFile` (see waitSupervisedReady). The supervisor is what gets
 * placed in the slice and the namespace; the agent, its child, inherits both.
 */
export function launchSupervised(opts: LaunchOptions & { recordFile: string }): ProcessRecord {
  rmSync(opts.recordFile, { force: true });
  return launch({
    ...opts,
    argv: [
      process.execPath,
      SUPERVISOR_SCRIPT,
      "--record",
      opts.recordFile,
      "--ready",
      opts.readyFile,
      "--",
      ...opts.argv,
    ],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the agent a supervisor runs is ready (its ready file names the pid the
 * supervisor recorded); fails early if the supervisor dies. Returns the agent's record.
 */
export async function waitSupervisedReady(
  supervisor: ProcessRecord,
  recordFile: string,
  agentArgv: string[],
  timeoutMs: number,
): Promise<ProcessRecord> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = readSupervisedRecord(recordFile);
    if (r) {
      const url = readyUrl(supervisor.readyFile, r.pid);
      if (url) {
        return {
          pid: r.pid,
          startTime: r.startTime,
          argv: agentArgv,
          logFile: supervisor.logFile,
          readyFile: supervisor.readyFile,
          configFile: supervisor.configFile,
          url,
          startedAt: r.startedAt,
        };
      }
    }
    if (!isAlive(supervisor))
      throw new Error(
        `supervisor pid ${supervisor.pid} exited during start-up: ${logTail(supervisor.logFile)}`,
      );
    await sleep(50);
  }
  throw new Error(
    `agent of supervisor pid ${supervisor.pid} not ready within ${timeoutMs} ms: ${logTail(supervisor.logFile)}`,
  );
}

/** The URL in a ready file, if that file was written by process `pid`. */
export function readyUrl(readyFile: string, pid: number): string | null {
  try {
    const r = JSON.parse(readFileSync(readyFile, "utf8")) as { url?: string; pid?: number };
    return r.url && r.pid === pid ? r.url : null;
  } catch {
    return null;
  }
}

/** Waits for the agent's ready file ({url}); fails early, with its log's tail, if it dies. */
export async function waitReady(rec: ProcessRecord, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(rec.readyFile)) {
      try {
        const r = JSON.parse(readFileSync(rec.readyFile, "utf8")) as { url?: string; pid?: number };
        if (r.url && r.pid === rec.pid) return r.url;
      } catch {
        // written atomically; a parse error means an older, foreign file: keep waiting
      }
    }
    if (!isAlive(rec))
      throw new Error(`agent pid ${rec.pid} exited during start-up: ${logTail(rec.logFile)}`);
    await sleep(50);
  }
  throw new Error(`agent pid ${rec.pid} not ready within ${timeoutMs} ms: ${logTail(rec.logFile)}`);
}

export function logTail(file: string, lines = 5): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ") || "(empty log)";
  } catch {
    return "(no log)";
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves true once gone. Never signals a recycled pid. */
export async function stopProcess(
  rec: Pick<ProcessRecord, "pid" | "startTime">,
  graceMs = 10_000,
): Promise<boolean> {
  for (const [sig, waitMs] of [
    ["SIGTERM", graceMs],
    ["SIGKILL", 5000],
  ] as const) {
    if (!isAlive(rec)) return true;
    try {
      process.kill(rec.pid, sig);
    } catch {
      return true;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      if (!isAlive(rec)) return true;
      await sleep(50);
    }
  }
  return !isAlive(rec);
}

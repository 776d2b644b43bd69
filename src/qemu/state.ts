// Per-instance state files and orphan reaping.
//
// Every QEMU we start gets a runtime folder <stateDir>/<instanceId>/ holding its sockets,
// pidfile, serial log and state.json (pid, pool files it owns, which agent started it). If
// the agent dies without cleaning up, the next agent calls reapOrphans(stateDir) at
// start-up: it first offers each live QEMU to the caller's adopt() (a restarted agent takes
// its predecessor's QEMUs over: QemuProcess.adopt), and kills the rest BY PID, but only
// after /proc/<pid>/cmdline proves the pid still belongs to that very QEMU (a qemu-system
// binary whose arguments contain the instance id), so a recycled pid is never killed.
// Nothing is ever killed by name.
import {
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import type { QemuLaunchSpec } from "./spec.ts";

export const STATE_FILE = "state.json";

export interface InstanceState {
  version: 1;
  instanceId: string;
  guestId: string;
  /** null between writing the state and spawning (the pidfile is then the fallback). */
  pid: number | null;
  pidFile: string;
  /** Pool files this instance owns: removed when it stops or is reaped. */
  poolFiles: string[];
  runDir: string;
  agentPid: number;
  /** Start time of the agent process (/proc/<pid>/stat field 22) so a reused pid is not mistaken for it. */
  agentStartTime: number | null;
  startedAt: string;
  /** How it was launched: lets a later agent adopt it (reconnect QMP and the console). */
  spec?: QemuLaunchSpec;
  /** What the QEMU is for, in the words of the agent that runs it (opaque here). */
  agentData?: unknown;
}

/** Atomic replace: a crash never leaves a half-written state file. */
export function writeState(runDir: string, state: InstanceState): void {
  const path = join(runDir, STATE_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readState(runDir: string): InstanceState | null {
  try {
    const s = JSON.parse(readFileSync(join(runDir, STATE_FILE), "utf8")) as InstanceState;
    return s && s.version === 1 && typeof s.instanceId === "string" ? s : null;
  } catch {
    return null;
  }
}

/** Clock-tick start time of a process, or null if it does not exist. */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name start at field 3.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[22 - 3]);
  } catch {
    return null;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** argv of a live process, or null. */
export function processArgv(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((a, i, all) => !(a === "" && i === all.length - 1));
  } catch {
    return null;
  }
}

/** True if `pid` runs a qemu-system binary whose arguments name `instanceId`. */
export function isOurQemu(pid: number, instanceId: string): boolean {
  const argv = processArgv(pid);
  if (!argv || argv.length === 0) return false;
  if (!basename(argv[0]).startsWith("qemu-system")) return false;
  return argv.slice(1).some((a) => a.includes(instanceId));
}

/** Exited but not yet reaped by its parent (or by init, which may take a while): dead. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat[stat.lastIndexOf(")") + 2];
    return state === "Z" || state === "X";
  } catch {
    return false;
  }
}

function agentAlive(s: InstanceState): boolean {
  // A crashed agent stays a zombie until it is reaped: its QEMUs are orphans already.
  if (!pidAlive(s.agentPid) || isZombie(s.agentPid)) return false;
  // Same pid but a different start time: the agent died and its pid was reused.
  return s.agentStartTime === null || processStartTime(s.agentPid) === s.agentStartTime;
}

export function readPidFile(path: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

export interface ReapReport {
  killed: Array<{ instanceId: string; guestId: string; pid: number }>;
  /** Live QEMUs of a dead agent that the caller's adopt() took over (left running). */
  adopted: Array<{ instanceId: string; guestId: string; pid: number }>;
  removedPoolFiles: string[];
  /** Entries left alone, with why (live agent, pid reused by another program, ...). */
  skipped: Array<{ instanceId: string; reason: string }>;
  removedRunDirs: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function killVerified(pid: number, instanceId: string): Promise<boolean> {
  // SIGTERM first: QEMU exits cleanly on it. Re-verify before each signal: the pid may
  // have exited and been reused in between.
  for (const [sig, waitMs] of [
    ["SIGTERM", 3000],
    ["SIGKILL", 5000],
  ] as const) {
    if (!isOurQemu(pid, instanceId)) return true;
    try {
      process.kill(pid, sig);
    } catch {
      return true;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      if (!isOurQemu(pid, instanceId)) return true;
      await sleep(50);
    }
  }
  return !isOurQemu(pid, instanceId);
}

/**
 * A process (other than this one) that has `file` mapped, if any: /proc/<pid>/maps lists the
 * path of every file-backed mapping (QEMU's memory-backend-file). Reaping is rare, so a pass
 * over /proc is cheap enough; processes that vanish or hide their maps are skipped.
 */
export function mappedBy(file: string): number | undefined {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const suffix = ` ${file}`;
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let maps: string;
    try {
      maps = readFileSync(`/proc/${name}/maps`, "utf8");
    } catch {
      continue;
    }
    if (maps.split("\n").some((line) => line.endsWith(suffix))) return Number(name);
  }
  return undefined;
}

export interface ReapOptions {
  /**
   * Offered every live QEMU (verified by pid and cmdline) of a dead agent before it is
   * killed: resolve true to take it over (it is then left alone), false or a rejection to
   * have it reaped.
   */
  adopt?: (state: InstanceState, pid: number) => Promise<boolean>;
}

/**
 * Kills QEMUs left behind by agents that are no longer alive (unless `adopt` takes them
 * over), removes their pool files and runtime folders. Entries of a live agent (including
 * this process) are left alone.
 */
export async function reapOrphans(
  stateDir: string,
  log: (msg: string) => void = () => {},
  opts: ReapOptions = {},
): Promise<ReapReport> {
  const report: ReapReport = {
    killed: [],
    adopted: [],
    removedPoolFiles: [],
    skipped: [],
    removedRunDirs: [],
  };
  if (!existsSync(stateDir)) return report;
  for (const name of readdirSync(stateDir)) {
    const runDir = join(stateDir, name);
    const s = readState(runDir);
    if (!s) continue;
    if (agentAlive(s)) {
      report.skipped.push({ instanceId: s.instanceId, reason: `agent pid ${s.agentPid} is alive` });
      continue;
    }
    const pid = s.pid ?? readPidFile(s.pidFile);
    if (pid !== null && pidAlive(pid)) {
      if (isOurQemu(pid, s.instanceId) && opts.adopt) {
        let taken = false;
        try {
          taken = await opts.adopt(s, pid);
        } catch (e) {
          log(`cannot adopt QEMU ${s.instanceId} (guest ${s.guestId}) pid ${pid}: ${(e as Error).message}`);
        }
        if (taken) {
          report.adopted.push({ instanceId: s.instanceId, guestId: s.guestId, pid });
          continue;
        }
      }
      if (isOurQemu(pid, s.instanceId)) {
        log(`reaping orphan QEMU ${s.instanceId} (guest ${s.guestId}) pid ${pid}`);
        if (!(await killVerified(pid, s.instanceId))) {
          report.skipped.push({ instanceId: s.instanceId, reason: `pid ${pid} survived SIGKILL` });
          continue;
        }
        report.killed.push({ instanceId: s.instanceId, guestId: s.guestId, pid });
      } else {
        log(`pid ${pid} of ${s.instanceId} now runs another program: not killed`);
      }
    }
    for (const f of s.poolFiles) {
      // Another QEMU may hold the guest's RAM now (a handover or live update whose source
      // agent died before releasing the file): its memory is the guest; never delete it.
      const user = mappedBy(f);
      if (user !== undefined) {
        log(`pool file ${f} of ${s.instanceId} is mapped by pid ${user}: kept`);
        report.skipped.push({ instanceId: s.instanceId, reason: `pool file ${f} in use by pid ${user}` });
        continue;
      }
      try {
        unlinkSync(f);
        report.removedPoolFiles.push(f);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") log(`cannot remove pool file ${f}: ${e}`);
      }
    }
    rmSync(runDir, { recursive: true, force: true });
    report.removedRunDirs.push(runDir);
  }
  return report;
}

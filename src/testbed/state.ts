/**
 * The testbed's state file: everything `up` created or started, written BEFORE each step
 * (so a crash mid-way leaves a record of what may exist) and replayed by `down`, which
 * removes names from this record only: no process or link is ever found by a name pattern.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TestbedSpec } from "./spec.ts";

export const STATE_FILE = "testbed.json";

export interface ProcessRecord {
  pid: number;
  /** /proc/<pid>/stat start time: a recycled pid never matches it. */
  startTime: number | null;
  argv: string[];
  logFile: string;
  readyFile: string;
  configFile: string;
  /** http://address:port once the agent reported ready. */
  url: string | null;
  startedAt: string;
}

export interface CgroupRecord {
  mode: "v2" | "v1" | "none";
  /** Why limits are (not) applied, shown by status. */
  note: string;
  /** Folders we created, deepest first is how down removes them. */
  dirs: string[];
}

export interface ServerRecord {
  name: string;
  index: number;
  netns: string | null;
  /** Data-plane and API address of the server (its agents listen here). */
  address: string;
  /** Interface inside the namespace (null in loopback mode: lo is shared). */
  iface: string | null;
  poolDir: string;
  stateDir: string;
  agent: ProcessRecord | null;
}

export interface HostVmRecord {
  /** The server it runs on now (a move changes it). */
  server: string;
  name: string;
  /**
   * Its identity across moves: `<first server>/<name>`, set by the first move (absent: it
   * never moved, and `<server>/<name>` is its key). See hostVmKey().
   */
  key?: string;
  /** When it was last moved to another server (ISO time). */
  movedAt?: string;
  cpus: number;
  memoryMiB: number;
  stateDir: string;
  /** Where the host-VM agent keeps its QEMUs' runtime folders (reaped by down). */
  qemuDir: string;
  cgroupDirs: string[];
  /** cpu/memory limits actually applied (null: none). */
  limits: { cpuQuotaPercent: number; memoryMaxMiB: number } | null;
  /**
   * The host VM's supervisor (src/testbed/supervisor.mjs): it runs the agent and restarts
   * it when it dies. Absent in state files of older testbeds (their agents ran unsupervised).
   */
  supervisor?: ProcessRecord | null;
  /** Where the supervisor records the agent it runs now (it changes at each restart). */
  agentRecordFile?: string;
  /** The agent as the testbed saw it ready; the current one: currentHostVmAgent(). */
  agent: ProcessRecord | null;
  /**
   * While a host VM with guests moves: the agent on the new server its guests are pre-copied
   * to, with the QEMU folder it keeps them in (see startLandingAgent). Absent otherwise.
   */
  landing?: { agent: ProcessRecord; server: string; qemuDir: string } | null;
}

export interface NetworkRecord {
  mode: "netns" | "loopback";
  subnet: string | null;
  hostAddress: string | null;
  bridgeNetns: string | null;
  /** Root-namespace link(s) we created (deleted by name). */
  rootLinks: string[];
  /** Namespaces we created (deleted by name; their links go with them). */
  namespaces: string[];
}

export interface TestbedState {
  version: 1;
  id: string;
  createdAt: string;
  specFile: string | null;
  spec: TestbedSpec;
  stateDir: string;
  tokenFile: string;
  poolRoot: string;
  warnings: string[];
  network: NetworkRecord;
  cgroups: CgroupRecord;
  servers: ServerRecord[];
  hostVms: HostVmRecord[];
  /** "up" finished (agents ready, guests booted). */
  complete: boolean;
}

/** A host VM's identity across moves. */
export function hostVmKey(h: Pick<HostVmRecord, "key" | "server" | "name">): string {
  return h.key ?? `${h.server}/${h.name}`;
}

export function statePath(stateDir: string): string {
  return join(stateDir, STATE_FILE);
}

/** Atomic replace, readable only by us: it names the token file and pids. */
export function writeTestbedState(state: TestbedState): void {
  mkdirSync(state.stateDir, { recursive: true, mode: 0o700 });
  const path = statePath(state.stateDir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readTestbedState(stateDir: string): TestbedState | null {
  const path = statePath(stateDir);
  if (!existsSync(path)) return null;
  const s = JSON.parse(readFileSync(path, "utf8")) as TestbedState;
  return s && s.version === 1 && typeof s.id === "string" ? s : null;
}

/** Where testbeds live unless NESTCLOUD_TESTBED_ROOT says otherwise (short: socket paths grow from it). */
export function defaultTestbedRoot(): string {
  const env = process.env.NESTCLOUD_TESTBED_ROOT;
  if (env) return env;
  if (process.getuid?.() === 0) return "/run/nestcloud/tb";
  return join(process.env.XDG_RUNTIME_DIR ?? "/tmp", `nestcloud-${process.getuid?.() ?? "u"}`, "tb");
}

/** Ids of the testbeds with a state file under `root`. */
export function listTestbeds(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((d) => existsSync(statePath(join(root, d))))
    .sort();
}

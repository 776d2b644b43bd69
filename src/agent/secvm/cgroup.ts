/**
 * A security VM's own cgroup: CPU and memory limits for its service and everything it starts
 * (Suricata, clamscan), and the means to kill all of it at once.
 *
 * Made beside the host-VM agent's own cgroup (a sibling in the testbed's folder), not below
 * it: cgroup v2 lets a cgroup that has processes (the agent's slice) delegate no controller to
 * children. v2: memory.max, cpu.max, cgroup.kill. v1 (hybrid hosts like this machine): the cpu
 * and memory hierarchies, memory.limit_in_bytes, cpu.cfs_quota_us, killing by cgroup.procs.
 * None when the agent runs in no writable cgroup (the status says so).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const ROOT = "/sys/fs/cgroup";

/**
 * Where a hierarchy is reachable from this process. The agent runs under `ip netns exec`,
 * which mounts a fresh sysfs for its namespace: /sys/fs/cgroup is empty there. Then the
 * hierarchy is mounted again, privately (the mount namespace `ip netns exec` made is a slave of
 * the root one: nothing propagates back), under /run/ncsv/.cgroup-<pid>/.
 */
function hierarchy(kind: "v2" | string): string {
  const std = kind === "v2" ? ROOT : join(ROOT, kind.split(",")[0]);
  if (existsSync(join(std, "cgroup.procs"))) return std;
  const dir = join("/run/ncsv", `.cgroup-${process.pid}`, kind === "v2" ? "unified" : kind);
  if (existsSync(join(dir, "cgroup.procs"))) return dir;
  mkdirSync(dir, { recursive: true });
  execFileSync(
    "mount",
    kind === "v2" ? ["-t", "cgroup2", "nccgroup", dir] : ["-t", "cgroup", "-o", kind, "nccgroup", dir],
    { timeout: 10_000 },
  );
  return dir;
}

/** A folder of a private mount as /sys/fs/cgroup names it. */
function canonical(dir: string): string {
  const m = /^\/run\/ncsv\/\.cgroup-\d+\/([^/]+)(\/.*)?$/.exec(dir);
  if (!m) return dir;
  return join(m[1] === "unified" ? ROOT : join(ROOT, m[1].split(",")[0]), m[2] ?? "/");
}

/** This process's cgroup lines: controllers ("" for v2) -> [the line's controller list, path]. */
function lines(): Map<string, [string, string]> {
  const out = new Map<string, [string, string]>();
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "") out.set("", ["", m[2]]);
    else for (const c of m[1].split(",")) out.set(c, [m[1], m[2]]);
  }
  return out;
}
const PERIOD_US = 100_000;

export interface SecVmCgroup {
  mode: "v2" | "v1" | "none";
  dirs: string[];
  /** The same folders as the machine's root mount namespace names them (status, operators). */
  shown: string[];
  note: string;
}

/** The sibling folder(s) for `name` beside this process's cgroup, with limits; none if impossible. */
export function createSecVmCgroup(name: string, limits: { cpus: number; memoryMiB: number }): SecVmCgroup {
  const mem = String(limits.memoryMiB * 1024 * 1024);
  const quota = String(Math.round(limits.cpus * PERIOD_US));
  try {
    const own = lines();
    const cpuLine = own.get("cpu");
    const memLine = own.get("memory");
    if (!cpuLine || !memLine) {
      const v2 = own.get("");
      if (!v2) return { mode: "none", dirs: [], shown: [], note: "no cgroup cpu/memory controller" };
      const mine = join(hierarchy("v2"), v2[1]);
      const parent = dirname(mine);
      if (v2[1] === "/" || !existsSync(join(parent, "cgroup.subtree_control")))
        return { mode: "none", dirs: [], shown: [], note: "the agent runs in the root cgroup" };
      const ctl = readFileSync(join(parent, "cgroup.subtree_control"), "utf8");
      if (!ctl.includes("cpu") || !ctl.includes("memory"))
        return { mode: "none", dirs: [], shown: [], note: `${parent} delegates no cpu/memory controller` };
      const dir = join(parent, name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "memory.max"), mem);
      writeFileSync(join(dir, "cpu.max"), `${quota} ${PERIOD_US}`);
      return { mode: "v2", dirs: [dir], shown: [canonical(dir)], note: `cgroup v2 ${dir}` };
    }
    // Beside the agent's slice; below a hierarchy's root when the agent has no slice.
    const beside = (root: string, path: string) => join(root, path === "/" ? "/" : dirname(path), name);
    const cpuDir = beside(hierarchy(cpuLine[0]), cpuLine[1]);
    const memDir = beside(hierarchy(memLine[0]), memLine[1]);
    mkdirSync(cpuDir, { recursive: true });
    mkdirSync(memDir, { recursive: true });
    writeFileSync(join(cpuDir, "cpu.cfs_period_us"), String(PERIOD_US));
    writeFileSync(join(cpuDir, "cpu.cfs_quota_us"), quota);
    writeFileSync(join(memDir, "memory.limit_in_bytes"), mem);
    return {
      mode: "v1",
      dirs: [cpuDir, memDir],
      shown: [canonical(cpuDir), canonical(memDir)],
      note: `cgroup v1 ${cpuDir} and ${memDir}`,
    };
  } catch (e) {
    return { mode: "none", dirs: [], shown: [], note: `cgroup not made: ${(e as Error).message}` };
  }
}

export function placeInCgroup(cg: SecVmCgroup, pid: number): void {
  for (const d of cg.dirs) writeFileSync(join(d, "cgroup.procs"), String(pid));
}

export function cgroupPids(cg: SecVmCgroup): number[] {
  const pids = new Set<number>();
  for (const d of cg.dirs) {
    try {
      for (const l of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n"))
        if (l.trim()) pids.add(Number(l));
    } catch {}
  }
  return [...pids];
}

/** Kills every process in the cgroup (v2: cgroup.kill; v1: each pid, until none is left). */
export async function killCgroup(cg: SecVmCgroup, waitMs = 10_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const pids = cgroupPids(cg);
    if (pids.length === 0) return;
    if (cg.mode === "v2" && existsSync(join(cg.dirs[0], "cgroup.kill")))
      writeFileSync(join(cg.dirs[0], "cgroup.kill"), "1");
    else
      for (const p of pids)
        try {
          process.kill(p, "SIGKILL");
        } catch {}
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(", ")} still in ${cg.dirs.join(", ")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function removeCgroup(cg: SecVmCgroup): Promise<void> {
  for (const d of cg.dirs) {
    for (let i = 0; ; i++) {
      try {
        rmdirSync(d);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT") break;
        if (code === "EBUSY" && i < 100) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        throw e;
      }
    }
  }
}

/** Peak memory of the cgroup (bytes), when known. */
export function cgroupMemoryPeak(cg: SecVmCgroup): number | null {
  for (const d of cg.dirs)
    for (const f of ["memory.peak", "memory.max_usage_in_bytes"])
      try {
        return Number(readFileSync(join(d, f), "utf8").trim());
      } catch {}
  return null;
}

/** Unmounts and removes the private hierarchy mounts this process made (agent shutdown). */
export function releaseHierarchies(): void {
  const dir = join("/run/ncsv", `.cgroup-${process.pid}`);
  if (!existsSync(dir)) return;
  for (const m of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const at = m.split(" ")[1];
    if (at?.startsWith(`${dir}/`))
      try {
        execFileSync("umount", [at], { timeout: 10_000 });
      } catch {}
  }
  for (const d of readdirSync(dir))
    try {
      rmdirSync(join(dir, d));
    } catch {}
  try {
    rmdirSync(dir);
  } catch {}
}

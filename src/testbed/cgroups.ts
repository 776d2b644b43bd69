/**
 * CPU and memory limits for host-VM slices through cgroups, where the machine allows it.
 *
 * Slices are created BELOW the cgroup this process already runs in (read from
 * /proc/self/cgroup), never at the hierarchy's root: whatever accounts for and limits us
 * keeps accounting for our QEMUs. cgroup v2 is used when it has the cpu and memory
 * controllers; otherwise the v1 cpu and memory hierarchies (hybrid hosts); otherwise none,
 * and status says why.
 *
 * Memory note: guest RAM lives in tmpfs pool files, charged to the cgroup of the process
 * that first touched each page; the charge does not move with an instant handover. The
 * server agent's accounting is the authoritative per-host-VM figure; memory.max here is a
 * safety net with headroom, not the guarantee.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = "/sys/fs/cgroup";
const PERIOD_US = 100_000;

export interface CgroupPlan {
  mode: "v2" | "v1" | "none";
  note: string;
  /** Parent folder(s) under which per-testbed folders go: v2 one, v1 cpu and memory. */
  parents: string[];
}

export interface SliceLimits {
  cpus: number;
  memoryMaxMiB: number;
}

function ownCgroupPaths(): Map<string, string> {
  // Lines look like "0::/user.slice/x" (v2) or "4:memory:/a/b" / "1:cpu,cpuacct:/" (v1).
  const out = new Map<string, string>();
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "") out.set("", m[2]);
    else for (const c of m[1].split(",")) out.set(c, m[2]);
  }
  return out;
}

function writable(dir: string): boolean {
  const probe = join(dir, `nestcloud-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

/** Decides how (and whether) slices get limits on this machine. Never throws. */
export function planCgroups(): CgroupPlan {
  try {
    const own = ownCgroupPaths();
    if (existsSync(join(ROOT, "cgroup.controllers"))) {
      const parent = join(ROOT, own.get("") ?? "/");
      const ctl = readFileSync(join(parent, "cgroup.controllers"), "utf8").split(/\s+/);
      if (!ctl.includes("cpu") || !ctl.includes("memory"))
        return {
          mode: "none",
          note: `cgroup v2 at ${parent} lacks the cpu or memory controller`,
          parents: [],
        };
      if (!writable(parent))
        return { mode: "none", note: `cgroup v2 folder ${parent} is not writable`, parents: [] };
      return { mode: "v2", note: `cgroup v2 below ${parent}`, parents: [parent] };
    }
    const cpu = join(ROOT, "cpu", own.get("cpu") ?? "/");
    const mem = join(ROOT, "memory", own.get("memory") ?? "/");
    if (existsSync(join(cpu, "cpu.cfs_quota_us")) && existsSync(join(mem, "memory.limit_in_bytes"))) {
      if (writable(cpu) && writable(mem)) {
        const unified = existsSync(join(ROOT, "unified"))
          ? " (the unified v2 hierarchy here has no cpu/memory controller)"
          : "";
        return { mode: "v1", note: `cgroup v1 cpu and memory hierarchies${unified}`, parents: [cpu, mem] };
      }
      return { mode: "none", note: `cgroup v1 folders ${cpu} and ${mem} are not writable`, parents: [] };
    }
    return { mode: "none", note: "no cgroup cpu/memory controller found under /sys/fs/cgroup", parents: [] };
  } catch (e) {
    return { mode: "none", note: `cgroups unavailable: ${(e as Error).message}`, parents: [] };
  }
}

/**
 * Creates <parent>/nestcloud-<id>/<slice> with limits; returns the folders created (for
 * the state file) — possibly partial if a write fails, which is then thrown.
 */
export function createSlice(
  plan: CgroupPlan,
  testbedId: string,
  slice: string,
  limits: SliceLimits,
  record: (dir: string) => void,
): string[] {
  const made: string[] = [];
  const mk = (dir: string) => {
    if (!existsSync(dir)) {
      record(dir);
      mkdirSync(dir);
    }
  };
  if (plan.mode === "v2") {
    const top = join(plan.parents[0], `nestcloud-${testbedId}`);
    // A parent must delegate the controllers before children can use them.
    enableV2(plan.parents[0]);
    mk(top);
    enableV2(top);
    const dir = join(top, slice);
    mk(dir);
    writeFileSync(join(dir, "cpu.max"), `${Math.round(limits.cpus * PERIOD_US)} ${PERIOD_US}`);
    writeFileSync(join(dir, "memory.max"), String(limits.memoryMaxMiB * 1024 * 1024));
    made.push(dir);
  } else if (plan.mode === "v1") {
    const [cpuParent, memParent] = plan.parents;
    for (const parent of [cpuParent, memParent]) mk(join(parent, `nestcloud-${testbedId}`));
    const cpuDir = join(cpuParent, `nestcloud-${testbedId}`, slice);
    const memDir = join(memParent, `nestcloud-${testbedId}`, slice);
    mk(cpuDir);
    mk(memDir);
    writeFileSync(join(cpuDir, "cpu.cfs_period_us"), String(PERIOD_US));
    writeFileSync(join(cpuDir, "cpu.cfs_quota_us"), String(Math.round(limits.cpus * PERIOD_US)));
    writeFileSync(join(memDir, "memory.limit_in_bytes"), String(limits.memoryMaxMiB * 1024 * 1024));
    made.push(cpuDir, memDir);
  }
  return made;
}

function enableV2(dir: string): void {
  const have = readFileSync(join(dir, "cgroup.subtree_control"), "utf8");
  if (have.includes("cpu") && have.includes("memory")) return;
  writeFileSync(join(dir, "cgroup.subtree_control"), "+cpu +memory");
}

/** Moves a process (and so its future children: the agent's QEMUs) into the slice. */
export function placeInSlice(dirs: readonly string[], pid: number): void {
  for (const d of dirs) writeFileSync(join(d, "cgroup.procs"), String(pid));
}

/**
 * Removes the folders we created, deepest first. A killed process stays in its cgroup
 * until its parent (often init, for orphans) reaps it, so EBUSY is retried for a while;
 * folders still busy after that are reported.
 */
export async function removeCgroups(dirs: readonly string[], waitMs = 15_000): Promise<string[]> {
  const left: string[] = [];
  const sorted = [...new Set(dirs)].sort((a, b) => b.split("/").length - a.split("/").length);
  const deadline = Date.now() + waitMs;
  for (const d of sorted) {
    for (;;) {
      try {
        rmdirSync(d);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT") break;
        if (code === "EBUSY" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        left.push(`${d}: ${(e as Error).message}`);
        break;
      }
    }
  }
  return left;
}

/** CPU and memory the slice may use: the host VM's size plus room for its agent and QEMU overhead. */
export function sliceLimits(cpus: number, memoryMiB: number): SliceLimits {
  return { cpus, memoryMaxMiB: Math.ceil(memoryMiB * 1.25) + 512 };
}

// Hidden processes: a rootkit that unlinks a task from init_task.tasks (DKOM) hides it from
// /proc and ps, but the task still has a pid (the pid namespace's IDR maps its number to its
// struct pid) and, when it runs, a runqueue's `curr` points at it. We cross-view: every task
// reachable from the IDR or a runqueue must have its thread-group leader on the task list.
// The guest keeps running while we look, so a task seen as hidden is re-checked in a second
// pass before it is reported (a fork or exit between the two views is not a finding).

import { guardAsync } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { isKernelPointer, type ListNode, readVirtLenient } from "../memory/listwalk.ts";
import type { VirtAddr } from "../memory/memory.ts";
import { type QueryOptions, taskReads, walkTasks } from "../queries/processes.ts";
import { walkXarray } from "../queries/xarray.ts";

export interface HiddenTask {
  readonly pid: number;
  readonly tgid: number;
  readonly comm: string;
  readonly task: VirtAddr;
  /** Where it was seen although the task list does not have it. */
  readonly seenIn: ("pid-idr" | "runqueue")[];
}

export interface HiddenReport {
  readonly hidden: HiddenTask[];
  /** Tasks on the task list, tasks reached through the IDR, runqueues looked at. */
  readonly counts: { readonly taskList: number; readonly pidIdr: number; readonly runqueues: number };
  /** Views that could not be used on this kernel (missing symbols/fields), with the reason. */
  readonly skipped: string[];
}

const PIDTYPE_PID = 0;

function u64(b: Uint8Array, at = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);
}

/** Tasks that own the struct pids in init_pid_ns's IDR. */
async function tasksFromIdr(k: Kernel, deadline: number, max: number): Promise<VirtAddr[]> {
  const ns = k.symbols.require("init_pid_ns");
  const idr =
    k.field("pid_namespace.idr").offset + k.field("idr.idr_rt").offset + k.field("xarray.xa_head").offset;
  const [head] = await k.readU64s([ns + BigInt(idr)]);
  const { entries } = await walkXarray(k, head, { maxEntries: max, deadline });
  // struct pid -> tasks[PIDTYPE_PID].first (an hlist_node inside task_struct.pid_links[PIDTYPE_PID]).
  const tasksOff = k.field("pid.tasks").offset + PIDTYPE_PID * 8;
  const linkOff = BigInt(
    k.field("task_struct.pid_links").offset + PIDTYPE_PID * (k.field("hlist_node.next").size * 2),
  );
  const firsts = await readVirtLenient(
    k.vmem,
    entries.map((e) => ({ addr: e.value + BigInt(tasksOff), len: 8 })),
  );
  const out: VirtAddr[] = [];
  for (const b of firsts) {
    if (!b) continue;
    const first = u64(b);
    if (isKernelPointer(first)) out.push(first - linkOff);
  }
  return out;
}

/** rq->curr of every possible CPU (per-CPU `runqueues` + __per_cpu_offset[cpu]). */
async function tasksOnCpus(k: Kernel): Promise<{ tasks: VirtAddr[]; idle: Set<VirtAddr>; cpus: number }> {
  const rq = k.symbols.require("runqueues");
  const offsets = k.symbols.require("__per_cpu_offset");
  const nrAt = k.symbols.lookup("nr_cpu_ids");
  let cpus = 1;
  if (nrAt !== undefined) {
    const b = await k.read(nrAt, 4);
    cpus = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  }
  cpus = Math.max(1, Math.min(cpus, 8192));
  const per = await k.readU64s(Array.from({ length: cpus }, (_, i) => offsets + BigInt(i * 8)));
  const curr = BigInt(k.field("rq.curr").offset);
  const idle = BigInt(k.field("rq.idle").offset);
  const ptrs = await readVirtLenient(
    k.vmem,
    per.flatMap((off) => [
      { addr: BigInt.asUintN(64, rq + off + curr), len: 8 },
      { addr: BigInt.asUintN(64, rq + off + idle), len: 8 },
    ]),
  );
  const tasks: VirtAddr[] = [];
  const idleSet = new Set<VirtAddr>();
  for (let i = 0; i < ptrs.length; i += 2) {
    const c = ptrs[i];
    const d = ptrs[i + 1];
    if (c && isKernelPointer(u64(c))) tasks.push(u64(c));
    if (d && isKernelPointer(u64(d))) idleSet.add(u64(d));
  }
  return { tasks, idle: idleSet, cpus };
}

interface Pass {
  listed: Set<VirtAddr>;
  suspects: Map<VirtAddr, HiddenTask>;
  idrCount: number;
  cpus: number;
  skipped: string[];
}

async function onePass(k: Kernel, opts: QueryOptions, deadline: number): Promise<Pass> {
  const max = opts.maxEntries ?? 65536;
  const list = await walkTasks(k, { ...opts, timeoutMs: Math.max(1, deadline - Date.now()) });
  const initTask = k.symbols.require("init_task");
  const listed = new Set<VirtAddr>([initTask, ...list.map((t) => t.task)]);
  const skipped: string[] = [];
  const sources = new Map<VirtAddr, Set<"pid-idr" | "runqueue">>();
  const note = (t: VirtAddr, s: "pid-idr" | "runqueue") => {
    if (!sources.has(t)) sources.set(t, new Set());
    sources.get(t)?.add(s);
  };
  let idrCount = 0;
  try {
    const fromIdr = await tasksFromIdr(k, deadline, max);
    idrCount = fromIdr.length;
    for (const t of fromIdr) note(t, "pid-idr");
  } catch (e) {
    if (
      !(
        e instanceof Error &&
        "code" in e &&
        /^(KERNEL_PROFILE_FIELD|KALLSYMS_MISSING_SYMBOL)$/.test(String(e.code))
      )
    ) {
      throw e;
    }
    skipped.push(`pid-idr: ${e.message}`);
  }
  let cpus = 0;
  let idle = new Set<VirtAddr>();
  try {
    const rq = await tasksOnCpus(k);
    cpus = rq.cpus;
    idle = rq.idle;
    for (const t of rq.tasks) note(t, "runqueue");
  } catch (e) {
    if (
      !(
        e instanceof Error &&
        "code" in e &&
        /^(KERNEL_PROFILE_FIELD|KALLSYMS_MISSING_SYMBOL)$/.test(String(e.code))
      )
    ) {
      throw e;
    }
    skipped.push(`runqueue: ${e.message}`);
  }
  // Read the candidates not on the list (a thread's leader may be listed: that is fine).
  const candidates = [...sources.keys()].filter((t) => !listed.has(t) && !idle.has(t));
  const t = taskReads(k);
  const bufs = await readVirtLenient(
    k.vmem,
    candidates.flatMap((addr) => t.reads.map((r) => ({ addr: addr + BigInt(r.offset), len: r.len }))),
  );
  const suspects = new Map<VirtAddr, HiddenTask>();
  candidates.forEach((addr, i) => {
    const fields = bufs.slice(i * t.reads.length, (i + 1) * t.reads.length);
    if (fields.some((f) => f === null)) return;
    const node: ListNode = { addr, fields: fields as Uint8Array[], derefs: [null, null] };
    const info = t.decode(node);
    if (listed.has(info.groupLeader) || info.pid === 0) return;
    suspects.set(addr, {
      pid: info.pid,
      tgid: info.tgid,
      comm: info.comm,
      task: addr,
      seenIn: [...(sources.get(addr) ?? [])].sort(),
    });
  });
  return { listed, suspects, idrCount, cpus, skipped };
}

/** Cross-view check for tasks hidden from the task list. */
export function findHiddenTasks(k: Kernel, opts: QueryOptions = {}): Promise<HiddenReport> {
  return guardAsync(async () => {
    const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    k.beginPass();
    const first = await onePass(k, opts, deadline);
    let hidden = [...first.suspects.values()];
    let last = first;
    if (hidden.length > 0) {
      k.beginPass();
      last = await onePass(k, opts, deadline);
      hidden = hidden.filter((h) => last.suspects.has(h.task));
    }
    return {
      hidden,
      counts: { taskList: last.listed.size, pidIdr: last.idrCount, runqueues: last.cpus },
      skipped: last.skipped,
    };
  });
}

// Process list: the thread-group leaders on init_task.tasks, as the guest's /proc shows them
// (pid, tgid, ppid = real_parent->tgid, comm, uid, state letter). init_task itself (pid 0, the
// idle task) heads the list and is not a process of /proc; it is left out unless asked for.

import { Buffer } from "node:buffer";
import { guardAsync, QueryError } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { fieldOf } from "../kernel/profile.ts";
import type { FieldRead, ListNode } from "../memory/listwalk.ts";
import type { VirtAddr } from "../memory/memory.ts";

export interface ProcessInfo {
  readonly pid: number;
  readonly tgid: number;
  /** real_parent->tgid (0 for children of the idle task, like /proc). */
  readonly ppid: number;
  readonly comm: string;
  /** Real and effective uid; undefined when the cred could not be read. */
  readonly uid?: number;
  readonly euid?: number;
  /** /proc state letter: R S D T t X Z P I. */
  readonly state: string;
  readonly kernelThread: boolean;
  /** Address of the task_struct. */
  readonly task: VirtAddr;
}

export interface QueryOptions {
  /** Entries accepted before QUERY_TOO_MANY (default 65536: above the default pid_max 32768). */
  readonly maxEntries?: number;
  /** Time budget in ms (default 10 s). */
  readonly timeoutMs?: number;
  /** Passes retried when the guest changed the list under us (default 2). */
  readonly retries?: number;
}

const PF_KTHREAD = 0x00200000;
/** TASK_REPORT bits, in fls() order: "RSDTtXZPI" (fs/proc/array.c task_state_array). */
const STATE_LETTERS = "RSDTtXZPI";
const TASK_REPORT = 0x7f;
const TASK_UNINTERRUPTIBLE = 0x2;
const TASK_NOLOAD = 0x400;
const TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD;
const TASK_RTLOCK_WAIT = 0x1000;

/** The kernel's __task_state_index() as a letter (5.14+ state bits). */
export function stateLetter(state: number, exitState: number): string {
  let s = (state | exitState) & TASK_REPORT;
  if (state === TASK_IDLE) return "I";
  if (state === TASK_RTLOCK_WAIT) s = TASK_UNINTERRUPTIBLE;
  return STATE_LETTERS[s === 0 ? 0 : 32 - Math.clz32(s)] ?? "?";
}

/** NUL-terminated comm, non-printable bytes escaped (guest data is not trusted for display). */
export function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  const raw = Buffer.from(b.buffer, b.byteOffset, nul >= 0 ? nul : b.length).toString("latin1");
  return raw.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function num(b: Uint8Array, size: number): number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return size === 8 ? Number(dv.getBigInt64(0, true)) : size === 4 ? dv.getInt32(0, true) : b[0];
}

/** Layout of the reads for one task; shared by the task list walk and the hidden-task check. */
export function taskReads(k: Kernel) {
  const f = (p: string) => k.field(p);
  const state = fieldOf(k.profile, "task_struct.__state", "task_struct.state");
  const reads: Record<string, FieldRead> = {
    pid: { offset: f("task_struct.pid").offset, len: 4 },
    tgid: { offset: f("task_struct.tgid").offset, len: 4 },
    comm: { offset: f("task_struct.comm").offset, len: Math.min(f("task_struct.comm").size, 64) },
    state: { offset: state.offset, len: Math.min(state.size, 8) },
    exitState: { offset: f("task_struct.exit_state").offset, len: 4 },
    flags: { offset: f("task_struct.flags").offset, len: 4 },
    groupLeader: { offset: f("task_struct.group_leader").offset, len: 8 },
  };
  const order = Object.keys(reads);
  const uid = f("cred.uid").offset;
  const euid = f("cred.euid").offset;
  return {
    order,
    reads: order.map((k) => reads[k]),
    derefs: [
      { ptr: f("task_struct.real_parent").offset, reads: [{ offset: f("task_struct.tgid").offset, len: 4 }] },
      {
        ptr: f("task_struct.cred").offset,
        reads: [
          { offset: uid, len: 4 },
          { offset: euid, len: 4 },
        ],
      },
    ],
    decode(node: ListNode): ProcessInfo & { groupLeader: VirtAddr } {
      const v = (name: string) => node.fields[order.indexOf(name)];
      const state = v("state");
      const [parent, cred] = node.derefs;
      const dvU64 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
      return {
        pid: num(v("pid"), 4),
        tgid: num(v("tgid"), 4),
        ppid: parent ? num(parent[0], 4) : 0,
        comm: cString(v("comm")),
        uid: cred ? num(cred[0], 4) >>> 0 : undefined,
        euid: cred ? num(cred[1], 4) >>> 0 : undefined,
        state: stateLetter(num(state, state.length) >>> 0, num(v("exitState"), 4)),
        kernelThread: (num(v("flags"), 4) & PF_KTHREAD) !== 0,
        task: node.addr,
        groupLeader: dvU64(v("groupLeader")),
      };
    },
  };
}

/** Retries a pass when the running guest changed a list under us (bounded). */
export async function withRetries<T>(k: Kernel, retries: number, pass: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    k.beginPass();
    try {
      return await pass();
    } catch (e) {
      const transient =
        e instanceof QueryError && (e.code === "QUERY_BAD_POINTER" || e.code === "QUERY_LIST_CORRUPT");
      if (!transient || attempt >= retries) throw e;
    }
  }
}

export interface TaskListEntry extends ProcessInfo {
  readonly groupLeader: VirtAddr;
}

/** Raw walk of init_task.tasks (leaders only), with init_task itself first. */
export async function walkTasks(k: Kernel, opts: QueryOptions = {}): Promise<TaskListEntry[]> {
  const initTask = k.symbols.require("init_task");
  const tasksOff = k.field("task_struct.tasks").offset;
  const t = taskReads(k);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const nodes = await k.walkList(
    {
      head: initTask + BigInt(tasksOff),
      linkOffset: tasksOff,
      reads: t.reads,
      derefs: t.derefs,
      maxNodes: opts.maxEntries ?? 65536,
    },
    { deadline },
  );
  return nodes.map((n) => t.decode(n));
}

/** The guest's processes, like its own `ps` (sorted by pid). */
export function listProcesses(k: Kernel, opts: QueryOptions = {}): Promise<ProcessInfo[]> {
  return guardAsync(() =>
    withRetries(k, opts.retries ?? 2, async () => {
      const tasks = await walkTasks(k, opts);
      return tasks.map(({ groupLeader: _, ...p }) => p).sort((a, b) => a.pid - b.pid);
    }),
  );
}

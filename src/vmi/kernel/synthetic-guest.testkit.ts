// Test support (not used by production code): a synthetic x86-64 Linux guest in a RAM buffer,
// complete enough for discovery and every query: a VMCOREINFO note, a KASLR-shifted kernel image
// with kallsyms (6.1 absolute-percpu encoding) and BTF, 4-level page tables (kernel image and
// direct map in 2 MiB pages, modules in 4 KiB pages), init_task and a task list, creds, a pid
// IDR (XArray), a runqueue, modules and a syscall table. Tests mutate it to build hostile cases.

import { Buffer } from "node:buffer";
import { START_KERNEL_MAP } from "../address/translate.ts";
import { BtfBuilder } from "../discovery/btf-builder.testkit.ts";
import { encode, type Sym } from "../discovery/kallsyms-encoder.testkit.ts";

const MiB = 1024 * 1024;
export const RAM_SIZE = 64 * MiB;
export const KASLR = 0x2200000n;
export const TEXT = 0xffffffff81000000n + KASLR;
const IMAGE_PA = 16 * MiB;
export const PHYS_BASE = BigInt(IMAGE_PA) - (TEXT - START_KERNEL_MAP);
export const PAGE_OFFSET_BASE = 0xffff9d0000000000n;
export const MODULES_VA = 0xffffffffc0000000n;
const MODULES_PA = 48 * MiB;
const SLAB_PA = 28 * MiB;
const PERCPU_PA = 40 * MiB;
const RQ_OFFSET = 0x20000n;
export const NR_SYSCALLS = 16;

/** Struct layouts of the synthetic kernel (offsets in bytes). */
export const L = {
  task: {
    size: 0x200,
    state: 0x10,
    flags: 0x14,
    tasks: 0x40,
    pid: 0x80,
    tgid: 0x84,
    exitState: 0x88,
    realParent: 0x90,
    groupLeader: 0x98,
    pidLinks: 0xa0,
    cred: 0x120,
    activeMm: 0x130,
    comm: 0x140,
  },
  mm: { size: 0x100, pgd: 0x50 },
  cred: { size: 0x40, uid: 0x8, gid: 0xc, euid: 0x10 },
  pid: { size: 0x60, level: 0x4, tasks: 0x10, numbers: 0x50 },
  module: {
    size: 0x300,
    state: 0x0,
    list: 0x8,
    name: 0x18,
    coreBase: 0x140,
    coreSize: 0x148,
    initSize: 0x198,
  },
  pidNs: { idr: 0x0 },
  xarray: { head: 0x8 },
  xaNode: { size: 0x240, shift: 0x0, count: 0x2, slots: 0x28 },
  rq: { curr: 0x960, idle: 0x968 },
} as const;

function buildBtf(): Uint8Array {
  const b = new BtfBuilder();
  const u8 = b.int("unsigned char", 1);
  const u32 = b.int("unsigned int", 4);
  const i32 = b.int("int", 4, { signed: true });
  const u64 = b.int("long unsigned int", 8);
  const chr = b.int("char", 1, { char: true });
  const at = (name: string, type: number, off: number) => ({ name, type, bitOffset: off * 8 });
  const listHead = b.nextId + 1;
  const listPtr = b.ptr(listHead);
  b.struct("list_head", 16, [at("next", listPtr, 0), at("prev", listPtr, 8)]);
  const hnode = b.nextId + 1;
  const hnodePtr = b.ptr(hnode);
  const hnodePP = b.ptr(hnodePtr);
  b.struct("hlist_node", 16, [at("next", hnodePtr, 0), at("pprev", hnodePP, 8)]);
  const hhead = b.struct("hlist_head", 8, [at("first", hnodePtr, 0)]);
  const kuid = b.struct("", 4, [at("val", u32, 0)]);
  const kuidT = b.typedef("kuid_t", kuid);
  const T = L.task;
  const pidLinks = b.array(hnode, u32, 4);
  const commArr = b.array(chr, u32, 16);
  const mmPtr = b.ptr(b.struct("mm_struct", L.mm.size, [at("pgd", b.ptr(u64), L.mm.pgd)]));
  // task_struct comes after its pointer, cred, const cred and the cred pointer.
  const taskId = b.nextId + 4;
  const taskPtr = b.ptr(taskId);
  const C = L.cred;
  const cred = b.struct("cred", C.size, [
    at("uid", kuidT, C.uid),
    at("gid", kuidT, C.gid),
    at("euid", kuidT, C.euid),
  ]);
  const credPtr = b.ptr(b.const(cred));
  const got = b.struct("task_struct", T.size, [
    at("__state", u32, T.state),
    at("flags", u32, T.flags),
    at("tasks", listHead, T.tasks),
    at("pid", i32, T.pid),
    at("tgid", i32, T.tgid),
    at("exit_state", i32, T.exitState),
    at("real_parent", taskPtr, T.realParent),
    at("group_leader", taskPtr, T.groupLeader),
    at("pid_links", pidLinks, T.pidLinks),
    at("real_cred", credPtr, T.cred - 8),
    at("cred", credPtr, T.cred),
    at("active_mm", mmPtr, T.activeMm),
    at("comm", commArr, T.comm),
  ]);
  if (got !== taskId) throw new Error(`task_struct id ${got} != ${taskId}`);
  const upid = b.struct("upid", 16, [at("nr", i32, 0), at("ns", u64, 8)]);
  const P = L.pid;
  b.struct("pid", P.size, [
    at("level", u32, P.level),
    at("tasks", b.array(hhead, u32, 4), P.tasks),
    at("numbers", b.array(upid, u32, 1), P.numbers),
  ]);
  const voidPtr = b.ptr(0);
  const xarray = b.struct("xarray", 16, [at("xa_flags", u32, 4), at("xa_head", voidPtr, L.xarray.head)]);
  const idr = b.struct("idr", 24, [
    at("idr_rt", xarray, 0),
    at("idr_base", u32, 16),
    at("idr_next", u32, 20),
  ]);
  b.struct("pid_namespace", 0x100, [at("idr", idr, L.pidNs.idr)]);
  const X = L.xaNode;
  b.struct("xa_node", X.size, [
    at("shift", u8, X.shift),
    at("count", u8, X.count),
    at("slots", b.array(voidPtr, u32, 64), X.slots),
  ]);
  // include/linux/kernel.h
  b.enum("system_states", 4, [
    ["SYSTEM_BOOTING", 0],
    ["SYSTEM_SCHEDULING", 1],
    ["SYSTEM_FREEING_INITMEM", 2],
    ["SYSTEM_RUNNING", 3],
    ["SYSTEM_HALT", 4],
  ]);
  b.struct("rq", 0x1000, [at("curr", taskPtr, L.rq.curr), at("idle", taskPtr, L.rq.idle)]);
  const M = L.module;
  const layout = b.struct("module_layout", 0x50, [at("base", voidPtr, 0), at("size", u32, 8)]);
  const state = b.enum("module_state", 4, [
    ["MODULE_STATE_LIVE", 0],
    ["MODULE_STATE_COMING", 1],
  ]);
  b.struct("module", M.size, [
    at("state", state, M.state),
    at("list", listHead, M.list),
    at("name", b.array(chr, u32, 56), M.name),
    at("core_layout", layout, M.coreBase),
    at("init_layout", layout, M.initSize - 8),
  ]);
  return b.build();
}

export interface TaskSpec {
  pid: number;
  comm: string;
  uid?: number;
  ppid?: number;
  kthread?: boolean;
  state?: number;
  /** Leave off the task list (a DKOM-hidden process). */
  hidden?: boolean;
  /** Thread of this tgid (not on the task list, in the IDR). */
  threadOf?: number;
}

export interface ModuleSpec {
  name: string;
  size: number;
  initSize?: number;
}

export interface GuestOptions {
  tasks?: TaskSpec[];
  modules?: ModuleSpec[];
  /** Omit the VMCOREINFO note (fallback tests). */
  noVmcoreinfo?: boolean;
  /** Lines added to the VMCOREINFO note before KERNELOFFSET (other kernels' formats). */
  vmcoreinfoExtra?: string[];
  /** Syscall entries to point elsewhere: nr -> address. */
  hookSyscalls?: Record<number, bigint>;
  /** The task running on CPU 0 (pid), default the idle task. */
  running?: number;
  /** Value of the system_state variable (default 3, SYSTEM_RUNNING; 0..2: still booting). */
  systemState?: number;
}

export const DEFAULT_TASKS: TaskSpec[] = [
  { pid: 1, comm: "init", ppid: 0 },
  { pid: 2, comm: "kthreadd", ppid: 0, kthread: true },
  { pid: 3, comm: "rcu_gp", ppid: 2, kthread: true, state: 0x402 },
  { pid: 100, comm: "sh", ppid: 1, state: 1 },
  { pid: 101, comm: "sleep", ppid: 100, uid: 1000, state: 1 },
];

export const DEFAULT_MODULES: ModuleSpec[] = [
  { name: "crc7", size: 12288, initSize: 4096 },
  { name: "virtio_net", size: 65536, initSize: 8192 },
];

export class SyntheticGuest {
  readonly ram = new Uint8Array(RAM_SIZE);
  readonly dv = new DataView(this.ram.buffer);
  readonly symbols = new Map<string, bigint>();
  /** pid -> task_struct VA. */
  readonly tasks = new Map<number, bigint>();
  readonly moduleVas: bigint[] = [];
  private slab = SLAB_PA;
  private ptNext = 0;
  private moduleNext = 0;
  private root = 0;

  constructor(readonly opts: GuestOptions = {}) {
    this.build();
  }

  pa(va: bigint): number {
    if (va >= START_KERNEL_MAP && va < MODULES_VA) return Number(va - START_KERNEL_MAP + PHYS_BASE);
    if (va >= PAGE_OFFSET_BASE && va < PAGE_OFFSET_BASE + BigInt(RAM_SIZE))
      return Number(va - PAGE_OFFSET_BASE);
    if (va >= MODULES_VA && va < MODULES_VA + 8n * BigInt(MiB)) return Number(va - MODULES_VA) + MODULES_PA;
    throw new Error(`synthetic guest: no mapping for 0x${va.toString(16)}`);
  }
  u64(va: bigint, v: bigint): void {
    this.dv.setBigUint64(this.pa(va), BigInt.asUintN(64, v), true);
  }
  u32(va: bigint, v: number): void {
    this.dv.setUint32(this.pa(va), v >>> 0, true);
  }
  bytes(va: bigint, b: Uint8Array): void {
    this.ram.set(b, this.pa(va));
  }
  read64(va: bigint): bigint {
    return this.dv.getBigUint64(this.pa(va), true);
  }
  /** Slab allocation in the direct map. */
  alloc(size: number): bigint {
    const pa = this.slab;
    this.slab += Math.ceil(size / 64) * 64;
    if (this.slab > PERCPU_PA) throw new Error("synthetic slab full");
    return PAGE_OFFSET_BASE + BigInt(pa);
  }
  sym(name: string): bigint {
    const v = this.symbols.get(name);
    if (v === undefined) throw new Error(`no synthetic symbol ${name}`);
    return v;
  }

  private build(): void {
    const img = (off: number) => TEXT + BigInt(off);
    const S = this.symbols;
    S.set("_text", TEXT);
    S.set("_stext", img(0x1000));
    for (let i = 0; i < NR_SYSCALLS; i++) S.set(`__x64_sys_call${i}`, img(0x2000 + i * 0x40));
    S.set("__x64_sys_ni_syscall", img(0x3000));
    S.set("_etext", img(0x200000));
    S.set("sys_call_table", img(0x200000));
    S.set("vdso_mapping", img(0x200000 + NR_SYSCALLS * 8 + 16)); // after padding
    S.set("__start_BTF", img(0x500000));
    S.set("init_task", img(0x700000));
    S.set("modules", img(0x701000));
    S.set("init_pid_ns", img(0x702000));
    S.set("page_offset_base", img(0x703000));
    S.set("__per_cpu_offset", img(0x703100));
    S.set("nr_cpu_ids", img(0x703200));
    S.set("phys_base", img(0x703300));
    S.set("system_state", img(0x703400));
    S.set("init_mm", img(0x704000));
    S.set("init_top_pgt", img(0x800000));
    S.set("linux_banner", img(0x204000));
    const btf = buildBtf();
    S.set("__stop_BTF", img(0x500000 + btf.length));
    this.bytes(S.get("__start_BTF") as bigint, btf);
    this.u64(this.sym("page_offset_base"), PAGE_OFFSET_BASE);
    this.u64(this.sym("phys_base"), PHYS_BASE);
    this.u32(this.sym("nr_cpu_ids"), 1);
    this.u32(this.sym("system_state"), this.opts.systemState ?? 3);
    this.u64(this.sym("__per_cpu_offset"), PAGE_OFFSET_BASE + BigInt(PERCPU_PA) - RQ_OFFSET);
    this.bytes(
      this.sym("linux_banner"),
      Buffer.from("Linux version 6.1.0-synthetic (test@nestcloud) (gcc) #1 SMP\n\0"),
    );
    this.pageTables();
    this.syscalls();
    this.kallsyms();
    this.ksymtab();
    this.populate();
    if (!this.opts.noVmcoreinfo) this.vmcoreinfo();
  }

  private pageTables(): void {
    const rootVa = this.sym("init_top_pgt");
    this.root = this.pa(rootVa);
    this.ptNext = this.root + 0x1000;
    const tables = new Map<number, number>();
    const table = (parent: number, index: number): number => {
      const key = parent * 512 + index;
      const hit = tables.get(key);
      if (hit !== undefined) return hit;
      const t = this.ptNext;
      this.ptNext += 0x1000;
      this.dv.setBigUint64(parent + index * 8, BigInt(t) | 0x63n, true);
      tables.set(key, t);
      return t;
    };
    const idx = (va: bigint, level: number) => Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const map2m = (va: bigint, pa: number) => {
      const pd = table(table(this.root, idx(va, 4)), idx(va, 3));
      this.dv.setBigUint64(pd + idx(va, 2) * 8, BigInt(pa) | 0xe3n, true);
    };
    for (let off = 0; off < 12 * MiB; off += 2 * MiB) map2m(TEXT + BigInt(off), IMAGE_PA + off);
    for (let pa = 0; pa < RAM_SIZE; pa += 2 * MiB) map2m(PAGE_OFFSET_BASE + BigInt(pa), pa);
    for (let off = 0; off < 8 * MiB; off += 0x1000) {
      const va = MODULES_VA + BigInt(off);
      const pt = table(table(table(this.root, idx(va, 4)), idx(va, 3)), idx(va, 2));
      this.dv.setBigUint64(pt + idx(va, 1) * 8, BigInt(MODULES_PA + off) | 0x63n, true);
    }
  }

  private syscalls(): void {
    const table = this.sym("sys_call_table");
    for (let i = 0; i < NR_SYSCALLS; i++) {
      const target =
        this.opts.hookSyscalls?.[i] ?? this.sym(i % 5 === 4 ? "__x64_sys_ni_syscall" : `__x64_sys_call${i}`);
      this.u64(table + BigInt(i * 8), target);
    }
  }

  /** kallsyms in the 6.1 table order, 8-aligned like scripts/kallsyms.c emits it. */
  private kallsyms(): void {
    const syms: Sym[] = [...this.symbols].map(([name, address]) => ({
      name,
      type: name.startsWith("__x64") || name.startsWith("_") ? "T" : "D",
      address,
    }));
    syms.push({ name: "runqueues", type: "A", address: RQ_OFFSET });
    for (let i = 0; i < 600; i++)
      syms.push({ name: `filler_fn_${i}`, type: "t", address: TEXT + 0x4000n + BigInt(i * 0x100) });
    const align = (v: bigint) => (v + 7n) & ~7n;
    const offsets = TEXT + 0x300000n;
    const { blobs } = encode(syms, "absolute-percpu", TEXT, offsets);
    const relativeBase = align(offsets + BigInt(blobs.offsets.length));
    const numSyms = relativeBase + 8n;
    const names = numSyms + 8n;
    const markersAt = align(names + BigInt(blobs.names.length));
    const markers: number[] = [];
    for (let i = 0, pos = 0; i < blobs.numSyms; i++) {
      if (i % 256 === 0) markers.push(pos);
      const b0 = blobs.names[pos];
      pos += b0 & 0x80 ? 2 + ((b0 & 0x7f) | (blobs.names[pos + 1] << 7)) : 1 + b0;
    }
    const tokenTable = align(markersAt + BigInt(markers.length * 4));
    const tokenIndex = align(tokenTable + BigInt(blobs.tokenTable.length));
    const S = this.symbols;
    S.set("kallsyms_offsets", offsets);
    S.set("kallsyms_relative_base", relativeBase);
    S.set("kallsyms_num_syms", numSyms);
    S.set("kallsyms_names", names);
    S.set("kallsyms_token_table", tokenTable);
    S.set("kallsyms_token_index", tokenIndex);
    this.bytes(offsets, blobs.offsets);
    this.u64(relativeBase, TEXT);
    this.u32(numSyms, blobs.numSyms);
    this.bytes(names, blobs.names);
    markers.forEach((m, i) => {
      this.u32(markersAt + BigInt(i * 4), m);
    });
    this.bytes(tokenTable, blobs.tokenTable);
    this.bytes(tokenIndex, blobs.tokenIndex);
    if (tokenIndex + 512n > TEXT + 0x500000n) throw new Error("synthetic kallsyms overflow into BTF");
  }

  /** The exported-symbol table: 12-byte PREL32 entries, then the name strings. */
  private ksymtab(): void {
    const names = [
      "init_task",
      "phys_base",
      "page_offset_base",
      "init_pid_ns",
      "__per_cpu_offset",
      "nr_cpu_ids",
      "system_state",
    ];
    for (let i = 0; i < 20; i++) names.push(`filler_fn_${i}`);
    const table = TEXT + 0x600000n;
    let str = table + BigInt(names.length * 12);
    names.forEach((name, i) => {
      const e = table + BigInt(i * 12);
      const target = name.startsWith("filler") ? TEXT + 0x4000n + BigInt(i * 0x100) : this.sym(name);
      this.u32(e, Number(target - e));
      this.u32(e + 4n, Number(str - (e + 4n)));
      this.u32(e + 8n, 0);
      this.bytes(str, Buffer.from(`${name}\0`, "latin1"));
      str += BigInt(name.length + 1);
    });
  }

  private writeTask(va: bigint, t: TaskSpec): void {
    const T = L.task;
    this.u32(va + BigInt(T.state), t.state ?? 0);
    this.u32(va + BigInt(T.flags), t.kthread ? 0x00200000 : 0);
    this.u32(va + BigInt(T.pid), t.pid);
    this.u32(va + BigInt(T.tgid), t.threadOf ?? t.pid);
    const comm = Buffer.alloc(16);
    comm.write(t.comm.slice(0, 15), "latin1");
    this.bytes(va + BigInt(T.comm), comm);
    const cred = this.alloc(L.cred.size);
    this.u32(cred + BigInt(L.cred.uid), t.uid ?? 0);
    this.u32(cred + BigInt(L.cred.euid), t.uid ?? 0);
    this.u64(va + BigInt(T.cred), cred);
    this.u64(va + BigInt(T.cred - 8), cred);
  }

  private populate(): void {
    const T = L.task;
    const init = this.sym("init_task");
    this.writeTask(init, { pid: 0, comm: "swapper/0", kthread: true });
    this.u64(init + BigInt(T.activeMm), this.sym("init_mm"));
    this.u64(this.sym("init_mm") + BigInt(L.mm.pgd), this.sym("init_top_pgt"));
    this.u64(init + BigInt(T.groupLeader), init);
    this.tasks.set(0, init);
    const specs = this.opts.tasks ?? DEFAULT_TASKS;
    for (const t of specs) {
      const va = this.alloc(T.size);
      this.writeTask(va, t);
      this.tasks.set(t.threadOf !== undefined ? -t.pid : t.pid, va);
    }
    // Parents and leaders (after all tasks exist), then the task list of leaders in order.
    const list: bigint[] = [];
    for (const t of specs) {
      const va = this.tasks.get(t.threadOf !== undefined ? -t.pid : t.pid) as bigint;
      const leader = t.threadOf !== undefined ? (this.tasks.get(t.threadOf) as bigint) : va;
      this.u64(va + BigInt(T.groupLeader), leader);
      this.u64(va + BigInt(T.realParent), this.tasks.get(t.ppid ?? 1) ?? init);
      if (t.threadOf === undefined && !t.hidden) list.push(va);
    }
    this.linkList(
      init + BigInt(T.tasks),
      list.map((v) => v + BigInt(T.tasks)),
    );
    this.pidIdr(specs);
    const rq = PAGE_OFFSET_BASE + BigInt(PERCPU_PA);
    this.u64(rq + BigInt(L.rq.idle), init);
    const running = this.opts.running;
    this.u64(rq + BigInt(L.rq.curr), running === undefined ? init : (this.tasks.get(running) as bigint));
    this.modules();
  }

  /** Links list_heads circularly: head -> a -> b -> ... -> head. */
  linkList(head: bigint, nodes: bigint[]): void {
    const all = [head, ...nodes];
    all.forEach((n, i) => {
      this.u64(n, all[(i + 1) % all.length]);
      this.u64(n + 8n, all[(i + all.length - 1) % all.length]);
    });
  }

  private pidIdr(specs: TaskSpec[]): void {
    // One xa_node at shift 6 over two leaves at shift 0: pids 0..4095.
    const X = L.xaNode;
    const top = this.alloc(X.size);
    this.dv.setUint8(this.pa(top + BigInt(X.shift)), 6);
    const leaves = new Map<number, bigint>();
    for (const t of specs) {
      const pidStruct = this.alloc(L.pid.size);
      this.u32(pidStruct + BigInt(L.pid.numbers), t.pid);
      const task = this.tasks.get(t.threadOf !== undefined ? -t.pid : t.pid) as bigint;
      this.u64(pidStruct + BigInt(L.pid.tasks), task + BigInt(L.task.pidLinks));
      const hi = t.pid >> 6;
      let leaf = leaves.get(hi);
      if (leaf === undefined) {
        leaf = this.alloc(X.size);
        leaves.set(hi, leaf);
        this.u64(top + BigInt(X.slots + hi * 8), leaf + 2n);
      }
      this.u64(leaf + BigInt(X.slots + (t.pid & 63) * 8), pidStruct);
    }
    this.u64(this.sym("init_pid_ns") + BigInt(L.pidNs.idr + L.xarray.head), top + 2n);
  }

  private modules(): void {
    const M = L.module;
    const vas: bigint[] = [];
    for (const m of this.opts.modules ?? DEFAULT_MODULES) {
      const va = MODULES_VA + BigInt(this.moduleNext);
      this.moduleNext += 0x1000 + m.size;
      const name = Buffer.alloc(56);
      name.write(m.name, "latin1");
      this.bytes(va + BigInt(M.name), name);
      this.u64(va + BigInt(M.coreBase), va + 0x1000n);
      this.u32(va + BigInt(M.coreSize), m.size);
      this.u32(va + BigInt(M.initSize), m.initSize ?? 0);
      vas.push(va);
    }
    this.moduleVas.push(...vas);
    this.linkList(
      this.sym("modules"),
      vas.map((v) => v + BigInt(M.list)),
    );
  }

  private vmcoreinfo(): void {
    const hex = (v: bigint) => v.toString(16);
    const text = [
      "OSRELEASE=6.1.0-synthetic",
      "BUILD-ID=00112233445566778899aabbccddeeff00112233",
      "PAGESIZE=4096",
      `SYMBOL(_stext)=${hex(this.sym("_stext"))}`,
      `SYMBOL(init_top_pgt)=${hex(this.sym("init_top_pgt"))}`,
      ...["num_syms", "names", "token_table", "token_index", "offsets", "relative_base"].map(
        (n) => `SYMBOL(kallsyms_${n})=${hex(this.sym(`kallsyms_${n}`))}`,
      ),
      `NUMBER(phys_base)=${PHYS_BASE}`,
      "NUMBER(pgtable_l5_enabled)=0",
      ...(this.opts.vmcoreinfoExtra ?? []),
      `KERNELOFFSET=${hex(KASLR)}`,
      "",
    ].join("\n");
    const note = 3 * MiB + 0x40;
    this.dv.setUint32(note, 11, true);
    this.dv.setUint32(note + 4, text.length, true);
    this.ram.set(Buffer.from("VMCOREINFO\0\0"), note + 12);
    this.ram.set(Buffer.from(text), note + 24);
  }
}

/**
 * What the memory monitor sees of a guest's kernel in one round, and the pure comparison of a
 * round with the previous one and with the baseline taken at start (no I/O here: the monitor
 * reads, this decides what is worth an alert).
 *
 * What is compared with what:
 * - processes and modules: with the previous round (what started, exited, was loaded or
 *   unloaded since);
 * - hidden tasks, syscall-table findings and kernel-text changes: persistent conditions,
 *   alerted once when they appear and once when they are gone (not every period);
 * - syscall findings and kernel text are judged against the baseline (a finding the kernel
 *   already had at start, say a legitimate trampoline, is not repeated).
 */
import type { Evidence, Severity } from "../alert.ts";

export interface ProcEntry {
  readonly comm: string;
  readonly ppid: number;
  readonly uid: number | null;
  readonly kernelThread: boolean;
}

export interface HiddenEntry {
  readonly pid: number;
  readonly tgid: number;
  readonly comm: string;
  readonly seenIn: readonly string[];
}

export interface SyscallEntry {
  readonly nr: number;
  readonly address: string;
  readonly problem: string;
  readonly symbol: string | null;
}

export interface MemorySnapshot {
  /** The kernel instance (build + KASLR placement): another one means the guest rebooted. */
  readonly kernelKey: string;
  readonly processes: ReadonlyMap<number, ProcEntry>;
  readonly modules: ReadonlyMap<string, { readonly base: string; readonly size: number }>;
  readonly hidden: readonly HiddenEntry[];
  readonly syscalls: readonly SyscallEntry[];
  /** Kernel-text chunks that differ from the baseline's, with the symbol at each one's start. */
  readonly textChanged: readonly { readonly offset: number; readonly symbol: string | null }[];
}

export interface Finding {
  readonly kind:
    | "processes-changed"
    | "hidden-task"
    | "hidden-task-gone"
    | "syscall-hooked"
    | "syscall-restored"
    | "kernel-text-changed"
    | "kernel-text-restored"
    | "modules-changed"
    | "findings-capped";
  readonly severity: Severity;
  readonly summary: string;
  readonly evidence: Evidence;
}

/** Per-round caps on one-alert-per-item findings (a guest cannot make a round emit thousands). */
export const MAX_ITEM_FINDINGS = 16;

const procText = (pid: number, p: ProcEntry) =>
  `${pid} ${p.kernelThread ? `[${p.comm}]` : p.comm} (ppid ${p.ppid}, uid ${p.uid ?? "?"})`;
const syscallKey = (s: SyscallEntry) => `${s.nr}:${s.address}`;
const hiddenKey = (h: HiddenEntry) => `${h.pid}:${h.comm}`;
const textKey = (t: MemorySnapshot["textChanged"]) => t.map((c) => c.offset).join(",");

/**
 * The findings of `cur` against the previous round (`prev`, null on the first round after a
 * baseline) and the baseline. Items past MAX_ITEM_FINDINGS of one kind become one
 * findings-capped finding with their count.
 */
export function compareSnapshots(
  baseline: MemorySnapshot,
  prev: MemorySnapshot | null,
  cur: MemorySnapshot,
): Finding[] {
  const out: Finding[] = [];
  const before = prev ?? baseline;
  const capped = (kind: Finding["kind"], items: Finding[]) => {
    out.push(...items.slice(0, MAX_ITEM_FINDINGS));
    if (items.length > MAX_ITEM_FINDINGS)
      out.push({
        kind: "findings-capped",
        severity: "warning",
        summary: `${items.length - MAX_ITEM_FINDINGS} more ${kind} findings this round not alerted one by one`,
        evidence: { of: kind, total: items.length, alerted: MAX_ITEM_FINDINGS },
      });
  };

  // Processes: what started and exited since the previous round (a pid reused by another
  // program counts as both).
  const started: string[] = [];
  const exited: string[] = [];
  for (const [pid, p] of cur.processes) {
    const q = before.processes.get(pid);
    if (!q || q.comm !== p.comm) started.push(procText(pid, p));
  }
  for (const [pid, p] of before.processes) {
    const q = cur.processes.get(pid);
    if (!q || q.comm !== p.comm) exited.push(procText(pid, p));
  }
  if (started.length + exited.length > 0)
    out.push({
      kind: "processes-changed",
      severity: "info",
      summary: `processes: ${started.length} started, ${exited.length} exited (${cur.processes.size} now)`,
      evidence: { started, exited, startedCount: started.length, exitedCount: exited.length },
    });

  // Hidden tasks: new ones are critical; ones that are no longer hidden are reported once.
  const wasHidden = new Set((prev?.hidden ?? baseline.hidden).map(hiddenKey));
  const isHidden = new Set(cur.hidden.map(hiddenKey));
  capped(
    "hidden-task",
    cur.hidden
      .filter((h) => !wasHidden.has(hiddenKey(h)))
      .map((h) => ({
        kind: "hidden-task" as const,
        severity: "critical" as const,
        summary: `hidden task: pid ${h.pid} (${h.comm}) is not on the task list (seen in ${h.seenIn.join(", ")})`,
        evidence: { pid: h.pid, tgid: h.tgid, comm: h.comm, seenIn: [...h.seenIn] },
      })),
  );
  if (prev)
    for (const h of prev.hidden)
      if (!isHidden.has(hiddenKey(h)))
        out.push({
          kind: "hidden-task-gone",
          severity: "info",
          summary: `pid ${h.pid} (${h.comm}) is no longer hidden`,
          evidence: { pid: h.pid, comm: h.comm },
        });

  // Syscall table: findings the baseline did not have.
  const inBaseline = new Set(baseline.syscalls.map(syscallKey));
  const hooked = (s: MemorySnapshot) => s.syscalls.filter((x) => !inBaseline.has(syscallKey(x)));
  const wasHooked = new Set(prev ? hooked(prev).map(syscallKey) : []);
  const nowHooked = hooked(cur);
  capped(
    "syscall-hooked",
    nowHooked
      .filter((s) => !wasHooked.has(syscallKey(s)))
      .map((s) => ({
        kind: "syscall-hooked" as const,
        severity: "critical" as const,
        summary: `syscall ${s.nr} hooked: entry points to ${s.symbol ?? s.address} (${s.problem})`,
        evidence: { nr: s.nr, address: s.address, problem: s.problem, symbol: s.symbol },
      })),
  );
  const nowKeys = new Set(nowHooked.map(syscallKey));
  if (prev)
    for (const s of hooked(prev))
      if (!nowKeys.has(syscallKey(s)))
        out.push({
          kind: "syscall-restored",
          severity: "info",
          summary: `syscall ${s.nr} entry no longer points to ${s.symbol ?? s.address}`,
          evidence: { nr: s.nr, address: s.address },
        });

  // Kernel text: against the baseline; alerted when the set of changed chunks changes.
  const prevText = prev ? textKey(prev.textChanged) : "";
  if (textKey(cur.textChanged) !== prevText) {
    if (cur.textChanged.length > 0)
      out.push({
        kind: "kernel-text-changed",
        severity: "critical",
        summary: `kernel text differs from the baseline in ${cur.textChanged.length} chunk(s), at ${cur.textChanged
          .slice(0, 4)
          .map((c) => c.symbol ?? `+0x${c.offset.toString(16)}`)
          .join(", ")}`,
        evidence: {
          chunks: cur.textChanged.map((c) => `+0x${c.offset.toString(16)} ${c.symbol ?? "?"}`),
          count: cur.textChanged.length,
        },
      });
    else
      out.push({
        kind: "kernel-text-restored",
        severity: "info",
        summary: "kernel text matches the baseline again",
        evidence: {},
      });
  }

  // Modules: loaded and unloaded since the previous round.
  const loaded = [...cur.modules.keys()].filter((m) => !before.modules.has(m));
  const unloaded = [...before.modules.keys()].filter((m) => !cur.modules.has(m));
  if (loaded.length + unloaded.length > 0)
    out.push({
      kind: "modules-changed",
      severity: "warning",
      summary: `kernel modules: ${loaded.length} loaded (${loaded.slice(0, 4).join(", ")}), ${unloaded.length} unloaded`,
      evidence: { loaded, unloaded },
    });
  return out;
}

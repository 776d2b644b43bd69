/**
 * CPU priority of the control path against the guests it manages.
 *
 * On a host VM the guests' vCPU threads are busy by nature (under TCG even more so), while
 * the agents and the orchestrator mostly sleep and then must answer within milliseconds: an
 * instant handover's pause is a few QMP and HTTP hops between them (measured: QEMU's own
 * stop-to-complete 1-40 ms, the hops 30-190 ms of waiting for a core behind 8 busy guests).
 * So, as a hypervisor host gives its management threads precedence over vCPUs, a
 * control-plane process raises its own priority (nice, when allowed: root or
 * CAP_SYS_NICE), starts guest QEMUs at its original priority, and lends its priority to
 * the two QEMUs of a handover only for the switch (the source until it stops, the
 * destination until it runs the guest).
 *
 * Linux's nice is per thread: every call applies it to each thread of the process.
 * `NESTCLOUD_CONTROL_PRIORITY` (nice steps above the guests, default 10, 0 = off).
 */
import { readdirSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

const DEFAULT_STEPS = 10;

interface Levels {
  /** The guests' nice: the process's own before it raised itself. */
  guest: number;
  /** The control path's nice (equal to guest when not raised). */
  control: number;
}

let levels: Levels | null = null;

function steps(): number {
  const raw = process.env.NESTCLOUD_CONTROL_PRIORITY;
  if (raw === undefined || raw === "") return DEFAULT_STEPS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 39)
    throw new Error(`NESTCLOUD_CONTROL_PRIORITY must be an integer from 0 to 39 (nice steps), not "${raw}"`);
  return n;
}

/**
 * Sets the nice value of every thread of `pid`. False when the process is gone or the
 * change is not allowed (raising priority needs CAP_SYS_NICE); threads that end meanwhile
 * are skipped.
 */
export function setProcessNice(pid: number, nice: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  let ok = tids.length > 0;
  for (const tid of tids) {
    try {
      setPriority(Number(tid), nice);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") ok = false;
    }
  }
  return ok;
}

/**
 * Raises this process (every thread) above the guests it will start, once. Returns the
 * levels in force; `raised` false when it was off or not allowed (then guests and control
 * share one level and nothing else changes).
 */
export function raiseControlPriority(): Levels & { raised: boolean } {
  if (levels) return { ...levels, raised: levels.control < levels.guest };
  const guest = getPriority();
  const want = Math.max(-20, guest - steps());
  const raised = want < guest && setProcessNice(process.pid, want);
  if (!raised) setProcessNice(process.pid, guest);
  levels = { guest, control: raised ? want : guest };
  return { ...levels, raised };
}

/** The levels in force: both equal to this process's nice when it never raised itself. */
export function priorityLevels(): Levels {
  if (levels) return levels;
  const own = getPriority();
  return { guest: own, control: own };
}

/**
 * A process this one started, at the guests' level (it inherited the control level: QEMUs,
 * security VMs' services, image builds) or lent the control level for a switch. A no-op
 * when this process never raised itself.
 */
export function setLevel(pid: number, level: "guest" | "control"): boolean {
  const l = priorityLevels();
  if (l.control === l.guest) return true;
  return setProcessNice(pid, level === "control" ? l.control : l.guest);
}

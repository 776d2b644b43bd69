/** Small readers of /proc and /sys the agents report from. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { PoolFileView } from "./api-types.ts";

/** Clock ticks per second; 100 on every Linux configuration Node runs on (USER_HZ). */
const CLK_TCK = 100;

/** utime + stime of a process in seconds, or null if it is gone. */
export function cpuSeconds(pid: number | null | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 (utime, stime), counted from 1 with the command name as field 2.
    return (Number(f[14 - 3]) + Number(f[15 - 3])) / CLK_TCK;
  } catch {
    return null;
  }
}

/**
 * Counters of an interface as this process sees /sys/class/net: inside a server's network
 * namespace (`ip netns exec` remounts /sys for it) that is the server's own interface.
 */
export function ifaceCounters(name: string): { name: string; rxBytes: number; txBytes: number } | null {
  try {
    const dir = join("/sys/class/net", name, "statistics");
    return {
      name,
      rxBytes: Number(readFileSync(join(dir, "rx_bytes"), "utf8")),
      txBytes: Number(readFileSync(join(dir, "tx_bytes"), "utf8")),
    };
  } catch {
    return null;
  }
}

export function poolFiles(dir: string): PoolFileView[] {
  try {
    return readdirSync(dir)
      .filter((n) => n.endsWith(".ram"))
      .map((name) => {
        const st = statSync(join(dir, name));
        return { name, sizeBytes: st.size, allocatedBytes: st.blocks * 512 };
      });
  } catch {
    return [];
  }
}

/** Wall clock in fractional milliseconds (QMP event timestamps are microseconds of wall time). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function qmpTimestampMs(ts: { seconds: number; microseconds: number } | undefined): number | null {
  return ts ? ts.seconds * 1000 + ts.microseconds / 1000 : null;
}

/**
 * A guest's CPU load from its QEMU process's CPU seconds (utime + stime, which the host-VM
 * agent reports per guest): the rate between two readings, in cores. Under TCG one vCPU
 * is one QEMU thread, so a busy vCPU shows as about one core, an idle one as a few percent.
 */

/** Readings closer than this give rates too coarse to use (the kernel counts in 10 ms ticks). */
const MIN_WINDOW_SECONDS = 1.5;

interface Reading {
  /** The QEMU process the reading is of: a migrated or restarted guest starts over. */
  pid: number;
  cpuSeconds: number;
  at: number;
}

export class CpuMeter {
  private readonly ref = new Map<string, Reading>();
  private readonly cores = new Map<string, number>();

  /**
   * Feeds one reading; returns the guest's cores in use (the last rate while the window is
   * too short or the guest just moved to a new QEMU; 0 before any rate exists).
   */
  observe(guest: string, pid: number | null, cpuSeconds: number | null, at: number): number {
    if (pid === null || cpuSeconds === null) return this.cores.get(guest) ?? 0;
    const r = this.ref.get(guest);
    if (!r || r.pid !== pid || cpuSeconds < r.cpuSeconds) {
      this.ref.set(guest, { pid, cpuSeconds, at });
    } else if (at - r.at >= MIN_WINDOW_SECONDS) {
      this.cores.set(guest, Math.max(0, (cpuSeconds - r.cpuSeconds) / (at - r.at)));
      this.ref.set(guest, { pid, cpuSeconds, at });
    }
    return this.cores.get(guest) ?? 0;
  }

  /** Drops guests that no longer exist. */
  retain(guests: ReadonlySet<string>): void {
    for (const g of [...this.ref.keys()]) {
      if (!guests.has(g)) {
        this.ref.delete(g);
        this.cores.delete(g);
      }
    }
  }
}

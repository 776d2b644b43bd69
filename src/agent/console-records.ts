/**
 * Reads what a guest prints on its serial console (pure): readiness, heartbeats, and the
 * dirty and verify workloads' reports (see scripts/guest/init and workload.c).
 */
import type { Heartbeat, VerifyState } from "./api-types.ts";

const READY = /NESTCLOUD-READY (\S+)/;
const HB = /NESTCLOUD-HB (\d+) ([\d.]+)/;
const VERIFY_OK = /NESTCLOUD-VERIFY ok (\d+)/;
const VERIFY_LOST = /NESTCLOUD-VERIFY LOST/;
const DIRTY = /NESTCLOUD-DIRTY pages=(\d+) mibs=([\d.]+)/;

export class ConsoleRecords {
  readyBootId: string | null = null;
  heartbeat: Heartbeat | null = null;
  verify: VerifyState | null = null;
  dirty: { pages: number; mibs: number } | null = null;
  /** Heartbeat sequence numbers that went backwards or restarted (a reboot). */
  heartbeatResets = 0;

  feed(line: string, now: number): void {
    let m = HB.exec(line);
    if (m) {
      const seq = Number(m[1]);
      if (this.heartbeat && seq < this.heartbeat.seq) this.heartbeatResets++;
      this.heartbeat = { seq, uptime: Number(m[2]), at: now };
      return;
    }
    if ((m = VERIFY_OK.exec(line))) {
      const v = this.verifyState();
      v.sweeps = Number(m[1]);
      v.okLines++;
      v.last = line.trim();
      return;
    }
    if (VERIFY_LOST.test(line)) {
      const v = this.verifyState();
      v.lostLines++;
      v.last = line.trim();
      return;
    }
    if ((m = DIRTY.exec(line))) {
      this.dirty = { pages: Number(m[1]), mibs: Number(m[2]) };
      return;
    }
    if ((m = READY.exec(line))) this.readyBootId = m[1];
  }

  /** Carries what the source saw into a new console (after a migration), so counts accumulate. */
  inherit(prev: ConsoleRecords): void {
    this.readyBootId ??= prev.readyBootId;
    this.heartbeat ??= prev.heartbeat;
    if (prev.verify) {
      const v = this.verifyState();
      v.okLines += prev.verify.okLines;
      v.lostLines += prev.verify.lostLines;
      v.sweeps = Math.max(v.sweeps, prev.verify.sweeps);
      v.last ??= prev.verify.last;
    }
    this.dirty ??= prev.dirty;
  }

  private verifyState(): VerifyState {
    this.verify ??= { sweeps: 0, okLines: 0, lostLines: 0, last: null };
    return this.verify;
  }
}

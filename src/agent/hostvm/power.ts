/**
 * The virtual AMT's decisions at the host-VM agent, apart from the I/O: the QEMU options
 * that keep a guest's QEMU alive whatever its OS does, the guest's power state from QEMU's
 * run state, what a QMP event means for the event log, the rescue command line, and the
 * bounded log of what guests did.
 */
import type { BootMode, GuestPowerEvent, GuestPowerEventKind, PowerState } from "../api-types.ts";

/**
 * -no-shutdown: a guest that powers off leaves QEMU alive ("shutdown" state), so it can be
 * powered on again (system_reset + cont). pvpanic + panic=pause: a kernel panic is reported
 * (GUEST_PANICKED) and the guest stays stopped for a reset, instead of rebooting unseen.
 */
export const POWER_QEMU_ARGS: readonly string[] = [
  "-no-shutdown",
  "-device",
  "pvpanic",
  "-action",
  "panic=pause",
];

/** The boot a guest is configured for; rescue adds its command-line arguments. */
export interface BootChoice {
  readonly mode: BootMode;
  readonly append?: string;
}

/** The kernel arguments a boot choice adds to the image's (the guest can tell it booted rescue). */
export function bootAppend(boot: BootChoice | undefined): string | undefined {
  if (!boot || boot.mode === "normal") return undefined;
  return ["nestcloud.rescue=1", boot.append ?? ""].filter((s) => s !== "").join(" ");
}

/**
 * The guest's power state: QEMU's run state says panicked and powered off by the guest;
 * a hard power off is QEMU stopped by the agent (`heldOff`), which QEMU calls "paused".
 */
export function powerStateOf(qemuStatus: string | null, heldOff: boolean): PowerState {
  if (qemuStatus === "guest-panicked") return "panicked";
  if (qemuStatus === "shutdown" || heldOff) return "off";
  return "on";
}

/** What a QMP event means for the guest's event log (null: nothing the guest did). */
export function guestEventOf(e: {
  event: string;
  data?: Record<string, unknown>;
}): { kind: GuestPowerEventKind; detail: string } | null {
  const d = e.data ?? {};
  switch (e.event) {
    case "SHUTDOWN":
      // guest: false is QEMU's own (a quit, a host signal): not the guest's doing.
      return d.guest === true
        ? { kind: "guest-powered-off", detail: `reason ${String(d.reason ?? "?")}` }
        : null;
    case "RESET":
      return d.guest === true ? { kind: "guest-reset", detail: `reason ${String(d.reason ?? "?")}` } : null;
    case "GUEST_PANICKED": {
      const info = d.info as { type?: string } | undefined;
      return {
        kind: "guest-panicked",
        detail: `action ${String(d.action ?? "?")}${info?.type ? `, ${info.type}` : ""}`,
      };
    }
    default:
      return null;
  }
}

/** The agent's log of what its guests did, numbered, bounded (the controller drains it). */
export class GuestPowerLog {
  private seq = 0;
  private readonly events: GuestPowerEvent[] = [];

  constructor(private readonly max = 1000) {}

  push(guestId: string, kind: GuestPowerEventKind, detail: string, at = Date.now() / 1000): GuestPowerEvent {
    const e: GuestPowerEvent = { seq: ++this.seq, guestId, at, kind, detail };
    this.events.push(e);
    if (this.events.length > this.max) this.events.splice(0, this.events.length - this.max);
    return e;
  }

  /** Events after `seq` (at most `limit`), oldest first. */
  after(seq: number, limit = 500): { events: GuestPowerEvent[]; last: number } {
    // A number beyond ours was handed out by a predecessor agent: everything here is new.
    if (seq > this.seq) seq = 0;
    const events = this.events.filter((e) => e.seq > seq).slice(0, limit);
    return { events, last: events.length > 0 ? events[events.length - 1].seq : Math.max(seq, 0) };
  }

  get lastSeq(): number {
    return this.seq;
  }
}

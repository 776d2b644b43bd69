/**
 * A security VM's alert log: the last `capacity` alerts of all its monitors, numbered, so a
 * reader (the agent's API, `nestcloud secvm alerts --follow`) can ask for what came after the
 * last one it saw. Bounded: a monitor flooded by its guest evicts the oldest alerts, never
 * grows the log; evictions are counted (a reader that fell behind sees how many it missed).
 */
import type { Alert } from "./alert.ts";

export type LoggedAlert = Alert & { readonly seq: number };

export interface AlertPage {
  alerts: LoggedAlert[];
  /** Pass as `after` to get what follows. */
  next: number;
  /** Alerts after `after` that were evicted before this read (the reader missed them). */
  missed: number;
}

export class AlertLog {
  private readonly ring: LoggedAlert[] = [];
  private seq = 0;
  /** Alerts pushed out by newer ones. */
  evicted = 0;

  constructor(readonly capacity = 2000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`alert log capacity ${capacity}`);
  }

  push(a: Alert): LoggedAlert {
    const logged = { ...a, seq: ++this.seq };
    this.ring.push(logged);
    if (this.ring.length > this.capacity) {
      this.ring.shift();
      this.evicted++;
    }
    return logged;
  }

  /** The newest sequence number given out (0: none yet). */
  get last(): number {
    return this.seq;
  }

  get size(): number {
    return this.ring.length;
  }

  /** Up to `limit` alerts with seq > after, oldest first. */
  since(after: number, limit = 500): AlertPage {
    const first = this.ring[0]?.seq ?? this.seq + 1;
    const missed = Math.max(0, first - after - 1);
    const start = Math.max(0, after + 1 - first);
    const alerts = this.ring.slice(start, start + Math.max(0, limit));
    return { alerts, next: alerts.at(-1)?.seq ?? Math.max(after, first - 1), missed };
  }
}

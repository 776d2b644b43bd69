/**
 * The cloud's size and cost over time, kept by the controller so that a chart opened late
 * still shows the past: one sample per change (and at least one per interval), bounded in the
 * store, downsampled on the way out.
 */
import type { HistorySample } from "./api/schemas/cloud.ts";
import type { Store } from "./store/connect.ts";

export type { HistorySample };

/** Rows kept in the store; older ones are dropped. */
export const MAX_HISTORY_ROWS = 20_000;
/** Points one answer holds at most. */
export const MAX_HISTORY_POINTS = 2_000;

/**
 * At most `points` samples over the same span: the span before the last sample is cut into
 * `points - 1` equal buckets, each giving its peak host-VM count and cost (a chart must not
 * hide a spike) at the time of its first sample; the last sample is kept as it is.
 */
export function downsample(samples: readonly HistorySample[], points: number): HistorySample[] {
  if (samples.length <= points) return [...samples];
  const last = samples[samples.length - 1];
  const t0 = samples[0].at;
  const span = last.at - t0 || 1;
  const buckets = Math.max(1, points - 1);
  const out: HistorySample[] = [];
  let bucket = -1;
  for (const s of samples.slice(0, -1)) {
    const b = Math.min(buckets - 1, Math.floor(((s.at - t0) / span) * buckets));
    const prev = out[out.length - 1];
    if (b !== bucket || !prev) {
      out.push(s);
      bucket = b;
    } else {
      out[out.length - 1] = {
        at: prev.at,
        hostVms: Math.max(prev.hostVms, s.hostVms),
        costPerHour: Math.max(prev.costPerHour, s.costPerHour),
        guests: s.guests,
      };
    }
  }
  out.push(last);
  return out;
}

/** Records samples in the store (leader only) and reads them back. */
export class History {
  private last: HistorySample | undefined;
  private sinceTrim = 0;

  /** @param everySeconds a sample is stored at least this often (provider time) even if nothing changed */
  constructor(
    private readonly store: Store,
    private readonly everySeconds: number,
  ) {}

  async record(s: HistorySample): Promise<void> {
    const l = this.last ?? (await this.newest());
    if (
      l &&
      s.at <= l.at + this.everySeconds &&
      l.hostVms === s.hostVms &&
      l.costPerHour === s.costPerHour &&
      l.guests === s.guests
    )
      return;
    if (l && s.at <= l.at) return; // the provider's clock did not move
    await this.store.repos.history.insert(s);
    this.last = s;
    if (++this.sinceTrim >= 200) {
      this.sinceTrim = 0;
      await this.trim();
    }
  }

  private async newest(): Promise<HistorySample | undefined> {
    return this.store.repos.history.newest();
  }

  /** Drops all but the newest MAX_HISTORY_ROWS samples. */
  async trim(): Promise<void> {
    await this.store.repos.history.keepNewest(MAX_HISTORY_ROWS);
  }

  /** Samples from `since` on (provider time), at most `points` of them. */
  async read(points: number, since = Number.NEGATIVE_INFINITY): Promise<HistorySample[]> {
    const rows = await this.store.repos.history.since(Number.isFinite(since) ? since : -1e300);
    return downsample(rows, Math.min(points, MAX_HISTORY_POINTS));
  }
}

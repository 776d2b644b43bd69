/**
 * How long each security VM / target pair spent on each monitoring channel during a run
 * (issue 13): advanced to the current time before every placement change and at the end, so
 * the shares are exact in virtual time. The simulated data plane makes the new channel before
 * it breaks the old one (issue 13 item 2), so a move alone leaves no gap: "none" is time a
 * side was not placed.
 */
import type { Cloud } from "../model/index.ts";
import {
  accountChannels,
  type ChannelSeconds,
  emptyChannelSeconds,
  type MonitoringPair,
  monitoringPairs,
} from "../planner/index.ts";

export class PairTime {
  readonly pairs: readonly MonitoringPair[];
  readonly seconds: ChannelSeconds = emptyChannelSeconds();
  private last = 0;

  constructor(private readonly cloud: Cloud) {
    this.pairs = monitoringPairs(cloud);
  }

  /** Accounts the placement as it stood from the last call until t. */
  advance(t: number): void {
    if (this.pairs.length === 0 || t <= this.last) return;
    accountChannels(this.cloud, this.pairs, t - this.last, this.seconds);
    this.last = t;
  }
}

/** The shares of pair-time per channel (0 when there are no pairs). */
export function channelShares(s: ChannelSeconds): ChannelSeconds {
  const total = s.local + s.direct + s.remote + s.none;
  const f = (x: number) => (total > 0 ? x / total : 0);
  return { local: f(s.local), direct: f(s.direct), remote: f(s.remote), none: f(s.none) };
}

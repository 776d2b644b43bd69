/**
 * The dashboard's view of security-VM monitoring, decided apart from the page: which alerts the
 * panel keeps (newest first, deduplicated, bounded, under its filter) and each pair's channel
 * as events switch it (a switch kept on the pair for a while, to be shown).
 */
import type { Channel, ControllerAlert, MonitorKind, SecurityVmPair, Severity } from "./types.ts";

/** Alerts the panel keeps (the controller keeps 10,000; older ones are paged in the API). */
export const ALERTS_KEPT = 200;
/** How long a pair's last switch is shown beside its channel. */
export const SWITCH_SHOWN_MS = 20_000;

export interface AlertFilter {
  readonly severity?: Severity | undefined;
  readonly monitor?: MonitorKind | undefined;
}

export function alertMatches(a: ControllerAlert, f: AlertFilter): boolean {
  return (
    (f.severity === undefined || a.severity === f.severity) &&
    (f.monitor === undefined || a.monitor === f.monitor)
  );
}

/** The query of GET /api/alerts for a filter, after a cursor. */
export function alertsQuery(f: AlertFilter, after: number, limit = 1000): string {
  const q = new URLSearchParams({ after: String(after), limit: String(limit) });
  if (f.severity) q.set("severity", f.severity);
  if (f.monitor) q.set("monitor", f.monitor);
  return `/api/alerts?${q}`;
}

/**
 * `kept` (newest first) with `incoming` added: those under the filter, each id once (the
 * stream replays retained events on reconnecting, a catch-up page may repeat them), newest
 * first by id, at most `cap`.
 */
export function mergeAlerts(
  kept: readonly ControllerAlert[],
  incoming: readonly ControllerAlert[],
  f: AlertFilter,
  cap = ALERTS_KEPT,
): ControllerAlert[] {
  const fresh = incoming.filter((a) => alertMatches(a, f));
  if (fresh.length === 0) return kept as ControllerAlert[];
  const byId = new Map(kept.map((a) => [a.id, a]));
  for (const a of fresh) byId.set(a.id, a);
  return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, cap);
}

/** An `alert` event's data as an alert (undefined: not one). */
export function alertOfEvent(data: Readonly<Record<string, unknown>>): ControllerAlert | undefined {
  return typeof data.id === "number" &&
    typeof data.secvm === "string" &&
    typeof data.target === "string" &&
    typeof data.severity === "string" &&
    typeof data.monitor === "string"
    ? (data as unknown as ControllerAlert)
    : undefined;
}

/** One (security VM, target) pair as the map draws it. */
export interface PairView {
  readonly secvm: string;
  readonly target: string;
  /** null: one side is not placed. */
  readonly channel: Channel | null;
  /** Its last switch seen on the stream (wall ms here), with the channel it left. */
  readonly switched?: { readonly from: Channel | null; readonly at: number };
}

export const pairKey = (secvm: string, target: string) => `${secvm}\u0000${target}`;

/**
 * Pairs as loaded (GET /api/security-vms/:id/channels per security VM) laid over what the
 * stream said: a switch seen after `loadStartedAt` is newer than the load's answer and kept.
 */
export function pairsLoaded(
  loaded: ReadonlyMap<string, readonly SecurityVmPair[]>,
  seen: ReadonlyMap<string, PairView>,
  loadStartedAt: number,
): Map<string, PairView> {
  const out = new Map<string, PairView>();
  for (const [secvm, pairs] of loaded)
    for (const p of pairs) {
      const key = pairKey(secvm, p.target);
      const was = seen.get(key);
      if (was?.switched && was.switched.at > loadStartedAt) out.set(key, was);
      else out.set(key, { secvm, target: p.target, channel: p.channel, switched: was?.switched });
    }
  return out;
}

/** A `secvm.channel` event ({secvm, target, from, to}) applied at `at` (wall ms). */
export function channelSwitched(
  pairs: ReadonlyMap<string, PairView>,
  data: Readonly<Record<string, unknown>>,
  at: number,
): Map<string, PairView> {
  const out = new Map(pairs);
  if (typeof data.secvm !== "string" || typeof data.target !== "string") return out;
  const channel = (data.to ?? null) as Channel | null;
  const from = (data.from ?? null) as Channel | null;
  out.set(pairKey(data.secvm, data.target), {
    secvm: data.secvm,
    target: data.target,
    channel,
    switched: { from, at },
  });
  return out;
}

/** Whether a pair's last switch is still to be shown at `now`. */
export function recentSwitch(p: PairView, now: number): PairView["switched"] {
  return p.switched && now - p.switched.at < SWITCH_SHOWN_MS ? p.switched : undefined;
}

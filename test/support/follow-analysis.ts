// What bench:secvm --follow makes of a run (pure: no I/O): which of the guest's numbered events
// each alert reports, which events around each move went unreported, and the longest interval
// around a move in which a monitor observed nothing. The guest produces three kinds of events,
// one per monitor (test/support/follow-events.ts); a kind whose monitor the pair does not run
// is "not monitored", never "missed", so the figures hold before and after a monitor lands.
import { MONITOR_KINDS, type MonitorKind } from "../../src/monitor/alert.ts";

export type EventKind = MonitorKind;
export const EVENT_KINDS = MONITOR_KINDS;

/** An alert as GET /api/alerts gives it (the fields read here). */
export interface FollowAlert {
  readonly time: number;
  readonly target: string;
  readonly monitor: string;
  readonly evidence: Record<string, unknown>;
}

/** The generator's packets: source port 20000 + n % 40000, destination port base + n / 40000. */
export const PACKET_SRC_BASE = 20000;
export const PACKET_SPAN = 40000;
/** nestcloud's default IDS test-marker rule (src/monitor/network/rules/nestcloud-default.rules). */
export const PACKET_SID = 9000001;

/** The event numbers an alert reports, by kind (none: it reports none of the generator's). */
export function eventsOf(a: FollowAlert, packetDstBase: number): { kind: EventKind; seqs: number[] } | null {
  if (a.monitor === "memory") {
    if (a.evidence.kind !== "processes-changed") return null;
    const seqs: number[] = [];
    for (const s of (a.evidence.started as string[] | undefined) ?? []) {
      const m = /^\d+ ev(\d{5})\b/.exec(s);
      if (m) seqs.push(Number(m[1]));
    }
    return seqs.length ? { kind: "memory", seqs } : null;
  }
  if (a.monitor === "disk") {
    // Whatever the disk monitor names (a path in its evidence or summary): the file's number.
    const seqs = [...JSON.stringify(a.evidence).matchAll(/ncav(\d{5})/g)].map((m) => Number(m[1]));
    return seqs.length ? { kind: "disk", seqs: [...new Set(seqs)] } : null;
  }
  if (a.monitor === "network") {
    const { signatureId, srcPort, destPort, proto } = a.evidence as Record<string, unknown>;
    if (signatureId !== PACKET_SID || typeof srcPort !== "number" || typeof destPort !== "number")
      return null;
    if (typeof proto === "string" && proto.toUpperCase() !== "UDP") return null;
    const lo = srcPort - PACKET_SRC_BASE;
    const hi = destPort - packetDstBase;
    if (lo < 0 || lo >= PACKET_SPAN || hi < 0) return null;
    const seq = hi * PACKET_SPAN + lo;
    return seq > 0 ? { kind: "network", seqs: [seq] } : null;
  }
  return null;
}

/** Each kind's observations: the times of alerts reporting events, and the events reported. */
export interface Observed {
  readonly times: Record<EventKind, number[]>;
  readonly seen: Record<EventKind, Set<number>>;
  /** Kinds whose monitor sent any alert at all (its baseline included): running for the pair. */
  readonly monitored: Set<EventKind>;
}

export function observe(alerts: readonly FollowAlert[], target: string, packetDstBase: number): Observed {
  const times = { memory: [], disk: [], network: [] } as Record<EventKind, number[]>;
  const seen = { memory: new Set(), disk: new Set(), network: new Set() } as Record<EventKind, Set<number>>;
  const monitored = new Set<EventKind>();
  for (const a of alerts) {
    if (a.target !== target) continue;
    if ((EVENT_KINDS as readonly string[]).includes(a.monitor)) monitored.add(a.monitor as EventKind);
    const e = eventsOf(a, packetDstBase);
    if (!e) continue;
    times[e.kind].push(a.time);
    for (const s of e.seqs) seen[e.kind].add(s);
  }
  for (const k of EVENT_KINDS) times[k].sort((x, y) => x - y);
  return { times, seen, monitored };
}

/**
 * The longest interval without an observation that overlaps [from, to]: from the last
 * observation at or before `from` to the first at or after `to`, every step between. Null
 * when there is none before or none after (the monitor never resumed within the record).
 */
export function gapAround(times: readonly number[], from: number, to: number): number | null {
  let i = -1;
  for (let k = 0; k < times.length && times[k] <= from; k++) i = k;
  let j = times.length;
  for (let k = times.length - 1; k >= 0 && times[k] >= to; k--) j = k;
  if (i < 0 || j >= times.length) return null;
  let gap = 0;
  for (let k = i; k < j; k++) gap = Math.max(gap, times[k + 1] - times[k]);
  return gap;
}

/** Intervals between consecutive observations that overlap no move window: the monitor's own rhythm. */
export function steadyIntervals(
  times: readonly number[],
  windows: readonly { from: number; to: number }[],
): number[] {
  const out: number[] = [];
  for (let k = 0; k + 1 < times.length; k++) {
    const [a, b] = [times[k], times[k + 1]];
    if (!windows.some((w) => a < w.to && b > w.from)) out.push(b - a);
  }
  return out;
}

/** One move as the bench recorded it (host ms; event numbers as the guest's logs said). */
export interface MoveRecord {
  readonly scenario: string;
  readonly rep: number;
  /** The request. */
  readonly from: number;
  /** The move applied and the pair's channel and monitor settled at the target's place. */
  readonly to: number;
  readonly channelBefore: string | null;
  readonly channelAfter: string | null;
  /** The guest's own pause (source stopped to destination resumed), max over the guests moved. */
  readonly pauseMs: number | null;
  readonly ok: boolean;
  readonly error?: string;
  /** The last event of each kind the guest had produced just before the request / after the settle. */
  readonly seqBefore: Record<EventKind, number>;
  readonly seqAfter: Record<EventKind, number>;
  /** The monitor's switch as the API gave it after the move (lastMove), when it moved. */
  readonly makeMs?: number | null;
  readonly heldMs?: number | null;
}

export type KindResult =
  | { readonly status: "not monitored"; readonly events: number }
  | { readonly status: "not produced" }
  | {
      readonly status: "monitored";
      readonly events: number;
      readonly missed: number;
      readonly gapMs: number | null;
    };

export interface FollowRow {
  readonly scenario: string;
  readonly channelBefore: string | null;
  readonly channelAfter: string | null;
  readonly moves: number;
  readonly failed: number;
  /** Longest unobserved interval, max over the moves and the monitored kinds (null: never resumed). */
  readonly gapMs: number | null;
  /** The guest's own pause, max over the moves. */
  readonly pauseMs: number | null;
  /**
   * How much longer than the guest's own pause each move's gap was, max over the moves (the
   * target: at most 50 ms); null when a move's gap or pause is unknown.
   */
  readonly excessMs: number | null;
  /** Events around the moves that no alert reported, summed over the monitored kinds. */
  readonly missedEvents: number;
  readonly kinds: Record<EventKind, KindResult>;
  readonly maxHeldMs: number | null;
  readonly missedSeqs: Record<EventKind, number[]>;
}

const maxOf = (xs: readonly (number | null | undefined)[]): number | null => {
  const v = xs.filter((x): x is number => typeof x === "number");
  return v.length ? Math.max(...v) : null;
};

/**
 * Rows per (scenario, channel before, channel after). `produced` says which kinds the guest
 * could produce at all (a guest without a NIC sends no packet).
 */
export function followRows(
  moves: readonly MoveRecord[],
  obs: Observed,
  produced: Record<EventKind, boolean>,
): FollowRow[] {
  const groups = new Map<string, MoveRecord[]>();
  for (const m of moves) {
    const k = `${m.scenario}\u0000${m.channelBefore}\u0000${m.channelAfter}`;
    groups.set(k, [...(groups.get(k) ?? []), m]);
  }
  const rows: FollowRow[] = [];
  for (const group of groups.values()) {
    const ok = group.filter((m) => m.ok);
    const kinds = {} as Record<EventKind, KindResult>;
    const missedSeqs = { memory: [], disk: [], network: [] } as Record<EventKind, number[]>;
    const gaps: (number | null)[] = [];
    const moveGaps = new Map<MoveRecord, (number | null)[]>(ok.map((m) => [m, []]));
    let missedEvents = 0;
    for (const kind of EVENT_KINDS) {
      let events = 0;
      const missed: number[] = [];
      const kindGaps: (number | null)[] = [];
      for (const m of group) {
        for (let s = m.seqBefore[kind] + 1; s <= m.seqAfter[kind]; s++) {
          events++;
          if (!obs.seen[kind].has(s)) missed.push(s);
        }
        if (!m.ok) continue;
        const g = gapAround(obs.times[kind], m.from, m.to);
        kindGaps.push(g);
        if (produced[kind] && obs.monitored.has(kind)) moveGaps.get(m)?.push(g);
      }
      if (!produced[kind]) kinds[kind] = { status: "not produced" };
      else if (!obs.monitored.has(kind)) kinds[kind] = { status: "not monitored", events };
      else {
        // A move whose monitor never resumed within the record is an unbounded gap.
        const gapMs = kindGaps.includes(null) ? null : maxOf(kindGaps);
        kinds[kind] = { status: "monitored", events, missed: missed.length, gapMs };
        missedSeqs[kind] = missed;
        missedEvents += missed.length;
        gaps.push(gapMs);
      }
    }
    const excess = ok.map((m) => {
      const g = moveGaps.get(m) ?? [];
      return g.length === 0 || g.includes(null) || m.pauseMs === null
        ? null
        : (maxOf(g) as number) - m.pauseMs;
    });
    const first = group[0];
    rows.push({
      scenario: first.scenario,
      channelBefore: first.channelBefore,
      channelAfter: first.channelAfter,
      moves: ok.length,
      failed: group.length - ok.length,
      gapMs: gaps.includes(null) ? null : maxOf(gaps),
      pauseMs: maxOf(ok.map((m) => m.pauseMs)),
      excessMs: excess.length === 0 || excess.includes(null) ? null : maxOf(excess),
      missedEvents,
      kinds,
      maxHeldMs: maxOf(ok.map((m) => m.heldMs)),
      missedSeqs,
    });
  }
  return rows;
}

/**
 * Fuses placement evidence into one map (pure: data in, data out, so the controller, tests
 * and the benchmark run the same decisions). Evidence is about pairs of host VMs; keys
 * (hostId-like hints) become pairs within their scope. For each pair the verdict is:
 * - among measurements (confidence >= MEASUREMENT_CONFIDENCE), the newest: a host VM may
 *   have moved, so a fresh probe beats an older conclusive trial that it contradicts (one
 *   it agrees with stands, as the stronger verdict);
 * - else the most trusted hint, then the newest.
 * Together-verdicts join host VMs into groups (one group = one physical server), unless a
 * stronger or newer apart-verdict separates them; every contradiction is reported as a
 * conflict on the host VMs concerned, never silently dropped. Groups are
 * then given server ids (assignServers), keeping earlier ids where members stay together.
 */
import {
  MEASUREMENT_CONFIDENCE,
  type PairEvidence,
  type PlacementEvidence,
  type PlacementSource,
} from "./evidence.ts";

export interface PairVerdict {
  readonly a: string;
  readonly b: string;
  readonly together: boolean;
  readonly source: PlacementSource;
  readonly confidence: number;
  readonly at: number;
}

export interface DiscoveredHostVm {
  readonly hostVm: string;
  /** Opaque name of its group (the smallest host-VM id in it); undefined: nothing known. */
  readonly group: string | undefined;
  /** The strongest verdict that placed it. */
  readonly source: PlacementSource | undefined;
  readonly confidence: number;
  readonly at: number | undefined;
  /** Some evidence puts it apart from a member of its own group. */
  readonly conflict: boolean;
}

export interface FusedPlacement {
  readonly hostVms: readonly DiscoveredHostVm[];
  /** Groups of host VMs on one server each, sorted; singletons known to be alone included. */
  readonly groups: readonly (readonly string[])[];
  readonly verdicts: readonly PairVerdict[];
}

export interface FusionOptions {
  /** Seconds on the evidence's clock. */
  readonly now: number;
  /** Evidence older than this (per source, seconds) is dropped. Default: kept. */
  readonly maxAgeSeconds?: Partial<Record<PlacementSource, number>>;
}

const pairKey = (a: string, b: string) => (a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`);

/** Key evidence as pairs: in each scope the newest key of each host VM against every other's. */
function expandKeys(evidence: readonly PlacementEvidence[]): PairEvidence[] {
  const scopes = new Map<string, Map<string, PlacementEvidence & { kind: "key" }>>();
  const out: PairEvidence[] = [];
  for (const e of evidence) {
    if (e.kind === "pair") {
      if (e.a !== e.b) out.push(e);
      continue;
    }
    const inScope = scopes.get(e.scope) ?? new Map();
    const old = inScope.get(e.hostVm);
    if (!old || old.at <= e.at) inScope.set(e.hostVm, e);
    scopes.set(e.scope, inScope);
  }
  for (const inScope of scopes.values()) {
    const keys = [...inScope.values()].filter((k) => k.key !== "");
    for (let i = 0; i < keys.length; i++) {
      for (let j = i + 1; j < keys.length; j++) {
        const [x, y] = [keys[i]!, keys[j]!];
        out.push({
          kind: "pair",
          a: x.hostVm,
          b: y.hostVm,
          together: x.key === y.key,
          source: x.confidence <= y.confidence ? x.source : y.source,
          confidence: Math.min(x.confidence, y.confidence),
          at: Math.min(x.at, y.at),
        });
      }
    }
  }
  return out;
}

/** Whether `e` beats `best` as the verdict of their pair. */
function beats(e: PairEvidence, best: PairEvidence): boolean {
  const em = e.confidence >= MEASUREMENT_CONFIDENCE;
  const bm = best.confidence >= MEASUREMENT_CONFIDENCE;
  if (em !== bm) return em;
  if (em) return e.at > best.at || (e.at === best.at && e.confidence > best.confidence);
  return e.confidence > best.confidence || (e.confidence === best.confidence && e.at > best.at);
}

export function fusePlacement(
  hostVms: readonly string[],
  evidence: readonly PlacementEvidence[],
  opts: FusionOptions,
): FusedPlacement {
  const known = new Set(hostVms);
  const fresh = evidence.filter((e) => {
    const max = opts.maxAgeSeconds?.[e.source];
    const about = e.kind === "pair" ? known.has(e.a) && known.has(e.b) : known.has(e.hostVm);
    return about && (max === undefined || opts.now - e.at <= max);
  });
  const best = new Map<string, PairEvidence>();
  const measured = new Map<string, PairEvidence[]>();
  for (const e of expandKeys(fresh)) {
    const k = pairKey(e.a, e.b);
    const b = best.get(k);
    if (!b || beats(e, b)) best.set(k, e);
    if (e.confidence >= MEASUREMENT_CONFIDENCE) measured.set(k, [...(measured.get(k) ?? []), e]);
  }
  // A newer probe that agrees with an older conclusive trial confirms it: the trial stands
  // (it is the stronger verdict), unless a measurement since then said otherwise.
  for (const [k, b] of best) {
    if (b.confidence < MEASUREMENT_CONFIDENCE) continue;
    const ms = measured.get(k) ?? [];
    const lastOther = Math.max(-Infinity, ...ms.filter((m) => m.together !== b.together).map((m) => m.at));
    const stronger = ms
      .filter((m) => m.together === b.together && m.at > lastOther && m.confidence > b.confidence)
      .sort((x, y) => y.confidence - x.confidence || y.at - x.at)[0];
    if (stronger) best.set(k, stronger);
  }
  const verdicts: PairVerdict[] = [...best.values()]
    .map((e) => ({
      a: e.a < e.b ? e.a : e.b,
      b: e.a < e.b ? e.b : e.a,
      together: e.together,
      source: e.source,
      confidence: e.confidence,
      at: e.at,
    }))
    .sort((x, y) => x.a.localeCompare(y.a) || x.b.localeCompare(y.b));

  // Groups from together-verdicts, strongest (measurements, newest) first; one is not applied
  // when an apart-verdict at least as strong and as new separates the two groups it would
  // join (the host VM moved since: its older together-evidence no longer holds).
  const parent = new Map<string, string>(hostVms.map((h) => [h, h]));
  const find = (h: string): string => {
    let r = h;
    while (parent.get(r) !== r) r = parent.get(r)!;
    parent.set(h, r);
    return r;
  };
  const aparts = verdicts.filter((v) => !v.together);
  const rank = (v: PairVerdict) => (v.confidence >= MEASUREMENT_CONFIDENCE ? 1 : 0);
  const conflicted = new Set<string>();
  const order = verdicts
    .filter((v) => v.together)
    .sort((x, y) => rank(y) - rank(x) || y.at - x.at || y.confidence - x.confidence);
  for (const v of order) {
    const [ra, rb] = [find(v.a), find(v.b)];
    if (ra === rb) continue;
    const blocked = aparts.some((x) => {
      const [fa, fb] = [find(x.a), find(x.b)];
      const separates = (fa === ra && fb === rb) || (fa === rb && fb === ra);
      return separates && (rank(x) > rank(v) || (rank(x) === rank(v) && x.at >= v.at));
    });
    if (blocked) {
      conflicted.add(v.a);
      conflicted.add(v.b);
      continue;
    }
    parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb);
  }
  const strongest = new Map<string, PairVerdict>();
  for (const v of verdicts) {
    for (const h of [v.a, v.b]) {
      const s = strongest.get(h);
      if (!s || v.confidence > s.confidence || (v.confidence === s.confidence && v.at > s.at))
        strongest.set(h, v);
    }
    // An older, weaker apart-verdict inside a group: reported, the group stands.
    if (!v.together && find(v.a) === find(v.b)) {
      conflicted.add(v.a);
      conflicted.add(v.b);
    }
  }
  const members = new Map<string, string[]>();
  for (const h of hostVms) {
    if (!strongest.has(h)) continue;
    const r = find(h);
    members.set(r, [...(members.get(r) ?? []), h]);
  }
  const groups = [...members.values()].map((g) => [...g].sort()).sort((x, y) => x[0]!.localeCompare(y[0]!));
  const groupOf = new Map<string, string>();
  for (const g of groups) for (const h of g) groupOf.set(h, g[0]!);
  return {
    hostVms: hostVms.map((h) => {
      const s = strongest.get(h);
      return {
        hostVm: h,
        group: groupOf.get(h),
        source: s?.source,
        confidence: s?.confidence ?? 0,
        at: s?.at,
        conflict: conflicted.has(h),
      };
    }),
    groups,
    verdicts,
  };
}

/**
 * Gives each group a server id: a group keeps the server most of its members had before
 * (`previous`), the others take free ids in order. A group left without an id (more groups
 * than servers: the evidence is inconsistent) stays unplaced. Largest groups choose first.
 */
export function assignServers(
  groups: readonly (readonly string[])[],
  serverIds: readonly string[],
  previous: ReadonlyMap<string, string | undefined>,
): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  const taken = new Set<string>();
  const order = [...groups].sort((a, b) => b.length - a.length || a[0]!.localeCompare(b[0]!));
  const pending: (readonly string[])[] = [];
  // Overlaps largest first, so a big group keeps its id before a split-off singleton claims it.
  const wishes = order
    .flatMap((g, i) => {
      const votes = new Map<string, number>();
      for (const h of g) {
        const s = previous.get(h);
        if (s !== undefined && serverIds.includes(s)) votes.set(s, (votes.get(s) ?? 0) + 1);
      }
      return [...votes].map(([server, n]) => ({ i, server, n }));
    })
    .sort((x, y) => y.n - x.n || x.i - y.i || x.server.localeCompare(y.server));
  const placed = new Set<number>();
  for (const w of wishes) {
    if (placed.has(w.i) || taken.has(w.server)) continue;
    placed.add(w.i);
    taken.add(w.server);
    for (const h of order[w.i]!) out.set(h, w.server);
  }
  order.forEach((g, i) => {
    if (!placed.has(i)) pending.push(g);
  });
  const free = serverIds.filter((s) => !taken.has(s));
  for (const g of pending) {
    const s = free.shift();
    for (const h of g) out.set(h, s);
  }
  return out;
}

/**
 * How many host VMs are placed right: those whose discovered co-residents are exactly their
 * true ones (labels do not matter, only who is with whom). Unplaced host VMs count as wrong.
 */
export function placementCorrectness(
  truth: ReadonlyMap<string, string>,
  discovered: ReadonlyMap<string, string | undefined>,
): { correct: number; total: number } {
  const peers = (m: ReadonlyMap<string, string | undefined>, h: string) => {
    const at = m.get(h);
    return at === undefined
      ? undefined
      : [...m]
          .filter(([x, s]) => s === at && truth.has(x))
          .map(([x]) => x)
          .sort()
          .join(",");
  };
  let correct = 0;
  for (const h of truth.keys()) {
    const d = peers(discovered, h);
    if (d !== undefined && d === peers(truth, h)) correct++;
  }
  return { correct, total: truth.size };
}

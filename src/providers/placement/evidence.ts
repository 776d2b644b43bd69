/**
 * What placement discovery learns, as data: each piece of evidence says which source it
 * came from, how far that source is to be trusted (confidence 0..1) and when it was seen.
 * The sources (see docs/architecture.md, "Placement discovery"):
 * - provider: the underlying cloud names the server (a testbed with visible placement);
 * - provider-hint: the cloud gives an opaque per-host key valid within a scope (OpenStack
 *   Nova's hostId = sha224(project_id + host): equal ids = same host, within one project);
 * - correlation: the virtual cloud's own record of guests joined with the rental's view of
 *   host VMs (an instant handover that completed between two host VMs, one that failed);
 * - shared-memory: the co-residency probe through the server's guest-memory pool;
 * - trial-handover: a zero-copy handover of an empty probe guest (conclusive).
 */

export type PlacementSource =
  | "provider"
  | "provider-hint"
  | "correlation"
  | "shared-memory"
  | "trial-handover";

/** Default trust in each source; a caller may report less (e.g. an old correlation). */
export const SOURCE_CONFIDENCE: Readonly<Record<PlacementSource, number>> = {
  provider: 1,
  "trial-handover": 1,
  "shared-memory": 0.95,
  "provider-hint": 0.9,
  correlation: 0.7,
};

/**
 * Evidence at or above this confidence is a measurement of the present: the newest such
 * evidence about a pair wins (a host VM may have moved since older evidence was taken).
 * Below it, evidence only fills in where nothing better is known.
 */
export const MEASUREMENT_CONFIDENCE = 0.95;

/** Host VMs `a` and `b` were (together) or were not (apart) on one server at `at`. */
export interface PairEvidence {
  readonly kind: "pair";
  readonly a: string;
  readonly b: string;
  readonly together: boolean;
  readonly source: PlacementSource;
  readonly confidence: number;
  /** Seconds (the rental's clock). */
  readonly at: number;
}

/**
 * Host VM `hostVm` carries `key` in `scope`: two host VMs with keys in one scope are together
 * when the keys are equal and apart otherwise; keys of different scopes say nothing.
 */
export interface KeyEvidence {
  readonly kind: "key";
  readonly hostVm: string;
  readonly scope: string;
  readonly key: string;
  readonly source: PlacementSource;
  readonly confidence: number;
  readonly at: number;
}

export type PlacementEvidence = PairEvidence | KeyEvidence;

export function pairEvidence(
  a: string,
  b: string,
  together: boolean,
  source: PlacementSource,
  at: number,
  confidence = SOURCE_CONFIDENCE[source],
): PairEvidence {
  return { kind: "pair", a, b, together, source, confidence: clamp01(confidence), at };
}

export function keyEvidence(
  hostVm: string,
  scope: string,
  key: string,
  source: PlacementSource,
  at: number,
  confidence = SOURCE_CONFIDENCE[source],
): KeyEvidence {
  return { kind: "key", hostVm, scope, key, source, confidence: clamp01(confidence), at };
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}

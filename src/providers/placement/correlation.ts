/**
 * Correlating the two front ends, as the research did: the underlying cloud's view of host
 * VMs (which exist, since when) with the virtual cloud's own record of its guests' moves.
 * An instant (zero-copy) handover can only complete between host VMs sharing a server's
 * memory pool, so each completed one says "together" at its end; one refused because the
 * two sit on different servers says "apart". Evidence from before a host VM was (re)acquired
 * is of another placement and dropped. What it gives: correct evidence, but only for pairs
 * between which guests moved instantly; it never covers host VMs nothing moved between.
 */
import { type PairEvidence, pairEvidence, SOURCE_CONFIDENCE } from "./evidence.ts";

export interface RentedHostVm {
  readonly id: string;
  readonly acquiredAt: number;
}

export interface RecordedMove {
  readonly from: string;
  readonly to: string;
  readonly mechanism: "instant" | "precopy" | "postcopy";
  readonly status: "running" | "completed" | "failed" | "cancelled";
  readonly finishedAt: number | undefined;
  /** The move failed because source and destination are on different servers. */
  readonly notCoResident?: boolean;
}

/** Evidence older than this counts for half (the host VM may have been moved since). */
export const CORRELATION_HALF_LIFE_SECONDS = 600;

export function correlateFrontEnds(
  hostVms: readonly RentedHostVm[],
  moves: readonly RecordedMove[],
  now: number,
): PairEvidence[] {
  const since = new Map(hostVms.map((h) => [h.id, h.acquiredAt]));
  const out: PairEvidence[] = [];
  for (const m of moves) {
    if (m.mechanism !== "instant" || m.finishedAt === undefined || m.from === m.to) continue;
    const [a, b] = [since.get(m.from), since.get(m.to)];
    if (a === undefined || b === undefined || m.finishedAt < Math.max(a, b)) continue;
    const together = m.status === "completed" ? true : m.notCoResident ? false : undefined;
    if (together === undefined) continue;
    const age = Math.max(0, now - m.finishedAt);
    const confidence = SOURCE_CONFIDENCE.correlation * 0.5 ** (age / CORRELATION_HALF_LIFE_SECONDS);
    out.push(pairEvidence(m.from, m.to, together, "correlation", m.finishedAt, confidence));
  }
  return out;
}

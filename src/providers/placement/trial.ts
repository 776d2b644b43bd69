/**
 * The conclusive measurement: a trial zero-copy handover of an empty probe guest. A tiny
 * guest is started on host VM `a` and handed over to `b` as an instant handover would be
 * if both were on one server: the source's server agent must know `b` (its broker only
 * hands over between its own host VMs) and `b`'s agent must find the guest's RAM file in
 * its own pool. Success = same server (confidence 1); refused for either reason = apart.
 * Anything else (an agent that does not answer, no room) says nothing. The probe guest is
 * deleted wherever it ended, whatever happened.
 *
 * Which pairs deserve a trial is decided purely (trialCandidates): those where the probe and
 * the correlation of the front ends disagree, and those no measurement covers (unsure).
 */
import { randomBytes } from "node:crypto";
import {
  type AgentEndpoint,
  AgentHttpError,
  HostVmAgentClient,
  MigrationFailedError,
  MigrationOrchestrator,
} from "../../agent/index.ts";
import {
  MEASUREMENT_CONFIDENCE,
  type PairEvidence,
  type PlacementEvidence,
  pairEvidence,
} from "./evidence.ts";

/** Probe guests' ids: the data plane hides them and refuses them as tenants' guest ids. */
export const PROBE_GUEST_RE = /^ncprobe-[0-9a-f]{8}$/;
// The smallest the guest image boots in (64 MiB reboots in a loop: the kernel and initramfs need more).
export const PROBE_GUEST_MIB = 128;

export interface TrialCandidate {
  readonly a: string;
  readonly b: string;
  /** disagree: probe and correlation say opposite things; unsure: nothing measured it. */
  readonly reason: "disagree" | "unsure";
}

/**
 * Pairs to settle by a trial handover, disagreements first: a pair whose newest probe
 * (shared-memory) and newest correlation disagree, unless a trial taken since that
 * correlation agrees with the probe (later probes then do not ask again); and a pair with
 * no measurement at all (the probe could not decide it).
 */
export function trialCandidates(
  hostVms: readonly string[],
  evidence: readonly PlacementEvidence[],
): TrialCandidate[] {
  const key = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);
  const newest = new Map<string, PairEvidence>();
  for (const e of evidence) {
    if (e.kind !== "pair") continue;
    const k = `${key(e.a, e.b)}|${e.source}`;
    const old = newest.get(k);
    if (!old || old.at <= e.at) newest.set(k, e);
  }
  const get = (a: string, b: string, s: PlacementEvidence["source"]) => newest.get(`${key(a, b)}|${s}`);
  const disagree: TrialCandidate[] = [];
  const unsure: TrialCandidate[] = [];
  const sorted = [...hostVms].sort();
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      const [a, b] = [sorted[i]!, sorted[j]!];
      const probe = get(a, b, "shared-memory");
      const corr = get(a, b, "correlation");
      const trial = get(a, b, "trial-handover");
      if (probe && corr && probe.together !== corr.together) {
        // Settled by a trial since the correlation's evidence that the probe still agrees with.
        const settled = trial && trial.at >= corr.at && trial.together === probe.together;
        if (!settled) disagree.push({ a, b, reason: "disagree" });
        continue;
      }
      const measured = [probe, trial].some((e) => e && e.confidence >= MEASUREMENT_CONFIDENCE);
      if (!measured) unsure.push({ a, b, reason: "unsure" });
    }
  }
  return [...disagree, ...unsure];
}

export interface TrialHost {
  readonly hostVm: string;
  readonly endpoint: AgentEndpoint;
}

export interface TrialResult {
  /** undefined: the trial could not decide (an agent did not answer, no room, ...). */
  readonly evidence: PairEvidence | undefined;
  readonly probeGuest: string;
  readonly ms: number;
  readonly detail: string;
}

/** What the broker or the destination answer when the two do not share a server's pool. */
const NOT_CO_RESIDENT =
  /has not registered with server|no host VM \S+ on this server|pool file \S+ to attach to does not exist/;

export async function trialHandover(
  a: TrialHost,
  b: TrialHost,
  token: string,
  now: () => number,
  opts: { bootTimeoutMs?: number; log?: (msg: string) => void } = {},
): Promise<TrialResult> {
  const t0 = Date.now();
  const probeGuest = `ncprobe-${randomBytes(4).toString("hex")}`;
  const ca = new HostVmAgentClient(a.endpoint.hostVmUrl, token, { timeoutMs: 10_000 });
  const cb = new HostVmAgentClient(b.endpoint.hostVmUrl, token, { timeoutMs: 10_000 });
  const done = (evidence: PairEvidence | undefined, detail: string): TrialResult => ({
    evidence,
    probeGuest,
    ms: Date.now() - t0,
    detail,
  });
  try {
    try {
      await ca.createGuest(
        { guestId: probeGuest, memoryMiB: PROBE_GUEST_MIB, bootTimeoutMs: opts.bootTimeoutMs ?? 180_000 },
        (opts.bootTimeoutMs ?? 180_000) + 10_000,
      );
    } catch (e) {
      return done(undefined, `no probe guest on ${a.hostVm}: ${(e as Error).message}`);
    }
    // The hypothesis under test: b is on a's server. Nothing of b's own server is used.
    const to: AgentEndpoint = { ...b.endpoint, server: a.endpoint.server, serverUrl: a.endpoint.serverUrl };
    try {
      await new MigrationOrchestrator(token, { log: opts.log }).migrate({
        guestId: probeGuest,
        from: a.endpoint,
        to,
        mechanism: "instant",
      });
      return done(pairEvidence(a.hostVm, b.hostVm, true, "trial-handover", now()), "handed over");
    } catch (e) {
      const msg = (e as Error).message;
      // Only a refusal that names the missing shared pool is conclusive, and only with the
      // guest still at its source: the broker refused before anything moved (an agent's
      // HTTP refusal), or the move was rolled back. Anything else concludes nothing.
      const back =
        (e instanceof MigrationFailedError && e.guestAt === "source") ||
        (e instanceof AgentHttpError && e.status < 500);
      if (back && NOT_CO_RESIDENT.test(msg))
        return done(pairEvidence(a.hostVm, b.hostVm, false, "trial-handover", now()), msg);
      return done(undefined, `inconclusive: ${msg}`);
    }
  } finally {
    // Wherever it ended: both are asked (a 404 is fine).
    await Promise.all([ca, cb].map((c) => c.deleteGuest(probeGuest).catch(() => {})));
  }
}

/**
 * The co-residency probe (I/O): every host-VM agent writes a probe file named by a fresh
 * random nonce into its server's shared memory pool, then every agent lists the probe files
 * it sees. Host VMs on one server share the pool, so B seeing A's nonce means together and
 * not seeing it means apart: 2n calls for n host VMs. An agent that does not answer yields
 * no evidence about its pairs (never "apart" by default).
 */
import { randomBytes } from "node:crypto";
import type { HostVmAgentClient } from "../../agent/index.ts";
import { type PairEvidence, pairEvidence } from "./evidence.ts";

export interface ProbeTarget {
  readonly hostVm: string;
  readonly client: HostVmAgentClient;
}

export async function probeSharedMemory(
  targets: readonly ProbeTarget[],
  now: () => number,
): Promise<{ evidence: PairEvidence[]; unreachable: string[] }> {
  const written = await Promise.all(
    targets.map(async (t) => {
      const nonce = randomBytes(16).toString("hex");
      try {
        await t.client.writeProbe(nonce);
        return { t, nonce };
      } catch {
        return { t, nonce: undefined };
      }
    }),
  );
  const seen = await Promise.all(
    written.map(async (w) => {
      if (!w.nonce) return { t: w.t, nonces: undefined };
      try {
        return { t: w.t, nonces: new Set((await w.t.client.probesSeen()).nonces) };
      } catch {
        return { t: w.t, nonces: undefined };
      }
    }),
  );
  const at = now();
  await Promise.all(
    written.map((w) => (w.nonce ? w.t.client.removeProbe(w.nonce).catch(() => {}) : undefined)),
  );
  const evidence: PairEvidence[] = [];
  for (let i = 0; i < written.length; i++) {
    for (let j = i + 1; j < written.length; j++) {
      const [a, b] = [written[i]!, written[j]!];
      const [sa, sb] = [seen[i]!.nonces, seen[j]!.nonces];
      if (!a.nonce || !b.nonce || !sa || !sb) continue;
      // Both directions must agree: a file seen one way only is a probe that raced a move.
      const ab = sb.has(a.nonce);
      const ba = sa.has(b.nonce);
      if (ab !== ba) continue;
      evidence.push(pairEvidence(a.t.hostVm, b.t.hostVm, ab, "shared-memory", at));
    }
  }
  return {
    evidence,
    unreachable: seen.filter((s) => s.nonces === undefined).map((s) => s.t.hostVm),
  };
}

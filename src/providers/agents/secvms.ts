/**
 * Security VMs' monitors through the host-VM agents (issue 13). Each pair (security VM,
 * target) is one agent security VM (/v1/secvms, issue 12's sandboxed service) running the
 * memory monitor beside the target, in the host VM that runs it: the agents' service reads a
 * target's RAM file only on its own host VM.
 *
 * Following placement, make before break: when a target runs on another host VM than its
 * monitor (after an instant handover or a pre-copy), the monitor is started at the target's
 * new host VM first, and only once it has done a round is the old one drained and removed.
 * Across an instant handover the old monitor never stops seeing the guest (its descriptor is of
 * the RAM file in the server's pool, which the destination maps as it is): nothing goes
 * unobserved. Across a pre-copy the old descriptor is of the source's RAM file, frozen at the
 * switchover: the gap is the new monitor's start (not-yet: attaching at the destination before
 * it resumes needs an agent hook; docs/architecture.md says so).
 */
import { createHash } from "node:crypto";
import type { AlertPageAnswer, HostVmAgentClient } from "../../agent/index.ts";
import { type Alert, alert, CHANNELS, type Evidence } from "../../monitor/index.ts";
import type { MonitorAnchor, MonitorSwitch, SecurityVmMonitors, SecurityVmSpec } from "../types.ts";
import { type Agents, providerError } from "./agents.ts";

/** How long a new monitor may take to do its first round before the switch is given up. */
const FIRST_ROUND_MS = 90_000;
/** Also the agent's heartbeat period: overlap() relies on the period being no shorter. */
const MEMORY_PERIOD_MS = 1000;
/** How long the old monitor is kept for its overlapping round (rounds take 0.2-3 s under TCG). */
const OVERLAP_MS = 30_000;

/** The agent's id of a pair's monitor (an agent's ids are short: they name namespaces). */
export function agentSecVmId(secvm: string, target: string): string {
  const h = BigInt(`0x${createHash("sha256").update(`${secvm}\u0000${target}`).digest("hex").slice(0, 12)}`);
  return `f${h.toString(36).padStart(6, "0").slice(-6)}`;
}

interface Pair {
  readonly secvm: string;
  readonly target: string;
  readonly agentId: string;
  hostVm: string | null;
  /** The agent's alert sequence read so far. */
  cursor: number;
  state: string;
  rounds: number;
}

export class AgentSecurityVms implements SecurityVmMonitors {
  private readonly pairs = new Map<string, Pair>();
  /** Alerts read from monitors already removed (their last page), waiting for drain(). */
  private readonly retired: { secvm: string; alerts: Alert[] }[] = [];

  constructor(
    private readonly agents: Agents,
    private readonly log: (msg: string) => void,
  ) {}

  private clientOf(hostVm: string): HostVmAgentClient {
    return this.agents.client(this.agents.host(hostVm));
  }

  async ensure(spec: SecurityVmSpec): Promise<void> {
    for (const target of spec.targets) {
      const key = `${spec.id}\u0000${target}`;
      const p: Pair = this.pairs.get(key) ?? {
        secvm: spec.id,
        target,
        agentId: agentSecVmId(spec.id, target),
        hostVm: null,
        cursor: 0,
        state: "new",
        rounds: 0,
      };
      this.pairs.set(key, p);
      if (p.hostVm) continue;
      const at = await this.agents.locate(target);
      if (!at || at.guest.state !== "running") continue;
      const c = this.agents.client(at.host);
      // A monitor a previous controller started there is adopted, not made twice.
      const known = (await c.secVms().catch(() => [])).find((s) => s.secvmId === p.agentId);
      if (!known) {
        try {
          await c.createSecVm({
            secvmId: p.agentId,
            targets: [{ guestId: target, memory: true }],
            memoryPeriodMs: MEMORY_PERIOD_MS,
          });
        } catch (e) {
          throw providerError(
            e,
            `starting security VM ${spec.id}'s monitor of ${target} on ${at.host.hostVm}`,
          );
        }
      }
      p.hostVm = at.host.hostVm;
      p.state = "starting";
      this.log(`security VM ${spec.id}: monitor of ${target} on ${p.hostVm} (${p.agentId})`);
    }
  }

  async remove(id: string): Promise<void> {
    for (const [key, p] of this.pairs) {
      if (p.secvm !== id) continue;
      if (p.hostVm) await this.retire(p, p.hostVm);
      this.pairs.delete(key);
    }
  }

  /** Reads a monitor's last alerts and deletes it on its agent. */
  private async retire(p: Pair, hostVm: string): Promise<void> {
    const c = this.clientOf(hostVm);
    const page = await c.secVmAlerts(p.agentId, { after: p.cursor, limit: 1000 }).catch(() => undefined);
    if (page?.alerts.length) this.retired.push({ secvm: p.secvm, alerts: page.alerts.map(stripSeq) });
    await c.deleteSecVm(p.agentId).catch((e) => {
      // A 404: it is gone already (its host VM was released, or a previous controller removed it).
      if (!/404|no security VM/.test(String(e))) throw providerError(e, `removing monitor ${p.agentId}`);
    });
  }

  async follow(): Promise<MonitorSwitch[]> {
    const moved = [...this.pairs.values()].filter((p) => p.hostVm);
    if (moved.length === 0) return [];
    // Where each target runs (a copy mid-move, paused or incoming, is not where it runs).
    const placed = new Map<string, { hostVm: string }>();
    for (const s of await this.agents.statuses())
      for (const g of s.status?.guests ?? [])
        if (g.state === "running") placed.set(g.guestId, { hostVm: s.host.hostVm });
    const out: MonitorSwitch[] = [];
    for (const p of moved) {
      const now = placed.get(p.target);
      const from = p.hostVm as string;
      if (!now || now.hostVm === from) {
        await this.refresh(p);
        continue;
      }
      const t0 = Date.now();
      const to = this.clientOf(now.hostVm);
      const known = (await to.secVms().catch(() => [])).some((s) => s.secvmId === p.agentId);
      if (!known)
        await to.createSecVm({
          secvmId: p.agentId,
          targets: [{ guestId: p.target, memory: true }],
          memoryPeriodMs: MEMORY_PERIOD_MS,
        });
      // Made: its baseline taken (a round that read the guest; a failed round counts as a
      // round too, but leaves the monitor "lost"). Until then the old monitor stays.
      const end = t0 + FIRST_ROUND_MS;
      for (;;) {
        const st = await to.secVm(p.agentId);
        if (st.monitors.some((m) => m.monitor === "memory" && m.rounds > 0 && m.state === "running")) break;
        if (st.state === "failed" || Date.now() > end)
          throw new Error(
            `monitor ${p.agentId} of ${p.target} on ${now.hostVm}: ${st.state}, no round (${st.error ?? "timeout"})`,
          );
        await new Promise((r) => setTimeout(r, 100));
      }
      const makeMs = Date.now() - t0;
      await this.overlap(p, from);
      await this.retire(p, from);
      p.hostVm = now.hostVm;
      p.cursor = 0;
      p.state = "running";
      this.log(
        `security VM ${p.secvm}: monitor of ${p.target} moved ${from} -> ${now.hostVm} (made in ${makeMs} ms)`,
      );
      out.push({ secvm: p.secvm, target: p.target, from, to: now.hostVm, makeMs });
    }
    return out;
  }

  /**
   * Broken only after the old monitor has done one whole round that began after the new
   * one's baseline: an event between the old one's last look and that baseline (which then
   * holds it as already there) is seen by the old one. Counted on the old service's reported
   * round number r0, read now: round r0 + 2 starts at least a period after the report was
   * sent (a heartbeat at most ago, and the period is not shorter), so after the baseline was
   * seen; reported r0 + 3 means it is done. An old monitor that cannot read (its source is
   * gone, as after a pre-copy) has nothing more to see; bounded by a few periods' worth.
   */
  private async overlap(p: Pair, hostVm: string): Promise<void> {
    const c = this.clientOf(hostVm);
    const memory = async () =>
      (await c.secVm(p.agentId).catch(() => undefined))?.monitors.find((m) => m.monitor === "memory");
    const r0 = (await memory())?.rounds;
    if (r0 === undefined) return;
    const end = Date.now() + OVERLAP_MS;
    while (Date.now() < end) {
      const m = await memory();
      if (!m || m.state !== "running" || m.rounds >= r0 + 3) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    this.log(
      `security VM ${p.secvm}: old monitor of ${p.target} on ${hostVm} did no round in ${OVERLAP_MS} ms`,
    );
  }

  private async refresh(p: Pair): Promise<void> {
    if (!p.hostVm) return;
    const st = await this.clientOf(p.hostVm)
      .secVm(p.agentId)
      .catch(() => undefined);
    if (!st) return;
    p.state = st.state;
    p.rounds = st.monitors.find((m) => m.monitor === "memory")?.rounds ?? 0;
  }

  async drain(): Promise<{ secvm: string; alerts: Alert[] }[]> {
    const out = this.retired.splice(0);
    for (const p of this.pairs.values()) {
      if (!p.hostVm) continue;
      const page = await this.clientOf(p.hostVm)
        .secVmAlerts(p.agentId, { after: p.cursor, limit: 1000 })
        .catch(() => undefined);
      if (!page || page.alerts.length === 0) continue;
      p.cursor = page.next;
      out.push({ secvm: p.secvm, alerts: page.alerts.map(stripSeq) });
    }
    return out;
  }

  anchors(): MonitorAnchor[] {
    return [...this.pairs.values()].map((p) => ({
      secvm: p.secvm,
      target: p.target,
      hostVm: p.hostVm,
      state: p.state,
      rounds: p.rounds,
    }));
  }
}

type AgentAlert = AlertPageAnswer["alerts"][number];

/** An agent's alert in the one alert shape, bounded again (the agent's answer is only JSON). */
function stripSeq(a: AgentAlert): Alert {
  const evidence: Record<string, Evidence[string]> = {};
  for (const [k, v] of Object.entries(a.evidence))
    if (v === null || typeof v === "string" || typeof v === "boolean" || typeof v === "number")
      evidence[k] = v;
    else if (Array.isArray(v)) evidence[k] = v.map(String);
  return alert({
    time: a.time,
    target: a.target,
    monitor: a.monitor,
    channel: (CHANNELS as readonly string[]).includes(a.channel) ? (a.channel as Alert["channel"]) : "local",
    severity: a.severity,
    summary: a.summary,
    evidence,
  });
}

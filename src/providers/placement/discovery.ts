/**
 * Placement discovery for one provider: gathers evidence from each source it has (the
 * rental's hints, the co-residency probe through the agents, the data plane's completed
 * instant handovers, failed handovers the provider reports) and keeps the fused map with
 * server ids, refreshed every `intervalMs` (so a host VM the cloud moved is noticed within
 * about one interval). The decisions are fusion.ts's; this file only gathers and stores.
 */
import { HostVmAgentClient } from "../../agent/index.ts";
import type { AgentDirectory } from "../agents/directory.ts";
import type { GuestDataPlane, HostVmRental } from "../types.ts";
import { correlateFrontEnds } from "./correlation.ts";
import type { PlacementEvidence, PlacementSource } from "./evidence.ts";
import { assignServers, type FusedPlacement, fusePlacement } from "./fusion.ts";
import { probeSharedMemory } from "./probe.ts";
import type { PlacementReport } from "./report.ts";
import { type TrialHost, type TrialResult, trialCandidates, trialHandover } from "./trial.ts";

export interface DiscoveryOptions {
  /** The agents to probe (a rental whose host VMs run nestcloud's agent). */
  readonly directory?: AgentDirectory;
  readonly plane?: GuestDataPlane;
  readonly intervalMs?: number;
  /**
   * Trial handovers of a probe guest per round, for pairs the probe and the correlation
   * disagree on or nothing measured (default 1; 0: none). Each boots a tiny guest (~15 s
   * under TCG), so they are kept for the pairs that need them.
   */
  readonly trialsPerRound?: number;
  readonly log?: (msg: string) => void;
}

/** Evidence older than this is dropped (seconds): a host VM may move at any time. */
const MAX_AGE: Partial<Record<PlacementSource, number>> = {
  "shared-memory": 120,
  "provider-hint": 300,
  correlation: 3600,
  "trial-handover": 3600,
};

export class PlacementDiscovery {
  private readonly evidence = new Map<string, PlacementEvidence>();
  private fused: FusedPlacement | undefined;
  private servers = new Map<string, string | undefined>();
  private refreshedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  readonly intervalMs: number;

  constructor(
    private readonly rental: HostVmRental,
    private readonly opts: DiscoveryOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 10_000;
  }

  /** Refreshes now and then every interval. */
  start(): void {
    if (this.timer) return;
    void this.refresh().catch((e) => this.opts.log?.(`placement discovery failed: ${(e as Error).message}`));
    this.timer = setInterval(() => {
      void this.refresh().catch((e) =>
        this.opts.log?.(`placement discovery failed: ${(e as Error).message}`),
      );
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  /** Adds evidence (a failed or completed handover) and re-fuses at once. */
  async record(e: PlacementEvidence): Promise<void> {
    this.keep(e);
    await this.fuse();
  }

  private keep(e: PlacementEvidence): void {
    const k =
      e.kind === "pair"
        ? `p|${e.a < e.b ? `${e.a}|${e.b}` : `${e.b}|${e.a}`}|${e.source}`
        : `k|${e.hostVm}|${e.scope}`;
    const old = this.evidence.get(k);
    if (!old || old.at <= e.at) this.evidence.set(k, e);
  }

  /** One round: every source, then fusion. Rounds never overlap. */
  refresh(): Promise<void> {
    this.running ??= this.round().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(): Promise<void> {
    const now = () => this.rental.now();
    const hints = (await this.rental.placementEvidence?.()) ?? [];
    for (const e of hints) this.keep(e);
    const dir = this.opts.directory;
    if (dir) {
      const token = dir.token();
      const targets = dir
        .hosts()
        .filter((h) => h.usable && h.endpoint)
        .map((h) => ({
          hostVm: h.hostVm,
          client: new HostVmAgentClient(h.endpoint!.hostVmUrl, token, { timeoutMs: 5000 }),
        }));
      const { evidence } = await probeSharedMemory(targets, now);
      for (const e of evidence) this.keep(e);
    }
    if (this.opts.plane) {
      const [hostVms, { migrations }] = await Promise.all([
        this.rental.hostVms(),
        this.opts.plane.observe(now()),
      ]);
      for (const e of correlateFrontEnds(hostVms, migrations, now())) this.keep(e);
    }
    await this.settleByTrials();
    await this.fuse();
  }

  /** Trial handovers for the pairs that need one (trial.ts decides which), a few per round. */
  private async settleByTrials(): Promise<void> {
    const max = this.opts.trialsPerRound ?? 1;
    const dir = this.opts.directory;
    if (!dir || max <= 0) return;
    const hosts = new Map(this.trialHosts().map((h) => [h.hostVm, h]));
    const candidates = trialCandidates([...hosts.keys()], [...this.evidence.values()]);
    for (const c of candidates.slice(0, max)) {
      const r = await this.runTrial(hosts.get(c.a)!, hosts.get(c.b)!);
      this.opts.log?.(
        `placement: trial handover ${c.a} -> ${c.b} (${c.reason}): ${
          r.evidence ? (r.evidence.together ? "together" : "apart") : "undecided"
        } in ${r.ms} ms (${r.detail})`,
      );
    }
  }

  private trialHosts(): TrialHost[] {
    return (this.opts.directory?.hosts() ?? []).flatMap((h) =>
      h.usable && h.endpoint ? [{ hostVm: h.hostVm, endpoint: h.endpoint }] : [],
    );
  }

  private async runTrial(a: TrialHost, b: TrialHost): Promise<TrialResult> {
    const r = await trialHandover(a, b, this.opts.directory!.token(), () => this.rental.now(), {
      log: this.opts.log,
    });
    if (r.evidence) this.keep(r.evidence);
    return r;
  }

  /** Trials need the agents (a directory). */
  get canTrial(): boolean {
    return this.opts.directory !== undefined;
  }

  /**
   * A trial handover between two host VMs now (the conclusive measurement), its verdict
   * kept as evidence and the map re-fused. Needs a directory of agents.
   */
  async trial(a: string, b: string): Promise<TrialResult> {
    const hosts = this.trialHosts();
    const [ha, hb] = [hosts.find((h) => h.hostVm === a), hosts.find((h) => h.hostVm === b)];
    if (!ha || !hb) throw new Error(`no running agent for ${!ha ? a : b}: a trial handover needs both`);
    const r = await this.runTrial(ha, hb);
    await this.fuse();
    return r;
  }

  private async fuse(): Promise<void> {
    const now = this.rental.now();
    const hostVms = (await this.rental.hostVms()).filter((h) => h.state !== "released").map((h) => h.id);
    for (const [k, e] of this.evidence) {
      const max = MAX_AGE[e.source];
      if (max !== undefined && now - e.at > max) this.evidence.delete(k);
    }
    this.fused = fusePlacement(hostVms, [...this.evidence.values()], { now });
    const { servers } = await this.rental.describe();
    const next = assignServers(
      this.fused.groups,
      servers.map((s) => s.id),
      this.servers,
    );
    for (const [h, s] of next) {
      if (this.servers.has(h) && this.servers.get(h) !== s)
        this.opts.log?.(
          `placement: host VM ${h} is now with ${this.fused.groups.find((g) => g.includes(h))?.join(", ")}`,
        );
    }
    this.servers = next;
    this.refreshedAt = now;
  }

  /** The server id discovery gives a host VM (undefined: not known). */
  serverOf(hostVm: string): string | undefined {
    return this.servers.get(hostVm);
  }

  report(): PlacementReport {
    return {
      mode: "discovered",
      refreshedAt: this.refreshedAt,
      entries: (this.fused?.hostVms ?? []).map((h) => ({
        hostVm: h.hostVm,
        server: this.servers.get(h.hostVm),
        source: h.source,
        confidence: h.confidence,
        at: h.at,
        conflict: h.conflict,
      })),
    };
  }
}

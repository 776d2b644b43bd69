/**
 * The controller's view of its security VMs' monitoring (issue 13): which channel each pair
 * (security VM, target) uses as placement stands, every switch as it happens, and the alerts
 * the data plane's monitors raised, numbered in one bounded log the API pages through
 * (GET /api/alerts), each also an event (SSE) and counted (Prometheus).
 *
 * Pure decisions (pairChannels, selectAlerts) apart from the I/O (the controller feeds it
 * placements after every audit and move, and alerts from its plane).
 */

import {
  type Alert,
  type Channel,
  chooseChannel,
  type MonitorKind,
  type Severity,
} from "../monitor/index.ts";
import type { MonitorSwitch } from "../providers/index.ts";

/** One security VM as placement sees it. */
export interface SecurityVmPlacement {
  readonly id: string;
  readonly tenant: string;
  /** Its host VM (null: not placed yet). */
  readonly hostVm: string | null;
  readonly targets: readonly string[];
}

export interface PairChannel {
  readonly secvm: string;
  readonly target: string;
  readonly tenant: string;
  /** null: one side is not placed (nothing to monitor through). */
  readonly channel: Channel | null;
}

/**
 * Each pair's channel: same host VM -> local, same server -> direct, else remote (a server
 * that is not known is never assumed shared: remote).
 */
export function pairChannels(
  secvms: readonly SecurityVmPlacement[],
  hostVmOf: (guest: string) => string | null | undefined,
  serverOf: (hostVm: string) => string | null | undefined,
): PairChannel[] {
  const out: PairChannel[] = [];
  for (const s of secvms)
    for (const target of s.targets) {
      const th = hostVmOf(target);
      const channel =
        s.hostVm && th
          ? chooseChannel(
              { hostVm: s.hostVm, server: serverOf(s.hostVm) ?? undefined },
              { hostVm: th, server: serverOf(th) ?? undefined },
            )
          : null;
      out.push({ secvm: s.id, target, tenant: s.tenant, channel });
    }
  return out;
}

/** An alert as the controller keeps it: numbered here, with the security VM and its tenant. */
export type ControllerAlert = Alert & {
  readonly id: number;
  readonly secvm: string;
  readonly tenant: string;
};

export interface AlertFilter {
  readonly tenant?: string;
  readonly secvm?: string;
  readonly target?: string;
  readonly monitor?: MonitorKind;
  readonly severity?: Severity;
  /** Alerts with a larger id than this (a cursor: the previous page's `next`). */
  readonly after?: number;
  /** Alerts seen by the monitor at or after this Unix time (ms). */
  readonly since?: number;
  readonly limit: number;
}

export interface AlertPage {
  readonly alerts: readonly ControllerAlert[];
  /** Pass as `after` for the next page. */
  readonly next: number;
  /** Whether more alerts match after this page. */
  readonly more: boolean;
}

/** A page of `log` (ascending ids) under `f`. */
export function selectAlerts(log: readonly ControllerAlert[], f: AlertFilter): AlertPage {
  const out: ControllerAlert[] = [];
  let more = false;
  for (const a of log) {
    if (a.id <= (f.after ?? 0)) continue;
    if (f.tenant !== undefined && a.tenant !== f.tenant) continue;
    if (f.secvm !== undefined && a.secvm !== f.secvm) continue;
    if (f.target !== undefined && a.target !== f.target) continue;
    if (f.monitor !== undefined && a.monitor !== f.monitor) continue;
    if (f.severity !== undefined && a.severity !== f.severity) continue;
    if (f.since !== undefined && a.time < f.since) continue;
    if (out.length === f.limit) {
      more = true;
      break;
    }
    out.push(a);
  }
  return { alerts: out, next: out.at(-1)?.id ?? f.after ?? 0, more };
}

export interface MonitoringSinks {
  event(kind: string, tenant: string, data: Record<string, unknown>): void;
  alertCounted(monitor: MonitorKind, severity: Severity): void;
  switchCounted(from: Channel | "none", to: Channel | "none"): void;
  pairsByChannel(counts: Readonly<Record<Channel | "none", number>>): void;
  /** A monitor moved: how long the move took to make and the gap it left (null: not known). */
  moveCounted?(makeSeconds: number, gapSeconds: number | null): void;
}

export const ALERT_LOG_SIZE = 10_000;

export class SecurityMonitoring {
  private readonly channels = new Map<string, PairChannel>();
  private readonly log: ControllerAlert[] = [];
  private seq = 0;
  /** Alerts pushed out of the bounded log by newer ones. */
  evicted = 0;

  constructor(
    private readonly sinks: MonitoringSinks,
    private readonly capacity = ALERT_LOG_SIZE,
  ) {}

  /** Takes the pairs' channels now; a pair whose channel changed is a switch (event + metric). */
  placed(pairs: readonly PairChannel[]): PairChannel[] {
    const switched: PairChannel[] = [];
    const seen = new Set<string>();
    const counts: Record<Channel | "none", number> = { local: 0, direct: 0, remote: 0, none: 0 };
    for (const p of pairs) {
      const key = `${p.secvm}\u0000${p.target}`;
      seen.add(key);
      counts[p.channel ?? "none"]++;
      const was = this.channels.get(key);
      this.channels.set(key, p);
      if (was && was.channel !== p.channel) {
        switched.push(p);
        this.sinks.switchCounted(was.channel ?? "none", p.channel ?? "none");
        this.sinks.event("secvm.channel", p.tenant, {
          secvm: p.secvm,
          target: p.target,
          from: was.channel,
          to: p.channel,
        });
      }
    }
    for (const k of [...this.channels.keys()]) if (!seen.has(k)) this.channels.delete(k);
    this.sinks.pairsByChannel(counts);
    return switched;
  }

  /** The pairs' channels as last placed (optionally of one tenant or security VM). */
  pairs(f: { tenant?: string; secvm?: string } = {}): PairChannel[] {
    return [...this.channels.values()].filter(
      (p) =>
        (f.tenant === undefined || p.tenant === f.tenant) && (f.secvm === undefined || p.secvm === f.secvm),
    );
  }

  /** Alerts a security VM's monitors raised (in the order they were raised). */
  ingest(secvm: string, tenant: string, alerts: readonly Alert[]): ControllerAlert[] {
    const out: ControllerAlert[] = [];
    for (const a of alerts) {
      // Labelled with the pair's channel as placement stands (what the API shows for the pair);
      // the monitor's own transport, which may differ (the agents' plane reads beside the
      // target), stays in the evidence.
      const pair = this.channels.get(`${secvm}\u0000${a.target}`)?.channel;
      const kept: ControllerAlert = {
        ...a,
        ...(pair && pair !== a.channel
          ? { channel: pair, evidence: { ...a.evidence, transport: a.channel } }
          : {}),
        id: ++this.seq,
        secvm,
        tenant,
      };
      this.log.push(kept);
      if (this.log.length > this.capacity) {
        this.log.shift();
        this.evicted++;
      }
      out.push(kept);
      this.sinks.alertCounted(a.monitor, a.severity);
      this.sinks.event("alert", tenant, { ...kept });
    }
    return out;
  }

  /** A monitor moved to where its target runs now (the plane's follow): event and metrics. */
  moved(sw: MonitorSwitch, tenant: string | undefined): void {
    this.sinks.moveCounted?.(sw.makeMs / 1000, sw.gapMs === null ? null : sw.gapMs / 1000);
    if (tenant !== undefined) this.sinks.event("secvm.monitor.moved", tenant, { ...sw });
  }

  alerts(f: AlertFilter): AlertPage {
    return selectAlerts(this.log, f);
  }
}

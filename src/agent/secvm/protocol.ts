/**
 * What a host-VM agent and one of its security VMs' services say to each other over the IPC
 * channel the agent opened when it started the service (the channel is the service's
 * credential towards the agent: nobody else holds it). The agent trusts nothing the service
 * says beyond its own targets: the service parses guest-controlled data and may be subverted.
 * parseServiceMessage validates every message; anything else is dropped and counted.
 */
import { type Alert, alert, CHANNELS, type Channel, MONITOR_KINDS, SEVERITIES } from "../../monitor/index.ts";

/** Where a remote endpoint listens (the target's server, or the security VM's own address). */
export interface Endpoint {
  host: string;
  port: number;
}

/**
 * How the service reaches a target's memory: local and direct inherit its RAM file as a
 * descriptor at `fd` (opened read-only by the agent; direct: another host VM's file in the
 * server's shared pool); remote reads it from the page server of the target's server over TLS
 * (`size`: the guest's RAM size, so the first request goes out with the handshake).
 */
export type MemoryAccess = { fd: number } | { pageServer: Endpoint & { size: number } };

/**
 * How it reaches a target's disk: QEMU's NBD server on a unix socket in the service's private
 * folder (local, direct), or the NBD TLS relay of the target's server (remote).
 */
export type DiskAccess = { socket: string } | { relay: Endpoint };

/**
 * Where the target's mirrored frames arrive (the service listens, the guest's QEMU connects):
 * a unix socket in its folder (local, direct) or a TLS listener on its own address (remote).
 */
export type NicAccess = { monitorId: string } & ({ mirrorSocket: string } | { listen: Endpoint });

/** One target as the service gets it: what it may read, and nothing of any other guest. */
export interface ServiceTarget {
  guestId: string;
  memory: MemoryAccess | null;
  disk: DiskAccess | null;
  nic: NicAccess | null;
}

/**
 * The security VM's credential for the remote channel: PEM files in its private folder (the
 * CA that signs page servers, relays and target QEMUs; its certificate naming its targets;
 * its key). Read once by the service before it drops privileges.
 */
export interface ServiceTlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface ServiceConfig {
  type: "config";
  secvmId: string;
  uid: number;
  gid: number;
  /** The service's private folder (0700, its uid). */
  dir: string;
  netns: string;
  /** The alerts' channel label, and which accesses its targets have (remote: TLS ones). */
  channel: Channel;
  /** Needed when any target is reached remotely (page server, relay, TLS mirror). */
  tls: ServiceTlsFiles | null;
  memoryPeriodMs: number;
  diskPeriodMs: number;
  /** ClamAV databases (in dir), or none: no malware scan. */
  clamavDatabases: string[];
  ruleFiles: string[];
  targets: ServiceTarget[];
  /** How often the service reports it is alive. */
  heartbeatMs: number;
}

/** Whether a target's accesses fit the channel (remote: over TLS only; else local paths only). */
export function targetFitsChannel(t: ServiceTarget, channel: Channel): boolean {
  const remote = channel === "remote";
  if (t.memory && "fd" in t.memory === remote) return false;
  if (t.disk && "socket" in t.disk === remote) return false;
  if (t.nic && "mirrorSocket" in t.nic === remote) return false;
  return true;
}

export type DiskViewAnswer =
  | { type: "disk-view"; reqId: number; ok: true; exportName: string; dirtyBitmap: string | null }
  | { type: "disk-view"; reqId: number; ok: false; error: string };

export type AgentMessage = ServiceConfig | DiskViewAnswer;

export interface MonitorReport {
  guestId: string;
  monitor: (typeof MONITOR_KINDS)[number];
  state: "starting" | "running" | "lost" | "stopped";
  rounds: number;
  lastRoundMs: number | null;
}

export type ServiceMessage =
  | { type: "ready" }
  | { type: "alert"; alert: Alert }
  | { type: "disk-view-open"; reqId: number; guestId: string }
  | { type: "disk-view-close"; reqId: number; guestId: string }
  | { type: "heartbeat"; rssKiB: number; monitors: MonitorReport[] };

const STATES = ["starting", "running", "lost", "stopped"] as const;
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * A service's message, checked: alerts must name one of `targets` (a service cannot alert
 * about, or ask for a disk view of, a guest it does not watch) and are bounded again here.
 */
export function parseServiceMessage(m: unknown, targets: ReadonlySet<string>): ServiceMessage | null {
  if (!isObj(m) || typeof m.type !== "string") return null;
  switch (m.type) {
    case "ready":
      return { type: "ready" };
    case "disk-view-open":
    case "disk-view-close":
      if (!isInt(m.reqId) || typeof m.guestId !== "string" || !targets.has(m.guestId)) return null;
      return { type: m.type, reqId: m.reqId, guestId: m.guestId };
    case "heartbeat": {
      if (!isInt(m.rssKiB) || !Array.isArray(m.monitors) || m.monitors.length > 3 * targets.size) return null;
      const monitors: MonitorReport[] = [];
      for (const r of m.monitors) {
        if (
          !isObj(r) ||
          typeof r.guestId !== "string" ||
          !targets.has(r.guestId) ||
          !MONITOR_KINDS.includes(r.monitor as never) ||
          !STATES.includes(r.state as never) ||
          !isInt(r.rounds) ||
          !(r.lastRoundMs === null || (typeof r.lastRoundMs === "number" && r.lastRoundMs >= 0))
        )
          return null;
        monitors.push({
          guestId: r.guestId,
          monitor: r.monitor as MonitorReport["monitor"],
          state: r.state as MonitorReport["state"],
          rounds: r.rounds,
          lastRoundMs: r.lastRoundMs as number | null,
        });
      }
      return { type: "heartbeat", rssKiB: m.rssKiB, monitors };
    }
    case "alert": {
      const a = m.alert;
      if (
        !isObj(a) ||
        typeof a.time !== "number" ||
        !Number.isFinite(a.time) ||
        typeof a.target !== "string" ||
        !targets.has(a.target) ||
        !MONITOR_KINDS.includes(a.monitor as never) ||
        !CHANNELS.includes(a.channel as never) ||
        !SEVERITIES.includes(a.severity as never) ||
        typeof a.summary !== "string" ||
        !isObj(a.evidence)
      )
        return null;
      const evidence: Record<string, string | number | boolean | null | string[]> = {};
      for (const [k, v] of Object.entries(a.evidence)) {
        if (
          v === null ||
          typeof v === "string" ||
          typeof v === "boolean" ||
          (typeof v === "number" && Number.isFinite(v))
        )
          evidence[k] = v;
        else if (Array.isArray(v) && v.every((x) => typeof x === "string")) evidence[k] = v as string[];
        else return null;
      }
      return {
        type: "alert",
        alert: alert({
          time: a.time,
          target: a.target,
          monitor: a.monitor as Alert["monitor"],
          channel: a.channel as Alert["channel"],
          severity: a.severity as Alert["severity"],
          summary: a.summary,
          evidence,
        }),
      };
    }
    default:
      return null;
  }
}

/**
 * What a host-VM agent and one of its security VMs' services say to each other over the IPC
 * channel the agent opened when it started the service (the channel is the service's
 * credential towards the agent: nobody else holds it). The agent trusts nothing the service
 * says beyond its own targets: the service parses guest-controlled data and may be subverted.
 * parseServiceMessage validates every message; anything else is dropped and counted.
 */
import { type Alert, alert, CHANNELS, MONITOR_KINDS, SEVERITIES } from "../../monitor/index.ts";

/** One target as the service gets it: what it may read, and nothing of any other guest. */
export interface ServiceTarget {
  guestId: string;
  /** The guest's RAM file, as a descriptor inherited at this index (opened read-only by the agent). */
  memory: { fd: number } | null;
  /** QEMU's NBD server for this guest, on a unix socket in the service's private folder. */
  disk: { socket: string } | null;
  /** Where the guest's mirrored frames arrive (the service listens, the guest's QEMU connects). */
  nic: { mirrorSocket: string; monitorId: string } | null;
}

export interface ServiceConfig {
  type: "config";
  secvmId: string;
  uid: number;
  gid: number;
  /** The service's private folder (0700, its uid). */
  dir: string;
  netns: string;
  channel: "local";
  memoryPeriodMs: number;
  diskPeriodMs: number;
  /** ClamAV databases (in dir), or none: no malware scan. */
  clamavDatabases: string[];
  ruleFiles: string[];
  targets: ServiceTarget[];
  /** How often the service reports it is alive. */
  heartbeatMs: number;
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

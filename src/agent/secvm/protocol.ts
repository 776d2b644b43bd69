/**
 * What a host-VM agent and one of its security VMs' services say to each other over the IPC
 * channel the agent opened when it started the service (the channel is the service's
 * credential towards the agent: nobody else holds it). The agent trusts nothing the service
 * says beyond its own targets: the service parses guest-controlled data and may be subverted.
 * parseServiceMessage validates every message; anything else is dropped and counted.
 */
import {
  type Alert,
  alert,
  CHANNELS,
  type Channel,
  type FileRecord,
  MONITOR_KINDS,
  SEVERITIES,
} from "../../monitor/index.ts";

import { MAX_BASELINE_RECORDS } from "../schemas/secvms.ts";

export { MAX_BASELINE_RECORDS };

const FILE_TYPES = ["file", "dir", "symlink", "chr", "blk", "fifo", "sock", "unknown"];

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
  /** Another monitor's disk baseline of it to take over (DiskMonitor.seed), if any. */
  diskBaseline?: FileRecord[];
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
  | {
      type: "disk-view";
      reqId: number;
      ok: false;
      error: string;
      /** Not yet (the target is still arriving): asked again shortly, not a loss. */
      wait?: boolean;
    };

/** The agent asks for a target's disk baseline (to hand it to that target's next monitor). */
export interface DiskBaselineRequest {
  type: "disk-baseline-get";
  reqId: number;
  guestId: string;
}

/** The service's answer to a DiskBaselineRequest. */
export type DiskBaselineReply = Extract<ServiceMessage, { type: "disk-baseline" }>;

export type AgentMessage = ServiceConfig | DiskViewAnswer | DiskBaselineRequest;

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
  | { type: "heartbeat"; rssKiB: number; monitors: MonitorReport[] }
  | {
      type: "disk-baseline";
      reqId: number;
      guestId: string;
      /** Its disk rounds so far; records null: no baseline yet, or too large to hand over. */
      rounds: number;
      files: FileRecord[] | null;
    };

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
    case "disk-baseline": {
      if (!isInt(m.reqId) || typeof m.guestId !== "string" || !targets.has(m.guestId) || !isInt(m.rounds))
        return null;
      const files = m.files === null ? null : parseFileRecords(m.files);
      if (files === undefined) return null;
      return { type: "disk-baseline", reqId: m.reqId, guestId: m.guestId, rounds: m.rounds, files };
    }
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

/** Disk baseline records from a service, checked field by field (undefined: not records). */
export function parseFileRecords(v: unknown): FileRecord[] | undefined {
  if (!Array.isArray(v) || v.length > MAX_BASELINE_RECORDS) return undefined;
  const out: FileRecord[] = [];
  const str = (x: unknown, max: number): x is string => typeof x === "string" && x.length <= max;
  for (const r of v) {
    if (
      !isObj(r) ||
      !str(r.path, 4096) ||
      !r.path.startsWith("/") ||
      !isInt(r.ino) ||
      !FILE_TYPES.includes(r.type as string) ||
      !isInt(r.mode) ||
      !isInt(r.uid) ||
      !isInt(r.gid) ||
      !isInt(r.size) ||
      !str(r.mtime, 40) ||
      !(r.sha256 === null || (str(r.sha256, 64) && /^[0-9a-f]{64}$/.test(r.sha256))) ||
      !(r.unread === undefined || str(r.unread, 1024))
    )
      return undefined;
    out.push({
      path: r.path,
      ino: r.ino,
      type: r.type as FileRecord["type"],
      mode: r.mode,
      uid: r.uid,
      gid: r.gid,
      size: r.size,
      mtime: r.mtime,
      sha256: r.sha256 as string | null,
      ...(r.unread !== undefined ? { unread: r.unread as string } : {}),
    });
  }
  return out;
}

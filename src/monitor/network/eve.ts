// Suricata's EVE JSON output, read defensively: its records carry guest-controlled text
// (signatures match guest bytes, a tenant writes the rules' messages), so every line is
// bounded before parsing, every record validated field by field, and whatever does not fit is
// counted, never trusted. parseEveLine and eveAlertToAlert are pure; EveTail follows the file
// as Suricata appends to it (inotify on its folder, a poll as fallback) and rotates it when it
// grows past a bound (rename, SIGHUP to Suricata, read the old file to its end, delete it).
import { type FSWatcher, watch } from "node:fs";
import { type FileHandle, open, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { type Alert, alert, type Channel, type Severity } from "../alert.ts";

/** Longest EVE line read (a stats record with totals is a few KiB; an alert under 2 KiB). */
export const MAX_EVE_LINE = 256 * 1024;

export interface SuricataAlert {
  /** Suricata's timestamp of the packet (ISO 8601 with offset). */
  timestamp: string;
  signatureId: number;
  gid: number;
  rev: number;
  signature: string;
  category: string;
  /** The rule's priority: 1 is the most urgent. */
  priority: number;
  srcIp: string;
  srcPort: number | null;
  destIp: string;
  destPort: number | null;
  proto: string;
  appProto: string | null;
  direction: string | null;
  iface: string | null;
}

export type EveRecord =
  | { type: "alert"; alert: SuricataAlert }
  | { type: "stats"; kernelPackets: number | null; kernelDrops: number | null }
  | { type: "other"; eventType: string }
  | { type: "invalid"; reason: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
/** Strings: `max` bounds what a field may hold at all (evidence cuts what it keeps, alert.ts). */
const str = (v: unknown, max = MAX_EVE_LINE): string | null =>
  typeof v === "string" && v.length <= max ? v : null;
const int = (v: unknown, min: number, max: number): number | null =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : null;
const optStr = (v: unknown) => (v === undefined ? null : str(v, 256));

/** One EVE line, validated (pure). */
export function parseEveLine(line: string): EveRecord {
  if (line.length > MAX_EVE_LINE) return { type: "invalid", reason: "line too long" };
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return { type: "invalid", reason: "not JSON" };
  }
  if (!isObj(rec)) return { type: "invalid", reason: "not an object" };
  const eventType = str(rec.event_type, 64);
  if (eventType === null) return { type: "invalid", reason: "no event_type" };
  if (eventType === "stats") {
    const capture = isObj(rec.stats) && isObj(rec.stats.capture) ? rec.stats.capture : {};
    return {
      type: "stats",
      kernelPackets: int(capture.kernel_packets, 0, Number.MAX_SAFE_INTEGER),
      kernelDrops: int(capture.kernel_drops, 0, Number.MAX_SAFE_INTEGER),
    };
  }
  if (eventType !== "alert") return { type: "other", eventType };
  const a = rec.alert;
  if (!isObj(a)) return { type: "invalid", reason: "alert without an alert object" };
  const fields = {
    timestamp: str(rec.timestamp, 64),
    signatureId: int(a.signature_id, 0, 0xffffffff),
    gid: int(a.gid, 0, 0xffffffff),
    rev: int(a.rev, 0, 0xffffffff),
    signature: str(a.signature),
    category: a.category === undefined ? "" : str(a.category),
    priority: int(a.severity, 1, 255),
    srcIp: str(rec.src_ip, 64),
    destIp: str(rec.dest_ip, 64),
    proto: str(rec.proto, 32),
  };
  for (const [k, v] of Object.entries(fields))
    if (v === null) return { type: "invalid", reason: `alert: bad ${k}` };
  const port = (v: unknown) => (v === undefined ? null : int(v, 0, 65535));
  const srcPort = port(rec.src_port);
  const destPort = port(rec.dest_port);
  if ((rec.src_port !== undefined && srcPort === null) || (rec.dest_port !== undefined && destPort === null))
    return { type: "invalid", reason: "alert: bad port" };
  return {
    type: "alert",
    alert: {
      ...(fields as { [K in keyof typeof fields]: NonNullable<(typeof fields)[K]> }),
      srcPort,
      destPort,
      appProto: optStr(rec.app_proto),
      direction: optStr(rec.direction),
      iface: optStr(rec.in_iface),
    },
  };
}

/** Suricata's priority (1 most urgent) as an alert severity. */
export function severityOfPriority(priority: number): Severity {
  return priority <= 1 ? "critical" : priority === 2 ? "warning" : "info";
}

const endpoint = (ip: string, port: number | null) =>
  port === null ? ip : ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;

/**
 * A Suricata alert as a nestcloud alert (monitor "network"; evidence bounded by alert()). The
 * summary keeps 200 characters of the rule's message, so the endpoints always show.
 */
export function eveAlertToAlert(
  s: SuricataAlert,
  ctx: { target: string; channel: Channel; time: number },
): Alert {
  return alert({
    time: ctx.time,
    target: ctx.target,
    monitor: "network",
    channel: ctx.channel,
    severity: severityOfPriority(s.priority),
    summary: `${s.signature.length > 200 ? `${s.signature.slice(0, 200)}…` : s.signature} (sid ${s.signatureId}): ${endpoint(s.srcIp, s.srcPort)} -> ${endpoint(s.destIp, s.destPort)} ${s.proto}`,
    evidence: {
      source: "suricata",
      signatureId: s.signatureId,
      gid: s.gid,
      rev: s.rev,
      signature: s.signature,
      category: s.category,
      priority: s.priority,
      srcIp: s.srcIp,
      srcPort: s.srcPort,
      destIp: s.destIp,
      destPort: s.destPort,
      proto: s.proto,
      appProto: s.appProto,
      direction: s.direction,
      packetTime: s.timestamp,
    },
  });
}

// ---- following the file ------------------------------------------------------------------

export interface EveTailOptions {
  file: string;
  onLine: (line: string) => void;
  /** Rotate when the file passes this many bytes (default 16 MiB). */
  maxFileBytes?: number;
  /** Called after the file was renamed: make the writer reopen it (Suricata: SIGHUP). */
  reopen?: () => void;
  /** Fallback poll (default 250 ms); inotify wakes it sooner. */
  pollMs?: number;
  maxLineBytes?: number;
}

export interface EveTailCounts {
  lines: number;
  bytes: number;
  /** Lines over the bound, skipped unparsed. */
  oversizedLines: number;
  rotations: number;
}

export class EveTail {
  private fh: FileHandle | null = null;
  private offset = 0;
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private skipping = false;
  /** The renamed file being read to its end while the writer reopens. */
  private old: { fh: FileHandle; path: string; offset: number } | null = null;
  private readonly c: EveTailCounts = { lines: 0, bytes: 0, oversizedLines: 0, rotations: 0 };
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private pending = false;
  private closed = false;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(private readonly o: EveTailOptions) {}

  counts(): EveTailCounts {
    return { ...this.c };
  }

  start(): void {
    try {
      this.watcher = watch(dirname(this.o.file), (_e, name) => {
        if (name === null || String(name).startsWith(basename(this.o.file))) this.kick();
      });
      this.watcher.on("error", () => {});
    } catch {
      // no inotify: the poll alone
    }
    this.timer = setInterval(() => this.kick(), this.o.pollMs ?? 250);
    this.kick();
  }

  /** Reads what is there now (serialised: one read pass at a time). */
  kick(): Promise<void> {
    if (this.pending || this.closed) return this.chain;
    this.pending = true;
    this.chain = this.chain.then(async () => {
      this.pending = false;
      try {
        await this.pass();
      } catch {
        // the file vanished between calls: the next pass opens it again
      }
    });
    return this.chain;
  }

  private async pass(): Promise<void> {
    if (this.old) {
      // Rotation under way: once the writer made the new file, the old one is complete.
      const reopened = await stat(this.o.file).then(
        () => true,
        () => false,
      );
      this.old.offset = await this.drain(this.old.fh, this.old.offset);
      if (!reopened) return;
      this.old.offset = await this.drain(this.old.fh, this.old.offset);
      await this.old.fh.close();
      await unlink(this.old.path).catch(() => {});
      this.old = null;
    }
    if (!this.fh) {
      try {
        this.fh = await open(this.o.file, "r");
      } catch {
        return;
      }
      this.offset = 0;
    }
    this.offset = await this.drain(this.fh, this.offset);
    if (this.offset > (this.o.maxFileBytes ?? 16 * 1024 * 1024) && this.o.reopen) {
      const old = `${this.o.file}.old`;
      await rename(this.o.file, old);
      this.old = { fh: this.fh, path: old, offset: this.offset };
      this.fh = null;
      this.c.rotations++;
      this.o.reopen();
    }
  }

  private async drain(fh: FileHandle, offset: number): Promise<number> {
    for (;;) {
      const { bytesRead } = await fh.read(this.buf, 0, this.buf.length, offset);
      if (bytesRead === 0) return offset;
      offset += bytesRead;
      this.c.bytes += bytesRead;
      this.split(this.buf.subarray(0, bytesRead));
    }
  }

  private split(chunk: Buffer): void {
    const max = this.o.maxLineBytes ?? MAX_EVE_LINE;
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.resetPartial();
        continue;
      }
      if (this.partialBytes + piece.length > max) {
        this.c.oversizedLines++;
        this.resetPartial();
        continue;
      }
      const line = this.partialBytes ? Buffer.concat([...this.partial, piece]) : piece;
      this.resetPartial();
      if (line.length === 0) continue;
      this.c.lines++;
      this.o.onLine(line.toString("utf8"));
    }
    const rest = chunk.subarray(start);
    if (rest.length === 0 || this.skipping) return;
    if (this.partialBytes + rest.length > max) {
      this.c.oversizedLines++;
      this.resetPartial();
      this.skipping = true;
      return;
    }
    this.partial.push(Buffer.from(rest));
    this.partialBytes += rest.length;
  }

  private resetPartial(): void {
    this.partial = [];
    this.partialBytes = 0;
  }

  /**
   * Reads what is left, then stops following. Call it once the writer has stopped: a rotation
   * still under way (the writer gone before it reopened) is finished here, the renamed file
   * read to its end and removed.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    await this.chain;
    this.chain = this.chain.then(async () => {
      if (this.old) {
        await this.drain(this.old.fh, this.old.offset).catch(() => 0);
        await this.old.fh.close().catch(() => {});
        await unlink(this.old.path).catch(() => {});
        this.old = null;
      }
      if (!this.fh) {
        this.fh = await open(this.o.file, "r").catch(() => null);
        this.offset = 0;
      }
      if (this.fh) await this.drain(this.fh, this.offset).catch(() => 0);
      await this.fh?.close().catch(() => {});
      this.fh = null;
    });
    await this.chain;
  }
}

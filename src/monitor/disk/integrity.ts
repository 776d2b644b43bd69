// The integrity check's pure parts: what is recorded per path (a baseline entry), how two
// records differ, which paths are watched and how loudly (a path policy), and which inodes
// own which blocks (to map the blocks a dirty bitmap names back to files).
import { createHash, type Hash } from "node:crypto";
import type { Severity } from "../alert.ts";
import type { FileRun, FileType, Inode } from "./ext4/index.ts";

/** One path's baseline: metadata, and the SHA-256 of its content (a symlink's: its target). */
export interface FileRecord {
  path: string;
  ino: number;
  type: FileType;
  /** Permission bits and file type (st_mode). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Modification time, "seconds.nanoseconds". */
  mtime: string;
  /** Hex SHA-256 of the content (regular files) or target (symlinks); null otherwise or unread. */
  sha256: string | null;
  /** Why the content could not be read or was not (an Ext4Error's code and message, a limit). */
  unread?: string;
}

/** Fields compared between a baseline record and the current one. */
export const COMPARED_FIELDS = ["type", "mode", "uid", "gid", "size", "mtime", "sha256", "unread"] as const;
export type ComparedField = (typeof COMPARED_FIELDS)[number];

/** The fields that differ (in COMPARED_FIELDS order); empty when the path is unchanged. */
export function changedFields(a: FileRecord, b: FileRecord): ComparedField[] {
  return COMPARED_FIELDS.filter((f) => (a[f] ?? null) !== (b[f] ?? null));
}

export function mtimeOf(i: Inode): string {
  return `${i.mtime.sec}.${String(i.mtime.nsec).padStart(9, "0")}`;
}

/** A record from an inode (content hash filled in by the reader). */
export function recordOf(path: string, i: Inode, sha256: string | null, unread?: string): FileRecord {
  const r: FileRecord = {
    path,
    ino: i.ino,
    type: i.type,
    mode: i.mode,
    uid: i.uid,
    gid: i.gid,
    size: i.size,
    mtime: mtimeOf(i),
    sha256,
  };
  if (unread !== undefined) r.unread = unread;
  return r;
}

/**
 * What the content depends on besides its blocks: size, the map's root in the inode and the
 * flags that say how to read it. Equal layout and no written block: the content is unchanged.
 */
export function layoutOf(i: Inode): string {
  return `${i.type}:${i.size}:${i.flags}:${i.iBlock.toString("hex")}`;
}

// ---- the path policy ------------------------------------------------------------------------

export interface PathRule {
  /** An absolute path: the rule covers it and everything below it. */
  path: string;
  /** How loud a change under it is; "ignore": not watched. */
  severity: Severity | "ignore";
}

/**
 * A root file system's system paths: binaries, libraries, boot files and the login and
 * privilege configuration are critical, the rest of /etc, /usr, /opt and /root warnings;
 * paths no rule covers (/home, /var, /tmp...) are not watched for integrity (the malware scan
 * still reads every file).
 */
export const DEFAULT_PATH_POLICY: readonly PathRule[] = [
  ...[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/boot",
  ].map((path) => ({ path, severity: "critical" as const })),
  ...[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/pam.d",
  ].map((path) => ({ path, severity: "critical" as const })),
  ...["/etc", "/usr", "/opt", "/root"].map((path) => ({ path, severity: "warning" as const })),
  { path: "/etc/mtab", severity: "ignore" },
  { path: "/etc/resolv.conf", severity: "ignore" },
];

export class PathPolicy {
  private readonly rules: PathRule[];

  constructor(rules: readonly PathRule[]) {
    for (const r of rules)
      if (!r.path.startsWith("/") || (r.path.length > 1 && r.path.endsWith("/")))
        throw new RangeError(`path rule ${JSON.stringify(r.path)}: an absolute path without a trailing /`);
    // Longest first: the most specific rule wins.
    this.rules = [...rules].sort((a, b) => b.path.length - a.path.length);
  }

  /** The severity of a change at `path`, or null when the path is not watched. */
  severity(path: string): Severity | null {
    for (const r of this.rules) {
      if (r.path === "/" || path === r.path || path.startsWith(`${r.path}/`))
        return r.severity === "ignore" ? null : r.severity;
    }
    return null;
  }
}

// ---- block owners ---------------------------------------------------------------------------

/** Block ranges [start, start + length) owned by inodes (data, directory blocks, map nodes). */
export class BlockOwners {
  private readonly byIno = new Map<number, Array<[number, number]>>();
  private sorted: { start: number[]; end: number[]; ino: number[]; maxEnd: number[] } | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Replaces what `ino` owns. */
  set(ino: number, ranges: Array<[number, number]>): void {
    this.count -= this.byIno.get(ino)?.length ?? 0;
    if (ranges.length === 0) this.byIno.delete(ino);
    else this.byIno.set(ino, ranges);
    this.count += ranges.length;
    this.sorted = null;
  }

  delete(ino: number): void {
    this.set(ino, []);
  }

  has(ino: number): boolean {
    return this.byIno.has(ino);
  }

  get(ino: number): ReadonlyArray<[number, number]> | undefined {
    return this.byIno.get(ino);
  }

  clear(): void {
    this.byIno.clear();
    this.count = 0;
    this.sorted = null;
  }

  private index() {
    if (this.sorted) return this.sorted;
    const all: Array<[number, number, number]> = [];
    for (const [ino, ranges] of this.byIno) for (const [s, l] of ranges) all.push([s, s + l, ino]);
    all.sort((a, b) => a[0] - b[0]);
    const maxEnd: number[] = [];
    let m = -1;
    for (const [, e] of all) maxEnd.push((m = Math.max(m, e)));
    this.sorted = {
      start: all.map((x) => x[0]),
      end: all.map((x) => x[1]),
      ino: all.map((x) => x[2]),
      maxEnd,
    };
    return this.sorted;
  }

  /** The inodes owning any block of [start, start + length). */
  owners(start: number, length: number, out = new Set<number>()): Set<number> {
    const s = this.index();
    const end = start + length;
    // Last interval starting before `end`.
    let lo = 0;
    let hi = s.start.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s.start[mid] < end) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo - 1; i >= 0 && s.maxEnd[i] > start; i--) if (s.end[i] > start) out.add(s.ino[i]);
    return out;
  }
}

/** Sorted, merged block ranges [start, length] from any list of them. */
export function mergeRanges(ranges: Iterable<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].filter(([, l]) => l > 0).sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, l] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[0] + last[1]) last[1] = Math.max(last[1], s + l - last[0]);
    else out.push([s, l]);
  }
  return out;
}

// ---- chunk digests --------------------------------------------------------------------------

/**
 * A file's content is also digested per 64 KiB chunk of the device it lies in (QEMU's default
 * bitmap granularity): when a written granule only neighbours a file, the file's bytes in that
 * chunk are read and compared instead of the whole file.
 */
export const DIGEST_CHUNK_BYTES = 64 * 1024;

/** Accumulates per-chunk digests while a file is read in logical order. */
export class ChunkDigests {
  private readonly hashes = new Map<number, Hash>();

  constructor(private readonly blockSize: number) {}

  /** `data` read from consecutive blocks starting at `physical` (the last may be partial). */
  add(physical: number, data: Buffer): void {
    const bs = this.blockSize;
    for (let o = 0; o < data.length; ) {
      const byte = physical * bs + o;
      const chunk = Math.floor(byte / DIGEST_CHUNK_BYTES);
      const n = Math.min(data.length - o, (chunk + 1) * DIGEST_CHUNK_BYTES - byte);
      let h = this.hashes.get(chunk);
      if (!h) this.hashes.set(chunk, (h = createHash("sha256")));
      h.update(data.subarray(o, o + n));
      o += n;
    }
  }

  /** Chunk -> the first 16 hex digits of its digest. */
  digests(): Map<number, string> {
    const out = new Map<number, string>();
    for (const [c, h] of this.hashes) out.set(c, h.digest("hex").slice(0, 16));
    return out;
  }
}

/**
 * The file's blocks lying in chunk `chunk`, in logical order, as [logical, physical, count]
 * (written extents within the file's size only: what a full read digests there).
 */
export function chunkSegments(
  runs: readonly FileRun[],
  size: number,
  blockSize: number,
  chunk: number,
): Array<[number, number, number]> {
  const per = DIGEST_CHUNK_BYTES / blockSize;
  const first = chunk * per;
  const end = first + per;
  const blocks = Math.ceil(size / blockSize);
  const out: Array<[number, number, number]> = [];
  for (const r of runs) {
    if (r.uninit || r.logical >= blocks) continue;
    const length = Math.min(r.length, blocks - r.logical);
    const from = Math.max(first, r.physical);
    const to = Math.min(end, r.physical + length);
    if (from < to) out.push([r.logical + (from - r.physical), from, to - from]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** The chunks that block ranges [start, length] touch. */
export function chunksOf(ranges: ReadonlyArray<[number, number]>, blockSize: number): Set<number> {
  const out = new Set<number>();
  const per = DIGEST_CHUNK_BYTES / blockSize;
  for (const [s, l] of ranges)
    for (let c = Math.floor(s / per); c <= Math.floor((s + l - 1) / per); c++) out.add(c);
  return out;
}

// The disk monitor: check rounds against a guest's drive as its QEMU exports it over NBD
// (read-only, a point-in-time fleece, with the frozen dirty bitmap of the writes since the
// previous round's view), reading the guest's ext4 without mounting it.
//
// The first round is full: every path is walked, every file hashed (SHA-256, the baseline)
// and scanned by ClamAV. Every later round is incremental: the dirty bitmap names the bytes
// the guest wrote; with the journal's newly logged blocks they are the changed blocks. Cached
// metadata in them is dropped; files owning a changed block (their data, directory or extent
// blocks, known from the previous rounds' block maps) and inodes stored in a changed block of
// an inode table are read again: a directory is listed again (names gone, new or pointing at
// another inode), a file's content re-read (hashed and scanned) when its blocks or its map
// changed, only its metadata otherwise. New directories are walked. Everything else is known
// not to have changed, so an incremental round reads a small part of what a full one reads.
//
// The caller owns the views (QMP: qemu's openDiskView; a rotation per round) and must pass
// each round the bitmap frozen at its view's instant, started at the previous view's instant;
// a round without one (or after a failed round, or when the file system's geometry changed)
// is full again. Alerts: integrity changes under watched paths (severity by path policy),
// malware (signature name), files not scanned, a check that failed.
import { createHash } from "node:crypto";
import { type Alert, alert, type Channel, type Evidence, type Severity } from "../alert.ts";
import { ClamScanner, type ClamScanOptions, type ScanSink } from "./clamav.ts";
import {
  BlockCache,
  type ByteSource,
  childPath,
  countingSource,
  DEFAULT_WALK_LIMITS,
  type DirEntry,
  Ext4,
  Ext4Error,
  type Ext4Limits,
  type FileMap,
  type Inode,
  nameToString,
  type ReadStats,
  type WalkLimits,
  walk,
} from "./ext4/index.ts";
import {
  BlockOwners,
  ChunkDigests,
  changedFields,
  chunkSegments,
  chunksOf,
  DEFAULT_PATH_POLICY,
  DIGEST_CHUNK_BYTES,
  type FileRecord,
  layoutOf,
  mergeRanges,
  PathPolicy,
  type PathRule,
  recordOf,
} from "./integrity.ts";
import {
  dirtyBitmapContext,
  type Extent,
  NBD_STATE_DIRTY,
  type NbdTransport,
  rangesWith,
} from "./nbd/index.ts";
import { ViewLink } from "./view-link.ts";

/** One round's view of the drive. */
export interface DiskView {
  transport: NbdTransport;
  exportName: string;
  /**
   * The dirty bitmap exported with the view (frozen at its instant, started at the previous
   * round's view): the writes in between. null: unknown, the round is full.
   */
  dirtyBitmap: string | null;
}

export interface DiskMonitorOptions {
  /** The monitored guest's id (alerts' target). */
  target: string;
  channel: Channel;
  /** Watched paths and their severities (default DEFAULT_PATH_POLICY). */
  policy?: readonly PathRule[];
  /** ClamAV's databases and limits; null: no malware scan. */
  clamav: ClamScanOptions | null;
  walkLimits?: Partial<WalkLimits>;
  ext4Limits?: Partial<Ext4Limits>;
  /** Metadata cache kept between rounds (default 64 MiB). */
  cacheBytes?: number;
  /** Files read at once (default 4). */
  readConcurrency?: number;
  /** How long a link lost mid-round is tried again before the round fails (default 30 s). */
  reconnectWithinMs?: number;
  /** Called for each alert as it is made (they are in the round's report too). */
  onAlert?: (a: Alert) => void;
  now?: () => number;
}

export interface RoundReport {
  round: number;
  mode: "full" | "incremental";
  /** Why a round is full. */
  reason: string;
  ms: number;
  /** What the round read from the export, metadata and files. */
  bytesRead: number;
  requests: number;
  /** Bytes the dirty bitmap named (incremental). */
  dirtyBytes: number;
  /** File system blocks taken as changed (dirty, or newly in the journal). */
  changedBlocks: number;
  /** Paths in the baseline after the round. */
  paths: number;
  /** Files (and links) whose content was read, and those bytes. */
  filesRead: number;
  bytesHashed: number;
  /** Inodes looked at again (incremental). */
  inodesChecked: number;
  filesScanned: number;
  scanMs: number;
  /** Committed transactions and blocks applied from the journal. */
  journal: { transactions: number; blocks: number };
  alerts: Alert[];
  /** Times the link to the view was lost and won back during the round (round()). */
  linkLosses: number;
  /** Where the round's time went, ms by phase (see RoundPhases). */
  phases: RoundPhases;
}

/**
 * A round's time by phase, ms (each phase's wall time; file reads overlap the walk, so
 * `walk` and `files` of a full round share time). connect and bitmap only with round().
 */
export interface RoundPhases {
  /** NBD connect and handshake (TLS on remote). */
  connect: number;
  /** The dirty bitmap's block status. */
  bitmap: number;
  /** Ext4.open: superblock, group descriptors, the journal. */
  open: number;
  /** Changed blocks to inodes: owners and inode tables (incremental). */
  mapping: number;
  /** The walk (full), directories listed again (incremental). */
  walk: number;
  /** Files and links looked at again (incremental): metadata, changed chunks compared. */
  inodes: number;
  /** Waiting for content reads and hashing after the walk. */
  files: number;
  /** Alerts (integrity comparison, malware findings). */
  alerts: number;
}

interface InodeState {
  paths: Set<string>;
  layout: string;
  /** Per 64 KiB device chunk, a digest of the file's bytes there (regular files read whole). */
  chunks?: Map<number, string>;
}

interface State {
  files: Map<string, FileRecord>;
  /** Directories by inode: their path and entries (name -> inode). */
  dirs: Map<number, { path: string; names: Map<string, number> }>;
  inodes: Map<number, InodeState>;
  owners: BlockOwners;
  /** The journal's home block -> log block, as applied last round. */
  overlay: Map<number, number>;
  geometry: string;
}

/** Bounded concurrency with the first failure kept for the caller. */
class Pool {
  private running = new Set<Promise<void>>();
  private failure: unknown = null;
  constructor(private readonly size: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.running.size >= this.size) await Promise.race(this.running);
    if (this.failure) throw this.failure;
    const p: Promise<void> = task()
      .catch((e) => {
        this.failure ??= e;
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
    if (this.failure) throw this.failure;
  }
}

/** File data read ahead per incremental round at most (the rest is read as before). */
const PREFETCH_BYTES = 16 * 1024 * 1024;
/** Free or foreign blocks between two wanted ranges read through rather than a new request. */
const PREFETCH_GAP_BLOCKS = 8;

function geometryOf(fs: Ext4): string {
  const sb = fs.sb;
  return [
    sb.uuid,
    sb.blockSize,
    sb.blocksCount,
    sb.inodesCount,
    fs
      .inodeTables()
      .map(([t]) => t)
      .join(","),
  ].join(":");
}

function unreadText(e: Ext4Error): string {
  return `${e.code}: ${e.message.replace(/^ext4 \([a-z-]+\): /, "")}`;
}

export class DiskMonitor {
  private state: State | null = null;
  private needFull: string | null = "first round";
  private rounds = 0;
  private scanner: ClamScanner | null = null;
  private readonly cache: BlockCache;
  private readonly policy: PathPolicy;
  private readonly now: () => number;

  constructor(private readonly o: DiskMonitorOptions) {
    this.cache = new BlockCache(o.cacheBytes ?? 64 * 1024 * 1024);
    this.policy = new PathPolicy(o.policy ?? DEFAULT_PATH_POLICY);
    this.now = o.now ?? Date.now;
  }

  /** Paths in the baseline (after at least one round). */
  get baseline(): ReadonlyMap<string, FileRecord> {
    return this.state?.files ?? new Map();
  }

  /**
   * Takes over another monitor's baseline of the same drive (its records after its last
   * round: a monitor of the target made elsewhere, issue 13). The next round is full, but is
   * compared against these records, so everything that changed since that monitor's last
   * round is reported, none of it taken into a new baseline unseen. Only the records carry
   * over (block maps and the cache are this monitor's to build).
   */
  seed(files: Iterable<FileRecord>): void {
    this.state = {
      files: new Map([...files].map((f) => [f.path, f])),
      dirs: new Map(),
      inodes: new Map(),
      owners: new BlockOwners(),
      overlay: new Map(),
      geometry: "",
    };
    this.needFull = "a baseline taken over from another monitor";
  }

  /** Rounds done (failed ones too). */
  get roundsDone(): number {
    return this.rounds;
  }

  /**
   * One check round on `view` (connects, reads the dirty bitmap's map, checks, closes). A link
   * lost mid-round is connected again to the same view (view-link.ts): the round goes on with
   * its own bitmap; only a link that stays down past `reconnectWithinMs` fails it.
   */
  async round(view: DiskView): Promise<RoundReport> {
    let link: ViewLink | null = null;
    const linkAlert = (severity: Severity, summary: string, evidence: Evidence) =>
      this.emit(
        alert({
          time: this.now(),
          target: this.o.target,
          monitor: "disk",
          channel: this.o.channel,
          severity,
          summary,
          evidence,
        }),
      );
    try {
      const ctx = view.dirtyBitmap ? dirtyBitmapContext(view.dirtyBitmap) : null;
      let dirty: Extent[] | null = null;
      const t0 = this.now();
      let tConnected = t0;
      let tBitmap = t0;
      try {
        link = await ViewLink.open({
          transport: view.transport,
          exportName: view.exportName,
          metaContexts: ctx ? [ctx] : [],
          withinMs: this.o.reconnectWithinMs ?? 30_000,
          now: this.now,
          onLost: (e) =>
            linkAlert("warning", `disk monitor lost its link to the view: ${e.message}`, {
              kind: "link-lost",
              error: e.message,
              round: this.rounds + 1,
            }),
          onBack: (lostMs, attempts) =>
            linkAlert("info", `disk monitor's link is back after ${lostMs} ms: the round goes on`, {
              kind: "link-back",
              lostMs,
              attempts,
              round: this.rounds + 1,
            }),
        });
        const l = link;
        tConnected = this.now();
        if (ctx) dirty = rangesWith(await l.use((c) => c.extents(ctx)), NBD_STATE_DIRTY);
        tBitmap = this.now();
      } catch (e) {
        this.failed(e as Error, ++this.rounds);
        throw e;
      }
      const r = await this.check(link.source(), dirty);
      r.linkLosses = link.losses;
      r.phases.connect = tConnected - t0;
      r.phases.bitmap = tBitmap - tConnected;
      return r;
    } finally {
      await link?.close().catch(() => {});
    }
  }

  /**
   * One check round on any source of the drive's bytes, with the byte ranges written since the
   * previous round (null: unknown, the round is full). A failure is alerted, then thrown; the
   * next round is full.
   */
  async check(
    source: ByteSource,
    dirty: ReadonlyArray<{ offset: number; length: number }> | null,
  ): Promise<RoundReport> {
    const t0 = this.now();
    const round = ++this.rounds;
    try {
      if (this.o.clamav && !this.scanner) this.scanner = await ClamScanner.create(this.o.clamav);
      await this.scanner?.discard(); // anything a failed round left
      const stats: ReadStats = { bytes: 0, requests: 0 };
      return await new Round(this, round, countingSource(source, stats), stats, dirty, t0).run();
    } catch (e) {
      this.failed(e as Error, round);
      throw e;
    }
  }

  private failed(e: Error, round: number): void {
    this.needFull = `the previous round failed: ${e.message}`;
    this.emit(
      alert({
        time: this.now(),
        target: this.o.target,
        monitor: "disk",
        channel: this.o.channel,
        severity: "warning",
        summary: `disk check failed: ${e.message}`,
        evidence: { error: e.message, round },
      }),
    );
  }

  /** Removes the scanner's scratch folder. */
  async close(): Promise<void> {
    await this.scanner?.close();
    this.scanner = null;
  }

  // ---- for Round ----------------------------------------------------------------------------

  /** @internal */
  ctx() {
    return {
      o: this.o,
      cache: this.cache,
      policy: this.policy,
      now: this.now,
      scanner: this.scanner,
      state: this.state,
      needFull: this.needFull,
      setState: (s: State) => {
        this.state = s;
        this.needFull = null;
      },
      emit: (a: Alert) => this.emit(a),
    };
  }

  private emit(a: Alert): void {
    this.o.onAlert?.(a);
  }
}

interface Content {
  sha256: string | null;
  unread?: string;
}

/** One round's work. */
class Round {
  private readonly c: ReturnType<DiskMonitor["ctx"]>;
  private readonly alerts: Alert[] = [];
  private fs!: Ext4;
  private st!: State;
  private filesRead = 0;
  private bytesHashed = 0;
  private inodesChecked = 0;
  private changedBlocks = 0;
  /** Inodes whose content is read this round. */
  private readonly content = new Map<number, Promise<Content>>();
  /** Paths recorded while their content is being read: path -> inode. */
  private readonly pending = new Map<string, Inode>();
  /** Paths whose record this round touched, with the record before (undefined: did not exist). */
  private readonly touched = new Map<string, FileRecord | undefined>();
  /** Inodes owning a changed block (incremental). */
  private byBlocks = new Set<number>();
  /** Cached blocks the dirty bitmap dropped, as the previous rounds read them (incremental). */
  private readonly dropped = new Map<number, Buffer>();
  private readonly pool: Pool;
  private readonly limits: WalkLimits;
  private truncated = false;
  private readonly scannedBefore: number;
  private readonly scanMsBefore: number;
  private readonly phases: RoundPhases = {
    connect: 0,
    bitmap: 0,
    open: 0,
    mapping: 0,
    walk: 0,
    inodes: 0,
    files: 0,
    alerts: 0,
  };
  /** When the current phase began. */
  private lapAt: number;

  constructor(
    monitor: DiskMonitor,
    private readonly round: number,
    private readonly src: ByteSource,
    private readonly stats: ReadStats,
    private readonly dirty: ReadonlyArray<{ offset: number; length: number }> | null,
    private readonly t0: number,
  ) {
    this.c = monitor.ctx();
    this.pool = new Pool(Math.max(1, this.c.o.readConcurrency ?? 4));
    this.limits = { ...DEFAULT_WALK_LIMITS, ...this.c.o.walkLimits };
    this.scannedBefore = this.c.scanner?.stats.filesScanned ?? 0;
    this.scanMsBefore = this.c.scanner?.stats.scanMs ?? 0;
    this.lapAt = t0;
  }

  /** Ends the current phase: its time is added to `phase`. */
  private lap(phase: keyof RoundPhases): void {
    const now = this.c.now();
    this.phases[phase] += now - this.lapAt;
    this.lapAt = now;
  }

  private open(): Promise<Ext4> {
    return Ext4.open(this.src, { cache: this.c.cache, limits: this.c.o.ext4Limits });
  }

  async run(): Promise<RoundReport> {
    const prev = this.c.state;
    let reason = this.c.needFull ?? (this.dirty === null ? "no dirty bitmap with the view" : "");
    if (reason === "" && prev) {
      // Drop cached metadata the guest wrote, then open (the superblock is always read afresh).
      for (const d of this.dirty!) this.c.cache.invalidate(d.offset, d.length, this.dropped);
    } else this.c.cache.clear();
    this.fs = await this.open();
    const geometry = geometryOf(this.fs);
    if (reason === "" && prev && prev.geometry !== geometry) {
      reason = "the file system's geometry changed";
      this.c.cache.clear();
      this.fs = await this.open();
    }
    const overlay = new Map<number, number>();
    for (const [home, l] of this.fs.journal?.blocks ?? []) overlay.set(home, l.location);
    this.lap("open");

    const mode: RoundReport["mode"] = reason === "" && prev ? "incremental" : "full";
    if (mode === "full") {
      this.st = {
        files: new Map(),
        dirs: new Map(),
        inodes: new Map(),
        owners: new BlockOwners(),
        overlay,
        geometry,
      };
      await this.walkInto("/", undefined);
      this.lap("walk");
    } else {
      // The baseline is updated in place; a failure puts its records back, so the full round
      // that follows still compares against them (no change is lost with a failed round).
      this.st = prev!;
      try {
        await this.incremental(prev!.overlay, overlay);
        this.lap("inodes");
        await this.settle();
        this.lap("files");
      } catch (e) {
        for (const [path, was] of this.touched)
          if (was) prev!.files.set(path, was);
          else prev!.files.delete(path);
        throw e;
      }
      this.st.overlay = overlay;
    }
    if (mode === "full") {
      await this.settle();
      this.lap("files");
    }
    this.integrityAlerts(mode, prev);
    await this.malwareAlerts(mode);
    this.lap("alerts");
    if (this.truncated)
      this.push(
        "warning",
        `disk walk stopped at ${this.limits.maxEntries} entries: later paths are not checked`,
        {
          limit: this.limits.maxEntries,
        },
      );
    this.c.setState(this.st);
    const scan = this.c.scanner?.stats;
    return {
      round: this.round,
      mode,
      reason,
      ms: this.c.now() - this.t0,
      bytesRead: this.stats.bytes,
      requests: this.stats.requests,
      dirtyBytes: this.dirty?.reduce((s, d) => s + d.length, 0) ?? 0,
      changedBlocks: this.changedBlocks,
      paths: this.st.files.size,
      filesRead: this.filesRead,
      bytesHashed: this.bytesHashed,
      inodesChecked: this.inodesChecked,
      filesScanned: scan ? scan.filesScanned - this.scannedBefore : 0,
      scanMs: scan ? scan.scanMs - this.scanMsBefore : 0,
      journal: {
        transactions: this.fs.journal?.transactions ?? 0,
        blocks: this.fs.journal?.blocks.size ?? 0,
      },
      alerts: this.alerts,
      linkLosses: 0,
      phases: this.phases,
    };
  }

  /** Waits for the reads in flight and completes the records that waited for their content. */
  private async settle(): Promise<void> {
    await this.pool.drain();
    for (const [path, inode] of this.pending) {
      const c = await this.content.get(inode.ino)!;
      if (this.st.files.get(path)?.ino === inode.ino)
        this.st.files.set(path, recordOf(path, inode, c.sha256, c.unread));
    }
  }

  // ---- recording ------------------------------------------------------------------------------

  private touch(path: string): void {
    if (!this.touched.has(path)) this.touched.set(path, this.st.files.get(path));
  }

  private ranges(m: FileMap): Array<[number, number]> {
    return [
      ...m.runs.map((r): [number, number] => [r.physical, r.length]),
      ...m.mapBlocks.map((b): [number, number] => [b, 1]),
    ];
  }

  private inodeState(inode: Inode): InodeState {
    let ist = this.st.inodes.get(inode.ino);
    if (!ist) {
      ist = { paths: new Set(), layout: layoutOf(inode) };
      this.st.inodes.set(inode.ino, ist);
    }
    return ist;
  }

  /**
   * Records `path` -> `inode`. A file's or link's content is read (hashed, scanned) unless
   * `keep` says it is the recorded one; every path of an inode shares one read per round.
   */
  private record(path: string, inode: Inode, opts: { keep?: boolean; overBudget?: boolean } = {}): void {
    this.touch(path);
    const ist = this.inodeState(inode);
    ist.paths.add(path);
    ist.layout = layoutOf(inode);
    const old = this.st.files.get(path);
    if (inode.type !== "file" && inode.type !== "symlink") {
      this.st.files.set(path, recordOf(path, inode, null));
      return;
    }
    if (opts.keep && old && old.ino === inode.ino && !this.content.has(inode.ino)) {
      this.st.files.set(path, recordOf(path, inode, old.sha256, old.unread));
      return;
    }
    if (opts.overBudget) {
      this.st.files.set(path, recordOf(path, inode, null, "too-many: over the walk's byte budget"));
      return;
    }
    if (!this.content.has(inode.ino)) {
      let done!: (c: Content) => void;
      let failed!: (e: unknown) => void;
      const p = new Promise<Content>((resolve, reject) => {
        done = resolve;
        failed = reject;
      });
      p.catch(() => {}); // a failure surfaces through the pool
      this.content.set(inode.ino, p);
      // The pool bounds reads in flight; a failure other than the file system's ends the round.
      void this.pool
        .run(() =>
          this.readContent(path, inode).then(done, (e) => {
            failed(e);
            throw e;
          }),
        )
        .catch(failed);
    }
    this.st.files.set(path, recordOf(path, inode, null, "pending"));
    this.pending.set(path, inode);
  }

  private async readContent(path: string, inode: Inode): Promise<Content> {
    let sink: ScanSink | null = null;
    try {
      if (inode.type === "symlink") {
        let target: Buffer;
        if (this.fs.isFastSymlink(inode)) {
          this.st.owners.delete(inode.ino);
          target = await this.fs.readLink(inode);
        } else {
          const map = await this.fs.map(inode);
          this.st.owners.set(inode.ino, this.ranges(map));
          target = await this.fs.readLink(inode);
        }
        this.bytesHashed += target.length;
        this.filesRead++;
        return { sha256: createHash("sha256").update(target).digest("hex") };
      }
      const map = await this.fs.map(inode);
      this.st.owners.set(inode.ino, this.ranges(map));
      const hash = createHash("sha256");
      const chunks = new ChunkDigests(this.fs.blockSize);
      sink = this.c.scanner ? await this.c.scanner.file(path, inode.size) : null;
      for await (const piece of this.fs.readFile(inode, { map })) {
        hash.update(piece.data);
        if (piece.physical !== null) chunks.add(piece.physical, piece.data);
        this.bytesHashed += piece.data.length;
        await sink?.write(piece.data);
      }
      await sink?.end();
      sink = null;
      this.filesRead++;
      const ist = this.st.inodes.get(inode.ino);
      if (ist) ist.chunks = chunks.digests();
      return { sha256: hash.digest("hex") };
    } catch (e) {
      await sink?.abort();
      if (e instanceof Ext4Error) return { sha256: null, unread: unreadText(e) };
      throw e;
    }
  }

  private async ownDirBlocks(inode: Inode): Promise<void> {
    try {
      this.st.owners.set(inode.ino, this.ranges(await this.fs.map(inode)));
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      this.st.owners.delete(inode.ino);
    }
  }

  /** A path that could not be read: its record says why (a new one has no metadata). */
  private problem(path: string, e: Ext4Error): void {
    this.touch(path);
    this.pending.delete(path);
    const old = this.st.files.get(path);
    this.st.files.set(
      path,
      old
        ? { ...old, unread: unreadText(e) }
        : {
            path,
            ino: 0,
            type: "unknown",
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: "0.000000000",
            sha256: null,
            unread: unreadText(e),
          },
    );
  }

  /** Walks a tree (all of it, or a new subtree) into the state. */
  private async walkInto(root: string, rootInode: Inode | undefined): Promise<void> {
    const visited = new Set(this.st.dirs.keys());
    const limits = { ...this.limits, maxEntries: Math.max(1, this.limits.maxEntries - this.st.files.size) };
    for await (const e of walk(this.fs, { root, rootInode, limits, listings: true, visited })) {
      if (e.kind === "entry") this.record(e.path, e.inode, { overBudget: e.overBudget });
      else if (e.kind === "listing") {
        const names = new Map<string, number>();
        for (const d of e.entries) {
          const n = nameToString(d.name);
          if (n !== "." && n !== "..") names.set(n, d.ino);
        }
        this.st.dirs.set(e.inode.ino, { path: e.path, names });
        await this.ownDirBlocks(e.inode);
      } else if (e.limit === "entries") this.truncated = true;
      else if (e.limit !== "bytes") this.problem(e.path, e.error); // bytes: the record says it
    }
  }

  // ---- incremental ----------------------------------------------------------------------------

  private async incremental(prevOverlay: Map<number, number>, overlay: Map<number, number>): Promise<void> {
    const bs = this.fs.blockSize;
    const dirtyBlocks = mergeRanges(
      this.dirty!.map((d): [number, number] => {
        const first = Math.floor(d.offset / bs);
        return [first, Math.ceil((d.offset + d.length) / bs) - first];
      }),
    );
    const isDirty = (b: number) => {
      let lo = 0;
      let hi = dirtyBlocks.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        const [s, l] = dirtyBlocks[mid];
        if (b < s) hi = mid - 1;
        else if (b >= s + l) lo = mid + 1;
        else return true;
      }
      return false;
    };
    // Besides the written blocks: blocks whose journaled copy is new, rewritten or gone.
    const changed: Array<[number, number]> = [...dirtyBlocks];
    for (const [home, loc] of overlay)
      if (prevOverlay.get(home) !== loc || isDirty(loc)) changed.push([home, 1]);
    for (const home of prevOverlay.keys()) if (!overlay.has(home)) changed.push([home, 1]);
    const ranges = mergeRanges(changed);
    this.changedBlocks = ranges.reduce((s, [, l]) => s + l, 0);

    // Inodes owning a changed block (content, entries, map), and known inodes stored in one.
    for (const [s, l] of ranges) this.st.owners.owners(s, l, this.byBlocks);
    const byInode = new Set<number>();
    const sb = this.fs.sb;
    const perBlock = sb.blockSize / sb.inodeSize;
    const tables = this.fs.inodeTables();
    for (let g = 0; g < tables.length; g++) {
      const [t, n] = tables[g];
      for (const [s, l] of ranges) {
        const end = Math.min(s + l, t + n);
        for (let b = Math.max(s, t); b < end; b++) {
          const first = g * sb.inodesPerGroup + (b - t) * perBlock + 1;
          let known = false;
          for (let i = 0; i < perBlock && !known; i++) known = this.st.inodes.has(first + i);
          if (!known || (await this.sameInodeBlock(b, end - b, prevOverlay, overlay))) continue;
          for (let i = 0; i < perBlock; i++) if (this.st.inodes.has(first + i)) byInode.add(first + i);
        }
      }
    }
    const affected = new Set([...this.byBlocks, ...byInode]);
    this.lap("mapping");

    // Directories first, parents before children: names gone, new, or pointing elsewhere.
    const depth = (ino: number) => this.st.dirs.get(ino)!.path.split("/").length;
    const dirs = [...affected].filter((ino) => this.st.dirs.has(ino)).sort((a, b) => depth(a) - depth(b));
    for (const ino of dirs) {
      const d = this.st.dirs.get(ino);
      if (!d) continue; // removed with a parent
      this.inodesChecked++;
      await this.refreshDir(ino, d.path);
    }
    this.lap("walk");
    try {
      await this.fs.prefetchData(this.dataAround(ranges), PREFETCH_BYTES);
    } catch (e) {
      // Only a shortcut: a range it refuses is read (and reported) by the checks themselves.
      if (!(e instanceof Ext4Error)) throw e;
    }
    // Then files and links still known: content when its blocks or map changed, else metadata.
    for (const ino of affected) {
      const ist = this.st.inodes.get(ino);
      if (this.st.dirs.has(ino) || !ist || ist.paths.size === 0) continue;
      this.inodesChecked++;
      let inode: Inode;
      try {
        inode = await this.fs.inode(ino);
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
        for (const p of ist.paths) this.problem(p, e);
        continue;
      }
      const keep =
        layoutOf(inode) === ist.layout &&
        (!this.byBlocks.has(ino) || (inode.type === "file" && (await this.sameContent(inode, ist, ranges))));
      for (const p of [...ist.paths]) {
        if (inode.type !== this.st.files.get(p)?.type) {
          // The inode now holds something else under the same names (hostile or corrupt).
          this.removePath(p);
          await this.walkInto(p, inode);
        } else this.record(p, inode, { keep });
      }
    }
  }

  /**
   * Whether an inode-table block the bitmap names (a write to its 64 KiB granule, often to a
   * neighbour) still has the bytes the previous rounds read: then none of its inodes changed.
   * Only for a block the journal neither logs now nor logged before (its bytes are then what
   * the guest sees); otherwise, or when the old bytes were not cached, it counts as changed.
   */
  private async sameInodeBlock(
    block: number,
    ahead: number,
    prevOverlay: Map<number, number>,
    overlay: Map<number, number>,
  ): Promise<boolean> {
    const before = this.dropped.get(block);
    if (!before || overlay.has(block) || prevOverlay.has(block)) return false;
    return (
      await this.fs.readRawBlock(block, Math.min(ahead, this.c.o.ext4Limits?.readaheadBlocks ?? 32))
    ).equals(before);
  }

  /**
   * The blocks the files below will read, as few ranges: each known file owning a changed
   * block is compared (sameContent) in every 64 KiB chunk a change touches, over its own blocks
   * there. Neighbouring files' blocks in one chunk make one range (gaps of a few blocks are read
   * through), so a written chunk of small files costs one request, not one per file.
   */
  private dataAround(changed: Array<[number, number]>): Array<[number, number]> {
    const per = DIGEST_CHUNK_BYTES / this.fs.blockSize;
    const want: Array<[number, number]> = [];
    for (const ino of this.byBlocks) {
      if (this.st.dirs.has(ino)) continue;
      const own = this.st.owners.get(ino);
      if (!own) continue;
      for (const [s, l] of own) {
        for (const [cs, cl] of changed) {
          const from = Math.max(s, cs);
          const to = Math.min(s + l, cs + cl);
          if (from >= to) continue;
          // The file's blocks in the chunks [from, to) touches.
          const lo = Math.max(s, Math.floor(from / per) * per);
          const hi = Math.min(s + l, Math.ceil(to / per) * per);
          want.push([lo, hi - lo]);
        }
      }
    }
    const out: Array<[number, number]> = [];
    for (const [s, l] of mergeRanges(want)) {
      const last = out[out.length - 1];
      if (last && s - (last[0] + last[1]) <= PREFETCH_GAP_BLOCKS) last[1] = s + l - last[0];
      else out.push([s, l]);
    }
    return out;
  }

  /**
   * Whether a file whose blocks neighbour written ones (same 64 KiB chunk) still has its
   * content: the same block map, and the same bytes in every chunk a written range touches
   * (read and digested: at most 64 KiB per chunk instead of the whole file).
   */
  private async sameContent(
    inode: Inode,
    ist: InodeState,
    changed: Array<[number, number]>,
  ): Promise<boolean> {
    if (!ist.chunks) return false;
    let map: FileMap;
    try {
      map = await this.fs.map(inode);
    } catch (e) {
      if (e instanceof Ext4Error) return false;
      throw e;
    }
    const ranges = this.ranges(map);
    const known = this.st.owners.get(inode.ino);
    if (
      !known ||
      known.length !== ranges.length ||
      known.some(([s, l], i) => s !== ranges[i][0] || l !== ranges[i][1])
    )
      return false;
    const bs = this.fs.blockSize;
    const touched: Array<[number, number]> = [];
    for (const r of map.runs)
      for (const [s, l] of changed) {
        const from = Math.max(s, r.physical);
        const to = Math.min(s + l, r.physical + r.length);
        if (from < to) touched.push([from, to - from]);
      }
    for (const chunk of chunksOf(touched, bs)) {
      const segments = chunkSegments(map.runs, inode.size, bs, chunk);
      if (segments.length === 0) continue;
      const hash = createHash("sha256");
      for (const [logical, physical, count] of segments) {
        const data = await this.fs.readData(physical, count);
        hash.update(data.subarray(0, Math.min(data.length, inode.size - logical * bs)));
      }
      if (hash.digest("hex").slice(0, 16) !== ist.chunks.get(chunk)) return false;
    }
    return true;
  }

  /** Lists a directory again and applies the differences. */
  private async refreshDir(ino: number, path: string): Promise<void> {
    const d = this.st.dirs.get(ino)!;
    let inode: Inode;
    let entries: DirEntry[];
    try {
      inode = await this.fs.inode(ino);
      if (inode.type !== "dir") {
        this.removePath(path);
        await this.walkInto(path, inode);
        return;
      }
      entries = await this.fs.readDir(inode);
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      this.problem(path, e);
      return;
    }
    this.record(path, inode);
    await this.ownDirBlocks(inode);
    const names = new Map<string, number>();
    for (const e of entries) {
      const n = nameToString(e.name);
      if (n !== "." && n !== "..") names.set(n, e.ino);
    }
    const before = d.names;
    d.names = names;
    for (const [n, old] of before) if (names.get(n) !== old) this.removePath(childPath(path, n));
    for (const [n, now] of names) {
      if (before.get(n) === now) continue;
      const p = childPath(path, n);
      if (this.st.files.size >= this.limits.maxEntries) {
        this.truncated = true;
        continue;
      }
      let child: Inode;
      try {
        child = await this.fs.inode(now);
      } catch (e) {
        if (!(e instanceof Ext4Error)) throw e;
        this.problem(p, e);
        continue;
      }
      if (child.type === "dir") {
        if (this.st.dirs.has(child.ino))
          this.problem(p, new Ext4Error("loop", `directory inode ${child.ino} reached again`));
        else await this.walkInto(p, child);
        continue;
      }
      // A known inode under a new name (moved, hard-linked): its content is known when neither
      // its map nor its blocks changed.
      const ist = this.st.inodes.get(child.ino);
      const from = ist && ist.paths.size > 0 ? this.st.files.get([...ist.paths][0]) : undefined;
      const same = from && ist!.layout === layoutOf(child) && !this.byBlocks.has(child.ino) && !from.unread;
      if (same) {
        this.touch(p);
        ist!.paths.add(p);
        this.st.files.set(p, recordOf(p, child, from.sha256));
      } else this.record(p, child);
    }
  }

  /** Forgets a path and, for a directory, everything under it. */
  private removePath(path: string): void {
    const rec = this.st.files.get(path);
    if (!rec) return;
    this.touch(path);
    this.st.files.delete(path);
    this.pending.delete(path);
    const ist = this.st.inodes.get(rec.ino);
    if (ist) {
      ist.paths.delete(path);
      if (ist.paths.size === 0) {
        this.st.inodes.delete(rec.ino);
        this.st.owners.delete(rec.ino);
      }
    }
    if (rec.type === "dir") {
      const d = this.st.dirs.get(rec.ino);
      if (d && d.path === path) {
        this.st.dirs.delete(rec.ino);
        for (const n of d.names.keys()) this.removePath(childPath(path, n));
      }
    }
  }

  // ---- alerts ---------------------------------------------------------------------------------

  private push(severity: Severity, summary: string, evidence: Evidence): void {
    const a = alert({
      time: this.c.now(),
      target: this.c.o.target,
      monitor: "disk",
      channel: this.c.o.channel,
      severity,
      summary,
      evidence,
    });
    this.alerts.push(a);
    this.c.emit(a);
  }

  /** Integrity alerts: every path of the baseline (full) or touched (incremental) that differs. */
  private integrityAlerts(mode: RoundReport["mode"], prev: State | null): void {
    if (!prev) return; // the first round makes the baseline
    const before =
      mode === "incremental" ? this.touched : (prev.files as ReadonlyMap<string, FileRecord | undefined>);
    const paths =
      mode === "incremental"
        ? [...this.touched.keys()]
        : [...new Set([...prev.files.keys(), ...this.st.files.keys()])];
    for (const path of paths.sort()) {
      const severity = this.c.policy.severity(path);
      if (!severity) continue;
      const was = before.get(path);
      const now = this.st.files.get(path);
      if (!was && now)
        this.push(severity, `integrity: ${path} added`, { path, change: "added", ...describe("", now) });
      else if (was && !now)
        this.push(severity, `integrity: ${path} removed`, {
          path,
          change: "removed",
          ...describe("Before", was),
        });
      else if (was && now) {
        const fields = changedFields(was, now);
        if (fields.length > 0)
          this.push(severity, `integrity: ${path} changed (${fields.join(", ")})`, {
            path,
            change: "changed",
            fields,
            ...describe("Before", was),
            ...describe("After", now),
          });
      }
    }
  }

  /**
   * Malware alerts for what the scan found. An incremental round re-reads files that share a
   * written granule with changed ones: a finding on content the baseline already had is not
   * alerted again (a full round alerts everything it finds: new databases apply there).
   */
  private async malwareAlerts(mode: RoundReport["mode"]): Promise<void> {
    const scanner = this.c.scanner;
    if (!scanner) return;
    for (const f of await scanner.flush()) {
      const rec = this.st.files.get(f.path);
      const was = this.touched.get(f.path);
      if (mode === "incremental" && rec?.sha256 && was?.sha256 === rec.sha256) continue;
      const evidence = {
        path: f.path,
        signature: f.signature,
        size: rec?.size ?? null,
        sha256: rec?.sha256 ?? null,
      };
      if (f.kind === "malware") this.push("critical", `malware: ${f.path} matches ${f.signature}`, evidence);
      else this.push("warning", `malware scan incomplete: ${f.path} (${f.signature})`, evidence);
    }
    const tooLarge = scanner.stats.tooLarge.splice(0);
    if (tooLarge.length > 0)
      this.push(
        "warning",
        `malware scan: ${tooLarge.length} files over ${scanner.fileLimit} bytes not scanned`,
        {
          paths: tooLarge,
          limit: scanner.fileLimit,
        },
      );
  }
}

function describe(suffix: string, r: FileRecord): Evidence {
  const e: Record<string, string | number | null> = {
    [`type${suffix}`]: r.type,
    [`mode${suffix}`]: r.mode.toString(8),
    [`size${suffix}`]: r.size,
    [`mtime${suffix}`]: r.mtime,
    [`sha256${suffix}`]: r.sha256,
    [`ino${suffix}`]: r.ino,
  };
  if (r.unread) e[`unread${suffix}`] = r.unread;
  return e;
}

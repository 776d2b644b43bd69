// An ext4 file system read from outside its guest, without mounting it: superblock, group
// descriptors (32 and 64 bit, meta_bg), inodes, extent trees and block maps, directories
// (linearly, htree ones too), regular files and symlinks, with the journal's committed
// transactions applied in memory (journal.ts), so a file system in use reads as the guest
// sees it. Read-only: nothing is ever written.
//
// Every structure is hostile input. Parsing is in layout.ts; here the reader bounds what it
// follows: extent trees by depth (each child exactly one level down), nodes and extents per
// file, a node seen twice is a loop; block maps by the file's size; directories by bytes and
// entries; symlinks by PATH_MAX; all block numbers inside the file system, which must fit
// the device. Each violation is an Ext4Error.
import { Ext4Error } from "./errors.ts";
import { type JournalOverlay, readJournal } from "./journal.ts";
import {
  BG_INODE_UNINIT,
  type DirEntry,
  descriptorBlock,
  descriptorsPerBlock,
  EXT4_ENCRYPT_FL,
  EXT4_EXTENTS_FL,
  EXT4_INLINE_DATA_FL,
  type ExtentNode,
  type FileMap,
  type FileRun,
  type GroupDescriptor,
  INCOMPAT_FILETYPE,
  type Inode,
  inodeTableBlocks,
  JBD2_MAGIC,
  parseDirBlock,
  parseExtentNode,
  parseGroupDescriptor,
  parseInode,
  parseSuperblock,
  ROOT_INO,
  SUPERBLOCK_BYTES,
  SUPERBLOCK_OFFSET,
  type Superblock,
} from "./layout.ts";
import { BlockCache, type ByteSource } from "./source.ts";

export interface Ext4Limits {
  /** Block groups (each costs a descriptor in memory). */
  maxGroups: number;
  /** Extents (or block runs) of one file. */
  maxExtentsPerFile: number;
  /** Extent tree nodes (or indirect blocks) of one file. */
  maxMapNodes: number;
  /** Bytes of one directory. */
  maxDirBytes: number;
  /** Entries of one directory. */
  maxDirEntries: number;
  /** Bytes of a symlink's target (PATH_MAX). */
  maxSymlinkBytes: number;
  /** Blocks of a block-mapped (ext2/3 style) file that are mapped. */
  maxMappedBlocks: number;
  /** Journal blocks scanned for committed transactions (at most the journal's length). */
  maxJournalBlocks: number;
  /** Blocks read ahead in one request for inode tables and directories. */
  readaheadBlocks: number;
}

export const DEFAULT_EXT4_LIMITS: Readonly<Ext4Limits> = {
  maxGroups: 1 << 20,
  maxExtentsPerFile: 1 << 16,
  maxMapNodes: 1 << 14,
  maxDirBytes: 64 * 1024 * 1024,
  maxDirEntries: 1 << 20,
  maxSymlinkBytes: 4096,
  maxMappedBlocks: 1 << 22,
  maxJournalBlocks: 1 << 20,
  readaheadBlocks: 32,
};

export interface OpenOptions {
  limits?: Partial<Ext4Limits>;
  /** Metadata blocks cache; pass one to keep it between opens (default: a fresh 64 MiB one). */
  cache?: BlockCache;
  /** Apply the journal's committed transactions (default true). */
  journal?: boolean;
}

export interface FilePiece {
  /** Byte offset in the file. */
  offset: number;
  data: Buffer;
  /** The block it was read from (its blocks are consecutive); null: a hole or unwritten extent. */
  physical: number | null;
}

const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** prefetchData's requests in flight at once. */
const PREFETCH_IN_FLIGHT = 8;

/**
 * A name's bytes as text, one to one: valid UTF-8 without a backslash stays as it is; anything
 * else has its backslashes doubled and each byte outside printable ASCII written \xNN.
 */
export function nameToString(name: Buffer): string {
  if (!name.includes(0x5c)) {
    try {
      const s = textDecoder.decode(name);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are escaped
      if (!/[\u0000-\u001f\u007f]/.test(s)) return s;
    } catch {
      // not UTF-8: escaped below
    }
  }
  let out = "";
  for (const byte of name) {
    if (byte === 0x5c) out += "\\\\";
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

export class Ext4 {
  private groups: GroupDescriptor[] = [];
  private overlay: JournalOverlay | null = null;
  private overlayKeys: number[] = [];
  /** Data blocks read ahead (prefetchData): raw, for this open only (its view is frozen). */
  private readonly prefetched = new Map<number, Buffer>();
  private prefetchedBytes = 0;

  private constructor(
    private readonly src: ByteSource,
    public sb: Superblock,
    readonly limits: Ext4Limits,
    readonly cache: BlockCache,
  ) {}

  static async open(src: ByteSource, opts: OpenOptions = {}): Promise<Ext4> {
    const limits: Ext4Limits = { ...DEFAULT_EXT4_LIMITS, ...opts.limits };
    if (src.size < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES)
      throw new Ext4Error("truncated", `the device has ${src.size} bytes: no room for a superblock`);
    const sb = parseSuperblock(await src.read(SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES));
    const cache = opts.cache ?? new BlockCache();
    cache.setBlockSize(sb.blockSize);
    const fs = new Ext4(src, sb, limits, cache);
    await fs.loadGeometry();
    if (opts.journal !== false && sb.journalInum !== 0) {
      fs.overlay = await readJournal(fs, sb.journalInum, limits.maxJournalBlocks, limits.readaheadBlocks);
      fs.overlayKeys = [...fs.overlay.blocks.keys()].sort((a, b) => a - b);
      if (fs.overlay.blocks.size > 0) {
        // The superblock and descriptors may be in the journal too: read them again through it.
        const blockOfSb = Math.floor(SUPERBLOCK_OFFSET / sb.blockSize);
        const sbBlock = await fs.readBlock(blockOfSb);
        const at = SUPERBLOCK_OFFSET - blockOfSb * sb.blockSize;
        const replayed = parseSuperblock(sbBlock.subarray(at, at + SUPERBLOCK_BYTES));
        if (
          replayed.blockSize !== sb.blockSize ||
          replayed.journalInum !== sb.journalInum ||
          replayed.blocksCount < sb.blocksCount
        )
          throw new Ext4Error(
            "unsupported",
            "the journal changes the file system's geometry (resize in progress)",
          );
        fs.sb = replayed;
        await fs.loadGeometry();
      }
    }
    return fs;
  }

  /** The journal as applied: logged blocks by their home block (empty when clean or off). */
  get journal(): JournalOverlay | null {
    return this.overlay;
  }

  get blockSize(): number {
    return this.sb.blockSize;
  }

  private async loadGeometry(): Promise<void> {
    const sb = this.sb;
    if (sb.groupCount > this.limits.maxGroups)
      throw new Ext4Error("too-many", `${sb.groupCount} block groups (limit ${this.limits.maxGroups})`);
    if (sb.blocksCount * sb.blockSize > this.src.size)
      throw new Ext4Error(
        "truncated",
        `the file system has ${sb.blocksCount} blocks of ${sb.blockSize} bytes; the device only ${this.src.size} bytes`,
      );
    const per = descriptorsPerBlock(sb);
    const groups: GroupDescriptor[] = [];
    for (let i = 0; i * per < sb.groupCount; i++) {
      const block = await this.readBlock(descriptorBlock(sb, i));
      for (let j = 0; j < per && i * per + j < sb.groupCount; j++)
        groups.push(parseGroupDescriptor(sb, block, j * sb.descSize, i * per + j));
    }
    this.groups = groups;
  }

  private checkBlock(n: number, what: string): void {
    if (!Number.isSafeInteger(n) || n < this.sb.firstDataBlock || n >= this.sb.blocksCount)
      throw new Ext4Error("out-of-range", `${what}: block ${n} is outside the file system`);
  }

  /** Reads blocks from the device into the cache (raw: no journal), in one request. */
  private async fetchRaw(first: number, count: number): Promise<void> {
    const bs = this.sb.blockSize;
    const data = await this.src.read(first * bs, count * bs);
    for (let i = 0; i < count; i++) this.cache.set(first + i, data.subarray(i * bs, (i + 1) * bs));
  }

  /** One block as the device has it (cached), without the journal. */
  async readRawBlock(n: number, readahead = 1): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.sb.blocksCount)
      throw new Ext4Error("out-of-range", `block ${n} is outside the file system's ${this.sb.blocksCount}`);
    let b = this.cache.get(n);
    if (!b) {
      let count = 1;
      while (count < readahead && n + count < this.sb.blocksCount && !this.cache.get(n + count)) count++;
      await this.fetchRaw(n, count);
      b = this.cache.get(n);
      // A cache too small to hold the block: read it alone.
      if (!b) b = await this.src.read(n * this.sb.blockSize, this.sb.blockSize);
    }
    return b;
  }

  /** One metadata block as the guest sees it (the journal applied), cached. */
  async readBlock(n: number, readahead = 1): Promise<Buffer> {
    const logged = this.overlay?.blocks.get(n);
    if (logged) return this.loggedBlock(logged.location, logged.escaped);
    return this.readRawBlock(n, readahead);
  }

  private async loggedBlock(location: number, escaped: boolean): Promise<Buffer> {
    const raw = await this.readRawBlock(location);
    if (!escaped) return raw;
    const b = Buffer.from(raw);
    b.writeUInt32BE(JBD2_MAGIC, 0);
    return b;
  }

  // ---- inodes -------------------------------------------------------------------------------

  checkIno(ino: number): void {
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > this.sb.inodesCount)
      throw new Ext4Error("out-of-range", `inode ${ino} (the file system has ${this.sb.inodesCount})`);
  }

  /** The block holding inode `ino`, and the inode's offset in it. */
  inodeLocation(ino: number): { block: number; offset: number } {
    this.checkIno(ino);
    const sb = this.sb;
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const byte = index * sb.inodeSize;
    return {
      block: this.groups[g].inodeTable + Math.floor(byte / sb.blockSize),
      offset: byte % sb.blockSize,
    };
  }

  /** The inodes stored in block `block` of an inode table (empty when it is not one). */
  inodesInBlock(block: number): number[] {
    const sb = this.sb;
    const tableBlocks = inodeTableBlocks(sb);
    const perBlock = sb.blockSize / sb.inodeSize;
    const out: number[] = [];
    for (let g = 0; g < this.groups.length; g++) {
      const t = this.groups[g].inodeTable;
      if (block < t || block >= t + tableBlocks) continue;
      const first = g * sb.inodesPerGroup + (block - t) * perBlock + 1;
      for (let i = 0; i < perBlock && first + i <= (g + 1) * sb.inodesPerGroup; i++) out.push(first + i);
    }
    return out;
  }

  /** Every inode table as [first block, blocks]. */
  inodeTables(): Array<[number, number]> {
    const n = inodeTableBlocks(this.sb);
    return this.groups.map((g) => [g.inodeTable, n]);
  }

  async inode(ino: number): Promise<Inode> {
    const { block, offset } = this.inodeLocation(ino);
    const g = this.groups[Math.floor((ino - 1) / this.sb.inodesPerGroup)];
    // Read ahead within the group's used part of its table (a walk visits neighbours next).
    const usedBlocks = Math.ceil(
      ((this.sb.inodesPerGroup - (g.flags & BG_INODE_UNINIT ? this.sb.inodesPerGroup : g.itableUnused)) *
        this.sb.inodeSize) /
        this.sb.blockSize,
    );
    const ahead = Math.max(1, Math.min(this.limits.readaheadBlocks, g.inodeTable + usedBlocks - block));
    const b = await this.readBlock(block, ahead);
    return parseInode(this.sb, ino, b, offset);
  }

  // ---- block maps -----------------------------------------------------------------------------

  /** Where a file's blocks are: its extent tree, or its ext2/3 block map. */
  async map(inode: Inode): Promise<FileMap> {
    if (inode.flags & EXT4_INLINE_DATA_FL)
      throw new Ext4Error(
        "unsupported",
        `inode ${inode.ino}: inline data (contents in the inode) is not read`,
      );
    if (inode.flags & EXT4_EXTENTS_FL) return this.mapExtents(inode);
    return this.mapBlocks(inode);
  }

  private async mapExtents(inode: Inode): Promise<FileMap> {
    const what = `inode ${inode.ino}`;
    const runs: FileRun[] = [];
    const mapBlocks: number[] = [];
    const seen = new Set<number>();
    let nextLogical = 0;
    const visit = async (node: ExtentNode, where: string): Promise<void> => {
      if (node.kind === "leaves") {
        for (const e of node.leaves) {
          if (e.block < nextLogical)
            throw new Ext4Error(
              "bad-value",
              `${where}: extent at logical block ${e.block} overlaps an earlier one`,
            );
          this.checkBlock(e.start, `${where}: extent`);
          this.checkBlock(e.start + e.len - 1, `${where}: extent end`);
          if (runs.length >= this.limits.maxExtentsPerFile)
            throw new Ext4Error("too-many", `${what}: more than ${this.limits.maxExtentsPerFile} extents`);
          runs.push({ logical: e.block, physical: e.start, length: e.len, uninit: e.uninit });
          nextLogical = e.block + e.len;
        }
        return;
      }
      for (const idx of node.indexes) {
        if (idx.block < nextLogical)
          throw new Ext4Error(
            "bad-value",
            `${where}: index at logical block ${idx.block} overlaps an earlier one`,
          );
        this.checkBlock(idx.leaf, `${where}: extent index`);
        if (seen.has(idx.leaf))
          throw new Ext4Error("loop", `${what}: extent tree node ${idx.leaf} is referenced twice`);
        if (seen.size >= this.limits.maxMapNodes)
          throw new Ext4Error("too-many", `${what}: more than ${this.limits.maxMapNodes} extent tree nodes`);
        seen.add(idx.leaf);
        mapBlocks.push(idx.leaf);
        const child = parseExtentNode(
          await this.readBlock(idx.leaf),
          0,
          this.sb.blockSize,
          `${what}: extent node ${idx.leaf}`,
        );
        if (child.depth !== node.depth - 1)
          throw new Ext4Error(
            "bad-value",
            `${what}: extent node ${idx.leaf} has depth ${child.depth} under a node of depth ${node.depth}`,
          );
        if (child.kind === "leaves" && child.leaves.length > 0 && child.leaves[0].block < idx.block)
          throw new Ext4Error("bad-value", `${what}: extent node ${idx.leaf} starts before its index`);
        await visit(child, `${what}: extent node ${idx.leaf}`);
      }
    };
    await visit(parseExtentNode(inode.iBlock, 0, 60, `${what}: extent root`), `${what}: extent root`);
    return { runs, mapBlocks };
  }

  private async mapBlocks(inode: Inode): Promise<FileMap> {
    const what = `inode ${inode.ino} (block map)`;
    const bs = this.sb.blockSize;
    const blocks = Math.ceil(inode.size / bs);
    if (blocks > this.limits.maxMappedBlocks)
      throw new Ext4Error("too-many", `${what}: ${blocks} blocks (limit ${this.limits.maxMappedBlocks})`);
    const per = bs / 4;
    const runs: FileRun[] = [];
    const mapBlocks: number[] = [];
    const add = (logical: number, physical: number) => {
      const last = runs[runs.length - 1];
      if (last && last.logical + last.length === logical && last.physical + last.length === physical)
        last.length++;
      else {
        if (runs.length >= this.limits.maxExtentsPerFile)
          throw new Ext4Error("too-many", `${what}: more than ${this.limits.maxExtentsPerFile} runs`);
        runs.push({ logical, physical, length: 1, uninit: false });
      }
    };
    // level 0: a data block; level k: a block of pointers to level k-1, covering per^k blocks.
    const walk = async (ptr: number, level: number, logical: number): Promise<void> => {
      if (ptr === 0 || logical >= blocks) return;
      this.checkBlock(ptr, what);
      if (level === 0) return add(logical, ptr);
      if (mapBlocks.length >= this.limits.maxMapNodes)
        throw new Ext4Error("too-many", `${what}: more than ${this.limits.maxMapNodes} indirect blocks`);
      mapBlocks.push(ptr);
      const b = await this.readBlock(ptr);
      const span = per ** (level - 1);
      for (let i = 0; i < per && logical + i * span < blocks; i++)
        await walk(b.readUInt32LE(i * 4), level - 1, logical + i * span);
    };
    for (let i = 0; i < 12; i++) await walk(inode.iBlock.readUInt32LE(i * 4), 0, i);
    await walk(inode.iBlock.readUInt32LE(48), 1, 12);
    await walk(inode.iBlock.readUInt32LE(52), 2, 12 + per);
    await walk(inode.iBlock.readUInt32LE(56), 3, 12 + per + per * per);
    return { runs, mapBlocks };
  }

  // ---- contents -------------------------------------------------------------------------------

  private checkReadable(inode: Inode): void {
    if (inode.flags & EXT4_ENCRYPT_FL)
      throw new Ext4Error("unsupported", `inode ${inode.ino}: encrypted (fscrypt) contents are not read`);
  }

  /** A directory's entries (linear walk over its blocks; "." and ".." included). */
  async readDir(inode: Inode): Promise<DirEntry[]> {
    if (inode.type !== "dir") throw new Ext4Error("not-a-directory", `inode ${inode.ino} is a ${inode.type}`);
    this.checkReadable(inode);
    if (inode.size > this.limits.maxDirBytes)
      throw new Ext4Error(
        "too-many",
        `directory inode ${inode.ino}: ${inode.size} bytes (limit ${this.limits.maxDirBytes})`,
      );
    const bs = this.sb.blockSize;
    const blocks = Math.ceil(inode.size / bs);
    const { runs } = await this.map(inode);
    const hasFileType = (this.sb.featureIncompat & INCOMPAT_FILETYPE) !== 0;
    const out: DirEntry[] = [];
    for (const r of runs) {
      if (r.uninit) continue;
      for (let i = 0; i < r.length && r.logical + i < blocks; i++) {
        const ahead = Math.min(this.limits.readaheadBlocks, r.length - i, blocks - r.logical - i);
        const b = await this.readBlock(r.physical + i, ahead);
        for (const e of parseDirBlock(
          b,
          bs,
          hasFileType,
          `directory inode ${inode.ino} block ${r.logical + i}`,
        )) {
          if (out.length >= this.limits.maxDirEntries)
            throw new Ext4Error(
              "too-many",
              `directory inode ${inode.ino}: more than ${this.limits.maxDirEntries} entries`,
            );
          this.checkIno(e.ino);
          out.push(e);
        }
      }
    }
    return out;
  }

  /**
   * A file's bytes, in pieces of at most `pieceBytes` (default 1 MiB), up to `window` reads in
   * flight (default 4): holes and preallocated extents as zeros, journaled blocks applied.
   */
  async *readFile(
    inode: Inode,
    opts: { pieceBytes?: number; window?: number; map?: FileMap } = {},
  ): AsyncGenerator<FilePiece> {
    this.checkReadable(inode);
    if (inode.size === 0) return;
    const bs = this.sb.blockSize;
    const pieceBlocks = Math.max(1, Math.floor((opts.pieceBytes ?? 1024 * 1024) / bs));
    const window = Math.max(1, opts.window ?? 4);
    const fileMap = opts.map ?? (await this.map(inode));
    const blocks = Math.ceil(inode.size / bs);
    // Pieces: [logical, count, physical | null (zeros)], covering 0..blocks without gaps.
    const pieces: Array<[number, number, number | null]> = [];
    let at = 0;
    const zeros = (until: number) => {
      while (at < until) {
        const n = Math.min(pieceBlocks, until - at);
        pieces.push([at, n, null]);
        at += n;
      }
    };
    for (const r of fileMap.runs) {
      if (r.logical >= blocks) break;
      zeros(r.logical);
      const end = Math.min(r.logical + r.length, blocks);
      while (at < end) {
        const n = Math.min(pieceBlocks, end - at);
        pieces.push([at, n, r.uninit ? null : r.physical + (at - r.logical)]);
        at += n;
      }
    }
    zeros(blocks);
    const fetch = async ([logical, count, physical]: [number, number, number | null]): Promise<FilePiece> => {
      const offset = logical * bs;
      const length = Math.min(count * bs, inode.size - offset);
      if (physical === null) return { offset, data: Buffer.alloc(length), physical };
      const data = await this.readData(physical, count);
      return { offset, data: length === data.length ? data : data.subarray(0, length), physical };
    };
    const queue: Array<Promise<FilePiece>> = [];
    let next = 0;
    const fill = () => {
      while (queue.length < window && next < pieces.length) {
        const p = fetch(pieces[next++]);
        p.catch(() => {}); // awaited in order below
        queue.push(p);
      }
    };
    fill();
    while (queue.length > 0) {
      const piece = await queue.shift()!;
      fill();
      yield piece;
    }
  }

  /** Blocks [first, first + count) of file data from the device, journaled copies applied. */
  async readData(first: number, count: number): Promise<Buffer> {
    this.checkBlock(first, "data");
    this.checkBlock(first + count - 1, "data");
    const bs = this.sb.blockSize;
    let data: Buffer | null = null;
    if (this.prefetched.size > 0) {
      data = Buffer.allocUnsafe(count * bs);
      for (let i = 0; i < count && data; i++) {
        const b = this.prefetched.get(first + i);
        if (b) b.copy(data, i * bs);
        else data = null;
      }
    }
    data ??= await this.src.read(first * bs, count * bs);
    await this.applyOverlay(data, first, count);
    return data;
  }

  /**
   * Reads ranges of data blocks ahead, one request per range, all at once: many small files'
   * blocks then cost a few large requests instead of one each. Kept for this open only (the
   * device must not change under one open: a view is frozen) and up to `maxBytes` in all;
   * ranges past it are left to be read when asked for. Returns the bytes read.
   */
  async prefetchData(ranges: ReadonlyArray<[number, number]>, maxBytes: number): Promise<number> {
    const bs = this.sb.blockSize;
    const take: Array<[number, number]> = [];
    for (const [first, count] of ranges) {
      if (count <= 0) continue;
      this.checkBlock(first, "prefetch");
      this.checkBlock(first + count - 1, "prefetch");
      if (this.prefetchedBytes + count * bs > maxBytes) break;
      this.prefetchedBytes += count * bs;
      take.push([first, count]);
    }
    // A few requests in flight at once (a large write can name many ranges).
    for (let k = 0; k < take.length; k += PREFETCH_IN_FLIGHT) {
      const batch = take.slice(k, k + PREFETCH_IN_FLIGHT);
      const read = await Promise.all(batch.map(([first, count]) => this.src.read(first * bs, count * bs)));
      batch.forEach(([first, count], j) => {
        for (let i = 0; i < count; i++)
          this.prefetched.set(first + i, read[j].subarray(i * bs, (i + 1) * bs));
      });
    }
    return take.reduce((n, [, count]) => n + count * bs, 0);
  }

  /** Journaled versions of blocks [first, first + count) copied over `data`. */
  private async applyOverlay(data: Buffer, first: number, count: number): Promise<void> {
    if (!this.overlay || this.overlayKeys.length === 0) return;
    const keys = this.overlayKeys;
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < first) lo = mid + 1;
      else hi = mid;
    }
    const bs = this.sb.blockSize;
    for (let i = lo; i < keys.length && keys[i] < first + count; i++) {
      const logged = this.overlay.blocks.get(keys[i])!;
      (await this.loggedBlock(logged.location, logged.escaped)).copy(data, (keys[i] - first) * bs);
    }
  }

  /**
   * Whether a symlink keeps its target in the inode (i_block holds text, not a block map): the
   * kernel's ext4_inode_is_fast_symlink, no blocks but an extended attribute block's.
   */
  isFastSymlink(inode: Inode): boolean {
    if (inode.type !== "symlink") return false;
    const eaBlocks = inode.fileAcl !== 0 ? this.sb.blockSize / 512 : 0;
    return (inode.flags & EXT4_INLINE_DATA_FL) !== 0 || inode.blocks - eaBlocks === 0;
  }

  /** A symlink's target bytes (in the inode when short, else in its block). */
  async readLink(inode: Inode): Promise<Buffer> {
    if (inode.type !== "symlink") throw new Ext4Error("bad-value", `inode ${inode.ino} is not a symlink`);
    if (inode.size > this.limits.maxSymlinkBytes)
      throw new Ext4Error(
        "too-many",
        `symlink inode ${inode.ino}: ${inode.size} bytes (limit ${this.limits.maxSymlinkBytes})`,
      );
    if (this.isFastSymlink(inode)) {
      if (inode.size >= 60)
        throw new Ext4Error("bad-value", `symlink inode ${inode.ino}: ${inode.size} bytes kept in the inode`);
      return Buffer.from(inode.iBlock.subarray(0, inode.size));
    }
    const parts: Buffer[] = [];
    for await (const p of this.readFile(inode)) parts.push(p.data);
    return Buffer.concat(parts);
  }

  // ---- paths ----------------------------------------------------------------------------------

  /** The inode at an absolute path (symlinks are not followed; ".." and "." are entries). */
  async lookup(path: string): Promise<Inode> {
    if (!path.startsWith("/")) throw new Ext4Error("not-found", `not an absolute path: ${path}`);
    let cur = await this.inode(ROOT_INO);
    const parts = path.split("/").filter((p) => p !== "");
    for (let i = 0; i < parts.length; i++) {
      if (cur.type !== "dir")
        throw new Ext4Error("not-a-directory", `/${parts.slice(0, i).join("/")} is a ${cur.type}`);
      const entry = (await this.readDir(cur)).find((e) => nameToString(e.name) === parts[i]);
      if (!entry) throw new Ext4Error("not-found", `no /${parts.slice(0, i + 1).join("/")}`);
      cur = await this.inode(entry.ino);
    }
    return cur;
  }

  /** A whole file's bytes (at most `maxBytes`, default 64 MiB). */
  async readWhole(inode: Inode, maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
    if (inode.size > maxBytes)
      throw new Ext4Error("too-many", `inode ${inode.ino}: ${inode.size} bytes (limit ${maxBytes})`);
    const out = Buffer.alloc(inode.size);
    for await (const p of this.readFile(inode)) p.data.copy(out, p.offset);
    return out;
  }
}

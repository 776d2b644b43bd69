// ext4's on-disk structures, parsed from buffers (pure: no I/O). Field offsets follow the
// kernel's fs/ext4/ext4.h and e2fsprogs' lib/ext2fs/ext2_fs.h. Every field comes from the
// guest: each parser checks what it returns against the limits ext4 itself enforces (and the
// buffer it was given), so the rest of the reader can trust sizes, counts and depths.
import { Ext4Error } from "./errors.ts";

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_BYTES = 1024;
export const EXT4_MAGIC = 0xef53;
export const ROOT_INO = 2;

// s_feature_compat
export const COMPAT_HAS_JOURNAL = 0x4;
export const COMPAT_DIR_INDEX = 0x20;
export const COMPAT_SPARSE_SUPER2 = 0x200;
export const COMPAT_FAST_COMMIT = 0x400;
// s_feature_incompat
export const INCOMPAT_COMPRESSION = 0x1;
export const INCOMPAT_FILETYPE = 0x2;
export const INCOMPAT_RECOVER = 0x4;
export const INCOMPAT_JOURNAL_DEV = 0x8;
export const INCOMPAT_META_BG = 0x10;
export const INCOMPAT_EXTENTS = 0x40;
export const INCOMPAT_64BIT = 0x80;
export const INCOMPAT_MMP = 0x100;
export const INCOMPAT_FLEX_BG = 0x200;
export const INCOMPAT_EA_INODE = 0x400;
export const INCOMPAT_DIRDATA = 0x1000;
export const INCOMPAT_CSUM_SEED = 0x2000;
export const INCOMPAT_LARGEDIR = 0x4000;
export const INCOMPAT_INLINE_DATA = 0x8000;
export const INCOMPAT_ENCRYPT = 0x10000;
export const INCOMPAT_CASEFOLD = 0x20000;
/** Incompatible features this reader understands (reading needs nothing more from them). */
const INCOMPAT_KNOWN =
  INCOMPAT_FILETYPE |
  INCOMPAT_RECOVER |
  INCOMPAT_META_BG |
  INCOMPAT_EXTENTS |
  INCOMPAT_64BIT |
  INCOMPAT_MMP |
  INCOMPAT_FLEX_BG |
  INCOMPAT_EA_INODE |
  INCOMPAT_CSUM_SEED |
  INCOMPAT_LARGEDIR |
  INCOMPAT_INLINE_DATA |
  INCOMPAT_ENCRYPT |
  INCOMPAT_CASEFOLD;
// s_feature_ro_compat
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_HUGE_FILE = 0x8;
export const RO_COMPAT_BIGALLOC = 0x200;
export const RO_COMPAT_METADATA_CSUM = 0x400;

// i_flags
export const EXT4_INDEX_FL = 0x1000;
export const EXT4_ENCRYPT_FL = 0x800;
export const EXT4_EXTENTS_FL = 0x80000;
export const EXT4_EA_INODE_FL = 0x200000;
export const EXT4_INLINE_DATA_FL = 0x10000000;

export const EXTENT_MAGIC = 0xf30a;
/** The kernel's EXT4_MAX_EXTENT_DEPTH. */
export const MAX_EXTENT_DEPTH = 5;
/** An extent longer than this is an uninitialized (preallocated, reads as zeros) one. */
export const EXT_INIT_MAX_LEN = 32768;

/** Largest block size ext4 supports (64 KiB). */
const MAX_LOG_BLOCK_SIZE = 6;

export interface Superblock {
  inodesCount: number;
  blocksCount: number;
  firstDataBlock: number;
  blockSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  firstIno: number;
  revLevel: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  /** Bytes per group descriptor: 32, or s_desc_size with 64bit. */
  descSize: number;
  groupCount: number;
  firstMetaBg: number;
  journalInum: number;
  journalDev: number;
  /** s_backup_bgs with sparse_super2. */
  backupBgs: [number, number];
  uuid: string;
  volumeName: string;
  /** s_mtime: when it was last mounted (Unix seconds). */
  mountTime: number;
  /** s_wtime: when the superblock was last written. */
  writeTime: number;
}

const u16 = (b: Buffer, o: number) => b.readUInt16LE(o);
const u32 = (b: Buffer, o: number) => b.readUInt32LE(o);
const hasFlag = (v: number, f: number) => (v & f) !== 0;

function need(b: Buffer, offset: number, bytes: number, what: string): void {
  if (offset < 0 || offset + bytes > b.length)
    throw new Ext4Error("truncated", `${what}: needs ${bytes} bytes at ${offset}, buffer has ${b.length}`);
}

function hexUuid(b: Buffer): string {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parses and checks the superblock (the 1024 bytes at byte offset 1024). */
export function parseSuperblock(b: Buffer): Superblock {
  need(b, 0, SUPERBLOCK_BYTES, "superblock");
  const magic = u16(b, 0x38);
  if (magic !== EXT4_MAGIC)
    throw new Ext4Error("bad-magic", `superblock magic 0x${magic.toString(16)} (ext2/3/4: 0xef53)`);
  const featureCompat = u32(b, 0x5c);
  const featureIncompat = u32(b, 0x60);
  const featureRoCompat = u32(b, 0x64);
  const unknown = featureIncompat & ~INCOMPAT_KNOWN;
  if (unknown !== 0) {
    const names: string[] = [];
    if (unknown & INCOMPAT_COMPRESSION) names.push("compression");
    if (unknown & INCOMPAT_JOURNAL_DEV)
      names.push("journal_dev (an external journal device, not a file system)");
    if (unknown & INCOMPAT_DIRDATA) names.push("dirdata");
    const rest = unknown & ~(INCOMPAT_COMPRESSION | INCOMPAT_JOURNAL_DEV | INCOMPAT_DIRDATA);
    if (rest) names.push(`0x${rest.toString(16)}`);
    throw new Ext4Error("unsupported", `incompatible features ${names.join(", ")}`);
  }
  if (hasFlag(featureRoCompat, RO_COMPAT_BIGALLOC))
    throw new Ext4Error("unsupported", "bigalloc (block clusters) is not read by this reader");

  const logBlockSize = u32(b, 0x18);
  if (logBlockSize > MAX_LOG_BLOCK_SIZE)
    throw new Ext4Error("bad-value", `s_log_block_size ${logBlockSize} (at most ${MAX_LOG_BLOCK_SIZE})`);
  const blockSize = 1024 << logBlockSize;
  const is64 = hasFlag(featureIncompat, INCOMPAT_64BIT);
  const blocksCount = u32(b, 0x4) + (is64 ? u32(b, 0x150) * 2 ** 32 : 0);
  const firstDataBlock = u32(b, 0x14);
  if (firstDataBlock !== (blockSize === 1024 ? 1 : 0))
    throw new Ext4Error("bad-value", `s_first_data_block ${firstDataBlock} with ${blockSize}-byte blocks`);
  if (blocksCount <= firstDataBlock || blocksCount > 2 ** 48)
    throw new Ext4Error("bad-value", `s_blocks_count ${blocksCount}`);
  const blocksPerGroup = u32(b, 0x20);
  if (blocksPerGroup < 8 || blocksPerGroup > 8 * blockSize || blocksPerGroup % 8 !== 0)
    throw new Ext4Error("bad-value", `s_blocks_per_group ${blocksPerGroup} (8..${8 * blockSize})`);
  const inodesPerGroup = u32(b, 0x28);
  if (inodesPerGroup < 1 || inodesPerGroup > 8 * blockSize)
    throw new Ext4Error("bad-value", `s_inodes_per_group ${inodesPerGroup} (1..${8 * blockSize})`);
  const revLevel = u32(b, 0x4c);
  const inodeSize = revLevel === 0 ? 128 : u16(b, 0x58);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0)
    throw new Ext4Error("bad-value", `s_inode_size ${inodeSize}`);
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  const inodesCount = u32(b, 0x0);
  if (inodesCount !== groupCount * inodesPerGroup)
    throw new Ext4Error(
      "bad-value",
      `s_inodes_count ${inodesCount} is not ${groupCount} groups x ${inodesPerGroup} inodes`,
    );
  const firstIno = revLevel === 0 ? 11 : u32(b, 0x54);
  if (firstIno < 3 || firstIno > inodesCount) throw new Ext4Error("bad-value", `s_first_ino ${firstIno}`);
  let descSize = 32;
  if (is64) {
    descSize = u16(b, 0xfe);
    if (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0)
      throw new Ext4Error("bad-value", `s_desc_size ${descSize} (64bit: a power of 2 in 64..1024)`);
  }
  const firstMetaBg = u32(b, 0x104);
  const nameEnd = b.indexOf(0, 0x78);
  return {
    inodesCount,
    blocksCount,
    firstDataBlock,
    blockSize,
    blocksPerGroup,
    inodesPerGroup,
    inodeSize,
    firstIno,
    revLevel,
    featureCompat,
    featureIncompat,
    featureRoCompat,
    descSize,
    groupCount,
    firstMetaBg,
    journalInum: hasFlag(featureCompat, COMPAT_HAS_JOURNAL) ? u32(b, 0xe0) : 0,
    journalDev: u32(b, 0xe4),
    backupBgs: [u32(b, 0x24c), u32(b, 0x250)],
    uuid: hexUuid(b.subarray(0x68, 0x78)),
    volumeName: b.toString("latin1", 0x78, nameEnd < 0 || nameEnd > 0x88 ? 0x88 : nameEnd),
    mountTime: u32(b, 0x2c),
    writeTime: u32(b, 0x30),
  };
}

const isPowerOf = (n: number, base: number) => {
  let x = n;
  while (x > 1 && x % base === 0) x /= base;
  return x === 1;
};

/** Whether block group `g` holds a superblock (and group descriptor) copy. */
export function groupHasSuperblock(sb: Superblock, g: number): boolean {
  if (g === 0) return true;
  if (hasFlag(sb.featureCompat, COMPAT_SPARSE_SUPER2)) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (!hasFlag(sb.featureRoCompat, RO_COMPAT_SPARSE_SUPER)) return true;
  return g === 1 || isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

export function groupFirstBlock(sb: Superblock, g: number): number {
  return sb.firstDataBlock + g * sb.blocksPerGroup;
}

/** Group descriptors in one block. */
export function descriptorsPerBlock(sb: Superblock): number {
  return sb.blockSize / sb.descSize;
}

/** The block holding the `index`-th block of group descriptors (meta_bg spreads them). */
export function descriptorBlock(sb: Superblock, index: number): number {
  if (!hasFlag(sb.featureIncompat, INCOMPAT_META_BG) || index < sb.firstMetaBg)
    return sb.firstDataBlock + 1 + index;
  const g = index * descriptorsPerBlock(sb);
  return groupFirstBlock(sb, g) + (groupHasSuperblock(sb, g) ? 1 : 0);
}

export interface GroupDescriptor {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  /** Inodes at the end of the table never used (with uninit_bg/metadata_csum). */
  itableUnused: number;
}

export const BG_INODE_UNINIT = 0x1;

/** Parses group `g`'s descriptor at `offset` of a descriptor block and checks its table. */
export function parseGroupDescriptor(sb: Superblock, b: Buffer, offset: number, g: number): GroupDescriptor {
  need(b, offset, sb.descSize, `group descriptor ${g}`);
  const is64 = sb.descSize >= 64;
  const hi = (o: number) => (is64 ? u32(b, offset + o) * 2 ** 32 : 0);
  const d: GroupDescriptor = {
    blockBitmap: u32(b, offset) + hi(0x20),
    inodeBitmap: u32(b, offset + 0x4) + hi(0x24),
    inodeTable: u32(b, offset + 0x8) + hi(0x28),
    flags: u16(b, offset + 0x12),
    itableUnused: u16(b, offset + 0x1c) + (is64 ? u16(b, offset + 0x32) * 65536 : 0),
  };
  const tableBlocks = inodeTableBlocks(sb);
  if (d.inodeTable < sb.firstDataBlock || d.inodeTable + tableBlocks > sb.blocksCount)
    throw new Ext4Error(
      "out-of-range",
      `group ${g}: inode table at block ${d.inodeTable} (+${tableBlocks}) is outside the ${sb.blocksCount} blocks`,
    );
  if (d.itableUnused > sb.inodesPerGroup)
    throw new Ext4Error("bad-value", `group ${g}: ${d.itableUnused} unused inodes of ${sb.inodesPerGroup}`);
  return d;
}

export function inodeTableBlocks(sb: Superblock): number {
  return Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
}

// ---- inodes --------------------------------------------------------------------------------

export type FileType = "file" | "dir" | "symlink" | "chr" | "blk" | "fifo" | "sock" | "unknown";

const S_IFMT = 0xf000;
const TYPE_BY_MODE: Record<number, FileType> = {
  32768: "file", // S_IFREG
  16384: "dir", // S_IFDIR
  40960: "symlink", // S_IFLNK
  8192: "chr", // S_IFCHR
  24576: "blk", // S_IFBLK
  4096: "fifo", // S_IFIFO
  49152: "sock", // S_IFSOCK
};

export function fileTypeOfMode(mode: number): FileType {
  return TYPE_BY_MODE[mode & S_IFMT] ?? "unknown";
}

export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface Inode {
  ino: number;
  mode: number;
  type: FileType;
  uid: number;
  gid: number;
  size: number;
  linksCount: number;
  flags: number;
  atime: Timestamp;
  ctime: Timestamp;
  mtime: Timestamp;
  dtime: number;
  generation: number;
  /** 512-byte sectors (or blocks with huge_file's EXT4_HUGE_FILE_FL). */
  blocks: number;
  fileAcl: number;
  /** i_block: the extent tree's root, block map, inline data or a fast symlink's target. */
  iBlock: Buffer;
}

/** Largest file size accepted: 2^53 - 1 (ext4's own limit with 64 KiB blocks is 2^48 blocks). */
const MAX_SAFE_SIZE = Number.MAX_SAFE_INTEGER;

/** Parses inode `ino` from `b` at `offset` (inodeSize bytes). */
export function parseInode(sb: Superblock, ino: number, b: Buffer, offset: number): Inode {
  need(b, offset, sb.inodeSize, `inode ${ino}`);
  const at = (o: number) => offset + o;
  const mode = u16(b, at(0x0));
  const sizeHi = u32(b, at(0x6c));
  const size = u32(b, at(0x4)) + sizeHi * 2 ** 32;
  if (size > MAX_SAFE_SIZE) throw new Ext4Error("bad-value", `inode ${ino}: size ${size} is too large`);
  let extra = 0;
  if (sb.inodeSize > 128) {
    extra = u16(b, at(0x80));
    if (extra % 4 !== 0 || 128 + extra > sb.inodeSize)
      throw new Ext4Error(
        "bad-value",
        `inode ${ino}: i_extra_isize ${extra} with ${sb.inodeSize}-byte inodes`,
      );
  }
  // A timestamp's seconds are signed 32 bits; with 4 bytes of *_extra: 2 epoch bits and nanoseconds.
  const time = (o: number, extraOff: number): Timestamp => {
    const sec = b.readInt32LE(at(o));
    if (128 + extra < extraOff + 4) return { sec, nsec: 0 };
    const x = u32(b, at(extraOff));
    return { sec: sec + (x & 3) * 2 ** 32, nsec: x >>> 2 };
  };
  const flags = u32(b, at(0x20));
  return {
    ino,
    mode,
    type: fileTypeOfMode(mode),
    uid: u16(b, at(0x2)) | (u16(b, at(0x78)) << 16),
    gid: u16(b, at(0x18)) | (u16(b, at(0x7a)) << 16),
    size,
    linksCount: u16(b, at(0x1a)),
    flags,
    atime: time(0x8, 0x8c),
    ctime: time(0xc, 0x84),
    mtime: time(0x10, 0x88),
    dtime: u32(b, at(0x14)),
    generation: u32(b, at(0x64)),
    blocks: u32(b, at(0x1c)) + u16(b, at(0x74)) * 2 ** 32,
    fileAcl: u32(b, at(0x68)) + u16(b, at(0x76)) * 2 ** 32,
    iBlock: Buffer.from(b.subarray(at(0x28), at(0x28 + 60))),
  };
}

// ---- extent trees --------------------------------------------------------------------------

export interface ExtentIndex {
  /** First logical block it covers. */
  block: number;
  /** Physical block of the child node. */
  leaf: number;
}

export interface ExtentLeaf {
  /** First logical block. */
  block: number;
  len: number;
  /** First physical block. */
  start: number;
  /** Preallocated, not written: reads as zeros. */
  uninit: boolean;
}

export type ExtentNode =
  | { kind: "leaves"; depth: 0; leaves: ExtentLeaf[] }
  | { kind: "indexes"; depth: number; indexes: ExtentIndex[] };

/**
 * Parses one extent tree node: `bytes` of room at `offset` (60 in the inode, a block
 * otherwise). Entries must fit the room, be sorted by logical block, and (leaves) not overlap.
 */
export function parseExtentNode(b: Buffer, offset: number, bytes: number, what: string): ExtentNode {
  need(b, offset, bytes, what);
  const magic = u16(b, offset);
  if (magic !== EXTENT_MAGIC)
    throw new Ext4Error("bad-magic", `${what}: extent header magic 0x${magic.toString(16)} (0xf30a)`);
  const entries = u16(b, offset + 2);
  const max = u16(b, offset + 4);
  const depth = u16(b, offset + 6);
  const room = Math.floor((bytes - 12) / 12);
  if (max > room || entries > max)
    throw new Ext4Error("bad-value", `${what}: ${entries} entries, max ${max}, room for ${room}`);
  if (depth > MAX_EXTENT_DEPTH)
    throw new Ext4Error("too-deep", `${what}: extent tree depth ${depth} (at most ${MAX_EXTENT_DEPTH})`);
  let prevEnd = -1;
  if (depth === 0) {
    const leaves: ExtentLeaf[] = [];
    for (let i = 0; i < entries; i++) {
      const o = offset + 12 + i * 12;
      const rawLen = u16(b, o + 4);
      const uninit = rawLen > EXT_INIT_MAX_LEN;
      const len = uninit ? rawLen - EXT_INIT_MAX_LEN : rawLen;
      const e = { block: u32(b, o), len, start: u16(b, o + 6) * 2 ** 32 + u32(b, o + 8), uninit };
      if (len === 0) throw new Ext4Error("bad-value", `${what}: extent ${i} has length 0`);
      if (e.block < prevEnd)
        throw new Ext4Error(
          "bad-value",
          `${what}: extent ${i} at logical block ${e.block} overlaps or is unsorted`,
        );
      prevEnd = e.block + len;
      if (prevEnd > 2 ** 32)
        throw new Ext4Error("out-of-range", `${what}: extent ${i} ends past 2^32 blocks`);
      leaves.push(e);
    }
    return { kind: "leaves", depth: 0, leaves };
  }
  const indexes: ExtentIndex[] = [];
  for (let i = 0; i < entries; i++) {
    const o = offset + 12 + i * 12;
    const e = { block: u32(b, o), leaf: u32(b, o + 4) + u16(b, o + 8) * 2 ** 32 };
    if (e.block <= prevEnd && i > 0)
      throw new Ext4Error("bad-value", `${what}: index ${i} at logical block ${e.block} is unsorted`);
    prevEnd = e.block;
    indexes.push(e);
  }
  return { kind: "indexes", depth, indexes };
}

/** A run of a file: `length` blocks at logical block `logical` stored from block `physical`. */
export interface FileRun {
  logical: number;
  physical: number;
  length: number;
  /** Preallocated (unwritten): reads as zeros whatever the blocks hold. */
  uninit: boolean;
}

export interface FileMap {
  /** Sorted by logical block, not overlapping. Holes are the gaps. */
  runs: FileRun[];
  /** Blocks holding the map itself (extent tree nodes, indirect blocks). */
  mapBlocks: number[];
}

// ---- directories ---------------------------------------------------------------------------

export interface DirEntry {
  ino: number;
  /** The name's bytes as stored (any bytes but "/" and NUL). */
  name: Buffer;
  /** From the entry (filetype feature), or "unknown". */
  type: FileType;
}

const DIRENT_TYPES: FileType[] = ["unknown", "file", "dir", "chr", "blk", "fifo", "sock", "symlink"];

/** rec_len as stored: 64 KiB blocks encode 65536 in 16 bits (ext4_rec_len_from_disk). */
function recLen(raw: number, blockSize: number): number {
  if (blockSize < 65536) return raw;
  if (raw === 65535 || raw === 0) return 65536;
  return (raw & 65532) | ((raw & 3) << 16);
}

/**
 * The entries of one directory block, read linearly (htree blocks too: their index data hides
 * in an entry with inode 0 or inside ".."'s record). Entries with inode 0 (deleted, the
 * checksum tail, index nodes) are skipped. Any record that does not fit is an error.
 */
export function parseDirBlock(b: Buffer, blockSize: number, hasFileType: boolean, what: string): DirEntry[] {
  need(b, 0, blockSize, what);
  const out: DirEntry[] = [];
  let o = 0;
  while (o < blockSize) {
    if (o + 8 > blockSize)
      throw new Ext4Error("bad-value", `${what}: entry header at ${o} crosses the block end`);
    const ino = u32(b, o);
    const len = recLen(u16(b, o + 4), blockSize);
    const nameLen = hasFileType ? b[o + 6] : u16(b, o + 6);
    if (len < 8 || len % 4 !== 0 || o + len > blockSize || 8 + nameLen > len)
      throw new Ext4Error(
        "bad-value",
        `${what}: entry at ${o}: rec_len ${len}, name_len ${nameLen} do not fit the ${blockSize}-byte block`,
      );
    if (ino !== 0) {
      if (nameLen === 0)
        throw new Ext4Error("bad-value", `${what}: entry at ${o} for inode ${ino} has no name`);
      const name = Buffer.from(b.subarray(o + 8, o + 8 + nameLen));
      if (name.includes(0x2f) || name.includes(0))
        throw new Ext4Error("bad-value", `${what}: entry at ${o} has "/" or NUL in its name`);
      out.push({ ino, name, type: hasFileType ? (DIRENT_TYPES[b[o + 7]] ?? "unknown") : "unknown" });
    }
    o += len;
  }
  return out;
}

// ---- the journal (jbd2; big-endian) -------------------------------------------------------

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_DESCRIPTOR_BLOCK = 1;
export const JBD2_COMMIT_BLOCK = 2;
export const JBD2_SUPERBLOCK_V1 = 3;
export const JBD2_SUPERBLOCK_V2 = 4;
export const JBD2_REVOKE_BLOCK = 5;
export const JBD2_FEATURE_INCOMPAT_REVOKE = 0x1;
export const JBD2_FEATURE_INCOMPAT_64BIT = 0x2;
export const JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT = 0x4;
export const JBD2_FEATURE_INCOMPAT_CSUM_V2 = 0x8;
export const JBD2_FEATURE_INCOMPAT_CSUM_V3 = 0x10;
export const JBD2_FEATURE_INCOMPAT_FAST_COMMIT = 0x20;
const JBD2_INCOMPAT_KNOWN =
  JBD2_FEATURE_INCOMPAT_REVOKE |
  JBD2_FEATURE_INCOMPAT_64BIT |
  JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT |
  JBD2_FEATURE_INCOMPAT_CSUM_V2 |
  JBD2_FEATURE_INCOMPAT_CSUM_V3 |
  JBD2_FEATURE_INCOMPAT_FAST_COMMIT;
// Tag flags
export const JBD2_FLAG_ESCAPE = 1;
export const JBD2_FLAG_SAME_UUID = 2;
export const JBD2_FLAG_LAST_TAG = 8;

export interface JournalHeader {
  magic: number;
  blockType: number;
  sequence: number;
}

export function parseJournalHeader(b: Buffer): JournalHeader {
  need(b, 0, 12, "journal block header");
  return { magic: b.readUInt32BE(0), blockType: b.readUInt32BE(4), sequence: b.readUInt32BE(8) };
}

export interface JournalSuperblock {
  blockSize: number;
  /** Blocks in the journal. */
  maxLen: number;
  /** First block of the log area. */
  first: number;
  /** Sequence number of the first transaction expected in the log. */
  sequence: number;
  /** Block of the log's start; 0 when the journal is empty (clean). */
  start: number;
  incompat: number;
  /** Blocks at the end reserved for fast commits (not part of the circular log). */
  fastCommitBlocks: number;
}

export function parseJournalSuperblock(b: Buffer, fsBlockSize: number): JournalSuperblock {
  need(b, 0, 1024, "journal superblock");
  const h = parseJournalHeader(b);
  if (h.magic !== JBD2_MAGIC)
    throw new Ext4Error("bad-magic", `journal superblock magic 0x${h.magic.toString(16)} (0xc03b3998)`);
  if (h.blockType !== JBD2_SUPERBLOCK_V1 && h.blockType !== JBD2_SUPERBLOCK_V2)
    throw new Ext4Error("bad-value", `journal superblock type ${h.blockType}`);
  const v2 = h.blockType === JBD2_SUPERBLOCK_V2;
  const incompat = v2 ? b.readUInt32BE(0x28) : 0;
  const unknown = incompat & ~JBD2_INCOMPAT_KNOWN;
  if (unknown) throw new Ext4Error("unsupported", `journal incompatible features 0x${unknown.toString(16)}`);
  const js: JournalSuperblock = {
    blockSize: b.readUInt32BE(0xc),
    maxLen: b.readUInt32BE(0x10),
    first: b.readUInt32BE(0x14),
    sequence: b.readUInt32BE(0x18),
    start: b.readUInt32BE(0x1c),
    incompat,
    fastCommitBlocks: 0,
  };
  if (js.blockSize !== fsBlockSize)
    throw new Ext4Error(
      "bad-value",
      `journal block size ${js.blockSize} differs from the file system's ${fsBlockSize}`,
    );
  if (incompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT) {
    const n = b.readUInt32BE(0x54);
    js.fastCommitBlocks = n === 0 ? 256 : n; // JBD2_DEFAULT_FAST_COMMIT_BLOCKS
  }
  const logEnd = js.maxLen - js.fastCommitBlocks;
  if (js.first < 1 || js.first >= logEnd)
    throw new Ext4Error(
      "bad-value",
      `journal: first log block ${js.first} of ${js.maxLen} (${logEnd} for the log)`,
    );
  if (js.start !== 0 && (js.start < js.first || js.start >= logEnd))
    throw new Ext4Error("bad-value", `journal: log start ${js.start} outside ${js.first}..${logEnd - 1}`);
  return js;
}

/** Bytes of one descriptor block tag (the kernel's journal_tag_bytes). */
export function journalTagBytes(incompat: number): number {
  if (incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3) return 16;
  let n = 12;
  if (incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2) n += 2;
  return incompat & JBD2_FEATURE_INCOMPAT_64BIT ? n : n - 4;
}

export interface JournalTag {
  /** The file system block the logged block belongs to. */
  target: number;
  /** Its first 4 bytes were the journal magic: they are zero in the log and restored on replay. */
  escaped: boolean;
}

/** The tags of a descriptor block (one logged block follows per tag, in order). */
export function parseDescriptorTags(b: Buffer, incompat: number, blockSize: number): JournalTag[] {
  need(b, 0, blockSize, "journal descriptor block");
  const tagBytes = journalTagBytes(incompat);
  const csum = (incompat & (JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3)) !== 0;
  const end = blockSize - (csum ? 4 : 0);
  const is64 = (incompat & JBD2_FEATURE_INCOMPAT_64BIT) !== 0;
  const v3 = (incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3) !== 0;
  const tags: JournalTag[] = [];
  let o = 12;
  while (o + tagBytes <= end) {
    const lo = b.readUInt32BE(o);
    const flags = v3 ? b.readUInt32BE(o + 4) : b.readUInt16BE(o + 6);
    const hi = is64 ? b.readUInt32BE(o + 8) : 0;
    tags.push({ target: hi * 2 ** 32 + lo, escaped: (flags & JBD2_FLAG_ESCAPE) !== 0 });
    o += tagBytes;
    if (!(flags & JBD2_FLAG_SAME_UUID)) o += 16;
    if (flags & JBD2_FLAG_LAST_TAG) return tags;
  }
  return tags;
}

/** The blocks a revoke block revokes. */
export function parseRevokeBlock(b: Buffer, incompat: number, blockSize: number): number[] {
  need(b, 0, 16, "journal revoke block");
  const count = b.readUInt32BE(12);
  if (count < 16 || count > blockSize)
    throw new Ext4Error("bad-value", `journal revoke block: r_count ${count} (16..${blockSize})`);
  need(b, 0, count, "journal revoke block");
  const width = incompat & JBD2_FEATURE_INCOMPAT_64BIT ? 8 : 4;
  const out: number[] = [];
  for (let o = 16; o + width <= count; o += width)
    out.push(width === 8 ? b.readUInt32BE(o) * 2 ** 32 + b.readUInt32BE(o + 4) : b.readUInt32BE(o));
  return out;
}

// The ext4 journal (jbd2) read the way recovery reads it, applied in memory only: a file
// system in use keeps its latest metadata (inodes, directory blocks, extent nodes, bitmaps)
// in the journal until a checkpoint writes it home, so a reader from outside that ignored the
// journal would see files as they were seconds or minutes ago (a freshly replaced binary with
// its old block map).
//
// Recovery's passes (the kernel's fs/jbd2/recovery.c), in one scan and one replay: from the
// log's start, blocks whose header has the journal magic and the expected sequence; a
// descriptor's tags name the home blocks of the blocks that follow it; revoke blocks cancel
// earlier copies; a commit block completes a transaction. Copies of committed transactions
// not revoked by a transaction at or after their own win, later ones over earlier ones. The
// uncommitted tail is ignored. Nothing is written: the overlay maps a home block to the
// journal block holding its newest copy, and the reader reads through it.
//
// Bounds: the scan visits at most min(the log's length, maxBlocks) blocks (a log that wraps
// onto itself ends there), every journal block is mapped through the journal inode's own
// extents and every home block must be inside the file system. Checksums (csum v2/v3) and
// fast commits are not verified or replayed.
import { Ext4Error } from "./errors.ts";
import {
  type FileMap,
  type FileRun,
  type Inode,
  JBD2_COMMIT_BLOCK,
  JBD2_DESCRIPTOR_BLOCK,
  JBD2_MAGIC,
  JBD2_REVOKE_BLOCK,
  type JournalSuperblock,
  parseDescriptorTags,
  parseJournalHeader,
  parseJournalSuperblock,
  parseRevokeBlock,
  type Superblock,
} from "./layout.ts";

/** What the journal reader needs from the file system reader (fs.ts, without a cycle). */
export interface JournalSource {
  readonly blockSize: number;
  readonly sb: Superblock;
  inode(ino: number): Promise<Inode>;
  map(inode: Inode): Promise<FileMap>;
  /** `readahead`: up to that many blocks from n read in one request (those not cached). */
  readRawBlock(n: number, readahead?: number): Promise<Buffer>;
}

export interface LoggedBlock {
  /** The file system block holding the newest committed copy (inside the journal). */
  location: number;
  /** Its first 4 bytes are the journal magic, zeroed in the log (JBD2_FLAG_ESCAPE). */
  escaped: boolean;
  /** The transaction it came from. */
  sequence: number;
}

export interface JournalOverlay {
  /** Home block -> newest committed copy. */
  blocks: Map<number, LoggedBlock>;
  /** Committed transactions found. */
  transactions: number;
  /** Journal blocks scanned (headers read). */
  scanned: number;
  /** The journal's first block of the log had no transaction: nothing to apply. */
  clean: boolean;
  /** File system blocks of the journal (its whole extent), for telling journal writes apart. */
  extent: FileRun[];
  superblock: JournalSuperblock;
}

/** The run of the journal inode holding journal block j (runs sorted by logical block). */
function runOf(runs: readonly FileRun[], j: number): FileRun | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = runs[mid];
    if (j < r.logical) hi = mid - 1;
    else if (j >= r.logical + r.length) lo = mid + 1;
    else return r;
  }
  return undefined;
}

/** Maps journal block numbers to file system blocks through the journal inode's runs. */
function journalMapper(runs: FileRun[]): (j: number) => number {
  return (j) => {
    const r = runOf(runs, j);
    if (r) return r.physical + (j - r.logical);
    throw new Ext4Error("out-of-range", `journal block ${j} is not mapped by the journal inode`);
  };
}

interface Transaction {
  sequence: number;
  tags: Array<{ target: number; location: number; escaped: boolean }>;
}

/**
 * `readahead`: log blocks read at once while scanning (within one run of the journal inode and
 * the log; cached ones end it), so a log of many transactions costs a few requests, not one
 * per block: the scan reads them all in order anyway, and the logged copies come with them.
 */
export async function readJournal(
  fs: JournalSource,
  journalIno: number,
  maxBlocks: number,
  readahead = 1,
): Promise<JournalOverlay> {
  const inode = await fs.inode(journalIno);
  if (inode.type !== "file")
    throw new Ext4Error("bad-value", `journal inode ${journalIno} is a ${inode.type}`);
  const { runs } = await fs.map(inode);
  const at = journalMapper(runs);
  const bs = fs.blockSize;
  const js = parseJournalSuperblock(await fs.readRawBlock(at(0)), bs);
  const overlay: JournalOverlay = {
    blocks: new Map(),
    transactions: 0,
    scanned: 0,
    clean: js.start === 0,
    extent: runs,
    superblock: js,
  };
  if (js.start === 0) return overlay;
  const logEnd = js.maxLen - js.fastCommitBlocks;
  if (Math.ceil(inode.size / bs) < js.maxLen)
    throw new Ext4Error(
      "bad-value",
      `journal: ${js.maxLen} blocks claimed, the inode has ${inode.size} bytes`,
    );
  const logLength = logEnd - js.first;
  const budget = Math.min(logLength, maxBlocks);
  const wrap = (j: number) => (j >= logEnd ? j - logLength : j);

  const committed: Transaction[] = [];
  // Sequence numbers wrap at 2^32: they are compared relative to the log's first one.
  const rel = (s: number) => (s - js.sequence) >>> 0;
  const revoked = new Map<number, number>(); // block -> newest revoking sequence (relative)
  let pos = js.start;
  let sequence = js.sequence;
  let current: Transaction = { sequence, tags: [] };
  let currentRevokes: number[] = [];
  const take = () => {
    if (overlay.scanned >= budget) return false;
    overlay.scanned++;
    return true;
  };
  /** Journal blocks from j on that are consecutive on the device and in the log, at most `readahead`. */
  const ahead = (j: number) => {
    if (readahead <= 1) return 1;
    const r = runOf(runs, j);
    return r ? Math.max(1, Math.min(readahead, r.logical + r.length - j, logEnd - j)) : 1;
  };
  scan: while (take()) {
    const block = await fs.readRawBlock(at(pos), ahead(pos));
    const h = parseJournalHeader(block);
    if (h.magic !== JBD2_MAGIC || h.sequence !== sequence) break;
    pos = wrap(pos + 1);
    switch (h.blockType) {
      case JBD2_DESCRIPTOR_BLOCK: {
        for (const tag of parseDescriptorTags(block, js.incompat, bs)) {
          if (!take()) break scan;
          if (tag.target < fs.sb.firstDataBlock || tag.target >= fs.sb.blocksCount)
            throw new Ext4Error("out-of-range", `journal: transaction ${sequence} logs block ${tag.target}`);
          current.tags.push({ target: tag.target, location: at(pos), escaped: tag.escaped });
          pos = wrap(pos + 1);
        }
        break;
      }
      case JBD2_REVOKE_BLOCK:
        for (const b of parseRevokeBlock(block, js.incompat, bs)) currentRevokes.push(b);
        break;
      case JBD2_COMMIT_BLOCK:
        committed.push(current);
        for (const b of currentRevokes) revoked.set(b, Math.max(revoked.get(b) ?? 0, rel(sequence)));
        sequence = (sequence + 1) >>> 0;
        current = { sequence, tags: [] };
        currentRevokes = [];
        break;
      default:
        break scan;
    }
  }
  for (const t of committed) {
    for (const tag of t.tags) {
      const r = revoked.get(tag.target);
      if (r !== undefined && r >= rel(t.sequence)) continue;
      overlay.blocks.set(tag.target, { location: tag.location, escaped: tag.escaped, sequence: t.sequence });
    }
  }
  overlay.transactions = committed.length;
  return overlay;
}

// ext4 read from outside the guest without mounting: the disk monitor's file system reader.
export { Ext4Error, type Ext4ErrorCode } from "./errors.ts";
export {
  DEFAULT_EXT4_LIMITS,
  Ext4,
  type Ext4Limits,
  type FilePiece,
  nameToString,
  type OpenOptions,
} from "./fs.ts";
export type { JournalOverlay, LoggedBlock } from "./journal.ts";
export type { DirEntry, FileMap, FileRun, FileType, Inode, Superblock, Timestamp } from "./layout.ts";
export { ROOT_INO } from "./layout.ts";
export {
  BlockCache,
  type ByteSource,
  bufferSource,
  countingSource,
  fileSource,
  nbdSource,
  type ReadStats,
} from "./source.ts";
export {
  childPath,
  DEFAULT_WALK_LIMITS,
  type WalkEntry,
  type WalkLimits,
  type WalkProblem,
  walk,
} from "./walk.ts";

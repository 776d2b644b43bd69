// Everything that can go wrong reading an ext4 file system from outside its guest surfaces as
// an Ext4Error with a code: the file system is hostile (the guest owns every byte of it), so a
// corrupt or malicious structure names what was wrong instead of hanging, recursing without
// end or allocating what a field claims.

export type Ext4ErrorCode =
  /** A magic number is not the one ext4 puts there (superblock, extent header, journal). */
  | "bad-magic"
  /** A field holds a value ext4 forbids or that contradicts another field. */
  | "bad-value"
  /** A structure or block lies beyond the device or the file system. */
  | "out-of-range"
  /** The device ends before the file system says it does. */
  | "truncated"
  /** More of something than the reader's bound (extents, entries, files, bytes). */
  | "too-many"
  /** Nested deeper than ext4 allows or the reader's bound (extent trees, directories). */
  | "too-deep"
  /** A structure refers back to itself (extent tree, directory hierarchy). */
  | "loop"
  /** A feature this reader does not implement (named in the message). */
  | "unsupported"
  /** A path or inode that does not exist, or is not what the caller asked for. */
  | "not-found"
  | "not-a-directory";

export class Ext4Error extends Error {
  override name = "Ext4Error";
  constructor(
    readonly code: Ext4ErrorCode,
    message: string,
  ) {
    super(`ext4 (${code}): ${message}`);
  }
}

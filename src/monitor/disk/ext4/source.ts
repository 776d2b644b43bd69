// Where the ext4 reader's bytes come from: a ByteSource (an NBD export, an image file, a
// buffer), counted, and a bounded cache of metadata blocks that can outlive one check: the
// disk monitor keeps it across rounds and drops what the dirty bitmap says was written.
import { open } from "node:fs/promises";
import type { NbdClient } from "../nbd/index.ts";

export interface ByteSource {
  /** Bytes in the device. */
  readonly size: number;
  /** Exactly `length` bytes at `offset` (within the device). */
  read(offset: number, length: number): Promise<Buffer>;
}

/** What a reader fetched from its source. */
export interface ReadStats {
  bytes: number;
  requests: number;
}

/** Counts every byte and request that reaches `src`. */
export function countingSource(src: ByteSource, stats: ReadStats): ByteSource {
  return {
    size: src.size,
    async read(offset, length) {
      stats.requests++;
      stats.bytes += length;
      return src.read(offset, length);
    },
  };
}

export function bufferSource(b: Buffer): ByteSource {
  return {
    size: b.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > b.length)
        throw new RangeError(`read ${offset}+${length} beyond ${b.length} bytes`);
      return Buffer.from(b.subarray(offset, offset + length));
    },
  };
}

/** An image file (tests, local tools). Close it with `close()`. */
export async function fileSource(path: string): Promise<ByteSource & { close(): Promise<void> }> {
  const fh = await open(path, "r");
  const size = (await fh.stat()).size;
  return {
    size,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size)
        throw new RangeError(`read ${offset}+${length} beyond ${size} bytes`);
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new RangeError(`${path} ended at ${offset + done}`);
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}

/** An NBD export through nestcloud's client (reads above its maximum go in pieces). */
export function nbdSource(client: NbdClient): ByteSource {
  return {
    size: client.size,
    read: (offset, length) =>
      length <= client.maxReadBytes ? client.read(offset, length) : client.readRange(offset, length),
  };
}

/**
 * A least-recently-used cache of device blocks (raw, as read: the journal is applied above
 * it), bounded in bytes. `invalidate` drops the blocks of a byte range (what the guest wrote).
 */
export class BlockCache {
  private readonly blocks = new Map<number, Buffer>();
  private blockBytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes = 64 * 1024 * 1024) {}

  /** Blocks of another size (another file system) clear the cache. */
  setBlockSize(blockSize: number): void {
    if (blockSize !== this.blockBytes) {
      this.blocks.clear();
      this.blockBytes = blockSize;
    }
  }

  get size(): number {
    return this.blocks.size;
  }

  get(block: number): Buffer | undefined {
    const b = this.blocks.get(block);
    if (b) {
      this.hits++;
      this.blocks.delete(block);
      this.blocks.set(block, b);
    } else this.misses++;
    return b;
  }

  set(block: number, data: Buffer): void {
    if (this.blockBytes === 0 || data.length !== this.blockBytes) return;
    this.blocks.delete(block);
    this.blocks.set(block, data);
    const max = Math.floor(this.maxBytes / this.blockBytes);
    while (this.blocks.size > max) this.blocks.delete(this.blocks.keys().next().value!);
  }

  /**
   * Drops every cached block overlapping bytes [offset, offset + length); `into` receives the
   * dropped blocks (to tell a block written with the same bytes from a changed one).
   */
  invalidate(offset: number, length: number, into?: Map<number, Buffer>): number {
    if (this.blockBytes === 0 || length <= 0) return 0;
    const first = Math.floor(offset / this.blockBytes);
    const last = Math.floor((offset + length - 1) / this.blockBytes);
    let dropped = 0;
    const drop = (b: number) => {
      const data = this.blocks.get(b);
      if (!data) return;
      into?.set(b, data);
      this.blocks.delete(b);
      dropped++;
    };
    if (last - first + 1 < this.blocks.size) {
      for (let b = first; b <= last; b++) drop(b);
    } else {
      for (const b of [...this.blocks.keys()]) if (b >= first && b <= last) drop(b);
    }
    return dropped;
  }

  clear(): void {
    this.blocks.clear();
  }
}

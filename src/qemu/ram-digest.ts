/**
 * Digests of a guest's RAM file (the pool file QEMU maps with share=on), chunk by chunk, so
 * that two frozen copies of one guest's memory can be compared without moving them: the
 * pre-copy source paused in postmigrate and its destination loaded and paused (-S). QEMU
 * 7.2's TCG dirty tracking can miss a page (docs/qemu-tcg-lost-pages.md); a comparison at
 * the decision point turns that silent loss into a rollback.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

export const DEFAULT_DIGEST_CHUNK_BYTES = 1024 * 1024;

export interface RamDigest {
  chunkBytes: number;
  sizeBytes: number;
  /** SHA-1 of each chunk, hex; the last chunk may be shorter. */
  chunks: string[];
  /** Time spent reading and hashing. */
  ms: number;
}

/** Reads `path` once, hashing each `chunkBytes` (a multiple of 4 KiB). */
export async function digestRamFile(
  path: string,
  chunkBytes = DEFAULT_DIGEST_CHUNK_BYTES,
): Promise<RamDigest> {
  if (!Number.isInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % 4096 !== 0)
    throw new RangeError(`chunkBytes must be a positive multiple of 4096, not ${chunkBytes}`);
  const t0 = performance.now();
  const fh = await open(path, "r");
  try {
    const sizeBytes = (await fh.stat()).size;
    const buf = Buffer.allocUnsafe(chunkBytes);
    const chunks: string[] = [];
    for (let pos = 0; pos < sizeBytes; pos += chunkBytes) {
      const want = Math.min(chunkBytes, sizeBytes - pos);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) throw new Error(`${path} shrank while being digested (at ${pos + got})`);
        got += bytesRead;
      }
      chunks.push(createHash("sha1").update(buf.subarray(0, want)).digest("hex"));
    }
    return { chunkBytes, sizeBytes, chunks, ms: Math.round(performance.now() - t0) };
  } finally {
    await fh.close();
  }
}

export type RamComparison =
  | { kind: "equal"; chunks: number }
  | { kind: "different"; chunks: number; differing: number[] }
  | { kind: "incomparable"; why: string };

/** Compares two digests of the same guest's RAM (pure). */
export function compareRamDigests(a: RamDigest, b: RamDigest): RamComparison {
  if (a.chunkBytes !== b.chunkBytes)
    return { kind: "incomparable", why: `chunk sizes ${a.chunkBytes} and ${b.chunkBytes}` };
  if (a.sizeBytes !== b.sizeBytes || a.chunks.length !== b.chunks.length)
    return { kind: "incomparable", why: `RAM sizes ${a.sizeBytes} and ${b.sizeBytes}` };
  const differing: number[] = [];
  for (let i = 0; i < a.chunks.length; i++) if (a.chunks[i] !== b.chunks[i]) differing.push(i);
  return differing.length === 0
    ? { kind: "equal", chunks: a.chunks.length }
    : { kind: "different", chunks: a.chunks.length, differing };
}

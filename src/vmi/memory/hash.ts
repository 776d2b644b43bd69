// Hashing guest-physical memory in fixed chunks (SHA-256 per chunk). Used for the kernel text
// integrity check; a page server can hash next to the memory (MemoryHasher) and send 32 bytes
// per chunk instead of the 14 MB of kernel text.

import { createHash } from "node:crypto";
import { guardAsync, MemoryError } from "../errors.ts";
import { type PhysicalMemory, type PhysRange, readPhys } from "./memory.ts";

export const HASH_CHUNK_MIN = 4096;
export const HASH_CHUNK_MAX = 16 * 1024 * 1024;
/** Bytes one hash request may cover (the whole text of a large kernel fits). */
export const HASH_MAX_BYTES = 256 * 1024 * 1024;

/** Optional capability of a PhysicalMemory. */
export interface MemoryHasher {
  hashChunks(range: PhysRange, chunk: number): Promise<Uint8Array[]>;
}

export function hasHasher(m: PhysicalMemory): m is PhysicalMemory & MemoryHasher {
  return typeof (m as Partial<MemoryHasher>).hashChunks === "function";
}

export function checkHashRequest(range: PhysRange, chunk: number): void {
  if (!Number.isSafeInteger(chunk) || chunk < HASH_CHUNK_MIN || chunk > HASH_CHUNK_MAX) {
    throw new MemoryError("MEM_BAD_REQUEST", `hash chunk must be ${HASH_CHUNK_MIN}..${HASH_CHUNK_MAX} bytes`);
  }
  if (!Number.isSafeInteger(range.len) || range.len < 1 || range.len > HASH_MAX_BYTES) {
    throw new MemoryError("MEM_BAD_REQUEST", `hash range must be 1..${HASH_MAX_BYTES} bytes`);
  }
}

/** SHA-256 of each `chunk` bytes of `range` (the last chunk may be shorter), by reading. */
export function hashChunksLocal(mem: PhysicalMemory, range: PhysRange, chunk: number): Promise<Uint8Array[]> {
  return guardAsync(async () => {
    checkHashRequest(range, chunk);
    const out: Uint8Array[] = [];
    const perRead = Math.max(1, Math.floor((4 * 1024 * 1024) / chunk));
    for (let at = 0; at < range.len; at += perRead * chunk) {
      const ranges: PhysRange[] = [];
      for (let i = 0; i < perRead && at + i * chunk < range.len; i++) {
        const off = at + i * chunk;
        ranges.push({ addr: range.addr + off, len: Math.min(chunk, range.len - off) });
      }
      for (const b of await readPhys(mem, ranges)) out.push(createHash("sha256").update(b).digest());
    }
    return out;
  });
}

export function hashChunks(mem: PhysicalMemory, range: PhysRange, chunk: number): Promise<Uint8Array[]> {
  return hasHasher(mem) ? mem.hashChunks(range, chunk) : hashChunksLocal(mem, range, chunk);
}

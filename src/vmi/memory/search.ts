// Searching guest-physical memory for a byte string (VMCOREINFO's "OSRELEASE=", the kernel
// banner, BTF headers). Locally this is a chunked read + Buffer.indexOf; a remote source can do
// it next to the memory (MemorySearch) so that 1 GiB of RAM does not cross the network.

import { Buffer } from "node:buffer";
import { guardAsync, MemoryError, QueryError } from "../errors.ts";
import {
  MAX_READ_LEN,
  type PhysAddr,
  type PhysicalMemory,
  type PhysRange,
  readPhysLenient,
} from "./memory.ts";

export const MAX_NEEDLE = 256;
/** Hard cap on reported hits (hostile RAM may be full of the needle). */
export const MAX_FIND_HITS = 4096;

export interface FindOptions {
  /** Physical ranges to search, default the whole memory. */
  readonly regions?: readonly { readonly start: PhysAddr; readonly end: PhysAddr }[];
  /** Stop after this many hits (default 64, at most MAX_FIND_HITS). */
  readonly maxHits?: number;
  /** Only report hits at addresses that are multiples of this (default 1). */
  readonly align?: number;
}

/** Optional capability of a PhysicalMemory: search where the memory is. */
export interface MemorySearch {
  findBytes(needle: Uint8Array, opts?: FindOptions): Promise<PhysAddr[]>;
}

export function hasSearch(m: PhysicalMemory): m is PhysicalMemory & MemorySearch {
  return typeof (m as Partial<MemorySearch>).findBytes === "function";
}

/** Validates search parameters (shared by the local scan and the page server). */
export function checkFind(needle: Uint8Array, opts: FindOptions, size: number): void {
  if (!(needle instanceof Uint8Array) || needle.length < 1 || needle.length > MAX_NEEDLE) {
    throw new MemoryError("MEM_BAD_REQUEST", `needle must be 1..${MAX_NEEDLE} bytes`);
  }
  const hits = opts.maxHits ?? 64;
  if (!Number.isSafeInteger(hits) || hits < 1 || hits > MAX_FIND_HITS) {
    throw new MemoryError("MEM_BAD_REQUEST", `maxHits must be 1..${MAX_FIND_HITS}`);
  }
  const align = opts.align ?? 1;
  if (!Number.isSafeInteger(align) || align < 1 || align > 1 << 20) {
    throw new MemoryError("MEM_BAD_REQUEST", `bad alignment ${align}`);
  }
  const regions = opts.regions ?? [];
  if (regions.length > 64) throw new MemoryError("MEM_BAD_REQUEST", "more than 64 search regions");
  for (const r of regions) {
    if (typeof r !== "object" || r === null) throw new MemoryError("MEM_BAD_REQUEST", "bad search region");
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end > size) {
      throw new MemoryError("MEM_BAD_REQUEST", `bad search region ${r.start}-${r.end}`);
    }
  }
}

const CHUNK = 2 * 1024 * 1024;
const CHUNKS_PER_READ = 8;

/** Bytes a search over these regions reads (regions may overlap: each counts). */
export function findBytesToScan(regions: FindOptions["regions"], size: number): number {
  return (regions ?? [{ start: 0, end: size }]).reduce((n, r) => n + Math.max(0, r.end - r.start), 0);
}

/** Work bounds of one scan (the page server sets them per request). */
export interface ScanBudget {
  /** Bytes the regions may add up to; checked before anything is read. */
  readonly maxBytes?: number;
  /** Date.now() after which the scan stops with QUERY_TIMEOUT. */
  readonly deadline?: number;
}

/** Searches by reading: what a page server runs locally. Unreadable chunks (holes) are skipped. */
export function scanBytes(
  mem: PhysicalMemory,
  needle: Uint8Array,
  opts: FindOptions = {},
  budget: ScanBudget = {},
): Promise<PhysAddr[]> {
  return guardAsync(async () => {
    checkFind(needle, opts, mem.size);
    const total = findBytesToScan(opts.regions, mem.size);
    if (budget.maxBytes !== undefined && total > budget.maxBytes) {
      throw new MemoryError(
        "MEM_BAD_REQUEST",
        `search of ${total} bytes (${opts.regions?.length ?? 1} regions) exceeds the limit of ${budget.maxBytes} bytes per request`,
      );
    }
    const started = Date.now();
    let scanned = 0;
    const checkTime = () => {
      if (budget.deadline !== undefined && Date.now() > budget.deadline) {
        throw new QueryError(
          "QUERY_TIMEOUT",
          `search stopped after ${Date.now() - started} ms: time limit reached with ${scanned} of ${total} bytes scanned`,
        );
      }
    };
    const maxHits = opts.maxHits ?? 64;
    const align = opts.align ?? 1;
    const pattern = Buffer.from(needle.buffer, needle.byteOffset, needle.byteLength);
    const overlap = needle.length - 1;
    const hits: PhysAddr[] = [];
    for (const region of opts.regions ?? [{ start: 0, end: mem.size }]) {
      const plans: { range: PhysRange; own: number }[] = [];
      for (let s = region.start; s < region.end; s += CHUNK) {
        const len = Math.min(region.end, s + CHUNK + overlap) - s;
        if (len >= needle.length && len <= MAX_READ_LEN) plans.push({ range: { addr: s, len }, own: CHUNK });
      }
      for (let i = 0; i < plans.length; i += CHUNKS_PER_READ) {
        const group = plans.slice(i, i + CHUNKS_PER_READ);
        const bufs = await readPhysLenient(
          mem,
          group.map((p) => p.range),
        );
        for (let j = 0; j < group.length; j++) {
          checkTime();
          scanned += group[j].range.len;
          const b = bufs[j];
          if (!b) continue;
          const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
          const base = group[j].range.addr;
          // Matches starting in the overlap belong to the next chunk.
          for (
            let at = buf.indexOf(pattern);
            at >= 0 && at < group[j].own;
            at = buf.indexOf(pattern, at + 1)
          ) {
            if ((base + at) % align !== 0) continue;
            hits.push(base + at);
            if (hits.length >= maxHits) return hits;
          }
        }
      }
    }
    return hits;
  });
}

/** Finds `needle`: next to the memory when the source can search, else by reading. */
export function findBytes(
  mem: PhysicalMemory,
  needle: Uint8Array,
  opts: FindOptions = {},
): Promise<PhysAddr[]> {
  return hasSearch(mem) ? mem.findBytes(needle, opts) : scanBytes(mem, needle, opts);
}

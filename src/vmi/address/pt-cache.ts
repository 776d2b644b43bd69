// LRU cache of 4 KiB page-table pages, keyed by physical address. A process-list walk touches
// few distinct table pages many times (47 tasks: 713 table reads, 57 distinct pages), so caching
// whole table pages turns most walks into zero round trips. Guest page tables change: keep one
// cache per snapshot/pass and clear() it between passes.
// Only share a cache between walkers over the same PhysicalMemory.

import { AddressError } from "../errors.ts";
import type { PhysAddr } from "../memory/memory.ts";

export const TABLE_PAGE = 4096;

export class PageTableCache {
  private readonly pages = new Map<PhysAddr, Uint8Array>();
  hits = 0;
  misses = 0;

  constructor(readonly capacity = 512) {
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new AddressError("ADDR_BAD_ARGUMENT", `bad cache capacity ${capacity}`);
  }

  get(pa: PhysAddr): Uint8Array | undefined {
    const page = this.pages.get(pa);
    if (page === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Map iteration order is insertion order: re-inserting makes this the most recent.
    this.pages.delete(pa);
    this.pages.set(pa, page);
    return page;
  }

  set(pa: PhysAddr, page: Uint8Array): void {
    if (this.capacity === 0) return;
    this.pages.delete(pa);
    this.pages.set(pa, page);
    while (this.pages.size > this.capacity) {
      const oldest = this.pages.keys().next().value as PhysAddr;
      this.pages.delete(oldest);
    }
  }

  get size(): number {
    return this.pages.size;
  }

  clear(): void {
    this.pages.clear();
  }
}

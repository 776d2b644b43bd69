// x86-64 page walk (4- and 5-level), reading tables from guest-physical memory.
//
// Levels are numbered like the SDM: 5 = PML5, 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT. Each level
// indexes 9 bits of the VA (shifts 48/39/30/21/12). An entry is used only if present (bit 0);
// PS (bit 7) at PDPT maps 1 GiB and at PD maps 2 MiB. Permission bits (RW, US, NX...) are not
// checked: we read as the kernel would, not on behalf of a user. Large-page frames use a wider
// mask because bit 12 is the PAT bit there.
//
// Many VAs are translated together level by level: all table pages needed at one level are
// fetched in one read() batch, so N translations cost at most `levels` round trips (fewer with
// the table-page cache).

import { AddressError, guardAsync } from "../errors.ts";
import {
  MAX_READ_LEN,
  type PhysAddr,
  type PhysicalMemory,
  type PhysRange,
  readPhys,
  readPhysLenient,
  type VirtAddr,
  type VirtRange,
  type VirtualMemory,
} from "../memory/memory.ts";
import { PageTableCache, TABLE_PAGE } from "./pt-cache.ts";

export type PagingLevels = 4 | 5;
export type TableLevel = 1 | 2 | 3 | 4 | 5;
export type PageSize = 0x1000 | 0x200000 | 0x40000000;

export type Translation =
  | { readonly kind: "mapped"; readonly pa: PhysAddr; readonly pageSize: PageSize }
  /** The entry at `level` was not present. */
  | { readonly kind: "not-present"; readonly level: TableLevel }
  /** Bits above the top level's range are not a sign extension: no page table maps this. */
  | { readonly kind: "non-canonical" }
  /** The table for `level` lies outside guest RAM (corrupt or hostile tables). */
  | { readonly kind: "bad-table"; readonly level: TableLevel; readonly tableAddr: PhysAddr };

const PRESENT = 1n;
const PS = 0x80n;
const FRAME_4K = 0x000ffffffffff000n;
const FRAME_2M = 0x000fffffffe00000n;
const FRAME_1G = 0x000fffffc0000000n;
/** Bit 12 of CR3 selects the user copy of the PGD when PTI is active. */
const PTI_USER_PGD_BIT = 0x1000n;
/** Pages translated per read() call at most (256 MiB of 4 KiB pages). */
const MAX_PAGES_PER_READ = 65536;

/** Whether `va` is canonical for the paging depth. */
export function isCanonical(va: VirtAddr, levels: PagingLevels): boolean {
  if (va < 0n || va >= 1n << 64n) return false;
  const top = va >> (levels === 5 ? 56n : 47n);
  return top === 0n || top === (levels === 5 ? 0xffn : 0x1ffffn);
}

/**
 * Top-level table address from a CR3 value: drops PCID (bits 0-11) and bits 52+ (e.g. the
 * no-flush bit 63). `clearPtiBit` also drops bit 12, turning a user-mode CR3 of a PTI kernel into
 * its kernel PGD; only correct for kernels built with page-table isolation (8 KiB aligned PGDs),
 * hence no default. Prefer init_top_pgt for kernel addresses: it does not depend on the task.
 */
export function cr3ToRoot(cr3: bigint, opts: { readonly clearPtiBit: boolean }): PhysAddr {
  let root = cr3 & FRAME_4K;
  if (opts.clearPtiBit) root &= ~PTI_USER_PGD_BIT;
  return Number(root);
}

export interface PageWalkerOptions {
  /** Physical address of the top-level table (PML4, or PML5 with 5 levels). */
  readonly root: PhysAddr;
  readonly levels: PagingLevels;
  /** Table-page cache; shared between walkers is fine. null disables caching. */
  readonly cache?: PageTableCache | null;
}

interface WalkState {
  readonly va: VirtAddr;
  table: PhysAddr;
  result?: Translation;
}

export class PageWalker implements VirtualMemory {
  readonly root: PhysAddr;
  readonly levels: PagingLevels;
  readonly cache: PageTableCache | null;

  constructor(
    private readonly mem: PhysicalMemory,
    opts: PageWalkerOptions,
  ) {
    if (opts.levels !== 4 && opts.levels !== 5) {
      throw new AddressError("ADDR_BAD_ARGUMENT", `paging levels must be 4 or 5, got ${String(opts.levels)}`);
    }
    if (!Number.isSafeInteger(opts.root) || opts.root < 0 || opts.root % TABLE_PAGE !== 0) {
      throw new AddressError("ADDR_BAD_ARGUMENT", `page table root ${opts.root} is not a page address`);
    }
    this.root = opts.root;
    this.levels = opts.levels;
    this.cache = opts.cache === undefined ? new PageTableCache() : opts.cache;
  }

  async translate(va: VirtAddr): Promise<Translation> {
    const [t] = await this.translateMany([va]);
    return t;
  }

  /** Translates many VAs with at most `levels` batched reads. Results are in input order. */
  translateMany(vas: readonly VirtAddr[]): Promise<Translation[]> {
    return guardAsync(async () => {
      const states: WalkState[] = vas.map((va) => {
        if (typeof va !== "bigint")
          throw new AddressError("ADDR_BAD_ARGUMENT", `not a bigint VA: ${String(va)}`);
        const s: WalkState = { va, table: this.root };
        if (!isCanonical(va, this.levels)) s.result = { kind: "non-canonical" };
        return s;
      });
      for (let level = this.levels as TableLevel; level >= 1; level = (level - 1) as TableLevel) {
        const pending = states.filter((s) => s.result === undefined);
        if (pending.length === 0) break;
        const pages = await this.tablePages(pending.map((s) => s.table));
        for (const s of pending) s.result = this.step(s, level, pages.get(s.table));
      }
      // The level-1 step always yields a result.
      return states.map((s) => s.result as Translation);
    });
  }

  /** One level of the walk for one VA; undefined means "descend to the next level". */
  private step(s: WalkState, level: TableLevel, page: Uint8Array | undefined): Translation | undefined {
    if (page === undefined) return { kind: "bad-table", level, tableAddr: s.table };
    const shift = BigInt(12 + 9 * (level - 1));
    const index = Number((s.va >> shift) & 0x1ffn);
    const entry = new DataView(page.buffer, page.byteOffset, page.byteLength).getBigUint64(index * 8, true);
    if ((entry & PRESENT) === 0n) return { kind: "not-present", level };
    if (level === 3 && (entry & PS) !== 0n) {
      return { kind: "mapped", pa: Number((entry & FRAME_1G) | (s.va & 0x3fffffffn)), pageSize: 0x40000000 };
    }
    if (level === 2 && (entry & PS) !== 0n) {
      return { kind: "mapped", pa: Number((entry & FRAME_2M) | (s.va & 0x1fffffn)), pageSize: 0x200000 };
    }
    if (level === 1)
      return { kind: "mapped", pa: Number((entry & FRAME_4K) | (s.va & 0xfffn)), pageSize: 0x1000 };
    // PS at PML5/PML4 is reserved (the CPU would fault); we follow it as a table pointer, which
    // can only lead to reading some other page of guest RAM.
    s.table = Number(entry & FRAME_4K);
    return undefined;
  }

  /** Fetches table pages: from the cache, the rest in one batch; unreadable ones are absent. */
  private async tablePages(addrs: readonly PhysAddr[]): Promise<Map<PhysAddr, Uint8Array>> {
    const out = new Map<PhysAddr, Uint8Array>();
    const missing: PhysRange[] = [];
    for (const a of new Set(addrs)) {
      const hit = this.cache?.get(a);
      if (hit) out.set(a, hit);
      else if (a + TABLE_PAGE <= this.mem.size) missing.push({ addr: a, len: TABLE_PAGE });
    }
    if (missing.length > 0) {
      const got = await readPhysLenient(this.mem, missing);
      missing.forEach((r, i) => {
        const page = got[i];
        if (!page) return;
        out.set(r.addr, page);
        this.cache?.set(r.addr, page);
      });
    }
    return out;
  }

  /**
   * VirtualMemory: reads VA ranges through the page tables. Any unmapped page fails the whole
   * call with an AddressError naming the first bad VA. Physically contiguous pages are merged
   * into one physical range.
   */
  read(ranges: readonly VirtRange[]): Promise<Uint8Array[]> {
    return guardAsync(async () => {
      interface Piece {
        out: number;
        at: number;
        va: VirtAddr;
        len: number;
      }
      const pieces: Piece[] = [];
      ranges.forEach((r, out) => {
        if (!Number.isSafeInteger(r.len) || r.len < 0 || r.len > MAX_READ_LEN || typeof r.addr !== "bigint") {
          throw new AddressError("ADDR_BAD_ARGUMENT", `bad virtual range ${String(r.addr)}+${r.len}`);
        }
        for (let at = 0; at < r.len; ) {
          const va = r.addr + BigInt(at);
          const len = Math.min(r.len - at, TABLE_PAGE - Number(va & 0xfffn));
          pieces.push({ out, at, va, len });
          if (pieces.length > MAX_PAGES_PER_READ) {
            throw new AddressError("ADDR_BAD_ARGUMENT", `read spans more than ${MAX_PAGES_PER_READ} pages`);
          }
          at += len;
        }
      });
      const ts = await this.translateMany(pieces.map((p) => p.va));
      const phys: PhysRange[] = [];
      const owners: Piece[][] = [];
      pieces.forEach((p, i) => {
        const t = ts[i];
        if (t.kind !== "mapped") throw notMapped(p.va, t);
        const prev = phys.length > 0 ? phys[phys.length - 1] : undefined;
        const prevOwner = owners.length > 0 ? owners[owners.length - 1] : undefined;
        if (
          prev &&
          prevOwner &&
          prevOwner[0].out === p.out &&
          prev.addr + prev.len === t.pa &&
          prev.len + p.len <= MAX_READ_LEN
        ) {
          phys[phys.length - 1] = { addr: prev.addr, len: prev.len + p.len };
          prevOwner.push(p);
        } else {
          phys.push({ addr: t.pa, len: p.len });
          owners.push([p]);
        }
      });
      const data = await readPhys(this.mem, phys);
      const out = ranges.map((r) => new Uint8Array(r.len));
      owners.forEach((group, i) => {
        let off = 0;
        for (const p of group) {
          out[p.out].set(data[i].subarray(off, off + p.len), p.at);
          off += p.len;
        }
      });
      return out;
    });
  }
}

function notMapped(va: VirtAddr, t: Exclude<Translation, { kind: "mapped" }>): AddressError {
  const where = `0x${va.toString(16)}`;
  switch (t.kind) {
    case "non-canonical":
      return new AddressError("ADDR_NON_CANONICAL", `${where} is not canonical`);
    case "not-present":
      return new AddressError("ADDR_NOT_PRESENT", `${where}: level-${t.level} entry not present`);
    case "bad-table":
      return new AddressError(
        "ADDR_BAD_TABLE",
        `${where}: level-${t.level} table 0x${t.tableAddr.toString(16)} outside RAM`,
      );
  }
}

import assert from "node:assert/strict";
import { test } from "node:test";
import { AddressError, MemoryError } from "../errors.ts";
import { BufferPhysicalMemory, type PhysicalMemory, type PhysRange } from "../memory/memory.ts";
import { cr3ToRoot, isCanonical, PageWalker, type PagingLevels } from "./pagewalk.ts";
import { PageTableCache } from "./pt-cache.ts";

const K4 = 0x1000;
const M2 = 0x200000;
const G1 = 0x40000000;

/** Builds x86-64 page tables inside a RAM buffer. */
class PtBuilder {
  readonly ram: Uint8Array;
  readonly dv: DataView;
  private next: number;
  readonly root: number;

  constructor(
    readonly levels: PagingLevels,
    size = 16 * 1024 * 1024,
    tablesAt = 0x100000,
  ) {
    this.ram = new Uint8Array(size);
    this.dv = new DataView(this.ram.buffer);
    this.next = tablesAt;
    this.root = this.alloc();
  }

  alloc(): number {
    const pa = this.next;
    this.next += K4;
    return pa;
  }

  entry(table: number, index: number): bigint {
    return this.dv.getBigUint64(table + index * 8, true);
  }

  setEntry(table: number, index: number, value: bigint): void {
    this.dv.setBigUint64(table + index * 8, value, true);
  }

  /** Maps va -> pa with a page of `size`; extra flag bits (e.g. NX, PAT) may be OR'ed in. */
  map(va: bigint, pa: number, size: number, extra = 0n): void {
    const leafLevel = size === G1 ? 3 : size === M2 ? 2 : 1;
    let table = this.root;
    for (let level = this.levels; level > leafLevel; level--) {
      const idx = Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
      let e = this.entry(table, idx);
      if ((e & 1n) === 0n) {
        e = BigInt(this.alloc()) | 0x63n; // present, rw, accessed, dirty
        this.setEntry(table, idx, e);
      }
      table = Number(e & 0x000ffffffffff000n);
    }
    const idx = Number((va >> BigInt(12 + 9 * (leafLevel - 1))) & 0x1ffn);
    const ps = leafLevel > 1 ? 0x80n : 0n;
    this.setEntry(table, idx, BigInt(pa) | 0x63n | ps | extra);
  }
}

const KVA = 0xffffffff81000000n;
const DMAP = 0xffff888000000000n;

test("4-level: 4K, 2M and 1G mappings, offsets within the page, flag bits ignored", async () => {
  const b = new PtBuilder(4);
  const NX = 1n << 63n;
  const PAT_LARGE = 1n << 12n;
  b.map(KVA, 0x400000, K4, NX);
  b.map(KVA + 0x200000n, 0x600000, M2, PAT_LARGE); // PAT bit must not leak into the address
  b.map(DMAP, 0x80000000, G1, NX | PAT_LARGE);
  b.map(0x7fff_0000_0000n, 0x500000, K4);
  const w = new PageWalker(new BufferPhysicalMemory(b.ram), { root: b.root, levels: 4 });
  assert.deepEqual(await w.translate(KVA + 0x123n), { kind: "mapped", pa: 0x400123, pageSize: K4 });
  assert.deepEqual(await w.translate(KVA + 0x200000n + 0x12345n), {
    kind: "mapped",
    pa: 0x612345,
    pageSize: M2,
  });
  assert.deepEqual(await w.translate(DMAP + 0x3456789n), { kind: "mapped", pa: 0x83456789, pageSize: G1 });
  assert.deepEqual(await w.translate(0x7fff_0000_0fffn), { kind: "mapped", pa: 0x500fff, pageSize: K4 });
});

test("non-present entries at every level, and non-canonical addresses", async () => {
  const b = new PtBuilder(4);
  b.map(KVA, 0x400000, K4);
  const w = new PageWalker(new BufferPhysicalMemory(b.ram), { root: b.root, levels: 4 });
  assert.deepEqual(await w.translate(KVA + 0x1000n), { kind: "not-present", level: 1 });
  assert.deepEqual(await w.translate(KVA + 0x200000n), { kind: "not-present", level: 2 });
  assert.deepEqual(await w.translate(KVA - 0x40000000n * 4n), { kind: "not-present", level: 3 });
  assert.deepEqual(await w.translate(DMAP), { kind: "not-present", level: 4 });
  assert.deepEqual(await w.translate(0x0000_8000_0000_0000n), { kind: "non-canonical" });
  assert.deepEqual(await w.translate(0xff00_0000_0000_0000n), { kind: "non-canonical" });
  assert.equal(isCanonical(0xffff_8000_0000_0000n, 4), true);
  assert.equal(isCanonical(0xff00_0000_0000_0000n, 5), true);
  assert.equal(isCanonical(0xfe00_0000_0000_0000n, 5), false);
  assert.equal(isCanonical(1n << 64n, 4), false);
});

test("5-level paging", async () => {
  const b = new PtBuilder(5);
  const va5 = 0xff11_0000_0000_0000n; // 5-level direct map base
  b.map(va5 + 0x5000n, 0x700000, K4);
  b.map(KVA, 0x400000, M2);
  const w = new PageWalker(new BufferPhysicalMemory(b.ram), { root: b.root, levels: 5 });
  assert.deepEqual(await w.translate(va5 + 0x5010n), { kind: "mapped", pa: 0x700010, pageSize: K4 });
  assert.deepEqual(await w.translate(KVA + 0x10n), { kind: "mapped", pa: 0x400010, pageSize: M2 });
  assert.deepEqual(await w.translate(va5 - 0x0010_0000_0000_0000n), { kind: "not-present", level: 5 });
  // Canonical for 4 levels is not the question with 5: bit 56 is the sign bit.
  assert.deepEqual(await w.translate(0x00ff_0000_0000_0000n), { kind: "not-present", level: 5 });
  assert.deepEqual(await w.translate(0x0100_0000_0000_0000n), { kind: "non-canonical" });
});

test("hostile tables: pointers outside RAM, self-referencing tables", async () => {
  const b = new PtBuilder(4, 4 * 1024 * 1024);
  b.map(KVA, 0x300000, K4);
  // Point the PML4 slot for the direct map far outside RAM.
  const idx = Number((DMAP >> 39n) & 0x1ffn);
  b.setEntry(b.root, idx, 0x000f_ffff_ffff_f000n | 1n);
  // A PML4 slot pointing back at the PML4 itself (recursive mapping): terminates after 4 levels.
  b.setEntry(b.root, 5, BigInt(b.root) | 1n);
  const w = new PageWalker(new BufferPhysicalMemory(b.ram), { root: b.root, levels: 4 });
  assert.deepEqual(await w.translate(DMAP), {
    kind: "bad-table",
    level: 3,
    tableAddr: 0x000f_ffff_ffff_f000,
  });
  const self = await w.translate((5n << 39n) | (5n << 30n) | (5n << 21n) | (5n << 12n));
  assert.deepEqual(self, { kind: "mapped", pa: b.root, pageSize: K4 });
  await assert.rejects(
    w.read([{ addr: DMAP, len: 8 }]),
    (e: unknown) => e instanceof AddressError && e.code === "ADDR_BAD_TABLE",
  );
});

test("batched translation: one read per level, cache makes repeats free", async () => {
  const b = new PtBuilder(4);
  for (let i = 0; i < 64; i++) b.map(KVA + BigInt(i * K4), 0x400000 + i * K4, K4);
  const inner = new BufferPhysicalMemory(b.ram);
  const calls: number[] = [];
  const counting: PhysicalMemory = {
    size: inner.size,
    read(ranges: readonly PhysRange[]) {
      calls.push(ranges.length);
      return inner.read(ranges);
    },
  };
  const cache = new PageTableCache(16);
  const w = new PageWalker(counting, { root: b.root, levels: 4, cache });
  const vas = Array.from({ length: 64 }, (_, i) => KVA + BigInt(i * K4) + 8n);
  const ts = await w.translateMany(vas);
  ts.forEach((t, i) => {
    assert.deepEqual(t, { kind: "mapped", pa: 0x400008 + i * K4, pageSize: K4 });
  });
  assert.deepEqual(calls, [1, 1, 1, 1]); // one table page per level, one batch each
  calls.length = 0;
  await w.translateMany(vas);
  assert.deepEqual(calls, []); // all from cache
  assert.ok(cache.hits >= 4);
  cache.clear();
  const uncached = new PageWalker(counting, { root: b.root, levels: 4, cache: null });
  await uncached.translate(KVA);
  await uncached.translate(KVA);
  assert.equal(calls.length, 8);
});

test("LRU cache evicts the least recently used page", () => {
  const c = new PageTableCache(2);
  const p = new Uint8Array(4096);
  c.set(0x1000, p);
  c.set(0x2000, p);
  c.get(0x1000);
  c.set(0x3000, p);
  assert.equal(c.get(0x2000), undefined);
  assert.ok(c.get(0x1000));
  assert.ok(c.get(0x3000));
  assert.equal(c.size, 2);
  assert.throws(
    () => new PageTableCache(-1),
    (e: unknown) => e instanceof AddressError,
  );
});

test("VirtualMemory reads across pages, merging physically contiguous ones", async () => {
  const b = new PtBuilder(4);
  // Three VA pages: the first two physically contiguous, the third elsewhere.
  b.map(KVA, 0x400000, K4);
  b.map(KVA + 0x1000n, 0x401000, K4);
  b.map(KVA + 0x2000n, 0x800000, K4);
  for (let i = 0; i < 3 * K4; i++) {
    const pa = i < 2 * K4 ? 0x400000 + i : 0x800000 + i - 2 * K4;
    b.ram[pa] = i & 0xff;
  }
  const inner = new BufferPhysicalMemory(b.ram);
  let lastBatch: readonly PhysRange[] = [];
  const spy: PhysicalMemory = {
    size: inner.size,
    read(r) {
      lastBatch = r;
      return inner.read(r);
    },
  };
  const w = new PageWalker(spy, { root: b.root, levels: 4 });
  const [data, small] = await w.read([
    { addr: KVA + 0x10n, len: 3 * K4 - 0x20 },
    { addr: KVA + 0x2ff0n, len: 8 },
  ]);
  for (let i = 0; i < data.length; i++) assert.equal(data[i], (i + 0x10) & 0xff);
  assert.deepEqual(
    [...small],
    Array.from({ length: 8 }, (_, i) => (0x2ff0 + i) & 0xff),
  );
  assert.deepEqual(lastBatch, [
    { addr: 0x400010, len: 2 * K4 - 0x10 },
    { addr: 0x800000, len: K4 - 0x10 },
    { addr: 0x800ff0, len: 8 },
  ]);
  await assert.rejects(
    w.read([{ addr: KVA + 0x3000n, len: 1 }]),
    (e: unknown) => e instanceof AddressError && e.code === "ADDR_NOT_PRESENT",
  );
  await assert.rejects(
    w.read([{ addr: 1n << 63n, len: 1 }]),
    (e: unknown) => e instanceof AddressError && e.code === "ADDR_NON_CANONICAL",
  );
  await assert.rejects(w.read([{ addr: KVA, len: -1 }]), (e: unknown) => e instanceof AddressError);
  // A 1 GiB page pointing beyond RAM translates, but reading it is a memory error. (A new
  // walker: the first one's cache holds the tables as they were before this mapping.)
  b.map(DMAP, 0x40000000, G1);
  await assert.rejects(
    w.read([{ addr: DMAP, len: 4 }]),
    (e: unknown) => e instanceof AddressError && e.code === "ADDR_NOT_PRESENT",
  );
  const fresh = new PageWalker(spy, { root: b.root, levels: 4 });
  await assert.rejects(
    fresh.read([{ addr: DMAP, len: 4 }]),
    (e: unknown) => e instanceof MemoryError && e.code === "MEM_OUT_OF_RANGE",
  );
});

test("constructor validation and CR3 decoding", () => {
  const mem = new BufferPhysicalMemory(new Uint8Array(8192));
  assert.throws(
    () => new PageWalker(mem, { root: 123, levels: 4 }),
    (e: unknown) => e instanceof AddressError,
  );
  assert.throws(
    () => new PageWalker(mem, { root: 0, levels: 3 as PagingLevels }),
    (e: unknown) => e instanceof AddressError,
  );
  assert.equal(cr3ToRoot(0x8000_0000_1234_5fffn, { clearPtiBit: false }), 0x12345000);
  assert.equal(cr3ToRoot(0x1234_5001n | 0x1000n, { clearPtiBit: true }), 0x12344000);
});

// End-to-end over a synthetic guest: the whole introspection chain of
// shared/notes/introspection.md, using only the public API (index.ts) on a RAM buffer that holds
// a VMCOREINFO note, a kernel image with kallsyms and BTF, page tables and a task in the direct map.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Btf,
  BufferPhysicalMemory,
  DirectMapMemory,
  fieldLocation,
  KernelImageMemory,
  kallsymsAnchor,
  kallsymsLocation,
  kernelImageVaToPa,
  locateVmcoreinfo,
  PageWalker,
  pagingLevels,
  readKallsyms,
  readVirtOne,
  requireNumber,
  requireSymbol,
  START_KERNEL_MAP,
} from "../index.ts";
import { sampleBtf } from "./btf-builder.testkit.ts";
import { encode, type Sym } from "./kallsyms-encoder.testkit.ts";

const MiB = 1024 * 1024;
const TEXT = 0xffffffff81000000n;
const KERNEL_PA = 8 * MiB; // where the "bootloader" put the kernel
const PHYS_BASE = BigInt(KERNEL_PA) - (TEXT - START_KERNEL_MAP); // negative, like under KASLR
const PAGE_OFFSET_BASE = 0xffff9d0000000000n; // randomized direct map base
const hexa = (v: bigint) => v.toString(16);

function buildGuest(): Uint8Array {
  const ram = new Uint8Array(32 * MiB);
  const dv = new DataView(ram.buffer);
  const pa = (va: bigint) => Number(va - START_KERNEL_MAP + PHYS_BASE);

  // Kernel image layout (VAs).
  const btfVa = TEXT + 0x200000n;
  const { bytes: btf } = sampleBtf();
  const pgtVa = TEXT + 0x400000n;
  const pobVa = TEXT + 0x500000n; // the page_offset_base variable
  const offsetsVa = TEXT + 0x180000n;
  const syms: Sym[] = [
    { name: "_text", type: "T", address: TEXT },
    { name: "_stext", type: "T", address: TEXT + 0x1000n },
    { name: "__start_BTF", type: "R", address: btfVa },
    { name: "__stop_BTF", type: "R", address: btfVa + BigInt(btf.length) },
    { name: "init_top_pgt", type: "D", address: pgtVa },
    { name: "page_offset_base", type: "D", address: pobVa },
  ];
  const { blobs } = encode(syms, "base-relative", TEXT, offsetsVa);
  const put = (va: bigint, bytes: Uint8Array) => ram.set(bytes, pa(va));
  put(TEXT + 0x100000n, new Uint8Array(new Uint32Array([blobs.numSyms]).buffer));
  put(TEXT + 0x100008n, blobs.names);
  put(TEXT + 0x140000n, blobs.tokenTable);
  put(TEXT + 0x141000n, blobs.tokenIndex);
  put(offsetsVa, blobs.offsets);
  put(TEXT + 0x190000n, new Uint8Array(new BigUint64Array([TEXT]).buffer));
  put(btfVa, btf);
  dv.setBigUint64(pa(pobVa), PAGE_OFFSET_BASE, true);

  // Page tables at init_top_pgt: kernel image as 2 MiB pages, direct map as one 1 GiB page.
  let next = pa(pgtVa);
  const alloc = () => {
    const p = next;
    next += 0x1000;
    return p;
  };
  const root = alloc();
  const table = (parent: number, index: number) => {
    const e = dv.getBigUint64(parent + index * 8, true);
    if (e & 1n) return Number(e & 0x000ffffffffff000n);
    const t = alloc();
    dv.setBigUint64(parent + index * 8, BigInt(t) | 0x63n, true);
    return t;
  };
  const idx = (va: bigint, level: number) => Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
  for (let off = 0n; off < 0x800000n; off += 0x200000n) {
    const va = TEXT + off;
    const pd = table(table(root, idx(va, 4)), idx(va, 3));
    dv.setBigUint64(pd + idx(va, 2) * 8, BigInt(pa(va)) | 0xe3n, true);
  }
  const pdpt = table(root, idx(PAGE_OFFSET_BASE, 4));
  dv.setBigUint64(pdpt + idx(PAGE_OFFSET_BASE, 3) * 8, 0xe3n, true); // 1 GiB at PA 0

  // A task in the direct map (struct "task" of sampleBtf): comm at its BTF offset.
  const taskPa = 20 * MiB;
  ram.set(Buffer.from("swapper/0\0"), taskPa + 48);

  // VMCOREINFO as the kernel's ELF note, somewhere in low RAM.
  const text = [
    "OSRELEASE=6.1.0-56-amd64",
    "PAGESIZE=4096",
    `SYMBOL(_stext)=${hexa(TEXT + 0x1000n)}`,
    `SYMBOL(init_top_pgt)=${hexa(pgtVa)}`,
    `SYMBOL(kallsyms_num_syms)=${hexa(TEXT + 0x100000n)}`,
    `SYMBOL(kallsyms_names)=${hexa(TEXT + 0x100008n)}`,
    `SYMBOL(kallsyms_token_table)=${hexa(TEXT + 0x140000n)}`,
    `SYMBOL(kallsyms_token_index)=${hexa(TEXT + 0x141000n)}`,
    `SYMBOL(kallsyms_offsets)=${hexa(offsetsVa)}`,
    `SYMBOL(kallsyms_relative_base)=${hexa(TEXT + 0x190000n)}`,
    `NUMBER(phys_base)=${PHYS_BASE}`,
    "NUMBER(pgtable_l5_enabled)=0",
    `KERNELOFFSET=${hexa(TEXT - 0xffffffff81000000n)}`,
    "",
  ].join("\n");
  const note = 3 * MiB + 0x123;
  dv.setUint32(note, 11, true);
  dv.setUint32(note + 4, text.length, true);
  ram.set(Buffer.from("VMCOREINFO\0\0"), note + 12);
  ram.set(Buffer.from(text), note + 24);
  return ram;
}

test("VMCOREINFO -> kallsyms -> BTF -> page walk -> task fields", async () => {
  const phys = new BufferPhysicalMemory(buildGuest());
  const found = await locateVmcoreinfo(phys);
  assert.ok(found?.inNote);
  const info = found.info;
  const physBase = requireNumber(info, "phys_base");
  assert.equal(physBase, PHYS_BASE);

  const image = new KernelImageMemory(phys, physBase);
  const syms = await readKallsyms(image, kallsymsLocation(info), { anchor: kallsymsAnchor(info) });
  assert.equal(syms.encoding, "base-relative");
  const start = syms.require("__start_BTF");
  const stop = syms.require("__stop_BTF");
  const btf = Btf.parse(await readVirtOne(image, start, Number(stop - start)));
  const comm = fieldLocation(btf, "task.comm");
  assert.equal(comm.byteOffset, 48);

  const pob = await readVirtOne(image, syms.require("page_offset_base"), 8);
  const pageOffsetBase = new DataView(pob.buffer, pob.byteOffset, 8).getBigUint64(0, true);
  const walker = new PageWalker(phys, {
    root: kernelImageVaToPa(requireSymbol(info, "init_top_pgt"), physBase),
    levels: pagingLevels(info),
  });
  const taskVa = pageOffsetBase + BigInt(20 * MiB);
  // The page walk and the linear direct-map shortcut agree, and so do image addresses.
  assert.deepEqual(await walker.translate(taskVa), { kind: "mapped", pa: 20 * MiB, pageSize: 0x40000000 });
  assert.deepEqual(await walker.translate(start), {
    kind: "mapped",
    pa: kernelImageVaToPa(start, physBase),
    pageSize: 0x200000,
  });
  const viaWalk = await readVirtOne(walker, taskVa + BigInt(comm.byteOffset), 16);
  const viaDmap = await readVirtOne(
    new DirectMapMemory(phys, pageOffsetBase),
    taskVa + BigInt(comm.byteOffset),
    16,
  );
  assert.deepEqual(viaWalk, viaDmap);
  assert.equal(Buffer.from(viaWalk).toString("latin1").split("\0")[0], "swapper/0");
});

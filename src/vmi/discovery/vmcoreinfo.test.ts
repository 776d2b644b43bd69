import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryError, VmcoreinfoError } from "../errors.ts";
import { BufferPhysicalMemory, type PhysicalMemory, type PhysRange } from "../memory/memory.ts";
import { SAMPLE } from "./vmcoreinfo.fixture.ts";
import {
  locateVmcoreinfo,
  pagingLevels,
  parseVmcoreinfo,
  requireNumber,
  requireSymbol,
  scanVmcoreinfo,
} from "./vmcoreinfo.ts";

function expectCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof VmcoreinfoError && e.code === code);
}

test("parses every line kind", () => {
  const info = parseVmcoreinfo(SAMPLE);
  assert.equal(info.osRelease, "6.1.0-56-amd64");
  assert.equal(info.pageSize, 4096);
  assert.equal(info.kernelOffset, 0x19000000n);
  assert.equal(info.buildId, "3a1f0c6e4b8d2f7a9c0e1b2d3f4a5b6c7d8e9f00");
  assert.equal(requireSymbol(info, "init_top_pgt"), 0xffffffff9c60a000n);
  assert.equal(requireNumber(info, "phys_base"), -1610612736n);
  assert.equal(info.numbers.get("PAGE_BUDDY_MAPCOUNT_VALUE"), -129n);
  assert.equal(info.sizes.get("list_head"), 16);
  assert.equal(info.offsets.get("list_head.prev"), 8);
  assert.equal(info.lengths.get("mem_section"), 2048);
  assert.equal(info.other.get("CRASHTIME"), "1700000000");
  assert.equal(pagingLevels(info), 4);
  assert.equal(pagingLevels(parseVmcoreinfo("OSRELEASE=7.0\nNUMBER(pgtable_l5_enabled)=1\n")), 5);
  expectCode(() => requireSymbol(info, "nope"), "VMCOREINFO_MISSING_KEY");
  expectCode(() => requireNumber(info, "nope"), "VMCOREINFO_MISSING_KEY");
  // Bytes input stops at the first NUL.
  const bytes = Buffer.from(`${SAMPLE}\0garbage\x01\x02`, "latin1");
  assert.equal(parseVmcoreinfo(bytes).osRelease, "6.1.0-56-amd64");
});

test("first value of a repeated key wins", () => {
  const info = parseVmcoreinfo("OSRELEASE=6.1\nSYMBOL(x)=10\nSYMBOL(x)=20\nOSRELEASE=9.9\n");
  assert.equal(info.symbols.get("x"), 0x10n);
  assert.equal(info.osRelease, "6.1");
});

test("malformed input gives typed errors", () => {
  expectCode(() => parseVmcoreinfo("PAGESIZE=4096\n"), "VMCOREINFO_MISSING_KEY");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nno equals sign\n"), "VMCOREINFO_MALFORMED");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\n=value\n"), "VMCOREINFO_MALFORMED");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nSYMBOL(x)=xyz\n"), "VMCOREINFO_BAD_VALUE");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nSYMBOL(x)=12345678901234567\n"), "VMCOREINFO_BAD_VALUE");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nSIZE(x)=-1\n"), "VMCOREINFO_BAD_VALUE");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nOFFSET(a.b)=99999999999999999\n"), "VMCOREINFO_BAD_VALUE");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\nNUMBER(x)=9223372036854775808\n"), "VMCOREINFO_BAD_VALUE");
  assert.equal(
    parseVmcoreinfo("OSRELEASE=6.1\nNUMBER(x)=-9223372036854775808\n").numbers.get("x"),
    -(1n << 63n),
  );
  expectCode(() => parseVmcoreinfo("OSRELEASE=%s\n"), "VMCOREINFO_BAD_VALUE");
  expectCode(() => parseVmcoreinfo("OSRELEASE=6.1\x07\n"), "VMCOREINFO_MALFORMED");
  expectCode(() => parseVmcoreinfo(`OSRELEASE=6.1\n${"A=B\n".repeat(5000)}`), "VMCOREINFO_TOO_LARGE");
  expectCode(() => parseVmcoreinfo(new Uint8Array(20000).fill(0x41)), "VMCOREINFO_TOO_LARGE");
  expectCode(() => parseVmcoreinfo(`OSRELEASE=6.1\nX=${"y".repeat(2000)}\n`), "VMCOREINFO_MALFORMED");
});

/** An ELF note as the kernel lays out vmcoreinfo_note. */
function elfNote(text: string): Buffer {
  const desc = Buffer.from(text, "latin1");
  const hdr = Buffer.alloc(12);
  hdr.writeUInt32LE(11, 0);
  hdr.writeUInt32LE(desc.length, 4);
  hdr.writeUInt32LE(0, 8);
  return Buffer.concat([hdr, Buffer.from("VMCOREINFO\0\0", "latin1"), desc, Buffer.alloc(4)]);
}

test("scanner: finds bare text and the ELF note, rejects the rodata format string", () => {
  const buf = Buffer.concat([
    Buffer.alloc(1000, 0xcc),
    Buffer.from("OSRELEASE=%s\n\0PAGESIZE=%ld\n\0", "latin1"), // format strings in .rodata
    Buffer.alloc(333),
    Buffer.from("OSRELEASE=6.1 and then binary\x01\x02", "latin1"), // not followed by VMCOREINFO
    Buffer.alloc(100),
    Buffer.from(SAMPLE, "latin1"),
    Buffer.alloc(1),
    Buffer.alloc(5000, 0xee),
    elfNote(SAMPLE),
    Buffer.alloc(64),
  ]);
  const matches = scanVmcoreinfo(buf, { baseOffset: 0x100000 });
  assert.equal(matches.length, 2);
  assert.deepEqual(
    matches.map((m) => m.inNote),
    [false, true],
  );
  assert.equal(matches[0].offset, 0x100000 + buf.indexOf(SAMPLE));
  assert.equal(matches[0].length, SAMPLE.length);
  assert.equal(matches[1].info.symbols.get("_stext"), 0xffffffff9a000000n);
  // The note's descsz bounds the text even without a NUL after it.
  const noNul = Buffer.concat([elfNote(SAMPLE).subarray(0, 24 + SAMPLE.length), Buffer.from("Z=1\n")]);
  const m = scanVmcoreinfo(noNul);
  assert.equal(m.length, 1);
  assert.equal(m[0].length, SAMPLE.length);
  assert.equal(m[0].info.other.has("Z"), false);
});

test("scanner: candidate budget bounds work on hostile RAM full of needles", () => {
  const buf = Buffer.from("OSRELEASE=".repeat(100_000), "latin1");
  const t0 = performance.now();
  assert.deepEqual(scanVmcoreinfo(buf, { maxCandidates: 1000 }), []);
  assert.ok(performance.now() - t0 < 2000);
});

test("locate: text straddling a chunk boundary is found once", async () => {
  const size = 8 * 1024 * 1024;
  const ram = Buffer.alloc(size);
  const at = 2 * 1024 * 1024 - 100; // crosses the first 2 MiB chunk boundary
  elfNote(SAMPLE).copy(ram, at - 24);
  const found = await locateVmcoreinfo(new BufferPhysicalMemory(ram));
  assert.ok(found);
  assert.equal(found.offset, at);
  assert.equal(found.inNote, true);
  assert.equal(await locateVmcoreinfo(new BufferPhysicalMemory(Buffer.alloc(size))), undefined);
});

test("locate: chunks in holes are skipped, other read failures propagate", async () => {
  const size = 16 * 1024 * 1024;
  const ram = Buffer.alloc(size);
  Buffer.from(SAMPLE).copy(ram, 12 * 1024 * 1024 + 5);
  const holey: PhysicalMemory = {
    size,
    async read(ranges: readonly PhysRange[]) {
      return ranges.map((r) => {
        if (r.addr < 8 * 1024 * 1024 && r.addr + r.len > 4 * 1024 * 1024)
          throw new MemoryError("MEM_HOLE", "hole");
        return ram.subarray(r.addr, r.addr + r.len);
      });
    },
  };
  const found = await locateVmcoreinfo(holey);
  assert.equal(found?.offset, 12 * 1024 * 1024 + 5);
  const broken: PhysicalMemory = {
    size,
    async read() {
      throw new Error("disk on fire");
    },
  };
  await assert.rejects(
    locateVmcoreinfo(broken),
    (e: unknown) => e instanceof MemoryError && e.code === "MEM_READ_FAILED",
  );
  const fromRegion = await locateVmcoreinfo(holey, {
    regions: [{ start: 10 * 1024 * 1024, end: 14 * 1024 * 1024 }],
  });
  assert.equal(fromRegion?.offset, 12 * 1024 * 1024 + 5);
  assert.equal(await locateVmcoreinfo(holey, { regions: [{ start: 0, end: 4 * 1024 * 1024 }] }), undefined);
});

test("NUMBER() in the formats current kernels write: %ld, %d and 0x%lx (kept unsigned)", () => {
  // kernel/vmcore_info.c writes "NUMBER(VMALLOC_START)=0x%lx"; arm64 writes kimage_voffset and
  // PHYS_OFFSET as 0x%llx; x86 writes pgtable_l5_enabled with %d and phys_base with %ld.
  const info = parseVmcoreinfo(
    [
      "OSRELEASE=6.12.95+deb12-amd64",
      "NUMBER(VMALLOC_START)=0xffffc90000000000",
      "NUMBER(kimage_voffset)=0xffff7fff80000000",
      "NUMBER(PHYS_OFFSET)=0x40000000",
      "NUMBER(pgtable_l5_enabled)=0",
      "NUMBER(phys_base)=-1610612736",
      "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456",
      "LENGTH(mem_section)=18446744073",
      "",
    ].join("\n"),
  );
  assert.equal(info.numbers.get("VMALLOC_START"), 0xffffc90000000000n);
  assert.equal(info.numbers.get("kimage_voffset"), 0xffff7fff80000000n);
  assert.equal(info.numbers.get("PHYS_OFFSET"), 0x40000000n);
  assert.equal(info.numbers.get("phys_base"), -1610612736n);
  assert.equal(info.numbers.get("PAGE_BUDDY_MAPCOUNT_VALUE"), -268435456n);
  assert.equal(info.lengths.get("mem_section"), 18446744073);
  // Still strict about what no writer produces.
  for (const bad of ["0x", "0xfffffffffffffffff", "0xg1", "-0x10", "0X10", "1e3", "+5"]) {
    expectCode(() => parseVmcoreinfo(`OSRELEASE=6.1\nNUMBER(x)=${bad}\n`), "VMCOREINFO_BAD_VALUE");
  }
  // %lu of a 64-bit value: 20 digits parse, above 2^53 is refused with a reason.
  assert.throws(
    () => parseVmcoreinfo("OSRELEASE=6.1\nSIZE(x)=18446744073709551615\n"),
    (e: unknown) => e instanceof VmcoreinfoError && /value too large/.test(e.message),
  );
});

test("scanner: a rejected ELF note is reported with the reason; bare text that fails is not", () => {
  const broken = SAMPLE.replace("NUMBER(sme_mask)=0", "NUMBER(sme_mask)=zero");
  const rejected: { offset: number; code: string; reason: string }[] = [];
  const buf = Buffer.concat([
    Buffer.from("OSRELEASE=%s\n\0", "latin1"), // rodata format string: not a note, not reported
    Buffer.alloc(64),
    elfNote(broken),
  ]);
  assert.deepEqual(scanVmcoreinfo(buf, { baseOffset: 0x1000, rejected }), []);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].offset, 0x1000 + buf.indexOf(broken));
  assert.equal(rejected[0].code, "VMCOREINFO_BAD_VALUE");
  assert.match(rejected[0].reason, /NUMBER\(sme_mask\)=zero/);
});

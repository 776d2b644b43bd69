// kallsyms decoder tests over synthetic tables built by the encoder in kallsyms-encoder.testkit.ts
// (shared with the property tests in fuzz.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { KernelImageMemory, START_KERNEL_MAP } from "../address/translate.ts";
import { KallsymsError, MemoryError, VmiError } from "../errors.ts";
import { BufferPhysicalMemory } from "../memory/memory.ts";
import {
  decodeKallsyms,
  type KallsymsBlobs,
  type KallsymsLocation,
  kallsymsAnchor,
  kallsymsLocation,
  readKallsyms,
} from "./kallsyms.ts";
import { type Encoded, encode, type Sym, sampleSyms, TEXT } from "./kallsyms-encoder.testkit.ts";
import { parseVmcoreinfo } from "./vmcoreinfo.ts";

function expectKallsymsError(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KallsymsError, `expected KallsymsError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

test("round trip: all three address encodings, 1- and 2-byte lengths", () => {
  const syms = sampleSyms();
  // Percpu symbols are small absolute values in the absolute-percpu layout.
  const withPercpu = [
    { name: "fixed_percpu_data", type: "D", address: 0n },
    { name: "irq_stack", type: "D", address: 0x4000n },
    ...syms,
  ];
  for (const enc of ["absolute-percpu", "base-relative", "place-relative"] as const) {
    const input = enc === "absolute-percpu" ? withPercpu : syms;
    const { blobs, tokens } = encode(input, enc);
    assert.ok(
      tokens.some((t) => t.length > 1),
      "encoder should produce multi-char tokens",
    );
    const table = decodeKallsyms(blobs, { encoding: enc });
    assert.equal(table.encoding, enc);
    assert.deepEqual(table.symbols, input);
    assert.equal(table.lookup("_stext"), TEXT + 0x1000n);
    assert.equal(table.lookup("nope"), undefined);
    expectKallsymsError(() => table.require("nope"), "KALLSYMS_MISSING_SYMBOL");
  }
});

test("auto encoding: heuristics without anchor, anchor decides when given", () => {
  const syms = sampleSyms(50);
  const abs = encode([{ name: "irq_stack", type: "D", address: 0x4000n }, ...syms], "absolute-percpu");
  assert.equal(decodeKallsyms(abs.blobs).encoding, "absolute-percpu");
  const rel = encode(syms, "base-relative");
  assert.equal(decodeKallsyms(rel.blobs).encoding, "base-relative");
  const place = encode(syms, "place-relative");
  assert.equal(decodeKallsyms(place.blobs).encoding, "place-relative");
  const anchor = { name: "_stext", address: TEXT + 0x1000n };
  assert.equal(decodeKallsyms(rel.blobs, { anchor }).encoding, "base-relative");
  assert.equal(decodeKallsyms(abs.blobs, { anchor }).encoding, "absolute-percpu");
  expectKallsymsError(
    () => decodeKallsyms(rel.blobs, { anchor: { name: "_stext", address: 1n } }),
    "KALLSYMS_ANCHOR_MISMATCH",
  );
  expectKallsymsError(
    () => decodeKallsyms(rel.blobs, { anchor: { name: "absent", address: 1n } }),
    "KALLSYMS_ANCHOR_MISMATCH",
  );
  expectKallsymsError(
    () => decodeKallsyms(place.blobs, { encoding: "base-relative" }),
    "KALLSYMS_BAD_ENCODING",
  );
});

test("hostile tables give typed errors", () => {
  const { blobs } = encode(sampleSyms(40), "base-relative");
  const mod = (m: Partial<KallsymsBlobs>): KallsymsBlobs => ({ ...blobs, ...m });
  expectKallsymsError(() => decodeKallsyms(mod({ numSyms: 0 })), "KALLSYMS_BAD_COUNT");
  expectKallsymsError(() => decodeKallsyms(mod({ numSyms: 0xffffffff })), "KALLSYMS_BAD_COUNT");
  expectKallsymsError(() => decodeKallsyms(mod({ numSyms: 42 })), "KALLSYMS_TRUNCATED");
  expectKallsymsError(
    () => decodeKallsyms(mod({ names: blobs.names.subarray(0, 100) })),
    "KALLSYMS_TRUNCATED",
  );
  expectKallsymsError(
    () => decodeKallsyms(mod({ offsets: blobs.offsets.subarray(0, 8) })),
    "KALLSYMS_TRUNCATED",
  );
  expectKallsymsError(
    () => decodeKallsyms(mod({ tokenIndex: blobs.tokenIndex.subarray(0, 100) })),
    "KALLSYMS_TRUNCATED",
  );
  // Token index past the table, and a table without a terminator.
  const badIndex = blobs.tokenIndex.slice();
  new DataView(badIndex.buffer).setUint16(2 * 65, 0xffff, true);
  expectKallsymsError(() => decodeKallsyms(mod({ tokenIndex: badIndex })), "KALLSYMS_BAD_TOKEN");
  const unterminated = blobs.tokenTable.map((b) => (b === 0 ? 0x41 : b));
  expectKallsymsError(() => decodeKallsyms(mod({ tokenTable: unterminated })), "KALLSYMS_BAD_TOKEN");
  // Zero-length name, and a 3-byte length.
  const zero = blobs.names.slice();
  zero[0] = 0;
  expectKallsymsError(() => decodeKallsyms(mod({ names: zero })), "KALLSYMS_BAD_NAME");
  const three = blobs.names.slice();
  three[0] = 0x81;
  three[1] = 0x80;
  expectKallsymsError(() => decodeKallsyms(mod({ names: three })), "KALLSYMS_BAD_NAME");
  // A token containing a control character makes an invalid name.
  const ctl = blobs.tokenTable.slice();
  ctl[blobs.tokenTable.indexOf("_".charCodeAt(0))] = 0x07;
  expectKallsymsError(() => decodeKallsyms(mod({ tokenTable: ctl })), "KALLSYMS_BAD_NAME");
});

test("overlapping and self-similar token indices stay bounded", () => {
  const { blobs } = encode(sampleSyms(40), "base-relative");
  // Every code points at the same long token: each name expands to len x token.
  const long = new Uint8Array(300).fill(0x61);
  long[0] = 0x54; // 'T' so the type letter is valid
  long[255] = 0;
  const index = new Uint8Array(512); // all codes -> offset 0
  const t0 = performance.now();
  expectKallsymsError(
    () => decodeKallsyms({ ...blobs, tokenTable: long, tokenIndex: index }, { maxNameLength: 512 }),
    "KALLSYMS_NAME_TOO_LONG",
  );
  // Codes pointing into the middle of other tokens: decodes to something or a typed error.
  const mid = new Uint8Array(512);
  for (let i = 0; i < 256; i++) new DataView(mid.buffer).setUint16(i * 2, i % 7, true);
  try {
    decodeKallsyms({ ...blobs, tokenIndex: mid });
  } catch (e) {
    assert.ok(e instanceof KallsymsError);
  }
  assert.ok(performance.now() - t0 < 1000);
});

/** Lays the tables out like Linux 6.4+ in a fake kernel image and reads them back. */
function imageWith(enc: Encoded, physBase: number): { mem: BufferPhysicalMemory; loc: KallsymsLocation } {
  const { blobs } = enc;
  const parts: [keyof KallsymsLocation, Uint8Array][] = [
    ["numSyms", new Uint8Array(new Uint32Array([blobs.numSyms]).buffer)],
    ["names", blobs.names],
    ["markers", new Uint8Array(16)],
    ["tokenTable", blobs.tokenTable],
    ["tokenIndex", blobs.tokenIndex],
    ["offsets", blobs.offsets],
    ["relativeBase", new Uint8Array(new BigUint64Array([blobs.relativeBase ?? 0n]).buffer)],
  ];
  const imageOff = 0x200000; // tables somewhere inside the image
  const ram = new Uint8Array(physBase + imageOff + 0x400000);
  const loc: Record<string, bigint> = {};
  let at = physBase + imageOff;
  for (const [k, bytes] of parts) {
    at = Math.ceil(at / 8) * 8;
    ram.set(bytes, at);
    loc[k] = START_KERNEL_MAP + BigInt(at - physBase);
    at += bytes.length;
  }
  if (blobs.relativeBase === undefined) delete loc.relativeBase;
  return { mem: new BufferPhysicalMemory(ram), loc: loc as unknown as KallsymsLocation };
}

test("readKallsyms over a fake kernel image (KernelImageMemory), names read in chunks", async () => {
  const syms = sampleSyms(2000);
  for (const enc of ["base-relative", "place-relative"] as const) {
    // place-relative offsets are relative to where the offsets table really is.
    const probe = imageWith(encode(syms, enc), 0x1000000);
    const encoded = encode(syms, enc, 0xffffffff81000000n, probe.loc.offsets);
    const { mem, loc } = imageWith(encoded, 0x1000000);
    const image = new KernelImageMemory(mem, 0x1000000n);
    const table = await readKallsyms(image, loc, {
      namesChunk: 4096,
      anchor: { name: "_stext", address: TEXT + 0x1000n },
    });
    assert.equal(table.encoding, enc);
    assert.deepEqual(table.symbols, syms);
  }
});

test("readKallsyms: hostile count and truncated memory give typed errors", async () => {
  const encoded = encode(sampleSyms(100), "base-relative");
  const { mem, loc } = imageWith(encoded, 0x1000000);
  const image = new KernelImageMemory(mem, 0x1000000n);
  // Count larger than the names: decoding runs into markers/token table.
  const ram = new Uint8Array(mem.size);
  ram.set(await mem.read([{ addr: 0, len: mem.size }]).then((b) => b[0]));
  const phys = Number(loc.numSyms - START_KERNEL_MAP) + 0x1000000;
  new DataView(ram.buffer).setUint32(phys, 5000, true);
  const grown = new KernelImageMemory(new BufferPhysicalMemory(ram), 0x1000000n);
  await assert.rejects(
    readKallsyms(grown, loc),
    (e: unknown) => e instanceof KallsymsError || e instanceof MemoryError,
  );
  new DataView(ram.buffer).setUint32(phys, 0xffffffff, true);
  await assert.rejects(
    readKallsyms(grown, loc),
    (e: unknown) => e instanceof KallsymsError && e.code === "KALLSYMS_BAD_COUNT",
  );
  // Offsets table beyond the end of RAM.
  const shortMem = new KernelImageMemory(new BufferPhysicalMemory(ram.subarray(0, phys + 64)), 0x1000000n);
  await assert.rejects(readKallsyms(shortMem, loc), (e: unknown) => e instanceof VmiError);
  // Untouched image still reads.
  assert.equal((await readKallsyms(image, loc)).symbols.length, 101);
});

test("locations from VMCOREINFO", () => {
  const info = parseVmcoreinfo(
    [
      "OSRELEASE=6.1.0-56-amd64",
      "PAGESIZE=4096",
      "SYMBOL(_stext)=ffffffff9a000000",
      "SYMBOL(kallsyms_names)=ffffffff9b8a1d38",
      "SYMBOL(kallsyms_num_syms)=ffffffff9b8a1d30",
      "SYMBOL(kallsyms_token_table)=ffffffff9ba2e3a0",
      "SYMBOL(kallsyms_token_index)=ffffffff9ba2e720",
      "SYMBOL(kallsyms_offsets)=ffffffff9b845a28",
      "SYMBOL(kallsyms_relative_base)=ffffffff9b8a1d28",
      "",
    ].join("\n"),
  );
  const loc = kallsymsLocation(info);
  assert.equal(loc.names, 0xffffffff9b8a1d38n);
  assert.equal(loc.relativeBase, 0xffffffff9b8a1d28n);
  assert.equal(loc.markers, undefined);
  assert.deepEqual(kallsymsAnchor(info), { name: "_stext", address: 0xffffffff9a000000n });
  expectKallsymsError(
    () => kallsymsLocation(parseVmcoreinfo("OSRELEASE=6.1\nPAGESIZE=4096\n")),
    "KALLSYMS_MISSING_SYMBOL",
  );
});

test("scale: 120k symbols decode quickly", (t) => {
  const syms: Sym[] = [];
  for (let i = 0; i < 120_000; i++) {
    syms.push({
      name: `sym_${(i * 2654435761) % 1000003}_${i.toString(36)}`,
      type: "t",
      address: TEXT + BigInt(i * 16),
    });
  }
  const { blobs } = encode(syms, "base-relative");
  const t0 = performance.now();
  const table = decodeKallsyms(blobs);
  const ms = performance.now() - t0;
  t.diagnostic(`decoded ${table.symbols.length} symbols in ${ms.toFixed(1)} ms`);
  assert.equal(table.symbols.length, syms.length);
  assert.equal(table.symbols[119_999].name, syms[119_999].name);
  assert.ok(ms < 3000);
});

// kallsyms decoder: the kernel's compressed symbol table, read from guest memory with addresses
// from VMCOREINFO (SYMBOL(kallsyms_*), Linux 6.0+). Layout (scripts/kallsyms.c, kernel/kallsyms.c):
//   kallsyms_num_syms     u32
//   kallsyms_names        per symbol: length (1 byte; if bit 7 set, 2-byte ULEB128 since 6.1)
//                         then `length` token codes
//   kallsyms_token_table  256 NUL-terminated strings; kallsyms_token_index: 256 x u16 offsets
//   kallsyms_offsets      s32 per symbol
// The expansion of a name is the concatenation of its tokens; its first char is the type letter.
// Tokens are flat at run time (the recursive table exists only at build time), so expansion
// cannot loop; it is still bounded by the name length limit.
//
// Address encodings over kernel history (x86-64):
//   absolute-percpu  (KALLSYMS_ABSOLUTE_PERCPU, e.g. 6.1): off >= 0 ? off : relative_base - 1 - off
//   base-relative    (no absolute percpu: arm64 always, x86 since its percpu rework ~6.15):
//                    relative_base + (u32)off
//   place-relative   (7.0+, kallsyms_relative_base removed): &kallsyms_offsets[i] + (s32)off
// The version boundaries are from kernel history as far as we could check; with `anchor` (e.g.
// _stext from VMCOREINFO) the encoding is verified instead of guessed.
// Table order also changed in 6.4 (num_syms, names, markers, token_table, token_index, offsets,
// relative_base, seqs_of_names); we never rely on order except to bound reads.

import { Buffer } from "node:buffer";
import { guard, guardAsync, KallsymsError } from "../errors.ts";
import { MAX_READ_LEN, readVirt, type VirtAddr, type VirtualMemory } from "../memory/memory.ts";
import type { Vmcoreinfo } from "./vmcoreinfo.ts";

export type KallsymsEncoding = "absolute-percpu" | "base-relative" | "place-relative";

export interface KallsymsLocation {
  readonly numSyms: VirtAddr;
  readonly names: VirtAddr;
  readonly tokenTable: VirtAddr;
  readonly tokenIndex: VirtAddr;
  readonly offsets: VirtAddr;
  /** Absent from 7.0 on. */
  readonly relativeBase?: VirtAddr;
  /** Optional; only used to bound how far names are read. */
  readonly markers?: VirtAddr;
}

export interface KallsymsLimits {
  /** Largest kallsyms_num_syms accepted (Debian 6.1: ~94k; allyesconfig: a few 100k). */
  readonly maxSymbols: number;
  /** Longest expanded name, type letter excluded (KSYM_NAME_LEN is 512 since 6.1). */
  readonly maxNameLength: number;
  /** Largest kallsyms_names region read. */
  readonly maxNamesBytes: number;
}

export const DEFAULT_LIMITS: KallsymsLimits = {
  maxSymbols: 1 << 20,
  maxNameLength: 1024,
  maxNamesBytes: 32 * 1024 * 1024,
};
const HARD_MAX_SYMBOLS = 1 << 22;
/** Longest token string accepted; real tokens are a few characters. */
const MAX_TOKEN_LEN = 256;
/** The encoder emits at most 2-byte lengths, i.e. <= 0x3fff token codes per name. */
const MAX_CODES = 0x3fff;

export interface KallsymsOptions extends Partial<KallsymsLimits> {
  /** Default "auto": chosen by the anchor, else by which tables exist / offset signs. */
  readonly encoding?: KallsymsEncoding | "auto";
  /** A symbol whose address is known independently, e.g. _stext from VMCOREINFO. */
  readonly anchor?: { readonly name: string; readonly address: VirtAddr };
  /** Bytes of kallsyms_names fetched per read while looking for its end. */
  readonly namesChunk?: number;
}

export interface KernelSymbol {
  readonly name: string;
  /** nm-style type letter: T/t text, D/d data, B/b bss, R/r rodata, ... */
  readonly type: string;
  readonly address: VirtAddr;
}

export class KallsymsTable {
  private readonly byName = new Map<string, number>();

  constructor(
    readonly symbols: readonly KernelSymbol[],
    readonly encoding: KallsymsEncoding,
  ) {
    symbols.forEach((s, i) => {
      if (!this.byName.has(s.name)) this.byName.set(s.name, i);
    });
  }

  /** Address of the first symbol with this name (static symbols may repeat). */
  lookup(name: string): VirtAddr | undefined {
    const i = this.byName.get(name);
    return i === undefined ? undefined : this.symbols[i].address;
  }

  require(name: string): VirtAddr {
    const a = this.lookup(name);
    if (a === undefined) throw new KallsymsError("KALLSYMS_MISSING_SYMBOL", `no symbol ${name}`);
    return a;
  }

  lookupAll(name: string): KernelSymbol[] {
    return this.symbols.filter((s) => s.name === name);
  }
}

/** Raw tables as read from memory: the input of the pure decoder. */
export interface KallsymsBlobs {
  readonly numSyms: number;
  /** Starts at kallsyms_names; may extend past the last name. */
  readonly names: Uint8Array;
  /** Starts at kallsyms_token_table; may extend past the last token. */
  readonly tokenTable: Uint8Array;
  /** 256 little-endian u16. */
  readonly tokenIndex: Uint8Array;
  /** numSyms little-endian s32. */
  readonly offsets: Uint8Array;
  readonly relativeBase?: bigint;
  /** Address of kallsyms_offsets (place-relative encoding). */
  readonly offsetsAddr: VirtAddr;
}

function limitsOf(opts: KallsymsOptions): KallsymsLimits {
  const l = { ...DEFAULT_LIMITS, ...opts };
  const ok = (n: number, max: number) => Number.isSafeInteger(n) && n > 0 && n <= max;
  if (!ok(l.maxSymbols, HARD_MAX_SYMBOLS) || !ok(l.maxNameLength, 1 << 16) || !ok(l.maxNamesBytes, 1 << 30)) {
    throw new KallsymsError("KALLSYMS_BAD_COUNT", "kallsyms limits out of range");
  }
  return l;
}

function checkCount(n: number, limits: KallsymsLimits): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > limits.maxSymbols) {
    throw new KallsymsError("KALLSYMS_BAD_COUNT", `kallsyms_num_syms ${n} outside 1..${limits.maxSymbols}`);
  }
}

function tokenStarts(tokenIndex: Uint8Array): number[] {
  if (tokenIndex.length < 512)
    throw new KallsymsError("KALLSYMS_TRUNCATED", "token index shorter than 256 entries");
  const dv = new DataView(tokenIndex.buffer, tokenIndex.byteOffset, 512);
  return Array.from({ length: 256 }, (_, i) => dv.getUint16(i * 2, true));
}

function decodeTokens(table: Uint8Array, starts: readonly number[]): string[] {
  const buf = Buffer.from(table.buffer, table.byteOffset, table.byteLength);
  return starts.map((start, code) => {
    const end = start < buf.length ? buf.indexOf(0, start) : -1;
    if (end < 0 || end - start > MAX_TOKEN_LEN) {
      throw new KallsymsError(
        "KALLSYMS_BAD_TOKEN",
        `token ${code} at ${start}: no terminator within the token table`,
      );
    }
    return buf.toString("latin1", start, end);
  });
}

/** Length prefix of the name at `pos`: [prefixBytes, codeCount]. */
function nameHeader(names: Uint8Array, pos: number, i: number): [number, number] {
  const b0 = names[pos];
  if ((b0 & 0x80) === 0) return [1, b0];
  if (pos + 1 >= names.length)
    throw new KallsymsError("KALLSYMS_TRUNCATED", `symbol ${i}: length runs past names`);
  const b1 = names[pos + 1];
  if ((b1 & 0x80) !== 0)
    throw new KallsymsError("KALLSYMS_BAD_NAME", `symbol ${i}: length longer than 2 bytes`);
  return [2, (b0 & 0x7f) | (b1 << 7)];
}

/** End of the names of `count` symbols, or -1 if `names` does not hold them all yet. */
export function namesExtent(names: Uint8Array, count: number): number {
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos >= names.length) return -1;
    if ((names[pos] & 0x80) !== 0 && pos + 1 >= names.length) return -1;
    const [prefix, len] = nameHeader(names, pos, i);
    pos += prefix + len;
  }
  return pos <= names.length ? pos : -1;
}

const TYPE_CHAR = /^[A-Za-z]$/;
const NAME_CHARS = /^[\x21-\x7e]*$/;

/**
 * Expands every name. Validity is checked per token (printable, no spaces) once, instead of per
 * name: a name is valid iff all its tokens are and it starts with a type letter.
 */
function decodeNames(names: Uint8Array, count: number, tokens: readonly string[], maxLen: number): string[] {
  const tokenOk = tokens.map((t) => NAME_CHARS.test(t));
  const out: string[] = new Array(count);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos >= names.length)
      throw new KallsymsError("KALLSYMS_TRUNCATED", `symbol ${i}: names end after ${i} symbols`);
    const [prefix, len] = nameHeader(names, pos, i);
    if (len === 0 || len > MAX_CODES)
      throw new KallsymsError("KALLSYMS_BAD_NAME", `symbol ${i}: ${len} token codes`);
    const start = pos + prefix;
    if (start + len > names.length)
      throw new KallsymsError("KALLSYMS_TRUNCATED", `symbol ${i}: codes run past names`);
    let s = "";
    let ok = true;
    for (let k = start; k < start + len; k++) {
      const code = names[k];
      s += tokens[code];
      ok &&= tokenOk[code];
      // +1: the type letter is part of the expansion.
      if (s.length > maxLen + 1)
        throw new KallsymsError("KALLSYMS_NAME_TOO_LONG", `symbol ${i}: name longer than ${maxLen}`);
    }
    if (!ok || s.length < 2 || !TYPE_CHAR.test(s.charAt(0))) {
      throw new KallsymsError(
        "KALLSYMS_BAD_NAME",
        `symbol ${i}: not a symbol name: ${JSON.stringify(s.slice(0, 40))}`,
      );
    }
    out[i] = s;
    pos = start + len;
  }
  return out;
}

function addressesFor(enc: KallsymsEncoding, blobs: KallsymsBlobs, count: number): (i: number) => bigint {
  const dv = new DataView(blobs.offsets.buffer, blobs.offsets.byteOffset, blobs.offsets.byteLength);
  const base = blobs.relativeBase;
  if (enc !== "place-relative" && base === undefined) {
    throw new KallsymsError("KALLSYMS_BAD_ENCODING", `${enc} needs kallsyms_relative_base`);
  }
  if (blobs.offsets.length < count * 4)
    throw new KallsymsError("KALLSYMS_TRUNCATED", "offsets table too short");
  const rb = base ?? 0n;
  switch (enc) {
    case "absolute-percpu":
      return (i) => {
        const off = dv.getInt32(i * 4, true);
        return off >= 0 ? BigInt(off) : BigInt.asUintN(64, rb - 1n - BigInt(off));
      };
    case "base-relative":
      return (i) => BigInt.asUintN(64, rb + BigInt(dv.getUint32(i * 4, true)));
    case "place-relative":
      return (i) => BigInt.asUintN(64, blobs.offsetsAddr + BigInt(i * 4) + BigInt(dv.getInt32(i * 4, true)));
  }
}

function chooseEncoding(
  blobs: KallsymsBlobs,
  count: number,
  expanded: readonly string[],
  opts: KallsymsOptions,
): KallsymsEncoding {
  const requested = opts.encoding ?? "auto";
  const candidates: KallsymsEncoding[] =
    requested !== "auto"
      ? [requested]
      : blobs.relativeBase === undefined
        ? ["place-relative"]
        : ["absolute-percpu", "base-relative", "place-relative"];
  const anchor = opts.anchor;
  if (anchor) {
    const idx = expanded.findIndex((s) => s.slice(1) === anchor.name);
    if (idx < 0)
      throw new KallsymsError("KALLSYMS_ANCHOR_MISMATCH", `anchor symbol ${anchor.name} not in kallsyms`);
    for (const enc of candidates) {
      if (enc !== "place-relative" && blobs.relativeBase === undefined) continue;
      if (addressesFor(enc, blobs, count)(idx) === anchor.address) return enc;
    }
    throw new KallsymsError(
      "KALLSYMS_ANCHOR_MISMATCH",
      `no address encoding (${candidates.join(", ")}) puts ${anchor.name} at 0x${anchor.address.toString(16)}`,
    );
  }
  if (requested !== "auto") return requested;
  if (blobs.relativeBase === undefined) return "place-relative";
  // Absolute-percpu tables store kernel text as negative offsets; plain base-relative offsets
  // are u32 distances that never reach 2^31 (the image is at most 1 GiB).
  const dv = new DataView(blobs.offsets.buffer, blobs.offsets.byteOffset, blobs.offsets.byteLength);
  if (blobs.offsets.length < count * 4)
    throw new KallsymsError("KALLSYMS_TRUNCATED", "offsets table too short");
  for (let i = 0; i < count; i++) if (dv.getInt32(i * 4, true) < 0) return "absolute-percpu";
  return "base-relative";
}

/** Pure decoder over tables already in memory. */
export function decodeKallsyms(blobs: KallsymsBlobs, opts: KallsymsOptions = {}): KallsymsTable {
  return guard(() => {
    const limits = limitsOf(opts);
    const count = blobs.numSyms;
    checkCount(count, limits);
    if (blobs.offsets.length < count * 4)
      throw new KallsymsError("KALLSYMS_TRUNCATED", "offsets table too short");
    const tokens = decodeTokens(blobs.tokenTable, tokenStarts(blobs.tokenIndex));
    const expanded = decodeNames(blobs.names, count, tokens, limits.maxNameLength);
    const enc = chooseEncoding(blobs, count, expanded, opts);
    const addr = addressesFor(enc, blobs, count);
    const symbols: KernelSymbol[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const s = expanded[i];
      symbols[i] = { name: s.slice(1), type: s.charAt(0), address: addr(i) };
    }
    return new KallsymsTable(symbols, enc);
  });
}

/** kallsyms table addresses from VMCOREINFO (Linux 6.0+ exports them). */
export function kallsymsLocation(info: Vmcoreinfo): KallsymsLocation {
  return guard(() => {
    const need = (name: string) => {
      const v = info.symbols.get(name);
      if (v === undefined)
        throw new KallsymsError("KALLSYMS_MISSING_SYMBOL", `VMCOREINFO has no SYMBOL(${name})`);
      return v;
    };
    return {
      numSyms: need("kallsyms_num_syms"),
      names: need("kallsyms_names"),
      tokenTable: need("kallsyms_token_table"),
      tokenIndex: need("kallsyms_token_index"),
      offsets: need("kallsyms_offsets"),
      relativeBase: info.symbols.get("kallsyms_relative_base"),
      markers: info.symbols.get("kallsyms_markers"),
    };
  });
}

/** _stext from VMCOREINFO: the natural anchor to verify the address encoding. */
export function kallsymsAnchor(info: Vmcoreinfo): KallsymsOptions["anchor"] {
  const a = info.symbols.get("_stext");
  return a === undefined ? undefined : { name: "_stext", address: a };
}

/** Smallest distance from `from` to a known table address above it, if any. */
function gapAfter(from: VirtAddr, loc: KallsymsLocation): number | undefined {
  let best: bigint | undefined;
  for (const a of [
    loc.numSyms,
    loc.names,
    loc.tokenTable,
    loc.tokenIndex,
    loc.offsets,
    loc.relativeBase,
    loc.markers,
  ]) {
    if (a !== undefined && a > from && (best === undefined || a - from < best)) best = a - from;
  }
  return best !== undefined && best <= BigInt(MAX_READ_LEN) ? Number(best) : undefined;
}

/** Reads kallsyms_names until `count` names are complete, never past `limit` bytes. */
async function readNames(
  mem: VirtualMemory,
  at: VirtAddr,
  count: number,
  limit: number,
  firstChunk: number,
): Promise<Uint8Array> {
  let buf = new Uint8Array(0);
  let chunk = firstChunk;
  while (buf.length < limit) {
    const len = Math.min(chunk, limit - buf.length);
    const [part] = await readVirt(mem, [{ addr: at + BigInt(buf.length), len }]);
    const next = new Uint8Array(buf.length + len);
    next.set(buf);
    next.set(part, buf.length);
    buf = next;
    const end = namesExtent(buf, count);
    if (end >= 0) return buf.subarray(0, end);
    chunk = Math.min(chunk * 2, MAX_READ_LEN);
  }
  throw new KallsymsError(
    "KALLSYMS_TRUNCATED",
    `${count} names do not fit in ${limit} bytes of kallsyms_names`,
  );
}

/**
 * Reads and decodes kallsyms through `mem` (usually KernelImageMemory). Three to a handful of
 * batched reads: counts and index, then token table and offsets, then names in growing chunks.
 */
export async function readKallsyms(
  mem: VirtualMemory,
  loc: KallsymsLocation,
  opts: KallsymsOptions = {},
): Promise<KallsymsTable> {
  return guardAsync(async () => decodeKallsyms(await readKallsymsBlobs(mem, loc, opts), opts));
}

/** The reading half of readKallsyms: the raw tables, for decodeKallsyms (and its benchmark). */
export async function readKallsymsBlobs(
  mem: VirtualMemory,
  loc: KallsymsLocation,
  opts: KallsymsOptions = {},
): Promise<KallsymsBlobs> {
  return guardAsync(async () => {
    const limits = limitsOf(opts);
    const first = [
      { addr: loc.numSyms, len: 4 },
      { addr: loc.tokenIndex, len: 512 },
    ];
    if (loc.relativeBase !== undefined) first.push({ addr: loc.relativeBase, len: 8 });
    const [numBytes, tokenIndex, rbBytes] = await readVirt(mem, first);
    const count = new DataView(numBytes.buffer, numBytes.byteOffset, 4).getUint32(0, true);
    checkCount(count, limits);
    const relativeBase = rbBytes
      ? new DataView(rbBytes.buffer, rbBytes.byteOffset, 8).getBigUint64(0, true)
      : undefined;

    // The token table ends where the next table begins (token_index in every layout so far).
    const maxStart = Math.max(...tokenStarts(tokenIndex));
    const wanted = maxStart + MAX_TOKEN_LEN + 1;
    const gap = gapAfter(loc.tokenTable, loc);
    const tokenLen = gap !== undefined ? Math.min(gap, wanted) : wanted;
    const [tokenTable, offsets] = await readVirt(mem, [
      { addr: loc.tokenTable, len: tokenLen },
      { addr: loc.offsets, len: count * 4 },
    ]);

    const namesGap = gapAfter(loc.names, loc);
    const namesLimit = Math.min(limits.maxNamesBytes, namesGap ?? limits.maxNamesBytes);
    const chunk = Math.max(4096, Math.min(opts.namesChunk ?? 1 << 20, MAX_READ_LEN));
    const names = await readNames(mem, loc.names, count, namesLimit, chunk);

    return { numSyms: count, names, tokenTable, tokenIndex, offsets, relativeBase, offsetsAddr: loc.offsets };
  });
}

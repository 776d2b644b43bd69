// VMCOREINFO: the kernel's own "how to read my memory" text (kernel/vmcore_info.c, before 6.9
// kernel/crash_core.c; arch/x86/kernel/vmcore_info_64.c, before 6.9 crash_core_64.c), filled at
// boot whether or not a crash kernel is loaded. Lines are KEY=VALUE, in the writers' formats:
//   OSRELEASE=%s                    PAGESIZE=%ld           BUILD-ID=%20phN (40 hex digits)
//   SYMBOL(name)=%lx                SIZE(name)=%lu         OFFSET(struct.member)=%lu
//   LENGTH(name)=%lu                NUMBER(name)=%ld or %d (signed decimal), or 0x%lx / 0x%llx
//                                   (newer kernels: NUMBER(VMALLOC_START), arm64's
//                                   NUMBER(kimage_voffset)...: hex, kept unsigned)
//   KERNELOFFSET=%lx                CRASHTIME=%lld, CONFIG_X=y ... (kept as raw strings)
// It lives twice in RAM: in vmcoreinfo_data (plain text) and in vmcoreinfo_note, an ELF note
// (namesz=11 "VMCOREINFO", descsz = text length, type 0). The text is guest-controlled: a
// compromised kernel can forge it, so treat the values as hints to be cross-checked.

import { Buffer } from "node:buffer";
import { guard, guardAsync, MemoryError, VmcoreinfoError } from "../errors.ts";
import {
  MAX_READ_LEN,
  type PhysicalMemory,
  type PhysRange,
  readPhysLenient,
  type VirtAddr,
} from "../memory/memory.ts";

/** Kernel limit is VMCOREINFO_BYTES = PAGE_SIZE; allow some room for bigger pages. */
export const VMCOREINFO_MAX_BYTES = 16 * 1024;
const MAX_LINE = 1024;

export interface Vmcoreinfo {
  readonly osRelease: string;
  readonly buildId?: string;
  readonly pageSize?: number;
  /** KASLR slide of the kernel image (KERNELOFFSET). */
  readonly kernelOffset?: bigint;
  /** SYMBOL(name): kernel virtual addresses. */
  readonly symbols: ReadonlyMap<string, VirtAddr>;
  /** NUMBER(name): signed when written in decimal, unsigned when written as 0x hex. */
  readonly numbers: ReadonlyMap<string, bigint>;
  readonly sizes: ReadonlyMap<string, number>;
  /** OFFSET(struct.member). */
  readonly offsets: ReadonlyMap<string, number>;
  readonly lengths: ReadonlyMap<string, number>;
  /** Everything else (CRASHTIME, CONFIG_*, unknown keys), raw. */
  readonly other: ReadonlyMap<string, string>;
}

const RELEASE = /^[A-Za-z0-9._+~-]{1,64}$/;
const HEX = /^[0-9a-fA-F]{1,16}$/;
/** NUMBER() written with "0x%lx" (or "0x%llx"). */
const PREFIXED_HEX = /^0x[0-9a-fA-F]{1,16}$/;
/** %lu of a 64-bit value has at most 20 digits. */
const UDEC = /^[0-9]{1,20}$/;
const SDEC = /^-?[0-9]{1,19}$/;
const TYPED_KEY = /^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\(([^()=]{1,200})\)$/;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

function bad(line: string, why: string): VmcoreinfoError {
  return new VmcoreinfoError("VMCOREINFO_BAD_VALUE", `${why}: "${line.slice(0, 80)}"`);
}

function hex(v: string, line: string): bigint {
  if (!HEX.test(v)) throw bad(line, "expected up to 16 hex digits");
  return BigInt(`0x${v}`);
}

function udec(v: string, line: string): number {
  if (!UDEC.test(v)) throw bad(line, "expected an unsigned decimal");
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw bad(line, "value too large");
  return n;
}

/** NUMBER(): signed decimal (%ld, %d) or 0x-prefixed hex (%lx, unsigned). */
function number(v: string, line: string): bigint {
  if (PREFIXED_HEX.test(v)) return BigInt(v);
  if (!SDEC.test(v)) throw bad(line, "expected a signed decimal or 0x-prefixed hex");
  return sdec(v, line);
}

function sdec(v: string, line: string): bigint {
  if (!SDEC.test(v)) throw bad(line, "expected a signed decimal");
  const n = BigInt(v);
  if (n < INT64_MIN || n > INT64_MAX) throw bad(line, "value outside 64-bit range");
  return n;
}

/** Bytes -> text: stops at the first NUL, rejects anything but printable ASCII and newlines. */
function toText(input: string | Uint8Array): string {
  let text: string;
  if (typeof input === "string") {
    const nul = input.indexOf("\0");
    text = nul >= 0 ? input.slice(0, nul) : input;
  } else {
    const nul = input.indexOf(0);
    const end = nul >= 0 ? nul : input.length;
    if (end > VMCOREINFO_MAX_BYTES) throw new VmcoreinfoError("VMCOREINFO_TOO_LARGE", `${end} bytes`);
    text = Buffer.from(input.buffer, input.byteOffset, end).toString("latin1");
  }
  if (text.length > VMCOREINFO_MAX_BYTES)
    throw new VmcoreinfoError("VMCOREINFO_TOO_LARGE", `${text.length} bytes`);
  if (!/^[\x20-\x7e\n]*$/.test(text)) {
    throw new VmcoreinfoError("VMCOREINFO_MALFORMED", "contains characters other than printable ASCII");
  }
  return text;
}

/**
 * Parses VMCOREINFO text (or bytes, up to the first NUL). Unknown keys are kept in `other`; a
 * known key with a malformed value is an error (it means corruption, and guessing is worse).
 * A repeated key keeps its first value, as later lines could only be appended by a tamperer.
 */
export function parseVmcoreinfo(input: string | Uint8Array): Vmcoreinfo {
  return guard(() => {
    const text = toText(input);
    const symbols = new Map<string, bigint>();
    const numbers = new Map<string, bigint>();
    const sizes = new Map<string, number>();
    const offsets = new Map<string, number>();
    const lengths = new Map<string, number>();
    const other = new Map<string, string>();
    let osRelease: string | undefined;
    let buildId: string | undefined;
    let pageSize: number | undefined;
    let kernelOffset: bigint | undefined;
    const setOnce = <V>(m: Map<string, V>, k: string, v: V) => {
      if (!m.has(k)) m.set(k, v);
    };
    // Bounded: text is at most VMCOREINFO_MAX_BYTES.
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (line.length > MAX_LINE) throw new VmcoreinfoError("VMCOREINFO_MALFORMED", "line too long");
      const eq = line.indexOf("=");
      if (eq <= 0) throw new VmcoreinfoError("VMCOREINFO_MALFORMED", `not KEY=VALUE: "${line.slice(0, 80)}"`);
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1);
      const typed = TYPED_KEY.exec(key);
      if (typed) {
        const [, what, name] = typed;
        if (what === "SYMBOL") setOnce(symbols, name, hex(value, line));
        else if (what === "NUMBER") setOnce(numbers, name, number(value, line));
        else if (what === "SIZE") setOnce(sizes, name, udec(value, line));
        else if (what === "OFFSET") setOnce(offsets, name, udec(value, line));
        else setOnce(lengths, name, udec(value, line));
        continue;
      }
      switch (key) {
        case "OSRELEASE":
          if (!RELEASE.test(value)) throw bad(line, "bad release string");
          osRelease ??= value;
          break;
        case "PAGESIZE":
          pageSize ??= udec(value, line);
          break;
        case "KERNELOFFSET":
          kernelOffset ??= hex(value, line);
          break;
        case "BUILD-ID":
          if (!/^[0-9a-fA-F]{0,128}$/.test(value)) throw bad(line, "bad build id");
          buildId ??= value;
          break;
        default:
          setOnce(other, key, value);
      }
    }
    if (osRelease === undefined) throw new VmcoreinfoError("VMCOREINFO_MISSING_KEY", "no OSRELEASE line");
    return { osRelease, buildId, pageSize, kernelOffset, symbols, numbers, sizes, offsets, lengths, other };
  });
}

/** SYMBOL(name) or a VmcoreinfoError. */
export function requireSymbol(info: Vmcoreinfo, name: string): VirtAddr {
  const v = info.symbols.get(name);
  if (v === undefined) throw new VmcoreinfoError("VMCOREINFO_MISSING_KEY", `no SYMBOL(${name})`);
  return v;
}

/** NUMBER(name) or a VmcoreinfoError. */
export function requireNumber(info: Vmcoreinfo, name: string): bigint {
  const v = info.numbers.get(name);
  if (v === undefined) throw new VmcoreinfoError("VMCOREINFO_MISSING_KEY", `no NUMBER(${name})`);
  return v;
}

/** Paging depth from NUMBER(pgtable_l5_enabled) (absent on old kernels: 4 levels). */
export function pagingLevels(info: Vmcoreinfo): 4 | 5 {
  const v = info.numbers.get("pgtable_l5_enabled");
  return v !== undefined && v !== 0n ? 5 : 4;
}

export interface VmcoreinfoMatch {
  /** Offset of "OSRELEASE=" (plus the caller's base offset). */
  readonly offset: number;
  /** Text length in bytes. */
  readonly length: number;
  /** Found inside the ELF note (descsz known) rather than as bare text. */
  readonly inNote: boolean;
  readonly info: Vmcoreinfo;
}

/** A VMCOREINFO ELF note that was found but not accepted, and why. */
export interface VmcoreinfoRejection {
  /** Offset of "OSRELEASE=" (plus the caller's base offset). */
  readonly offset: number;
  readonly code: string;
  readonly reason: string;
}

export interface ScanOptions {
  /**
   * Collects candidates inside an ELF note "VMCOREINFO" that were rejected (bare text that does
   * not parse is not reported: format strings in rodata and stray mentions are normal).
   */
  readonly rejected?: VmcoreinfoRejection[];
  /** Added to reported offsets (where `buf` starts in the larger space). */
  readonly baseOffset?: number;
  /** Only report matches starting before this buffer index (for overlapping chunked scans). */
  readonly reportBefore?: number;
  /** Stop after this many "OSRELEASE=" occurrences examined (hostile RAM may hold millions). */
  readonly maxCandidates?: number;
}

const NEEDLE = Buffer.from("OSRELEASE=", "latin1");
/** Rejections kept per scan (hostile RAM may hold many forged notes). */
const MAX_REJECTIONS = 16;
const NOTE_NAME = Buffer.from("VMCOREINFO\0\0", "latin1");

/** If an ELF note header "VMCOREINFO" directly precedes `at`, its descsz; else undefined. */
function noteDescsz(buf: Buffer, at: number): number | undefined {
  if (at < 24) return undefined;
  if (!buf.subarray(at - 12, at).equals(NOTE_NAME)) return undefined;
  const namesz = buf.readUInt32LE(at - 24);
  const descsz = buf.readUInt32LE(at - 20);
  const type = buf.readUInt32LE(at - 16);
  return namesz === 11 && type === 0 ? descsz : undefined;
}

/**
 * Finds VMCOREINFO text in a buffer by searching for "OSRELEASE=" and validating what follows:
 * it must parse, and carry at least PAGESIZE or one SYMBOL (the "OSRELEASE=%s" format string in
 * the kernel's rodata, or a stray mention, does not).
 */
export function scanVmcoreinfo(bytes: Uint8Array, opts: ScanOptions = {}): VmcoreinfoMatch[] {
  return guard(() => scan(bytes, opts, { left: opts.maxCandidates ?? 4096 }));
}

/** `budget.left` counts down per candidate examined, shared across chunks by locate. */
function scan(bytes: Uint8Array, opts: ScanOptions, budget: { left: number }): VmcoreinfoMatch[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const base = opts.baseOffset ?? 0;
  const before = Math.min(opts.reportBefore ?? buf.length, buf.length);
  const out: VmcoreinfoMatch[] = [];
  for (
    let at = buf.indexOf(NEEDLE);
    at >= 0 && at < before && budget.left-- > 0;
    at = buf.indexOf(NEEDLE, at + 1)
  ) {
    const descsz = noteDescsz(buf, at);
    const limit = Math.min(buf.length, at + Math.min(descsz ?? VMCOREINFO_MAX_BYTES, VMCOREINFO_MAX_BYTES));
    let end = buf.indexOf(0, at);
    if (end < 0 || end > limit) end = limit;
    // Bare text ends at the first byte that cannot be VMCOREINFO text.
    for (let i = at; i < end; i++) {
      const c = buf[i];
      if (c !== 0x0a && (c < 0x20 || c > 0x7e)) {
        end = i;
        break;
      }
    }
    try {
      const info = parseVmcoreinfo(buf.subarray(at, end));
      if (info.pageSize === undefined && info.symbols.size === 0) {
        throw new VmcoreinfoError("VMCOREINFO_MISSING_KEY", "no PAGESIZE and no SYMBOL line");
      }
      out.push({ offset: base + at, length: end - at, inNote: descsz !== undefined, info });
    } catch (e) {
      // Not VMCOREINFO (or corrupt): keep scanning. Anything else is a bug: let it surface.
      if (!(e instanceof VmcoreinfoError)) throw e;
      if (descsz !== undefined && opts.rejected && opts.rejected.length < MAX_REJECTIONS) {
        opts.rejected.push({ offset: base + at, code: e.code, reason: e.message });
      }
    }
  }
  return out;
}

export interface LocateOptions {
  /** Physical ranges to scan, default the whole memory. */
  readonly regions?: readonly { readonly start: number; readonly end: number }[];
  /** Bytes per chunk (default 2 MiB); chunks overlap so text crossing a boundary is found. */
  readonly chunkSize?: number;
  /** Chunks requested per read() call (one round trip). */
  readonly chunksPerRead?: number;
  readonly maxCandidates?: number;
}

/**
 * Scans guest-physical memory for VMCOREINFO and returns the first valid match (or undefined).
 * Chunks that fail with MEM_HOLE / MEM_OUT_OF_RANGE (holes in RAM) are skipped.
 */
export async function locateVmcoreinfo(
  mem: PhysicalMemory,
  opts: LocateOptions = {},
): Promise<VmcoreinfoMatch | undefined> {
  return guardAsync(async () => {
    const chunk = opts.chunkSize ?? 2 * 1024 * 1024;
    const perRead = Math.max(1, Math.min(opts.chunksPerRead ?? 8, 64));
    if (!Number.isSafeInteger(chunk) || chunk < 4096 || chunk > MAX_READ_LEN / 2) {
      throw new MemoryError("MEM_BAD_REQUEST", `bad chunk size ${chunk}`);
    }
    const lookbehind = 32; // room for the note header before "OSRELEASE="
    const overlap = VMCOREINFO_MAX_BYTES + 64;
    const budget = { left: opts.maxCandidates ?? 4096 };
    for (const region of opts.regions ?? [{ start: 0, end: mem.size }]) {
      const start = Math.max(0, region.start);
      const end = Math.min(mem.size, region.end);
      const plans: { range: PhysRange; chunkStart: number }[] = [];
      for (let s = start; s < end; s += chunk) {
        const rs = Math.max(start, s - lookbehind);
        plans.push({ range: { addr: rs, len: Math.min(end, s + chunk + overlap) - rs }, chunkStart: s });
      }
      for (let i = 0; i < plans.length; i += perRead) {
        const group = plans.slice(i, i + perRead);
        const bufs = await readPhysLenient(
          mem,
          group.map((p) => p.range),
        );
        for (let j = 0; j < group.length; j++) {
          const b = bufs[j];
          if (!b || budget.left <= 0) continue;
          const { range, chunkStart } = group[j];
          // Candidates in the look-behind bytes were examined with the previous chunk.
          const matches = scan(
            b,
            { baseOffset: range.addr, reportBefore: chunkStart - range.addr + chunk },
            budget,
          );
          const hit = matches.find((m) => m.offset >= chunkStart);
          if (hit) return hit;
        }
      }
    }
    return undefined;
  });
}

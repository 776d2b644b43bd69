// Fallback discovery, part 2: kallsyms without VMCOREINFO's table addresses, found by shape.
//
// kallsyms_token_index is 256 u16 offsets starting at 0 and rising by a token length + 1 each
// (mostly 2..~40): a pattern that random data almost never has. kallsyms_token_table lies just before it
// (8-aligned, each token NUL-terminated exactly where the next index says). kallsyms_names lies
// before the token table; kallsyms_num_syms is the u32 eight bytes before names (every table is
// 8-aligned), and kallsyms_markers follows names: markers[1] must equal the byte offset of the
// 256th name, which we check by walking the names. Table order differs by version (6.1:
// offsets, relative_base, num_syms, names, markers, [seqs_of_names,] token_table, token_index;
// 6.4+: num_syms, names, markers, token_table, token_index, offsets, relative_base, ...): both
// placements of offsets/relative_base are tried, and the address encoding is verified against a
// symbol whose address the exported-symbol table gave us.

import { KernelImageMemory, START_KERNEL_MAP } from "../address/translate.ts";
import { guardAsync, VmiError } from "../errors.ts";
import {
  MAX_READ_LEN,
  type PhysAddr,
  type PhysicalMemory,
  readPhysLenient,
  type VirtAddr,
} from "../memory/memory.ts";
import { type KallsymsLocation, type KallsymsTable, readKallsyms } from "./kallsyms.ts";

const CHUNK = 4 * 1024 * 1024;
const MAX_NAMES_BYTES = 16 * 1024 * 1024;

/** Token index candidates (PA) in one buffer: 8-aligned u16[256] from 0, rising by 1..64. */
export function tokenIndexCandidates(b: Uint8Array, base: PhysAddr): PhysAddr[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: PhysAddr[] = [];
  const start = (8 - (base % 8)) % 8;
  for (let p = start; p + 512 <= b.length; p += 8) {
    if (dv.getUint16(p, true) !== 0) continue;
    let prev = 0;
    let ok = true;
    let nonEmpty = 0;
    for (let i = 1; i < 256; i++) {
      const v = dv.getUint16(p + i * 2, true);
      const step = v - prev;
      // Step 1 is an empty token (an unused code on a small kernel); most tokens are not empty.
      if (step < 1 || step > 64) {
        ok = false;
        break;
      }
      if (step > 1) nonEmpty++;
      prev = v;
    }
    if (ok && nonEmpty >= 64) out.push(base + p);
  }
  return out;
}

/** The token table that this index belongs to, or undefined. */
function tokenTableFor(bytes: Uint8Array, base: PhysAddr, index: PhysAddr): PhysAddr | undefined {
  const ix = index - base;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const starts = Array.from({ length: 256 }, (_, i) => dv.getUint16(ix + i * 2, true));
  const lastStart = starts[255];
  for (let k = 2; k <= 72; k++) {
    const t = ix - lastStart - k;
    if (t < 0 || (base + t) % 8 !== 0) continue;
    if (!starts.every((s, i) => i === 0 || bytes[t + s - 1] === 0)) continue;
    const end = bytes.indexOf(0, t + lastStart);
    if (end < 0 || end >= ix) continue;
    return base + t;
  }
  return undefined;
}

/** Walks names at `n` for `count` symbols: extent and the offset of name 256 (for markers[1]). */
function walkNames(b: Uint8Array, n: number, count: number): { end: number; at256: number } | undefined {
  let pos = n;
  let at256 = 0;
  for (let i = 0; i < count; i++) {
    if (i === 256) at256 = pos - n;
    if (pos >= b.length) return undefined;
    let len = b[pos];
    let pre = 1;
    if (len & 0x80) {
      if (pos + 1 >= b.length || b[pos + 1] & 0x80) return undefined;
      len = (len & 0x7f) | (b[pos + 1] << 7);
      pre = 2;
    }
    if (len === 0) return undefined;
    pos += pre + len;
  }
  return pos <= b.length ? { end: pos - n, at256 } : undefined;
}

/** kallsyms_names (PA) before the token table: num_syms before it, markers after it agree. */
function findNames(
  b: Uint8Array,
  base: PhysAddr,
  table: PhysAddr,
): { names: PhysAddr; count: number } | undefined {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const t = table - base;
  for (let n = t - 8 - ((t - 8) % 8); n >= 8; n -= 8) {
    const count = dv.getUint32(n - 8, true);
    if (count < 257 || count > 1 << 22 || dv.getUint32(n - 4, true) !== 0) continue;
    const w = walkNames(b, n, count);
    if (!w || n + w.end > t) continue;
    const m = n + w.end + ((8 - ((base + n + w.end) % 8)) % 8);
    if (m + 16 > t) continue;
    const m32 = dv.getUint32(m, true) === 0 && dv.getUint32(m + 4, true) === w.at256;
    const m64 = dv.getBigUint64(m, true) === 0n && dv.getBigUint64(m + 8, true) === BigInt(w.at256);
    if (m32 || m64) return { names: base + n, count };
  }
  return undefined;
}

export interface KallsymsScan {
  readonly table: KallsymsTable;
  readonly location: KallsymsLocation;
}

/**
 * Finds kallsyms in the image's physical range [start, end) and decodes it, anchored on a symbol
 * whose VA is known. Returns undefined when no layout verifies.
 */
export function scanKallsyms(
  phys: PhysicalMemory,
  physBase: bigint,
  region: { readonly start: PhysAddr; readonly end: PhysAddr },
  anchor: { readonly name: string; readonly address: VirtAddr },
): Promise<KallsymsScan | undefined> {
  return guardAsync(async () => {
    const image = new KernelImageMemory(phys, physBase);
    const va = (pa: PhysAddr) => BigInt(pa) - physBase + START_KERNEL_MAP;
    for (let s = region.start; s < region.end; s += CHUNK) {
      const len = Math.min(region.end, s + CHUNK + 512) - s;
      const [buf] = await readPhysLenient(phys, [{ addr: s, len }]);
      if (!buf) continue;
      for (const index of tokenIndexCandidates(buf.subarray(0, Math.min(buf.length, CHUNK + 512)), s)) {
        // Names and the token table precede the index: read back far enough to hold them.
        const lo = Math.max(region.start, index - MAX_NAMES_BYTES);
        const [back] = await readPhysLenient(phys, [
          { addr: lo, len: Math.min(index + 512 - lo, MAX_READ_LEN) },
        ]);
        if (!back) continue;
        const table = tokenTableFor(back, lo, index);
        if (table === undefined) continue;
        const found = findNames(back, lo, table);
        if (!found) continue;
        const names = va(found.names);
        const offsetsAfter = va(index + 512);
        const layouts: KallsymsLocation[] = [
          // 6.1-6.3: offsets, relative_base, num_syms, names ...
          {
            numSyms: names - 8n,
            names,
            tokenTable: va(table),
            tokenIndex: va(index),
            relativeBase: names - 16n,
            offsets: names - 16n - BigInt(Math.ceil((found.count * 4) / 8) * 8),
          },
          // 6.4+: ... token_index, offsets, relative_base
          {
            numSyms: names - 8n,
            names,
            tokenTable: va(table),
            tokenIndex: va(index),
            offsets: offsetsAfter,
            relativeBase: offsetsAfter + BigInt(Math.ceil((found.count * 4) / 8) * 8),
          },
          // 7.0+: no relative base (place-relative offsets)
          { numSyms: names - 8n, names, tokenTable: va(table), tokenIndex: va(index), offsets: offsetsAfter },
        ];
        for (const location of layouts) {
          try {
            const table = await readKallsyms(image, location, { anchor });
            return { table, location };
          } catch (e) {
            if (!(e instanceof VmiError)) throw e;
          }
        }
      }
    }
    return undefined;
  });
}

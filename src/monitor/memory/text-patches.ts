/**
 * Kernel text the kernel itself patches at run time, told apart from tampering (pure: bytes
 * in, decisions out; the monitor reads them).
 *
 * A static key flips every one of its jump-label sites between a NOP and a jump to the site's
 * target (`static_branch_enable` and friends, through text_poke). An untouched Debian guest
 * does it minutes after boot: once the RNG is seeded, `crng_is_ready` is enabled and ~30 sites
 * in drivers/char/random.c turn from `jmp` into `nop` (the false "kernel text differs ...
 * serial8250_release_dma" alert: that 64 KiB chunk starts in the 8250 driver and runs into
 * random.c). So the text is compared with each jump-label site masked, and a site counts as
 * unchanged only while it holds one of its two legitimate forms: the NOP of its size, or a
 * jump to exactly its target. Anything else at a site, or any other byte, is still a change.
 *
 * The sites come from the kernel's own `__jump_table` (x86-64, relative entries: s32 code,
 * s32 target, long key; each offset relative to the field's own address).
 */
import { createHash } from "node:crypto";

/** One jump-label site, as offsets from the start of the kernel text (_stext). */
export interface PatchSite {
  readonly at: number;
  readonly target: number;
}

/** Bytes of one x86-64 jump_entry. */
export const JUMP_ENTRY_SIZE = 16;
/** The most sites a kernel may declare here (a 6.x kernel has ~6-10 thousand). */
export const MAX_SITES = 200_000;

/**
 * The sites in [text, text + textLen) from a copy of the jump table read at `tableVa`
 * (entries whose code lies elsewhere, as in init text, are left out).
 */
export function jumpLabelSites(
  table: Uint8Array,
  tableVa: bigint,
  text: bigint,
  textLen: number,
): PatchSite[] {
  const n = Math.min(Math.floor(table.length / JUMP_ENTRY_SIZE), MAX_SITES);
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const out: PatchSite[] = [];
  for (let i = 0; i < n; i++) {
    const e = tableVa + BigInt(i * JUMP_ENTRY_SIZE);
    const code = e + BigInt(dv.getInt32(i * JUMP_ENTRY_SIZE, true)) - text;
    const target = e + 4n + BigInt(dv.getInt32(i * JUMP_ENTRY_SIZE + 4, true)) - text;
    if (code < 0n || code >= BigInt(textLen)) continue;
    out.push({ at: Number(code), target: Number(target) });
  }
  return out.sort((a, b) => a.at - b.at);
}

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const NOP2 = [0x66, 0x90];

/**
 * The length of the legitimate instruction at a site (`bytes[i]` is the site's first byte),
 * or null when the site holds anything else.
 */
export function siteForm(bytes: Uint8Array, i: number, site: PatchSite): 2 | 5 | null {
  const is = (seq: number[]) => seq.every((b, k) => bytes[i + k] === b);
  if (i + 5 <= bytes.length) {
    if (is(NOP5)) return 5;
    if (bytes[i] === 0xe9) {
      const rel = new DataView(bytes.buffer, bytes.byteOffset + i + 1, 4).getInt32(0, true);
      if (site.at + 5 + rel === site.target) return 5;
    }
  }
  if (i + 2 <= bytes.length) {
    if (is(NOP2)) return 2;
    if (bytes[i] === 0xeb) {
      const rel = (bytes[i + 1] << 24) >> 24;
      if (site.at + 2 + rel === site.target) return 2;
    }
  }
  return null;
}

export interface MaskedChunk {
  /** SHA-256 (hex) of the chunk with every legitimate site's bytes zeroed. */
  readonly digest: string;
  /** Sites starting in this chunk holding neither a NOP nor a jump to their target (offsets in text). */
  readonly badSites: readonly number[];
}

/** Bytes read around a chunk for maskedChunk: a site may start before it or run past its end. */
export const SITE_SLACK = 4;

/**
 * The digest of the text chunk [offset, offset + len) (offsets from the start of the text).
 * `bytes` holds the text from `from` on (from <= offset), at least up to the chunk's end and
 * ideally SITE_SLACK bytes around it; `sites` sorted by `at`, all of the text's.
 */
export function maskedChunk(
  bytes: Uint8Array,
  from: number,
  offset: number,
  len: number,
  sites: readonly PatchSite[],
): MaskedChunk {
  const copy = Uint8Array.from(bytes.subarray(offset - from, offset - from + len));
  const badSites: number[] = [];
  let lo = 0;
  let hi = sites.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sites[mid].at < offset - SITE_SLACK) lo = mid + 1;
    else hi = mid;
  }
  for (let s = lo; s < sites.length && sites[s].at < offset + len; s++) {
    const site = sites[s];
    const form = site.at >= from ? siteForm(bytes, site.at - from, site) : null;
    if (form === null) {
      // Counted by the chunk it starts in.
      if (site.at >= offset) badSites.push(site.at);
      continue;
    }
    const a = Math.max(site.at, offset) - offset;
    const b = Math.min(site.at + form, offset + len) - offset;
    if (b > a) copy.fill(0, a, b);
  }
  return { digest: createHash("sha256").update(copy).digest("hex"), badSites };
}

// Test support (not used by production code): a kallsyms encoder following scripts/kallsyms.c
// closely enough for round trips: codes for characters in use stand for themselves, unused codes
// become frequent substrings (bigram merges learned on a sample); names are token codes behind
// a 1- or 2-byte length; addresses in any of the three encodings.

import type { KallsymsBlobs, KallsymsEncoding } from "./kallsyms.ts";

export interface Sym {
  name: string;
  type: string;
  address: bigint;
}

/** Token table: used single chars, then greedy bigram merges learned from a sample. */
function buildTokens(syms: readonly Sym[], sampleSize = 2000): string[] {
  const words = syms.slice(0, sampleSize).map((s) => [...(s.type + s.name)]);
  const used = new Set<string>();
  for (const s of syms) for (const c of s.type + s.name) used.add(c);
  const tokens: (string | undefined)[] = new Array(256).fill(undefined);
  for (const c of used) tokens[c.charCodeAt(0)] = c;
  for (let code = 255; code >= 0; code--) {
    if (tokens[code] !== undefined) continue;
    const counts = new Map<string, number>();
    for (const w of words)
      for (let i = 0; i + 1 < w.length; i++) {
        const k = `${w[i]}\u0000${w[i + 1]}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    let best: string | undefined;
    let bestN = 1;
    for (const [k, n] of counts) if (n > bestN) [best, bestN] = [k, n];
    if (!best) break;
    const [a, b] = best.split("\u0000");
    const merged = a + b;
    tokens[code] = merged;
    for (const w of words)
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) w.splice(i, 2, merged);
  }
  return tokens.map((t) => t ?? "");
}

/** Greedy longest-match encoding of one string with the token table. */
function encodeName(s: string, tokens: readonly string[]): number[] {
  const byString = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (t !== "" && !byString.has(t)) byString.set(t, i);
  });
  const maxLen = Math.max(...tokens.map((t) => t.length));
  const out: number[] = [];
  for (let i = 0; i < s.length; ) {
    for (let l = Math.min(maxLen, s.length - i); l >= 1; l--) {
      const code = byString.get(s.slice(i, i + l));
      if (code !== undefined) {
        out.push(code);
        i += l;
        break;
      }
      if (l === 1) throw new Error(`cannot encode ${s[i]}`);
    }
  }
  return out;
}

function encodeOffsets(
  syms: readonly Sym[],
  enc: KallsymsEncoding,
  relativeBase: bigint,
  offsetsAddr: bigint,
): Uint8Array {
  const out = new Uint8Array(syms.length * 4);
  const dv = new DataView(out.buffer);
  syms.forEach((s, i) => {
    let off: number;
    if (enc === "base-relative") off = Number(s.address - relativeBase) | 0;
    else if (enc === "place-relative") off = Number(s.address - (offsetsAddr + BigInt(i * 4)));
    else off = s.address < 1n << 31n ? Number(s.address) : Number(relativeBase - 1n - s.address);
    dv.setInt32(i * 4, off, true);
  });
  return out;
}

export interface Encoded {
  blobs: KallsymsBlobs;
  tokens: string[];
}

export function encode(
  syms: readonly Sym[],
  enc: KallsymsEncoding,
  relativeBase = 0xffffffff81000000n,
  offsetsAddr = 0xffffffff82000000n,
): Encoded {
  const tokens = buildTokens(syms);
  const names: number[] = [];
  for (const s of syms) {
    const codes = encodeName(s.type + s.name, tokens);
    if (codes.length <= 0x7f) names.push(codes.length);
    else names.push((codes.length & 0x7f) | 0x80, codes.length >> 7);
    names.push(...codes);
  }
  const table: number[] = [];
  const index = new Uint8Array(512);
  tokens.forEach((t, i) => {
    new DataView(index.buffer).setUint16(i * 2, table.length, true);
    for (const c of t) table.push(c.charCodeAt(0));
    table.push(0);
  });
  return {
    tokens,
    blobs: {
      numSyms: syms.length,
      names: Uint8Array.from(names),
      tokenTable: Uint8Array.from(table),
      tokenIndex: index,
      offsets: encodeOffsets(syms, enc, relativeBase, offsetsAddr),
      relativeBase: enc === "place-relative" ? undefined : relativeBase,
      offsetsAddr,
    },
  };
}

export const TEXT = 0xffffffff81000000n;
/** Kernel-like symbols: _text, _stext, many generated names, and one "big" (2-byte length) name. */
export function sampleSyms(n = 300): Sym[] {
  const out: Sym[] = [
    { name: "_text", type: "T", address: TEXT },
    { name: "_stext", type: "T", address: TEXT + 0x1000n },
  ];
  const verbs = ["init", "get", "put", "do", "sys", "alloc", "free", "schedule", "task", "kmem"];
  for (let i = 0; out.length < n; i++) {
    const name = `${verbs[i % verbs.length]}_${verbs[(i * 7) % verbs.length]}_${i}`;
    out.push({
      name,
      type: i % 5 === 0 ? "D" : i % 3 === 0 ? "t" : "T",
      address: TEXT + 0x2000n + BigInt(i * 0x40),
    });
  }
  // A "big" symbol (Rust-style) needing the 2-byte length prefix.
  out.push({ name: `_RNvCs${"x".repeat(300)}_big`, type: "T", address: TEXT + 0x900000n });
  return out;
}

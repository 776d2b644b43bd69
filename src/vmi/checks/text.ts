// Kernel text integrity: SHA-256 of [_stext, _etext) in 64 KiB chunks, compared against a
// baseline taken the first time this kernel instance was seen. The kernel image is physically
// contiguous, so the text is one physical range. A baseline is per build and KASLR placement
// (relocations make the text differ between boots); runtime text patching (static keys,
// ftrace, alternatives after boot) also shows up as a change, which is what an IDS wants to
// hear about — the report names the symbols in the changed chunks.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { kernelImageVaToPa } from "../address/translate.ts";
import { guardAsync, KernelError } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { hashChunks } from "../memory/hash.ts";

export const TEXT_CHUNK = 64 * 1024;

export interface TextHash {
  /** Identifies the kernel instance: build + KASLR placement. */
  readonly key: string;
  readonly start: string;
  readonly length: number;
  readonly chunk: number;
  /** SHA-256 over the chunk digests, hex. */
  readonly sha256: string;
  readonly chunks: string[];
}

export interface TextReport {
  readonly status: "baseline-recorded" | "match" | "mismatch";
  readonly current: TextHash;
  /** Changed chunks with the symbol at their start. */
  readonly changed: { readonly offset: number; readonly symbol?: string }[];
}

export async function hashKernelText(k: Kernel): Promise<TextHash> {
  return guardAsync(async () => {
    const start = k.symbols.require("_stext");
    const end = k.symbols.require("_etext");
    if (end <= start || end - start > 256n * 1024n * 1024n) {
      throw new KernelError("KERNEL_INCONSISTENT", "kernel text bounds are implausible");
    }
    const len = Number(end - start);
    const pa = kernelImageVaToPa(start, k.facts.physBase, len);
    const digests = await hashChunks(k.phys, { addr: pa, len }, TEXT_CHUNK);
    const all = createHash("sha256");
    for (const d of digests) all.update(d);
    const id = k.facts.buildId ?? k.profile.key;
    return {
      key: `${id}-${k.facts.kernelOffset.toString(16)}-${k.facts.physBase.toString(16)}`.replace(
        /[^A-Za-z0-9._-]/g,
        "_",
      ),
      start: `0x${start.toString(16)}`,
      length: len,
      chunk: TEXT_CHUNK,
      sha256: all.digest("hex"),
      chunks: digests.map((d) => Buffer.from(d).toString("hex")),
    };
  });
}

export function compareText(k: Kernel, current: TextHash, baseline: TextHash | undefined): TextReport {
  if (!baseline) return { status: "baseline-recorded", current, changed: [] };
  if (baseline.sha256 === current.sha256) return { status: "match", current, changed: [] };
  const start = BigInt(current.start);
  const changed: TextReport["changed"][number][] = [];
  const n = Math.max(current.chunks.length, baseline.chunks.length);
  for (let i = 0; i < n; i++) {
    if (current.chunks[i] === baseline.chunks[i]) continue;
    const offset = i * current.chunk;
    const sym = k.symbols.containing(start + BigInt(offset));
    changed.push({ offset, symbol: sym?.name });
  }
  return { status: "mismatch", current, changed };
}

export interface BaselineStore {
  get(key: string): TextHash | undefined;
  put(h: TextHash): void;
}

/** Baselines as <key>.json in a directory; the first hash seen for a key becomes its baseline. */
export class TextBaselineStore implements BaselineStore {
  constructor(readonly dir: string) {}

  get(key: string): TextHash | undefined {
    try {
      const v = JSON.parse(readFileSync(join(this.dir, `${key}.json`), "utf8")) as TextHash;
      const ok =
        v.key === key &&
        typeof v.sha256 === "string" &&
        Array.isArray(v.chunks) &&
        v.chunks.every((c) => typeof c === "string");
      return ok ? v : undefined;
    } catch {
      return undefined;
    }
  }

  put(h: TextHash): void {
    mkdirSync(this.dir, { recursive: true });
    const file = join(this.dir, `${h.key}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(h)}\n`);
    renameSync(tmp, file);
  }
}

/** Hashes the text and compares with (or records) the baseline in `store`. */
export async function checkKernelText(k: Kernel, store: BaselineStore): Promise<TextReport> {
  const current = await hashKernelText(k);
  const baseline = store.get(current.key);
  if (!baseline) store.put(current);
  return compareText(k, current, baseline);
}

// Fallback discovery, part 1 (no VMCOREINFO): the kernel banner and the exported-symbol table.
//
// linux_banner ("Linux version 6.1.0-56-amd64 (...) #1 SMP ...") gives the release.
// __ksymtab is an array of 12-byte entries {s32 value, s32 name, s32 namespace}, each offset
// relative to the field's own address (PREL32). The kernel image is physically contiguous, so
// the same arithmetic works on physical addresses: find the string "init_task\0", find the int32
// that points at it, and the entry around it; then walk the table both ways while entries keep
// decoding to symbol names. The exported `phys_base` variable then gives phys_base itself, which
// turns every physical address of the image into its virtual address.

import { Buffer } from "node:buffer";
import { guardAsync, KernelError } from "../errors.ts";
import { type PhysAddr, type PhysicalMemory, readPhysLenient } from "../memory/memory.ts";
import { findBytes } from "../memory/search.ts";

export interface Banner {
  readonly release: string;
  readonly text: string;
  readonly at: PhysAddr;
}

const BANNER = /^Linux version ([A-Za-z0-9._+~-]{1,64}) \([^\n]{0,400}\n?/;

/** The first well-formed kernel banner in RAM (linux_banner, or a copy in the log buffer). */
export async function findBanner(phys: PhysicalMemory): Promise<Banner | undefined> {
  const hits = await findBytes(phys, Buffer.from("Linux version "), { maxHits: 16 });
  const bufs = await readPhysLenient(
    phys,
    hits.map((h) => ({ addr: h, len: Math.min(512, phys.size - h) })),
  );
  for (let i = 0; i < hits.length; i++) {
    const b = bufs[i];
    if (!b) continue;
    const text = Buffer.from(b).toString("latin1").split("\0")[0];
    const m = BANNER.exec(text);
    if (m) return { release: m[1], text: m[0].trim(), at: hits[i] };
  }
  return undefined;
}

export interface ExportedSymbols {
  /** Symbol name -> physical address of what it names. */
  readonly byName: ReadonlyMap<string, PhysAddr>;
  /** Physical address of the first entry and the entry count. */
  readonly table: PhysAddr;
  readonly count: number;
}

const ENTRY = 12;
/** How far before its name string an entry may be (ksymtab precedes ksymtab_strings). */
const WINDOW = 8 * 1024 * 1024;
/** How far after one name the other names may be (the string section). */
const STRINGS_AFTER = 2 * 1024 * 1024;
const MAX_ENTRIES = 1 << 17;
const NAME = /^[A-Za-z_][A-Za-z0-9_.$]{0,127}$/;
/** Well-known exports to anchor on; any one is enough. */
const ANCHORS = ["init_task", "phys_base", "page_offset_base", "init_pid_ns", "_printk", "printk"];

function cstr(b: Buffer, at: number): string | undefined {
  if (at < 0 || at >= b.length) return undefined;
  const end = b.indexOf(0, at);
  if (end < 0 || end - at > 128) return undefined;
  const s = b.toString("latin1", at, end);
  return NAME.test(s) ? s : undefined;
}

/** Name of the entry at byte offset `off` of `b` (name field PREL32: relative to itself). */
function nameAt(b: Buffer, off: number): string | undefined {
  if (off < 0 || off + ENTRY > b.length) return undefined;
  return cstr(b, off + 4 + b.readInt32LE(off + 4));
}

/** Finds and decodes the exported-symbol table. */
export function findExportedSymbols(phys: PhysicalMemory): Promise<ExportedSymbols | undefined> {
  return guardAsync(async () => {
    for (const anchor of ANCHORS) {
      const hits = await findBytes(phys, Buffer.from(`${anchor}\0`, "latin1"), { maxHits: 32 });
      for (const s of hits) {
        const found = await aroundString(phys, s);
        if (found) return found;
      }
    }
    return undefined;
  });
}

/** Looks for a ksymtab entry whose name field points at the string at PA `s`. */
async function aroundString(phys: PhysicalMemory, s: PhysAddr): Promise<ExportedSymbols | undefined> {
  // The table lies before the strings; other entries' strings may lie after this one.
  const lo = Math.max(0, s - WINDOW) & ~3;
  const hi = Math.min(phys.size, s + STRINGS_AFTER);
  const [win] = await readPhysLenient(phys, [{ addr: lo, len: hi - lo }]);
  if (!win) return undefined;
  const b = Buffer.from(win.buffer, win.byteOffset, win.byteLength);
  const target = s - lo;
  for (let p = target - 4 - (target % 4); p >= 4; p -= 4) {
    if (p + b.readInt32LE(p) !== target) continue;
    const e = p - 4; // entry start: its value field
    let first = e;
    let n = 1;
    while (n < MAX_ENTRIES && nameAt(b, first - ENTRY)) {
      first -= ENTRY;
      n++;
    }
    while (n < MAX_ENTRIES && nameAt(b, first + n * ENTRY)) n++;
    if (n < 16) continue; // a stray int32 that happened to point here, not a table
    const byName = new Map<string, PhysAddr>();
    for (let i = 0; i < n; i++) {
      const off = first + i * ENTRY;
      const name = nameAt(b, off) as string;
      if (!byName.has(name)) byName.set(name, lo + off + b.readInt32LE(off));
    }
    return { byName, table: lo + first, count: n };
  }
  return undefined;
}

/** phys_base from its exported variable (its value converts image PAs to VAs). */
export async function physBaseFromExports(phys: PhysicalMemory, ex: ExportedSymbols): Promise<bigint> {
  const at = ex.byName.get("phys_base");
  if (at === undefined) throw new KernelError("KERNEL_NOT_FOUND", "phys_base is not exported by this kernel");
  const [b] = await readPhysLenient(phys, [{ addr: at, len: 8 }]);
  if (!b) throw new KernelError("KERNEL_INCONSISTENT", "exported phys_base is not readable");
  return new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true);
}

// Discovery without VMCOREINFO (kernels built without it, or a guest that wiped it): which path
// was used is reported in KernelFacts.path.
//   1. the banner gives the release;
//   2. the exported-symbol table gives phys_base (hence every image VA), page_offset_base,
//      init_task, init_pid_ns...;
//   3. kallsyms is found by its shape in the image and verified against an exported address;
//   4. BTF comes from __start_BTF (kallsyms) or, failing that, from a BTF header found in RAM;
//   5. the page-table root is init_top_pgt (kallsyms) or init_task.active_mm->pgd.
// With kallsyms, every query works as on the main path; with exported symbols only, queries that
// need a non-exported symbol (modules list, runqueues, syscall table) fail with
// KALLSYMS_MISSING_SYMBOL.

import { PageWalker } from "../address/pagewalk.ts";
import { KernelImageMemory, kernelImageVaToPa, START_KERNEL_MAP } from "../address/translate.ts";
import { Btf } from "../discovery/btf.ts";
import { scanKallsyms } from "../discovery/fallback-kallsyms.ts";
import { findBanner, findExportedSymbols, physBaseFromExports } from "../discovery/fallback-ksymtab.ts";
import type { KernelSymbol } from "../discovery/kallsyms.ts";
import { SymbolIndex } from "../discovery/symbols.ts";
import { BtfError, KernelError, VmiError } from "../errors.ts";
import { type PhysAddr, type PhysicalMemory, readPhysLenient, readVirtOne } from "../memory/memory.ts";
import { findBytes } from "../memory/search.ts";
import type { DiscoverOptions, StepTimer } from "./discover-steps.ts";
import { checkKernelRunning, loadProfile, MAX_BTF_BYTES, readPageOffsetBase } from "./discover-steps.ts";
import { type DiscoveryPath, Kernel } from "./kernel.ts";

/** Link-time base of the kernel text without KASLR (CONFIG_PHYSICAL_START 16 MiB). */
const DEFAULT_TEXT = 0xffffffff81000000n;

/** The largest valid BTF blob found by its header in RAM (vmlinux BTF has type_off 0). */
async function scanBtf(
  phys: PhysicalMemory,
  region?: { start: number; end: number },
): Promise<Uint8Array | undefined> {
  const magic = Uint8Array.from([0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0]);
  const hits = await findBytes(phys, magic, {
    maxHits: 256,
    align: 4,
    ...(region ? { regions: [region] } : {}),
  });
  const heads = await readPhysLenient(
    phys,
    hits.map((h) => ({ addr: h, len: 24 })),
  );
  const sized = hits
    .map((h, i) => {
      const b = heads[i];
      if (!b) return undefined;
      const dv = new DataView(b.buffer, b.byteOffset, 24);
      const total = 24 + dv.getUint32(16, true) + dv.getUint32(20, true);
      return { at: h, total };
    })
    .filter((x): x is { at: PhysAddr; total: number } => !!x && x.total > 1024 && x.total <= MAX_BTF_BYTES)
    .sort((a, b) => b.total - a.total);
  for (const c of sized.slice(0, 4)) {
    const [bytes] = await readPhysLenient(phys, [{ addr: c.at, len: Math.min(c.total, phys.size - c.at) }]);
    if (!bytes) continue;
    try {
      const btf = Btf.parse(bytes);
      btf.findComposite("task_struct");
      return bytes;
    } catch (e) {
      if (!(e instanceof BtfError)) throw e;
    }
  }
  return undefined;
}

export async function discoverWithoutVmcoreinfo(
  phys: PhysicalMemory,
  opts: DiscoverOptions,
  timer: StepTimer,
  /** Earlier findings (VMCOREINFO notes rejected, and why). */
  earlier: readonly string[] = [],
): Promise<Kernel> {
  const noInfo = earlier.length > 0 ? "no usable VMCOREINFO" : "no VMCOREINFO";
  const banner = await findBanner(phys);
  if (!banner) {
    const why = earlier.length > 0 ? ` (${earlier.join("; ")})` : "";
    throw new KernelError("KERNEL_NOT_FOUND", `${noInfo} and no kernel banner in guest RAM${why}`);
  }
  const notes = [...earlier, `${noInfo}; banner at PA 0x${banner.at.toString(16)}: ${banner.release}`];
  try {
    return await fromBanner(phys, opts, timer, banner, notes);
  } catch (e) {
    // A kernel image is in RAM but cannot be read as a running kernel. If it is a kernel that
    // writes VMCOREINFO at boot (its format string is in the image) and has not written it yet,
    // it is still being decompressed or starting up: say so rather than "inconsistent".
    if (!(e instanceof VmiError) || (e instanceof KernelError && e.code === "KERNEL_NOT_READY")) throw e;
    if (earlier.length > 0 || !(await writesVmcoreinfo(phys))) throw e;
    throw new KernelError(
      "KERNEL_NOT_READY",
      `kernel ${banner.release} is in memory but not running yet (no VMCOREINFO yet, which it writes at boot; ${e.message})`,
      { cause: e },
    );
  }
}

/** The "OSRELEASE=%s" format string of kernel/vmcore_info.c: this kernel writes VMCOREINFO. */
async function writesVmcoreinfo(phys: PhysicalMemory): Promise<boolean> {
  return (await findBytes(phys, Buffer.from("OSRELEASE=%s\n", "latin1"), { maxHits: 1 })).length > 0;
}

async function fromBanner(
  phys: PhysicalMemory,
  opts: DiscoverOptions,
  timer: StepTimer,
  banner: NonNullable<Awaited<ReturnType<typeof findBanner>>>,
  notes: string[],
): Promise<Kernel> {
  timer.lap("banner");
  const exported = await findExportedSymbols(phys);
  if (!exported) throw new KernelError("KERNEL_NOT_FOUND", "no exported-symbol table (__ksymtab) found");
  const physBase = await physBaseFromExports(phys, exported);
  const toVa = (pa: PhysAddr) => BigInt(pa) - physBase + START_KERNEL_MAP;
  const ksyms: KernelSymbol[] = [...exported.byName].map(([name, pa]) => ({
    name,
    type: "?",
    address: toVa(pa),
  }));
  const bad = ksyms.filter(
    (s) => s.address < START_KERNEL_MAP || s.address >= START_KERNEL_MAP + (1n << 30n),
  );
  if (bad.length > ksyms.length / 10) {
    throw new KernelError(
      "KERNEL_INCONSISTENT",
      `phys_base 0x${physBase.toString(16)} puts exported symbols outside the image`,
    );
  }
  notes.push(
    `__ksymtab at PA 0x${exported.table.toString(16)}: ${exported.count} exported symbols, phys_base ${physBase}`,
  );
  timer.lap("ksymtab");

  // kallsyms lives in the image's rodata, between the lowest and highest exported addresses.
  const all = [...exported.byName.values()];
  const pas = all.filter((pa) => pa >= 0 && pa < phys.size).sort((a, b) => a - b);
  if (pas.length === 0 || pas.length < all.length * 0.9) {
    throw new KernelError(
      "KERNEL_INCONSISTENT",
      `the exported-symbol table points outside guest RAM (${all.length - pas.length} of ${all.length} entries)`,
    );
  }
  const region = { start: pas[0], end: Math.min(phys.size, pas[pas.length - 1] + 1) };
  const anchorName = exported.byName.has("init_task") ? "init_task" : [...exported.byName.keys()][0];
  const anchor = { name: anchorName, address: toVa(exported.byName.get(anchorName) as number) };
  const scan = await scanKallsyms(phys, physBase, region, anchor);
  timer.lap("kallsyms");
  let symbols: SymbolIndex;
  let path: DiscoveryPath;
  if (scan) {
    symbols = new SymbolIndex(scan.table.symbols, "kallsyms");
    path = "banner+ksymtab+kallsyms-scan";
    notes.push(
      `kallsyms found by pattern at 0x${scan.location.tokenIndex.toString(16)}: ${symbols.size} symbols (${scan.table.encoding})`,
    );
  } else {
    symbols = new SymbolIndex(ksyms, "ksymtab");
    path = "banner+ksymtab";
    notes.push("kallsyms not found: exported symbols only");
  }
  const image = new KernelImageMemory(phys, physBase);
  const text = symbols.lookup("_text");
  const kernelOffset = text !== undefined ? text - DEFAULT_TEXT : 0n;
  const btfReader = async () => {
    if (symbols.lookup("__start_BTF") !== undefined) {
      const start = symbols.require("__start_BTF");
      const len = symbols.require("__stop_BTF") - start;
      if (len > 24n && len <= BigInt(MAX_BTF_BYTES)) return readVirtOne(image, start, Number(len));
    }
    const found = await scanBtf(phys, region);
    if (!found) throw new KernelError("KERNEL_NO_BTF", "no BTF found in the kernel image");
    return found;
  };
  const { profile, btf, source } = await loadProfile(
    image,
    symbols,
    banner.release,
    undefined,
    opts,
    timer,
    btfReader,
  );
  notes.push(
    source === "cache" ? `profile ${profile.key} from cache` : `BTF parsed, profile ${profile.key} built`,
  );
  // A booting kernel is refused before reading what it has not set up yet (the direct map).
  notes.push(await checkKernelRunning(image, symbols, profile, banner.release));
  const pageOffsetBase = await readPageOffsetBase(image, symbols, 4);
  // 5-level direct maps start below the 4-level canonical hole's upper half.
  const levels = pageOffsetBase < 0xffff800000000000n ? 5 : 4;

  let root: PhysAddr;
  const pgt = symbols.lookup("init_top_pgt");
  if (pgt !== undefined) root = kernelImageVaToPa(pgt, physBase);
  else {
    const am = profile.fields["task_struct.active_mm"];
    const pgd = profile.fields["mm_struct.pgd"];
    if (!am || !pgd) throw new KernelError("KERNEL_PROFILE_FIELD", "no way to find the kernel page tables");
    const initTask = symbols.require("init_task");
    const mm = new DataView((await readVirtOne(image, initTask + BigInt(am.offset), 8)).buffer).getBigUint64(
      0,
      true,
    );
    const pgdVa = new DataView((await readVirtOne(image, mm + BigInt(pgd.offset), 8)).buffer).getBigUint64(
      0,
      true,
    );
    root = kernelImageVaToPa(pgdVa, physBase);
    notes.push("page tables from init_task.active_mm->pgd");
  }
  // A root that does not map the kernel image is not the kernel's.
  const check = await new PageWalker(phys, { root, levels, cache: null }).translate(anchor.address);
  if (check.kind !== "mapped" || check.pa !== kernelImageVaToPa(anchor.address, physBase)) {
    throw new KernelError("KERNEL_INCONSISTENT", "the page-table root does not map the kernel image");
  }
  const facts = {
    path,
    notes,
    osRelease: banner.release,
    banner: banner.text,
    kernelOffset,
    physBase,
    pageOffsetBase,
    levels,
    root,
    profileSource: source,
    timings: timer.timings,
  } as const;
  return new Kernel(phys, facts, symbols, profile, btf, opts);
}

// Kernel discovery from guest RAM alone (shared/notes/introspection.md):
//   VMCOREINFO (found by searching RAM for "OSRELEASE=") -> phys_base, KASLR offset, paging
//   depth, init_top_pgt, kallsyms table addresses -> kallsyms (anchored on _stext) -> BTF between
//   __start_BTF and __stop_BTF -> profile; page_offset_base read from its variable.
// Without VMCOREINFO, discover-fallback.ts takes over (banner, exported-symbol table, kallsyms
// by pattern) and the Kernel says which path was used. Everything read is hostile; facts are
// cross-checked (kallsyms against VMCOREINFO symbols, _stext/_etext sanity) before they are used.

import { KernelImageMemory, kernelImageVaToPa } from "../address/translate.ts";
import { kallsymsAnchor, kallsymsLocation, readKallsyms } from "../discovery/kallsyms.ts";
import { SymbolIndex } from "../discovery/symbols.ts";
import {
  pagingLevels,
  requireNumber,
  requireSymbol,
  scanVmcoreinfo,
  VMCOREINFO_MAX_BYTES,
  type Vmcoreinfo,
  type VmcoreinfoMatch,
  type VmcoreinfoRejection,
} from "../discovery/vmcoreinfo.ts";
import { KernelError, VmcoreinfoError } from "../errors.ts";
import { type PhysicalMemory, readPhysLenient } from "../memory/memory.ts";
import { findBytes } from "../memory/search.ts";
import { discoverWithoutVmcoreinfo } from "./discover-fallback.ts";
import {
  checkKernelRunning,
  type DiscoverOptions,
  loadProfile,
  readPageOffsetBase,
  StepTimer,
} from "./discover-steps.ts";
import { Kernel, type KernelFacts } from "./kernel.ts";

const MAX_VMCOREINFO_CANDIDATES = 64;

/** Finds and parses VMCOREINFO: candidates from a memory search, each validated by the parser. */
export async function findVmcoreinfo(phys: PhysicalMemory): Promise<VmcoreinfoMatch | undefined> {
  return (await searchVmcoreinfo(phys)).match;
}

/** What the search for VMCOREINFO found: the match, and ELF notes rejected on the way (why). */
export interface VmcoreinfoSearch {
  readonly match?: VmcoreinfoMatch;
  readonly rejected: readonly VmcoreinfoRejection[];
}

/** As findVmcoreinfo, also reporting VMCOREINFO notes that were found but did not parse. */
export async function searchVmcoreinfo(phys: PhysicalMemory): Promise<VmcoreinfoSearch> {
  const needle = new TextEncoder().encode("OSRELEASE=");
  const look = 32;
  const rejected: VmcoreinfoRejection[] = [];
  let bare: VmcoreinfoMatch | undefined;
  let from = 0;
  // Search in small steps from low memory: the note usually sits low, so on a slow source (QMP)
  // or a remote one we stop long before the end of RAM.
  for (let examined = 0; examined < MAX_VMCOREINFO_CANDIDATES && from < phys.size; ) {
    const hits = await findBytes(phys, needle, { maxHits: 1, regions: [{ start: from, end: phys.size }] });
    if (hits.length === 0) break;
    examined += hits.length;
    from = hits[hits.length - 1] + 1;
    const ranges = hits.map((h) => {
      const addr = Math.max(0, h - look);
      return { addr, len: Math.min(phys.size, h + VMCOREINFO_MAX_BYTES + 64) - addr };
    });
    const bufs = await readPhysLenient(phys, ranges);
    for (let i = 0; i < bufs.length; i++) {
      const b = bufs[i];
      if (!b) continue;
      const seen: VmcoreinfoRejection[] = [];
      const m = scanVmcoreinfo(b, { baseOffset: ranges[i].addr, maxCandidates: 4, rejected: seen }).find(
        (x) => x.offset === hits[i],
      );
      for (const r of seen) if (r.offset === hits[i] && rejected.length < 16) rejected.push(r);
      if (!m) continue;
      // The ELF note is what the kernel exports to crash tools; prefer it over stray copies.
      if (m.inNote) return { match: m, rejected };
      bare ??= m;
    }
  }
  return { match: bare, rejected };
}

function describeRejection(r: VmcoreinfoRejection): string {
  return `VMCOREINFO note at PA 0x${r.offset.toString(16)} rejected: ${r.reason} (${r.code})`;
}

async function fromVmcoreinfo(
  phys: PhysicalMemory,
  match: VmcoreinfoMatch,
  opts: DiscoverOptions,
  timer: StepTimer,
  earlier: readonly string[],
): Promise<Kernel> {
  const info: Vmcoreinfo = match.info;
  const notes = [
    ...earlier,
    `VMCOREINFO at PA 0x${match.offset.toString(16)} (${match.inNote ? "ELF note" : "bare text"}), ${info.osRelease}`,
  ];
  const physBase = requireNumber(info, "phys_base");
  const levels = pagingLevels(info);
  const kernelOffset = info.kernelOffset ?? 0n;
  const image = new KernelImageMemory(phys, physBase);
  const table = await readKallsyms(image, kallsymsLocation(info), { anchor: kallsymsAnchor(info) });
  timer.lap("kallsyms");
  const symbols = new SymbolIndex(table.symbols, "kallsyms");
  notes.push(`kallsyms: ${symbols.size} symbols (${table.encoding})`);
  // VMCOREINFO and kallsyms are separate structures: a forger must keep them consistent.
  const rootVa = requireSymbol(info, "init_top_pgt");
  for (const name of ["init_top_pgt", "_stext"]) {
    const v = info.symbols.get(name);
    if (v !== undefined && symbols.lookup(name) !== v) {
      throw new KernelError("KERNEL_INCONSISTENT", `kallsyms and VMCOREINFO disagree on ${name}`);
    }
  }
  const root = kernelImageVaToPa(rootVa, physBase);
  const { profile, btf, source } = await loadProfile(
    image,
    symbols,
    info.osRelease,
    info.buildId,
    opts,
    timer,
  );
  notes.push(
    source === "cache" ? `profile ${profile.key} from cache` : `BTF parsed, profile ${profile.key} built`,
  );
  // Before anything that a booting kernel has not set up yet (the direct map's base).
  notes.push(await checkKernelRunning(image, symbols, profile, info.osRelease));
  const pageOffsetBase = await readPageOffsetBase(image, symbols, levels);
  timer.lap("directMap");
  const facts: KernelFacts = {
    path: "vmcoreinfo",
    notes,
    osRelease: info.osRelease,
    buildId: info.buildId,
    kernelOffset,
    physBase,
    pageOffsetBase,
    levels,
    root,
    profileSource: source,
    timings: timer.timings,
  };
  return new Kernel(phys, facts, symbols, profile, btf, opts);
}

/** Finds the guest kernel in `phys` and everything needed to query it. */
export async function discoverKernel(phys: PhysicalMemory, opts: DiscoverOptions = {}): Promise<Kernel> {
  const timer = new StepTimer();
  const search: VmcoreinfoSearch = opts.skipVmcoreinfo ? { rejected: [] } : await searchVmcoreinfo(phys);
  timer.lap("vmcoreinfo");
  // Why a VMCOREINFO note was not used goes into the kernel's notes (`vmi info`, --verbose).
  const notes = search.rejected.map(describeRejection);
  for (const n of notes) opts.log?.(n);
  const match = search.match;
  if (match) {
    try {
      return await fromVmcoreinfo(phys, match, opts, timer, notes);
    } catch (e) {
      // VMCOREINFO without kallsyms addresses (kernels before 6.0): the fallback finds them.
      if (
        !(e instanceof VmcoreinfoError) &&
        !(e instanceof Error && "code" in e && e.code === "KALLSYMS_MISSING_SYMBOL")
      ) {
        throw e;
      }
      const why = `VMCOREINFO at PA 0x${match.offset.toString(16)} incomplete: ${(e as Error).message}`;
      notes.push(why);
      opts.log?.(`${why}; trying the fallback`);
      if (opts.fallback === false) throw e;
    }
  }
  if (opts.fallback === false) {
    const why =
      notes.length > 0
        ? `no usable VMCOREINFO in guest RAM (${notes.join("; ")})`
        : "no VMCOREINFO in guest RAM";
    throw new KernelError("KERNEL_NOT_FOUND", why);
  }
  return discoverWithoutVmcoreinfo(phys, opts, timer, notes);
}

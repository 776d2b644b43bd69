// The steps both discovery paths share (discover.ts with VMCOREINFO, discover-fallback.ts
// without): options, step timings, the profile (from the cache or the BTF), the check that the
// kernel has finished booting, page_offset_base, and the BTF blob. Both import this module and
// discover.ts imports the fallback, so the dependency goes one way.

import type { PagingLevels } from "../address/pagewalk.ts";
import {
  DEFAULT_PAGE_OFFSET_BASE_L4,
  DEFAULT_PAGE_OFFSET_BASE_L5,
  START_KERNEL_MAP,
} from "../address/translate.ts";
import { Btf } from "../discovery/btf.ts";
import type { SymbolIndex } from "../discovery/symbols.ts";
import { KernelError } from "../errors.ts";
import { readVirtOne, type VirtualMemory } from "../memory/memory.ts";
import type { KernelOptions } from "./kernel.ts";
import { buildProfile, type KernelProfile, type ProfileCache, profileKey } from "./profile.ts";

export interface DiscoverOptions extends KernelOptions {
  readonly profileCache?: ProfileCache;
  /** Keep the parsed BTF on the Kernel for arbitrary layout lookups (parses even on a cache hit). */
  readonly keepBtf?: boolean;
  /** Try the banner/ksymtab fallback when VMCOREINFO is absent (default true). */
  readonly fallback?: boolean;
  /** Ignore VMCOREINFO even if present (tests of the fallback). */
  readonly skipVmcoreinfo?: boolean;
  readonly log?: (msg: string) => void;
}

/** Largest BTF blob accepted (Debian 6.1: 4.4 MB). */
export const MAX_BTF_BYTES = 64 * 1024 * 1024;

export class StepTimer {
  readonly timings: Record<string, number> = {};
  private t = performance.now();
  lap(name: string): void {
    const now = performance.now();
    this.timings[name] = (this.timings[name] ?? 0) + (now - this.t);
    this.t = now;
  }
}

function readU64(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

/** page_offset_base from its variable (KASLR), else the fixed default of the paging depth. */
export async function readPageOffsetBase(
  image: VirtualMemory,
  symbols: SymbolIndex,
  levels: PagingLevels,
): Promise<bigint> {
  const at = symbols.lookup("page_offset_base");
  if (at === undefined) return levels === 5 ? DEFAULT_PAGE_OFFSET_BASE_L5 : DEFAULT_PAGE_OFFSET_BASE_L4;
  const v = readU64(await readVirtOne(image, at, 8));
  const lo = levels === 5 ? 0xff00000000000000n : 0xffff800000000000n;
  if (v < lo || v >= START_KERNEL_MAP || v % (1n << 30n) !== 0n) {
    throw new KernelError(
      "KERNEL_INCONSISTENT",
      `page_offset_base 0x${v.toString(16)} is not a direct-map base`,
    );
  }
  return v;
}

/**
 * Refuses a kernel that is still booting: its system_state (a variable in the image, readable
 * without page tables) must have reached SYSTEM_RUNNING (set just before /sbin/init starts;
 * before it, the task list is not yet what /proc will show and the direct map may still be
 * changing). Returns a note; when the kernel has no system_state or its BTF no system_states
 * enum, the check is skipped and the note says so.
 */
export async function checkKernelRunning(
  image: VirtualMemory,
  symbols: SymbolIndex,
  profile: KernelProfile,
  osRelease: string,
): Promise<string> {
  const at = symbols.lookup("system_state");
  const running = profile.constants["system_states.SYSTEM_RUNNING"];
  if (at === undefined || running === undefined) {
    return "boot state not checked (no system_state symbol or no system_states in BTF)";
  }
  const b = await readVirtOne(image, at, 4);
  const v = new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
  const name =
    Object.entries(profile.constants).find(([k, n]) => k.startsWith("system_states.") && n === v)?.[0] ??
    `system_states.${v}`;
  const state = name.slice("system_states.".length);
  if (v < running) {
    throw new KernelError(
      "KERNEL_NOT_READY",
      `kernel ${osRelease} is still booting (system_state ${state}); try again once it has started init`,
    );
  }
  return `system_state ${state}`;
}

/** Reads the BTF blob between __start_BTF and __stop_BTF. */
export async function readBtfBlob(image: VirtualMemory, symbols: SymbolIndex): Promise<Uint8Array> {
  const start = symbols.lookup("__start_BTF");
  const stop = symbols.lookup("__stop_BTF");
  if (start === undefined || stop === undefined) {
    throw new KernelError(
      "KERNEL_NO_BTF",
      "no __start_BTF/__stop_BTF: kernel built without CONFIG_DEBUG_INFO_BTF?",
    );
  }
  const len = stop - start;
  if (len <= 24n || len > BigInt(MAX_BTF_BYTES)) {
    throw new KernelError("KERNEL_NO_BTF", `BTF section of ${len} bytes is implausible`);
  }
  return readVirtOne(image, start, Number(len));
}

/**
 * The profile for this kernel: from the cache by build id when possible (no BTF read), else from
 * the BTF (read, parsed, then cached). `btf` is returned when it was parsed.
 */
export async function loadProfile(
  image: VirtualMemory,
  symbols: SymbolIndex,
  osRelease: string,
  buildId: string | undefined,
  opts: DiscoverOptions,
  timer: StepTimer,
  btfReader: () => Promise<Uint8Array> = () => readBtfBlob(image, symbols),
): Promise<{ profile: KernelProfile; btf?: Btf; source: "cache" | "btf" }> {
  const cache = opts.profileCache;
  if (buildId && cache && !opts.keepBtf) {
    const hit = cache.get(profileKey(osRelease, buildId));
    if (hit) return { profile: hit, source: "cache" };
  }
  const bytes = await btfReader();
  timer.lap("btfRead");
  const key = profileKey(osRelease, buildId, bytes);
  const hit = opts.keepBtf ? undefined : cache?.get(key);
  if (hit) return { profile: hit, source: "cache" };
  const btf = Btf.parse(bytes);
  const profile = buildProfile(btf, key, osRelease);
  timer.lap("btfParse");
  cache?.set(profile);
  return { profile, btf, source: "btf" };
}

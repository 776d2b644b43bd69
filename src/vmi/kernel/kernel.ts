// A discovered guest kernel: where its image and direct map are, its symbols and its profile, and
// the kernel address space to read through. Queries take a Kernel; discovery (discover.ts) builds
// one. When the memory source is a page server client that can translate and walk lists next to
// the memory (KernelViewProvider), the Kernel reads through that instead of a local KernelSpace.

import { type AddressSpaceSpec, hasKernelView, KernelSpace, type KernelView } from "../address/kspace.ts";
import type { PagingLevels } from "../address/pagewalk.ts";
import type { Btf } from "../discovery/btf.ts";
import { fieldLocation, resolveAlias, sizeOf } from "../discovery/btf-layout.ts";
import type { SymbolIndex } from "../discovery/symbols.ts";
import { BtfError, KernelError } from "../errors.ts";
import { type ListNode, type ListWalkSpec, type WalkOptions, walkListLocal } from "../memory/listwalk.ts";
import { type PhysAddr, type PhysicalMemory, readVirt, type VirtAddr } from "../memory/memory.ts";
import type { FieldLayout, KernelProfile } from "./profile.ts";

/** Which chain found the kernel (reported to the user). */
export type DiscoveryPath =
  /** VMCOREINFO in RAM -> kallsyms (addresses from VMCOREINFO) -> BTF. */
  | "vmcoreinfo"
  /** No VMCOREINFO: linux_banner text, the exported-symbol table, kallsyms found by pattern. */
  | "banner+ksymtab+kallsyms-scan"
  /** As above but kallsyms not found: only exported symbols (some queries unavailable). */
  | "banner+ksymtab";

export interface KernelFacts {
  readonly path: DiscoveryPath;
  /** Human-readable steps of discovery (where things were found). */
  readonly notes: readonly string[];
  readonly osRelease: string;
  readonly buildId?: string;
  readonly banner?: string;
  /** KASLR slide of the kernel image (0 without KASLR). */
  readonly kernelOffset: bigint;
  readonly physBase: bigint;
  readonly pageOffsetBase: bigint;
  readonly levels: PagingLevels;
  /** PA of init_top_pgt. */
  readonly root: PhysAddr;
  readonly profileSource: "cache" | "btf";
  /** Milliseconds per discovery step. */
  readonly timings: Readonly<Record<string, number>>;
}

export interface KernelOptions {
  /** Use the memory source's own translation and list walks when it offers them (default true). */
  readonly serverSide?: boolean;
  /**
   * Local translation: "linear" (default) uses the image and direct-map offsets and walks page
   * tables only for other addresses; "pagewalk" walks for every address, as generic VMI
   * libraries do (the benchmark's naive baseline).
   */
  readonly translation?: "linear" | "pagewalk";
  /** Cache page-table pages between reads of one pass (default true). */
  readonly ptCache?: boolean;
}

export class Kernel {
  readonly space: AddressSpaceSpec;
  readonly vmem: KernelView;

  constructor(
    readonly phys: PhysicalMemory,
    readonly facts: KernelFacts,
    readonly symbols: SymbolIndex,
    readonly profile: KernelProfile,
    readonly btf: Btf | undefined,
    opts: KernelOptions = {},
  ) {
    this.space = {
      root: facts.root,
      levels: facts.levels,
      physBase: facts.physBase,
      pageOffsetBase: facts.pageOffsetBase,
    };
    this.vmem =
      (opts.serverSide ?? true) && hasKernelView(phys)
        ? phys.kernelView(this.space)
        : new KernelSpace(phys, this.space, {
            walkAll: opts.translation === "pagewalk",
            ptCache: opts.ptCache === false ? null : undefined,
          });
  }

  /**
   * Layout of "struct.member.path": from the profile, else (when the BTF is loaded) resolved now.
   * Throws KERNEL_PROFILE_FIELD when the kernel has no such member.
   */
  field(path: string): FieldLayout {
    const hit = this.profile.fields[path];
    if (hit) return hit;
    if (this.btf) {
      try {
        const loc = fieldLocation(this.btf, path);
        if (loc.kind === "field") {
          const t = this.btf.type(resolveAlias(this.btf, loc.type));
          return {
            offset: loc.byteOffset,
            size: sizeOf(this.btf, loc.type),
            ...(t.kind === "array" ? { count: t.nelems } : {}),
          };
        }
      } catch (e) {
        if (!(e instanceof BtfError)) throw e;
      }
    }
    throw new KernelError("KERNEL_PROFILE_FIELD", `kernel ${this.facts.osRelease} has no ${path}`);
  }

  /** Walks a list next to the memory when possible, else locally. */
  walkList(spec: ListWalkSpec, opts: WalkOptions = {}): Promise<ListNode[]> {
    return this.vmem.walkList ? this.vmem.walkList(spec, opts) : walkListLocal(this.vmem, spec, opts);
  }

  /** Start of a pass over a running guest: drop cached pages and page tables. */
  beginPass(): void {
    this.vmem.clearCaches?.();
    (this.phys as { clearCache?: () => void }).clearCache?.();
  }

  async read(addr: VirtAddr, len: number): Promise<Uint8Array> {
    return (await readVirt(this.vmem, [{ addr, len }]))[0];
  }

  async readU64s(addrs: readonly VirtAddr[]): Promise<bigint[]> {
    const bufs = await readVirt(
      this.vmem,
      addrs.map((addr) => ({ addr, len: 8 })),
    );
    return bufs.map((b) => new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  }
}

// The kernel's virtual address space as one VirtualMemory. Two regions are linear and need no
// page tables: the kernel image (pa = va - __START_KERNEL_map + phys_base) and the direct map
// (pa = va - page_offset_base), where slab objects such as task_struct and cred live. Anything
// else (vmalloc, modules, percpu chunks in vmalloc) goes through a page walk from the kernel's
// top-level table. Using the linear shortcuts is exact (that is how the kernel maps them) and
// saves most page-table reads.
//
// AddressSpaceSpec is plain data so a page server can rebuild the same space next to the memory.
// A memory source that serves such a space itself (the page server client) is a
// KernelViewProvider: the Kernel then reads through its KernelView instead of a local KernelSpace.

import { AddressError, guardAsync } from "../errors.ts";
import type { ListNode, ListWalkSpec, WalkOptions } from "../memory/listwalk.ts";
import {
  PHYS_ADDR_LIMIT,
  type PhysAddr,
  type PhysicalMemory,
  type PhysRange,
  readPhys,
  type VirtAddr,
  type VirtRange,
  type VirtualMemory,
} from "../memory/memory.ts";
import { PageWalker, type PagingLevels } from "./pagewalk.ts";
import { PageTableCache } from "./pt-cache.ts";
import { DEFAULT_KERNEL_IMAGE_SIZE, START_KERNEL_MAP } from "./translate.ts";

export interface AddressSpaceSpec {
  /** Physical address of the kernel's top-level page table (init_top_pgt). */
  readonly root: PhysAddr;
  readonly levels: PagingLevels;
  /** phys_base: kernel image PA = VA - __START_KERNEL_map + physBase (may be negative). */
  readonly physBase: bigint;
  /** page_offset_base (direct map); omit to page-walk direct-map addresses. */
  readonly pageOffsetBase?: bigint;
}

/** Kernel address space served next to the memory (page server client). */
export interface KernelView extends VirtualMemory {
  walkList?(spec: ListWalkSpec, opts?: WalkOptions): Promise<ListNode[]>;
  clearCaches?(): void;
}

export interface KernelViewProvider {
  kernelView(space: AddressSpaceSpec): KernelView;
}

export function hasKernelView(m: PhysicalMemory): m is PhysicalMemory & KernelViewProvider {
  return typeof (m as Partial<KernelViewProvider>).kernelView === "function";
}

const PHYS_LIMIT = BigInt(PHYS_ADDR_LIMIT);
const KERNEL_HALF = 0xffff800000000000n;

/** Validates a spec (it may come from a remote client): throws AddressError. */
export function checkSpaceSpec(spec: AddressSpaceSpec, physSize: number): void {
  if (spec.levels !== 4 && spec.levels !== 5) {
    throw new AddressError("ADDR_BAD_ARGUMENT", `paging levels must be 4 or 5`);
  }
  if (!Number.isSafeInteger(spec.root) || spec.root < 0 || spec.root % 4096 !== 0 || spec.root >= physSize) {
    throw new AddressError("ADDR_BAD_ARGUMENT", `page table root ${spec.root} is not a page of guest RAM`);
  }
  if (typeof spec.physBase !== "bigint" || spec.physBase <= -PHYS_LIMIT || spec.physBase >= PHYS_LIMIT) {
    throw new AddressError("ADDR_BAD_ARGUMENT", `bad phys_base`);
  }
  const pob = spec.pageOffsetBase;
  if (pob !== undefined && (typeof pob !== "bigint" || pob < KERNEL_HALF || pob >= START_KERNEL_MAP)) {
    throw new AddressError("ADDR_BAD_ARGUMENT", `bad page_offset_base`);
  }
}

/** Size of the direct map: 64 TiB with 4 levels, 32 PiB with 5 (Documentation/arch/x86/x86_64/mm.rst). */
function directMapSize(levels: PagingLevels): bigint {
  return levels === 5 ? 1n << 55n : 1n << 46n;
}

export class KernelSpace implements VirtualMemory {
  readonly walker: PageWalker;
  readonly ptCache: PageTableCache;
  readonly walkAll: boolean;

  constructor(
    private readonly phys: PhysicalMemory,
    readonly spec: AddressSpaceSpec,
    opts: {
      readonly ptCache?: PageTableCache | null;
      /** Page-walk every address, like a generic VMI library (default false: use the linear maps). */
      readonly walkAll?: boolean;
    } = {},
  ) {
    checkSpaceSpec(spec, phys.size);
    this.walkAll = opts.walkAll ?? false;
    this.ptCache = opts.ptCache ?? new PageTableCache(opts.ptCache === null ? 0 : 512);
    this.walker = new PageWalker(phys, { root: spec.root, levels: spec.levels, cache: this.ptCache });
  }

  /** PA of a linearly mapped range, or undefined when it needs a page walk. */
  linear(va: VirtAddr, len: number): PhysAddr | undefined {
    if (this.walkAll) return undefined;
    const end = va + BigInt(Math.max(len, 1));
    let pa: bigint | undefined;
    if (va >= START_KERNEL_MAP && end <= START_KERNEL_MAP + DEFAULT_KERNEL_IMAGE_SIZE) {
      pa = va - START_KERNEL_MAP + this.spec.physBase;
    } else {
      const pob = this.spec.pageOffsetBase;
      if (pob !== undefined && va >= pob && end <= pob + directMapSize(this.spec.levels)) pa = va - pob;
    }
    if (pa === undefined) return undefined;
    if (pa < 0n || pa + BigInt(len) > PHYS_LIMIT) {
      throw new AddressError("ADDR_NOT_IN_REGION", `0x${va.toString(16)} maps outside physical space`);
    }
    return Number(pa);
  }

  read(ranges: readonly VirtRange[]): Promise<Uint8Array[]> {
    return guardAsync(async () => {
      const out: Uint8Array[] = new Array(ranges.length);
      const linear: PhysRange[] = [];
      const linearIdx: number[] = [];
      const walked: VirtRange[] = [];
      const walkedIdx: number[] = [];
      ranges.forEach((r, i) => {
        if (typeof r.addr !== "bigint" || !Number.isSafeInteger(r.len) || r.len < 0) {
          throw new AddressError("ADDR_BAD_ARGUMENT", `bad virtual range ${String(r.addr)}+${r.len}`);
        }
        const pa = this.linear(r.addr, r.len);
        if (pa !== undefined) {
          linear.push({ addr: pa, len: r.len });
          linearIdx.push(i);
        } else {
          walked.push(r);
          walkedIdx.push(i);
        }
      });
      // One batch each: a remote source pays one round trip per read() call.
      const [a, b] = await Promise.all([
        linear.length > 0 ? readPhys(this.phys, linear) : Promise.resolve([]),
        walked.length > 0 ? this.walker.read(walked) : Promise.resolve([]),
      ]);
      a.forEach((buf, k) => {
        out[linearIdx[k]] = buf;
      });
      b.forEach((buf, k) => {
        out[walkedIdx[k]] = buf;
      });
      return out;
    });
  }

  /** Forget cached page tables (start of a new pass over a running guest). */
  clearCaches(): void {
    this.ptCache.clear();
  }
}

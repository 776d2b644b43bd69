// Linear kernel address translations that need no page walk (arch/x86/include/asm/page_64.h):
//   kernel image:  pa = va - __START_KERNEL_map + phys_base   (text, data, bss, BTF, kallsyms)
//   direct map:    pa = va - page_offset_base                  (all RAM; kmalloc'ed objects)
// phys_base comes from VMCOREINFO NUMBER(phys_base); page_offset_base is a kernel variable
// (randomized by KASLR) read through the kernel image mapping.

import { AddressError, guardAsync } from "../errors.ts";
import {
  PHYS_ADDR_LIMIT,
  type PhysAddr,
  type PhysicalMemory,
  readPhys,
  type VirtAddr,
  type VirtRange,
  type VirtualMemory,
} from "../memory/memory.ts";

/** __START_KERNEL_map. */
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** KERNEL_IMAGE_SIZE with RANDOMIZE_BASE (1 GiB); VMCOREINFO NUMBER(KERNEL_IMAGE_SIZE) has it. */
export const DEFAULT_KERNEL_IMAGE_SIZE = 1n << 30n;
/** page_offset_base without KASLR, 4-level paging. */
export const DEFAULT_PAGE_OFFSET_BASE_L4 = 0xffff888000000000n;
/** page_offset_base without KASLR, 5-level paging. */
export const DEFAULT_PAGE_OFFSET_BASE_L5 = 0xff11000000000000n;

const U64 = 1n << 64n;
const PHYS_LIMIT = BigInt(PHYS_ADDR_LIMIT);

function toPhys(pa: bigint, va: VirtAddr, what: string): PhysAddr {
  if (pa < 0n || pa >= PHYS_LIMIT) {
    throw new AddressError("ADDR_NOT_IN_REGION", `${what} 0x${va.toString(16)} maps outside physical space`);
  }
  return Number(pa);
}

function checkVa(va: VirtAddr): void {
  if (typeof va !== "bigint" || va < 0n || va >= U64) {
    throw new AddressError("ADDR_BAD_ARGUMENT", `not a 64-bit virtual address: ${String(va)}`);
  }
}

/** Kernel-image VA -> PA. `len` bytes from va must stay inside the image. */
export function kernelImageVaToPa(
  va: VirtAddr,
  physBase: bigint,
  len = 1,
  imageSize: bigint = DEFAULT_KERNEL_IMAGE_SIZE,
): PhysAddr {
  checkVa(va);
  const end = va + BigInt(Math.max(len, 1));
  if (va < START_KERNEL_MAP || end > START_KERNEL_MAP + imageSize) {
    throw new AddressError(
      "ADDR_NOT_IN_REGION",
      `0x${va.toString(16)}+${len} is not in the kernel image mapping`,
    );
  }
  return toPhys(va - START_KERNEL_MAP + physBase, va, "kernel image address");
}

/** Size of the direct-map region (Documentation/arch/x86/x86_64/mm.rst): 64 TiB / 32 PiB. */
function directMapSize(levels: 4 | 5): bigint {
  return levels === 5 ? 1n << 55n : 1n << 46n;
}

/** Direct-map VA -> PA. `len` bytes from va must stay inside the direct map. */
export function directMapVaToPa(va: VirtAddr, pageOffsetBase: bigint, len = 1, levels: 4 | 5 = 4): PhysAddr {
  checkVa(va);
  const end = va + BigInt(Math.max(len, 1));
  if (va < pageOffsetBase || end > pageOffsetBase + directMapSize(levels)) {
    throw new AddressError("ADDR_NOT_IN_REGION", `0x${va.toString(16)}+${len} is not in the direct map`);
  }
  toPhys(end - 1n - pageOffsetBase, va, "direct-map range end");
  return toPhys(va - pageOffsetBase, va, "direct-map address");
}

/** Reads through a linear VA -> PA mapping; every range is checked before any I/O. */
abstract class LinearMemory implements VirtualMemory {
  constructor(protected readonly phys: PhysicalMemory) {}
  protected abstract toPa(va: VirtAddr, len: number): PhysAddr;
  read(ranges: readonly VirtRange[]): Promise<Uint8Array[]> {
    return guardAsync(() =>
      readPhys(
        this.phys,
        ranges.map((r) => ({ addr: this.toPa(r.addr, r.len), len: r.len })),
      ),
    );
  }
}

/** The kernel image (kallsyms, BTF, globals) as virtual memory, without page tables. */
export class KernelImageMemory extends LinearMemory {
  constructor(
    phys: PhysicalMemory,
    readonly physBase: bigint,
    readonly imageSize: bigint = DEFAULT_KERNEL_IMAGE_SIZE,
  ) {
    super(phys);
  }
  protected toPa(va: VirtAddr, len: number): PhysAddr {
    return kernelImageVaToPa(va, this.physBase, len, this.imageSize);
  }
}

/** The direct map (slab objects such as task_struct) as virtual memory, without page tables. */
export class DirectMapMemory extends LinearMemory {
  constructor(
    phys: PhysicalMemory,
    readonly pageOffsetBase: bigint,
    readonly levels: 4 | 5 = 4,
  ) {
    super(phys);
  }
  protected toPa(va: VirtAddr, len: number): PhysAddr {
    return directMapVaToPa(va, this.pageOffsetBase, len, this.levels);
  }
}

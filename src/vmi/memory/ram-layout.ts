// Where a guest-physical address lives in QEMU's RAM backing file (memory-backend-file).
//
// QEMU allocates guest RAM as one block and maps it with two aliases: the first `below4g` bytes
// at GPA 0, the rest at GPA 4 GiB. The gap in between is the PCI/MMIO hole. So for a RAM file:
//   offset = gpa                   for gpa < below4g
//   offset = gpa - 4 GiB + below4g for 4 GiB <= gpa < 4 GiB + above4g
// How much RAM sits below 4 GiB depends on the machine type (QEMU 7.2, hw/i386/pc_q35.c and
// pc_piix.c): q35 puts 2 GiB low once RAM >= 0xB0000000, else up to 0xB0000000; pc (i440fx) uses
// up to max-ram-below-4g (default 0xE0000000), rounded down to 3 GiB when RAM does not fit.
// 0xA0000-0xFFFFF exists in the file but the guest sees VGA/option ROMs there: reported as
// "shadowed" so callers do not mistake it for kernel data.

import { MemoryError } from "../errors.ts";
import { checkPhysRange, type PhysAddr, type PhysicalMemory, type PhysRange, readPhys } from "./memory.ts";

export type MachineType = "q35" | "pc";

const GiB = 1024 * 1024 * 1024;
const FOUR_GIB = 4 * GiB;
const LEGACY_START = 0xa0000;
const LEGACY_END = 0x100000;

export interface RamLayout {
  readonly machine: MachineType;
  readonly ramSize: number;
  /** RAM bytes mapped at GPA [0, below4g). */
  readonly below4g: number;
  /** RAM bytes mapped at GPA [4 GiB, 4 GiB + above4g). */
  readonly above4g: number;
}

export interface RamLayoutOptions {
  /** QEMU's -machine max-ram-below-4g=..., if given. */
  readonly maxRamBelow4g?: number;
}

/** Computes the RAM split of a QEMU x86 machine. */
export function ramLayout(machine: MachineType, ramSize: number, opts: RamLayoutOptions = {}): RamLayout {
  if (!Number.isSafeInteger(ramSize) || ramSize <= 0 || ramSize > 2 ** 52) {
    throw new MemoryError("MEM_BAD_REQUEST", `bad RAM size ${ramSize}`);
  }
  const userMax = opts.maxRamBelow4g;
  if (userMax !== undefined && (!Number.isSafeInteger(userMax) || userMax <= 0 || userMax > FOUR_GIB)) {
    throw new MemoryError("MEM_BAD_REQUEST", `bad max-ram-below-4g ${userMax}`);
  }
  let lowmem: number;
  if (machine === "q35") {
    lowmem = ramSize >= 0xb0000000 ? 0x80000000 : 0xb0000000;
    lowmem = Math.min(lowmem, userMax ?? FOUR_GIB);
  } else {
    lowmem = userMax ?? 0xe0000000;
    // Modern pc machine types align the split to 1 GiB when RAM does not fit below the limit.
    if (ramSize >= lowmem && lowmem > 0xc0000000) lowmem = 0xc0000000;
  }
  const below4g = Math.min(ramSize, lowmem);
  return { machine, ramSize, below4g, above4g: ramSize - below4g };
}

export type RamLocation =
  /** Plain RAM: `contiguous` bytes from here on map linearly to the file. */
  | { readonly kind: "ram"; readonly offset: number; readonly contiguous: number }
  /** In the file, but the guest sees VGA memory / ROMs at this GPA. */
  | { readonly kind: "shadowed"; readonly offset: number; readonly contiguous: number }
  /** Not RAM (PCI hole, beyond RAM). */
  | { readonly kind: "hole" };

/** Maps a guest-physical address to its offset in the RAM backing file. */
export function gpaToRamOffset(layout: RamLayout, gpa: PhysAddr): RamLocation {
  if (!Number.isSafeInteger(gpa) || gpa < 0) return { kind: "hole" };
  if (gpa < layout.below4g) {
    if (gpa >= LEGACY_START && gpa < LEGACY_END) {
      return { kind: "shadowed", offset: gpa, contiguous: Math.min(LEGACY_END, layout.below4g) - gpa };
    }
    const end = gpa < LEGACY_START ? Math.min(LEGACY_START, layout.below4g) : layout.below4g;
    return { kind: "ram", offset: gpa, contiguous: end - gpa };
  }
  if (gpa >= FOUR_GIB && gpa < FOUR_GIB + layout.above4g) {
    return {
      kind: "ram",
      offset: gpa - FOUR_GIB + layout.below4g,
      contiguous: FOUR_GIB + layout.above4g - gpa,
    };
  }
  return { kind: "hole" };
}

/** Exclusive upper bound of guest-physical RAM addresses for a layout. */
export function physLimit(layout: RamLayout): number {
  return layout.above4g > 0 ? FOUR_GIB + layout.above4g : layout.below4g;
}

/**
 * Guest-physical view over a RAM backing file (itself a PhysicalMemory whose "addresses" are
 * file offsets). A range must lie inside one RAM region; a range touching a hole is an error
 * (MEM_HOLE) rather than silently reading neighbouring RAM. The legacy 0xA0000-0xFFFFF window
 * is read from the file (what the guest's RAM holds there).
 */
export class RamFileMemory implements PhysicalMemory {
  readonly size: number;
  constructor(
    readonly layout: RamLayout,
    private readonly file: PhysicalMemory,
  ) {
    this.size = physLimit(layout);
    if (file.size < layout.ramSize) {
      throw new MemoryError(
        "MEM_BAD_REQUEST",
        `RAM file (${file.size} bytes) smaller than RAM (${layout.ramSize})`,
      );
    }
  }

  async read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    const mapped = ranges.map((r) => {
      checkPhysRange(r, this.size);
      if (r.len === 0) return { addr: 0, len: 0 };
      const loc = gpaToRamOffset(this.layout, r.addr);
      const last = r.len > 0 ? gpaToRamOffset(this.layout, r.addr + r.len - 1) : loc;
      if (loc.kind === "hole" || last.kind === "hole") {
        throw new MemoryError(
          "MEM_HOLE",
          `physical range 0x${r.addr.toString(16)}+0x${r.len.toString(16)} is not RAM`,
        );
      }
      // Both ends are RAM; they are in the same region iff the offsets differ by len - 1.
      if (last.offset - loc.offset !== r.len - 1) {
        throw new MemoryError("MEM_HOLE", `physical range 0x${r.addr.toString(16)} crosses a hole`);
      }
      return { addr: loc.offset, len: r.len };
    });
    return readPhys(this.file, mapped);
  }
}

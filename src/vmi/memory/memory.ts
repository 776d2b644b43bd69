// The memory-source interface every vmi parser reads through, plus an in-memory implementation.
//
// Address representation (chosen deliberately):
// - Guest-physical addresses are `number`. x86-64 MAXPHYADDR is at most 52 bits, so every
//   physical address is an exact JS number (< 2^53) and arithmetic stays fast.
// - Guest-virtual addresses are `bigint`. Canonical kernel addresses are 0xffff8000_00000000 and
//   up, far beyond 2^53, so a number would silently round them.
// Page-table entries are 64-bit values (NX is bit 63) and are handled as bigint too.
//
// Reads are batched (`read(ranges[])`): a remote source (agent, QMP) pays one round trip per
// call, so callers collect what they need and ask once.

import { MemoryError, VmiError } from "../errors.ts";

/** Guest-physical address: exact in a number (< 2^52 on x86-64). */
export type PhysAddr = number;
/** Guest-virtual address: 64-bit, needs bigint. */
export type VirtAddr = bigint;

export interface PhysRange {
  readonly addr: PhysAddr;
  readonly len: number;
}

export interface VirtRange {
  readonly addr: VirtAddr;
  readonly len: number;
}

/**
 * Guest-physical memory. Contract: `read` returns one Uint8Array per range, in order, each
 * exactly `len` bytes long, or rejects. Results may be views; callers must not mutate them.
 */
export interface PhysicalMemory {
  /** Exclusive upper bound of guest-physical addresses (reads may still fail inside holes). */
  readonly size: number;
  read(ranges: readonly PhysRange[]): Promise<Uint8Array[]>;
}

/** Guest-virtual memory (a translation layer over PhysicalMemory); same contract as read(). */
export interface VirtualMemory {
  read(ranges: readonly VirtRange[]): Promise<Uint8Array[]>;
}

/** Largest single range we ever request: bounds allocations driven by guest-supplied lengths. */
export const MAX_READ_LEN = 64 * 1024 * 1024;
/** Largest batch we pass to a source in one call. */
export const MAX_BATCH = 8192;
/** 2^52: the architectural limit of x86-64 physical addresses. */
export const PHYS_ADDR_LIMIT = 2 ** 52;

function checkLen(len: number, what: string): void {
  if (!Number.isSafeInteger(len) || len < 0 || len > MAX_READ_LEN) {
    throw new MemoryError("MEM_BAD_REQUEST", `${what}: bad length ${len} (max ${MAX_READ_LEN})`);
  }
}

function checkBatch(n: number): void {
  if (n > MAX_BATCH) throw new MemoryError("MEM_BAD_REQUEST", `batch of ${n} ranges exceeds ${MAX_BATCH}`);
}

/** Validates one physical range against a memory size; throws MemoryError. */
export function checkPhysRange(r: PhysRange, size: number): void {
  checkLen(r.len, "physical read");
  if (!Number.isSafeInteger(r.addr) || r.addr < 0 || r.addr + r.len > size) {
    throw new MemoryError(
      "MEM_OUT_OF_RANGE",
      `physical range 0x${safeHex(r.addr)}+0x${r.len.toString(16)} outside memory of size 0x${size.toString(16)}`,
    );
  }
}

function safeHex(n: number): string {
  return Number.isFinite(n) ? Math.trunc(n).toString(16) : String(n);
}

function checkResult(out: unknown, lens: readonly number[]): Uint8Array[] {
  if (!Array.isArray(out) || out.length !== lens.length) {
    throw new MemoryError("MEM_BAD_RESULT", "memory source returned the wrong number of buffers");
  }
  for (let i = 0; i < lens.length; i++) {
    const b: unknown = out[i];
    if (!(b instanceof Uint8Array) || b.length !== lens[i]) {
      throw new MemoryError("MEM_BAD_RESULT", `memory source returned a bad buffer for range ${i}`);
    }
  }
  return out as Uint8Array[];
}

async function callSource<T extends { len: number }>(
  ranges: readonly T[],
  read: (r: readonly T[]) => Promise<Uint8Array[]>,
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let i = 0; i < ranges.length; i += MAX_BATCH) {
    const chunk = ranges.slice(i, i + MAX_BATCH);
    let got: unknown;
    try {
      got = await read(chunk);
    } catch (e) {
      if (e instanceof VmiError) throw e;
      throw new MemoryError("MEM_READ_FAILED", `memory source failed: ${String(e)}`, { cause: e });
    }
    out.push(
      ...checkResult(
        got,
        chunk.map((r) => r.len),
      ),
    );
  }
  return out;
}

/**
 * Reads physical ranges through `mem`, validating requests first and the source's answer after
 * (a misbehaving source becomes a MemoryError, never a crash later on). Splits large batches.
 */
export async function readPhys(mem: PhysicalMemory, ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
  for (const r of ranges) checkPhysRange(r, mem.size);
  return callSource(ranges, (c) => mem.read(c));
}

/** Reads one physical range. */
export async function readPhysOne(mem: PhysicalMemory, addr: PhysAddr, len: number): Promise<Uint8Array> {
  const [b] = await readPhys(mem, [{ addr, len }]);
  return b;
}

/** Reads virtual ranges through `mem` with the same validation as readPhys(). */
export async function readVirt(mem: VirtualMemory, ranges: readonly VirtRange[]): Promise<Uint8Array[]> {
  for (const r of ranges) {
    checkLen(r.len, "virtual read");
    if (typeof r.addr !== "bigint" || r.addr < 0n || r.addr + BigInt(r.len) > 1n << 64n) {
      throw new MemoryError("MEM_BAD_REQUEST", `bad virtual range ${String(r.addr)}+${r.len}`);
    }
  }
  return callSource(ranges, (c) => mem.read(c));
}

/** Reads one virtual range. */
export async function readVirtOne(mem: VirtualMemory, addr: VirtAddr, len: number): Promise<Uint8Array> {
  const [b] = await readVirt(mem, [{ addr, len }]);
  return b;
}

/** PhysicalMemory over a buffer (tests, snapshots). Returns copies, like a pread-based source. */
export class BufferPhysicalMemory implements PhysicalMemory {
  readonly size: number;
  constructor(private readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }

  async read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    checkBatch(ranges.length);
    return ranges.map((r) => {
      checkPhysRange(r, this.size);
      return this.bytes.slice(r.addr, r.addr + r.len);
    });
  }
}

/**
 * Like readPhys, but a range that fails with MEM_HOLE / MEM_OUT_OF_RANGE yields `undefined`
 * instead of failing the batch (a page walk into a hole is a result, not an exception). Other
 * failures still throw. The batch is retried range by range only when it fails.
 */
export async function readPhysLenient(
  mem: PhysicalMemory,
  ranges: readonly PhysRange[],
): Promise<(Uint8Array | undefined)[]> {
  const skippable = (e: unknown) =>
    e instanceof MemoryError && (e.code === "MEM_HOLE" || e.code === "MEM_OUT_OF_RANGE");
  try {
    return await readPhys(mem, ranges);
  } catch (e) {
    if (!skippable(e)) throw e;
  }
  const out: (Uint8Array | undefined)[] = [];
  for (const r of ranges) {
    try {
      out.push(await readPhysOne(mem, r.addr, r.len));
    } catch (e) {
      if (!skippable(e)) throw e;
      out.push(undefined);
    }
  }
  return out;
}

// Bounded walk of an XArray (include/linux/xarray.h), the tree behind the IDR that maps pid
// numbers to struct pid in a pid namespace. Entries are tagged pointers:
//   low bits 00: a pointer entry (what we return); xx1: a value entry (skipped);
//   10: internal — a node pointer (node + 2) when > 4096, else sibling/retry/zero (skipped).
// A node holds `shift` (bits below its slots' index) and 64 slots. The tree comes from guest
// memory: depth, node count and entry count are capped, shifts must descend by 6, and a node
// seen twice is a cycle. Each tree level is fetched in one batched read.

import { guardAsync, QueryError } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import { isKernelPointer, readVirtLenient } from "../memory/listwalk.ts";
import type { VirtAddr } from "../memory/memory.ts";

export const XA_CHUNK_SHIFT = 6;
const XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT;
/** Deepest tree for 64-bit indexes. */
const MAX_LEVELS = 11;

export interface XaEntry {
  readonly index: bigint;
  readonly value: VirtAddr;
}

export interface XaWalkOptions {
  readonly maxEntries?: number;
  readonly maxNodes?: number;
  readonly deadline?: number;
}

export interface XaWalkResult {
  readonly entries: XaEntry[];
  /** Nodes that could not be read (the walk continues without them). */
  readonly unreadableNodes: number;
}

function isNode(e: bigint): boolean {
  return (e & 3n) === 2n && e > 4096n;
}

/** Walks the XArray whose xa_head value is `head`. */
export function walkXarray(k: Kernel, head: bigint, opts: XaWalkOptions = {}): Promise<XaWalkResult> {
  return guardAsync(async () => {
    const maxEntries = opts.maxEntries ?? 1 << 20;
    const maxNodes = opts.maxNodes ?? 1 << 16;
    const shiftOff = k.field("xa_node.shift").offset;
    const slots = k.field("xa_node.slots");
    if ((slots.count ?? XA_CHUNK_SIZE) !== XA_CHUNK_SIZE) {
      throw new QueryError(
        "QUERY_BAD_SPEC",
        `xa_node has ${slots.count} slots; only ${XA_CHUNK_SIZE} supported`,
      );
    }
    const entries: XaEntry[] = [];
    const push = (index: bigint, value: bigint) => {
      if (entries.length >= maxEntries) {
        throw new QueryError("QUERY_TOO_MANY", `xarray holds more than ${maxEntries} entries`);
      }
      entries.push({ index, value });
    };
    if (head === 0n) return { entries, unreadableNodes: 0 };
    if (!isNode(head)) {
      // A single entry at index 0 lives in the head itself.
      if ((head & 3n) === 0n && isKernelPointer(head)) push(0n, head);
      return { entries, unreadableNodes: 0 };
    }
    const seen = new Set<bigint>();
    let unreadable = 0;
    let level: { node: bigint; base: bigint; shift: number | undefined }[] = [
      { node: head - 2n, base: 0n, shift: undefined },
    ];
    for (let depth = 0; level.length > 0; depth++) {
      if (depth >= MAX_LEVELS)
        throw new QueryError("QUERY_LIST_CYCLE", "xarray deeper than a 64-bit index allows");
      if (opts.deadline !== undefined && Date.now() > opts.deadline) {
        throw new QueryError("QUERY_TIMEOUT", "xarray walk: deadline passed");
      }
      const len = slots.offset + XA_CHUNK_SIZE * 8;
      const bufs = await readVirtLenient(
        k.vmem,
        level.map((n) => ({ addr: n.node, len })),
      );
      const next: typeof level = [];
      level.forEach((n, i) => {
        const b = bufs[i];
        if (!b) {
          unreadable++;
          return;
        }
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const shift = b[shiftOff];
        const okShift =
          shift % XA_CHUNK_SHIFT === 0 && shift < 64 && (n.shift === undefined || shift === n.shift);
        if (!okShift)
          throw new QueryError("QUERY_LIST_CORRUPT", `xa_node 0x${n.node.toString(16)}: bad shift ${shift}`);
        for (let s = 0; s < XA_CHUNK_SIZE; s++) {
          const e = dv.getBigUint64(slots.offset + s * 8, true);
          const index = n.base + (BigInt(s) << BigInt(shift));
          if (e === 0n) continue;
          if (isNode(e)) {
            if (shift === 0)
              throw new QueryError("QUERY_LIST_CORRUPT", "xa_node at shift 0 points to a node");
            const child = e - 2n;
            if (seen.has(child)) throw new QueryError("QUERY_LIST_CYCLE", "xarray node reached twice");
            seen.add(child);
            if (seen.size > maxNodes)
              throw new QueryError("QUERY_TOO_MANY", `xarray has more than ${maxNodes} nodes`);
            next.push({ node: child, base: index, shift: shift - XA_CHUNK_SHIFT });
          } else if ((e & 3n) === 0n && isKernelPointer(e)) {
            push(index, e);
          }
        }
      });
      level = next;
    }
    return { entries, unreadableNodes: unreadable };
  });
}

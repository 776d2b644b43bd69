// Walking a kernel circular doubly-linked list (struct list_head) and reading fields of every
// node, bounded: the list comes from guest memory, so it may loop without returning to its head,
// be endless, or point anywhere. Every walk has a node cap, cycle detection and a deadline, and
// ends in a result or a typed QueryError.
//
// The spec is plain data so that a page server can run the same walk next to the memory and
// return all nodes in one round trip (the main remote optimisation): per node it reads the link
// and the requested fields, then, for all nodes at once, the fields behind a few pointers
// (task->cred->uid, task->real_parent->tgid).

import { AddressError, guardAsync, MemoryError, QueryError, type VmiError } from "../errors.ts";
import { readVirt, type VirtAddr, type VirtRange, type VirtualMemory } from "./memory.ts";

export interface FieldRead {
  /** Offset from the start of the node struct (or of the pointed-to object for derefs). */
  readonly offset: number;
  readonly len: number;
}

export interface DerefRead {
  /** Offset of a pointer inside the node; the reads are relative to where it points. */
  readonly ptr: number;
  readonly reads: readonly FieldRead[];
}

export interface ListWalkSpec {
  /** Address of the list_head that heads the list (it is not a node itself). */
  readonly head: VirtAddr;
  /** Offset of the list_head member inside each node struct. */
  readonly linkOffset: number;
  readonly reads: readonly FieldRead[];
  readonly derefs?: readonly DerefRead[];
  readonly maxNodes: number;
}

export interface ListNode {
  /** Address of the node struct (link address - linkOffset). */
  readonly addr: VirtAddr;
  /** One buffer per spec.reads entry. */
  readonly fields: Uint8Array[];
  /** Per spec.derefs entry: its reads, or null when the pointer was NULL or unreadable. */
  readonly derefs: (Uint8Array[] | null)[];
}

/** Optional capability of a memory source: run the walk next to the memory. */
export interface ListWalker {
  walkList(spec: ListWalkSpec, opts?: WalkOptions): Promise<ListNode[]>;
}

export interface WalkOptions {
  /** Absolute time (Date.now() ms) after which the walk fails with QUERY_TIMEOUT. */
  readonly deadline?: number;
}

export const LIMITS = {
  maxNodes: 1 << 20,
  maxReads: 32,
  maxDerefs: 8,
  maxDerefReads: 16,
  maxFieldLen: 4096,
  maxOffset: 1 << 16,
  /** Bytes of node data a walk may return in total. */
  maxResultBytes: 64 * 1024 * 1024,
} as const;

const KERNEL_HALF = 0xffff800000000000n;
const U64_MAX = (1n << 64n) - 1n;

function checkReads(reads: readonly FieldRead[], max: number, what: string): number {
  if (!Array.isArray(reads) || reads.length > max) {
    throw new QueryError("QUERY_BAD_SPEC", `${what}: at most ${max} reads`);
  }
  let total = 0;
  for (const r of reads) {
    const okOff = Number.isSafeInteger(r.offset) && r.offset >= 0 && r.offset <= LIMITS.maxOffset;
    const okLen = Number.isSafeInteger(r.len) && r.len > 0 && r.len <= LIMITS.maxFieldLen;
    if (!okOff || !okLen) throw new QueryError("QUERY_BAD_SPEC", `${what}: bad read ${r.offset}+${r.len}`);
    total += r.len;
  }
  return total;
}

/** Validates a spec (it may come from a remote client). Returns the bytes read per node. */
export function checkWalkSpec(spec: ListWalkSpec): number {
  if (typeof spec.head !== "bigint" || spec.head < KERNEL_HALF || spec.head > U64_MAX) {
    throw new QueryError("QUERY_BAD_SPEC", "list head must be a kernel address");
  }
  if (!Number.isSafeInteger(spec.linkOffset) || spec.linkOffset < 0 || spec.linkOffset > LIMITS.maxOffset) {
    throw new QueryError("QUERY_BAD_SPEC", `bad link offset ${spec.linkOffset}`);
  }
  if (!Number.isSafeInteger(spec.maxNodes) || spec.maxNodes < 1 || spec.maxNodes > LIMITS.maxNodes) {
    throw new QueryError("QUERY_BAD_SPEC", `maxNodes must be 1..${LIMITS.maxNodes}`);
  }
  let perNode = checkReads(spec.reads, LIMITS.maxReads, "node");
  const derefs = spec.derefs ?? [];
  if (!Array.isArray(derefs) || derefs.length > LIMITS.maxDerefs) {
    throw new QueryError("QUERY_BAD_SPEC", `at most ${LIMITS.maxDerefs} derefs`);
  }
  for (const d of derefs) {
    if (!Number.isSafeInteger(d.ptr) || d.ptr < 0 || d.ptr > LIMITS.maxOffset) {
      throw new QueryError("QUERY_BAD_SPEC", `bad deref pointer offset ${d.ptr}`);
    }
    perNode += checkReads(d.reads, LIMITS.maxDerefReads, "deref");
  }
  if (perNode * spec.maxNodes > LIMITS.maxResultBytes) {
    throw new QueryError("QUERY_BAD_SPEC", `walk could return more than ${LIMITS.maxResultBytes} bytes`);
  }
  return perNode;
}

/** A pointer that can be followed: in the kernel half (NULL, user and poison values are not). */
export function isKernelPointer(p: bigint): boolean {
  return p >= KERNEL_HALF && p <= U64_MAX;
}

function u64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, true);
}

interface Span {
  start: number;
  end: number;
}

/** Coalesces reads that are close together into few spans (one range per span per node). */
function spans(reads: readonly FieldRead[]): Span[] {
  const sorted = [...reads].sort((a, b) => a.offset - b.offset);
  const out: Span[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.end + 256 && r.offset + r.len - last.start <= 8192) {
      last.end = Math.max(last.end, r.offset + r.len);
    } else {
      out.push({ start: r.offset, end: r.offset + r.len });
    }
  }
  return out;
}

function slice(spanList: Span[], bufs: Uint8Array[], r: FieldRead): Uint8Array {
  const i = spanList.findIndex((s) => r.offset >= s.start && r.offset + r.len <= s.end);
  const s = spanList[i];
  return bufs[i].subarray(r.offset - s.start, r.offset - s.start + r.len);
}

function isReadFailure(e: unknown): boolean {
  return e instanceof MemoryError || e instanceof AddressError;
}

function checkDeadline(deadline: number | undefined, what: string): void {
  if (deadline !== undefined && Date.now() > deadline) {
    throw new QueryError("QUERY_TIMEOUT", `${what}: deadline passed`);
  }
}

/** Reads ranges; when the batch fails on bad addresses, retries each and yields null for failures. */
export async function readVirtLenient(
  mem: VirtualMemory,
  ranges: readonly VirtRange[],
): Promise<(Uint8Array | null)[]> {
  try {
    return await readVirt(mem, ranges);
  } catch (e) {
    if (!isReadFailure(e)) throw e;
  }
  const out: (Uint8Array | null)[] = [];
  for (const r of ranges) {
    try {
      out.push((await readVirt(mem, [r]))[0]);
    } catch (e) {
      if (!isReadFailure(e)) throw e;
      out.push(null);
    }
  }
  return out;
}

/** The walk itself, over any VirtualMemory (what the page server runs next to the memory). */
export function walkListLocal(
  mem: VirtualMemory,
  spec: ListWalkSpec,
  opts: WalkOptions = {},
): Promise<ListNode[]> {
  return guardAsync(async () => {
    checkWalkSpec(spec);
    const linkRead: FieldRead = { offset: spec.linkOffset, len: 8 };
    const derefs = spec.derefs ?? [];
    const ptrReads: FieldRead[] = derefs.map((d) => ({ offset: d.ptr, len: 8 }));
    const nodeSpans = spans([linkRead, ...spec.reads, ...ptrReads]);
    const nodes: ListNode[] = [];
    const ptrs: bigint[][] = [];
    const seen = new Set<bigint>();
    let link: bigint;
    try {
      link = u64((await readVirt(mem, [{ addr: spec.head, len: 8 }]))[0], 0);
    } catch (e) {
      if (isReadFailure(e)) {
        throw new QueryError("QUERY_BAD_POINTER", `list head 0x${spec.head.toString(16)} unreadable`, {
          cause: e,
        });
      }
      throw e;
    }
    while (link !== spec.head) {
      if (nodes.length >= spec.maxNodes) {
        throw new QueryError(
          "QUERY_TOO_MANY",
          `list at 0x${spec.head.toString(16)} has more than ${spec.maxNodes} nodes`,
        );
      }
      if (seen.has(link)) {
        throw new QueryError(
          "QUERY_LIST_CYCLE",
          `list at 0x${spec.head.toString(16)} loops back to link 0x${link.toString(16)} after ${nodes.length} nodes without reaching its head`,
        );
      }
      if (!isKernelPointer(link) || link < BigInt(spec.linkOffset) + KERNEL_HALF) {
        throw new QueryError(
          "QUERY_BAD_POINTER",
          `list at 0x${spec.head.toString(16)}: link 0x${link.toString(16)} after ${nodes.length} nodes is not a kernel pointer`,
        );
      }
      if (nodes.length % 64 === 0) checkDeadline(opts.deadline, "list walk");
      seen.add(link);
      const addr = link - BigInt(spec.linkOffset);
      let bufs: Uint8Array[];
      try {
        bufs = await readVirt(
          mem,
          nodeSpans.map((s) => ({ addr: addr + BigInt(s.start), len: s.end - s.start })),
        );
      } catch (e) {
        if (!isReadFailure(e)) throw e;
        throw new QueryError(
          "QUERY_BAD_POINTER",
          `list at 0x${spec.head.toString(16)}: node 0x${addr.toString(16)} unreadable (${(e as VmiError).code})`,
          { cause: e },
        );
      }
      nodes.push({ addr, fields: spec.reads.map((r) => slice(nodeSpans, bufs, r)), derefs: [] });
      ptrs.push(ptrReads.map((r) => u64(slice(nodeSpans, bufs, r), 0)));
      link = u64(slice(nodeSpans, bufs, linkRead), 0);
    }
    if (derefs.length > 0) await fillDerefs(mem, derefs, nodes, ptrs, opts);
    return nodes;
  });
}

async function fillDerefs(
  mem: VirtualMemory,
  derefs: readonly DerefRead[],
  nodes: ListNode[],
  ptrs: bigint[][],
  opts: WalkOptions,
): Promise<void> {
  checkDeadline(opts.deadline, "list walk derefs");
  // One object per (node, deref): its reads as spans, all nodes in one batch.
  const ranges: VirtRange[] = [];
  const owners: { node: number; deref: number; spans: Span[]; first: number }[] = [];
  nodes.forEach((_, n) => {
    derefs.forEach((d, k) => {
      const p = ptrs[n][k];
      if (!isKernelPointer(p)) return;
      const sp = spans(d.reads);
      owners.push({ node: n, deref: k, spans: sp, first: ranges.length });
      for (const s of sp) ranges.push({ addr: p + BigInt(s.start), len: s.end - s.start });
    });
  });
  const got = ranges.length > 0 ? await readVirtLenient(mem, ranges) : [];
  for (const n of nodes) n.derefs.push(...derefs.map(() => null));
  for (const o of owners) {
    const bufs = got.slice(o.first, o.first + o.spans.length);
    if (bufs.some((b) => b === null)) continue;
    nodes[o.node].derefs[o.deref] = derefs[o.deref].reads.map((r) => slice(o.spans, bufs as Uint8Array[], r));
  }
}

export function hasListWalker(m: unknown): m is ListWalker {
  return typeof (m as Partial<ListWalker> | null)?.walkList === "function";
}

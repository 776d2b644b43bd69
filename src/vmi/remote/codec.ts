// JSON shapes of the page-server requests that carry kernel structures (address spaces, list
// walks) and of errors. 64-bit values travel as strings: JSON numbers lose precision above 2^53.
// Decoders run on the server with client input and on the client with server input: both sides
// validate shapes here and semantics in checkSpaceSpec / checkWalkSpec.

import { Buffer } from "node:buffer";
import type { AddressSpaceSpec } from "../address/kspace.ts";
import {
  AddressError,
  type AddressErrorCode,
  MemoryError,
  type MemoryErrorCode,
  QueryError,
  type QueryErrorCode,
  RemoteError,
  type RemoteErrorCode,
  VmiError,
} from "../errors.ts";
import type { FieldRead, ListNode, ListWalkSpec } from "../memory/listwalk.ts";

function bad(msg: string): RemoteError {
  return new RemoteError("REMOTE_PROTOCOL", msg);
}

function big(v: unknown, what: string): bigint {
  if (typeof v !== "string" || !/^-?(0x[0-9a-f]{1,16}|[0-9]{1,20})$/.test(v))
    throw bad(`${what} must be a number string`);
  return v.startsWith("-") ? -BigInt(v.slice(1)) : BigInt(v);
}

function int(v: unknown, what: string): number {
  if (!Number.isSafeInteger(v)) throw bad(`${what} must be an integer`);
  return v as number;
}

const hex = (v: bigint) => (v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

export function encodeSpace(s: AddressSpaceSpec): Record<string, unknown> {
  return {
    root: s.root,
    levels: s.levels,
    physBase: hex(s.physBase),
    ...(s.pageOffsetBase !== undefined ? { pageOffsetBase: hex(s.pageOffsetBase) } : {}),
  };
}

export function decodeSpace(v: unknown): AddressSpaceSpec {
  if (typeof v !== "object" || v === null) throw bad("space must be an object");
  const o = v as Record<string, unknown>;
  const levels = int(o.levels, "levels");
  if (levels !== 4 && levels !== 5) throw bad("levels must be 4 or 5");
  return {
    root: int(o.root, "root"),
    levels,
    physBase: big(o.physBase, "physBase"),
    ...(o.pageOffsetBase !== undefined ? { pageOffsetBase: big(o.pageOffsetBase, "pageOffsetBase") } : {}),
  };
}

function reads(v: unknown, what: string): FieldRead[] {
  if (!Array.isArray(v) || v.length > 64) throw bad(`${what} must be a short array`);
  return v.map((r) => {
    if (!Array.isArray(r) || r.length !== 2) throw bad(`${what} entries are [offset, len]`);
    return { offset: int(r[0], "offset"), len: int(r[1], "len") };
  });
}

export function encodeWalk(s: ListWalkSpec): Record<string, unknown> {
  return {
    head: hex(s.head),
    linkOffset: s.linkOffset,
    reads: s.reads.map((r) => [r.offset, r.len]),
    derefs: (s.derefs ?? []).map((d) => ({ ptr: d.ptr, reads: d.reads.map((r) => [r.offset, r.len]) })),
    maxNodes: s.maxNodes,
  };
}

export function decodeWalk(v: unknown): ListWalkSpec {
  if (typeof v !== "object" || v === null) throw bad("walk spec must be an object");
  const o = v as Record<string, unknown>;
  const derefs = o.derefs ?? [];
  if (!Array.isArray(derefs) || derefs.length > 16) throw bad("derefs must be a short array");
  return {
    head: big(o.head, "head"),
    linkOffset: int(o.linkOffset, "linkOffset"),
    reads: reads(o.reads, "reads"),
    derefs: derefs.map((d) => {
      if (typeof d !== "object" || d === null) throw bad("deref must be an object");
      const x = d as Record<string, unknown>;
      return { ptr: int(x.ptr, "ptr"), reads: reads(x.reads, "deref reads") };
    }),
    maxNodes: int(o.maxNodes, "maxNodes"),
  };
}

/** Walk result body: per node u64 addr, the fields, then per deref u8 present + its fields. */
export function encodeNodes(spec: ListWalkSpec, nodes: readonly ListNode[]): Buffer {
  const derefs = spec.derefs ?? [];
  // One buffer of the exact size: no per-node allocations (this runs on every list walk).
  let size = 0;
  for (const n of nodes) {
    size += 8;
    for (const f of n.fields) size += f.length;
    for (let k = 0; k < derefs.length; k++) {
      size += 1;
      for (const b of n.derefs[k] ?? []) size += b.length;
    }
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const n of nodes) {
    out.writeBigUInt64BE(n.addr, at);
    at += 8;
    for (const f of n.fields) {
      out.set(f, at);
      at += f.length;
    }
    for (let k = 0; k < derefs.length; k++) {
      const d = n.derefs[k];
      out[at++] = d ? 1 : 0;
      for (const b of d ?? []) {
        out.set(b, at);
        at += b.length;
      }
    }
  }
  return out;
}

export function decodeNodes(spec: ListWalkSpec, count: unknown, body: Buffer): ListNode[] {
  const n = int(count, "count");
  if (n < 0 || n > spec.maxNodes) throw bad("node count out of bounds");
  const nodes: ListNode[] = [];
  const dv = new DataView(body.buffer, body.byteOffset, body.length);
  let at = 0;
  const take = (len: number) => {
    if (at + len > body.length) throw bad("walk reply truncated");
    const b = new Uint8Array(body.buffer, body.byteOffset + at, len);
    at += len;
    return b;
  };
  for (let i = 0; i < n; i++) {
    if (at + 8 > body.length) throw bad("walk reply truncated");
    const addr = dv.getBigUint64(at, false);
    at += 8;
    const fields = spec.reads.map((r) => take(r.len));
    const derefs = (spec.derefs ?? []).map((d) =>
      take(1)[0] === 1 ? d.reads.map((r) => take(r.len)) : null,
    );
    nodes.push({ addr, fields, derefs });
  }
  if (at !== body.length) throw bad("walk reply has trailing bytes");
  return nodes;
}

const MEMORY_CODES = new Set([
  "MEM_OUT_OF_RANGE",
  "MEM_BAD_REQUEST",
  "MEM_READ_FAILED",
  "MEM_BAD_RESULT",
  "MEM_HOLE",
]);
const ADDRESS_CODES = new Set([
  "ADDR_NOT_IN_REGION",
  "ADDR_NON_CANONICAL",
  "ADDR_NOT_PRESENT",
  "ADDR_BAD_TABLE",
  "ADDR_BAD_ARGUMENT",
]);
const QUERY_CODES = new Set([
  "QUERY_LIST_CYCLE",
  "QUERY_LIST_CORRUPT",
  "QUERY_TOO_MANY",
  "QUERY_BAD_POINTER",
  "QUERY_TIMEOUT",
  "QUERY_BAD_SPEC",
]);
const REMOTE_CODES = new Set([
  "REMOTE_AUTH",
  "REMOTE_FORBIDDEN",
  "REMOTE_PROTOCOL",
  "REMOTE_LIMIT",
  "REMOTE_TIMEOUT",
]);

/** What the server tells the client about a failure: typed errors keep their code. */
export function errorHeader(e: unknown): { code: string; message: string } {
  if (e instanceof VmiError && e.code !== "VMI_INTERNAL")
    return { code: e.code, message: e.message.slice(0, 500) };
  return { code: "REMOTE_SERVER", message: "internal server error" };
}

/** Rebuilds the server's error on the client with the same class and code. */
export function errorFromHeader(h: Record<string, unknown>): VmiError {
  const code = typeof h.code === "string" ? h.code : "REMOTE_SERVER";
  const message = `page server: ${typeof h.message === "string" ? h.message.slice(0, 500) : code}`;
  if (MEMORY_CODES.has(code)) return new MemoryError(code as MemoryErrorCode, message);
  if (ADDRESS_CODES.has(code)) return new AddressError(code as AddressErrorCode, message);
  if (QUERY_CODES.has(code)) return new QueryError(code as QueryErrorCode, message);
  if (REMOTE_CODES.has(code)) return new RemoteError(code as RemoteErrorCode, message);
  return new RemoteError("REMOTE_SERVER", message);
}

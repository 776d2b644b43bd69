// Encoding of what the client sends and decoding of what the server sends, on whole Buffers
// (pure: no I/O; client.ts does the reading). Every decoder checks magic numbers, lengths and
// value ranges and throws NbdProtocolError naming what was wrong; lengths against the
// client's bounds are checked by the caller before it reads a payload.
import { NbdProtocolError } from "./errors.ts";
import {
  NBD_CLISERV_MAGIC,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REQUEST_MAGIC,
} from "./protocol.ts";

/** Strings in the protocol: at most 4096 bytes (proto.md, Conventions). */
export const MAX_STRING_BYTES = 4096;
export const GREETING_BYTES = 18;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_BYTES = 28;
/** Bytes after the 4-byte magic: simple reply (error, handle), structured chunk (flags..length). */
export const SIMPLE_REPLY_REST_BYTES = 12;
export const STRUCTURED_REPLY_REST_BYTES = 16;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A u64 as a JS number; larger than 2^53 - 1 cannot be an offset or size we can address. */
function safeU64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new NbdProtocolError("bad-value", `${what} ${v} is too large`);
  return Number(v);
}

/**
 * Text from the server for people (error messages, descriptions): never trusted as UTF-8 or
 * printable; control characters (terminal escapes, newlines) are shown as "?" so that a
 * server cannot forge log lines.
 */
export function displayText(buf: Buffer): string {
  const text = buf.subarray(0, MAX_STRING_BYTES).toString("utf8");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing them is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** A name the protocol requires to be UTF-8 without NUL (export and context names). */
export function strictName(buf: Buffer, what: string): string {
  if (buf.length > MAX_STRING_BYTES)
    throw new NbdProtocolError("too-large", `${what} of ${buf.length} bytes (at most ${MAX_STRING_BYTES})`);
  let s: string;
  try {
    s = utf8.decode(buf);
  } catch {
    throw new NbdProtocolError("bad-value", `${what} is not UTF-8`);
  }
  if (s.includes("\0")) throw new NbdProtocolError("bad-value", `${what} contains NUL`);
  return s;
}

function nameBytes(name: string, what: string): Buffer {
  const b = Buffer.from(name, "utf8");
  if (b.length > MAX_STRING_BYTES || name.includes("\0"))
    throw new RangeError(`${what} must be at most ${MAX_STRING_BYTES} bytes of UTF-8 without NUL`);
  return b;
}

// ---- handshake -------------------------------------------------------------------------

export interface Greeting {
  handshakeFlags: number;
}

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags (18 bytes). */
export function decodeGreeting(buf: Buffer): Greeting {
  if (buf.length !== GREETING_BYTES)
    throw new NbdProtocolError("bad-length", `greeting of ${buf.length} bytes`);
  const m1 = buf.readBigUInt64BE(0);
  if (m1 !== NBD_INIT_MAGIC)
    throw new NbdProtocolError("bad-magic", `greeting starts with 0x${m1.toString(16)}, not NBDMAGIC`);
  const m2 = buf.readBigUInt64BE(8);
  if (m2 === NBD_CLISERV_MAGIC)
    throw new NbdProtocolError("bad-magic", "the server speaks oldstyle negotiation (unsupported)");
  if (m2 !== NBD_OPTS_MAGIC)
    throw new NbdProtocolError("bad-magic", `greeting has 0x${m2.toString(16)} after NBDMAGIC, not IHAVEOPT`);
  return { handshakeFlags: buf.readUInt16BE(16) };
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0);
  return b;
}

/** C: IHAVEOPT, option, length, data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

/** Data of NBD_OPT_GO / NBD_OPT_INFO: name, then the list of information requests. */
export function encodeGoData(exportName: string, infoRequests: readonly number[]): Buffer {
  const name = nameBytes(exportName, "export name");
  const b = Buffer.alloc(4 + name.length + 2 + 2 * infoRequests.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let at = 4 + name.length;
  b.writeUInt16BE(infoRequests.length, at);
  at += 2;
  for (const r of infoRequests) {
    b.writeUInt16BE(r, at);
    at += 2;
  }
  return b;
}

/** Data of NBD_OPT_SET_META_CONTEXT / NBD_OPT_LIST_META_CONTEXT: export name, queries. */
export function encodeMetaContextData(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    parts.push(b);
  };
  const name = nameBytes(exportName, "export name");
  u32(name.length);
  parts.push(name);
  u32(queries.length);
  for (const q of queries) {
    const qb = nameBytes(q, "metadata context query");
    u32(qb.length);
    parts.push(qb);
  }
  return Buffer.concat(parts);
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

/** S: reply magic, option, reply type, length (20 bytes). */
export function decodeOptionReplyHeader(buf: Buffer): OptionReplyHeader {
  if (buf.length !== OPTION_REPLY_HEADER_BYTES)
    throw new NbdProtocolError("bad-length", `option reply header of ${buf.length} bytes`);
  const magic = buf.readBigUInt64BE(0);
  if (magic !== NBD_REP_MAGIC)
    throw new NbdProtocolError("bad-magic", `option reply starts with 0x${magic.toString(16)}`);
  return { option: buf.readUInt32BE(8), type: buf.readUInt32BE(12), length: buf.readUInt32BE(16) };
}

export type Info =
  | { type: "export"; size: number; transmissionFlags: number }
  | { type: "block-size"; minimum: number; preferred: number; maximum: number }
  | { type: "name"; name: string }
  | { type: "description"; text: string }
  | { type: "unknown"; code: number };

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** The payload of an NBD_REP_INFO reply. */
export function decodeInfo(payload: Buffer): Info {
  if (payload.length < 2) throw new NbdProtocolError("bad-length", `NBD_REP_INFO of ${payload.length} bytes`);
  const code = payload.readUInt16BE(0);
  switch (code) {
    case NBD_INFO_EXPORT:
      if (payload.length !== 12)
        throw new NbdProtocolError("bad-length", `NBD_INFO_EXPORT of ${payload.length} bytes (must be 12)`);
      return {
        type: "export",
        size: safeU64(payload, 2, "export size"),
        transmissionFlags: payload.readUInt16BE(10),
      };
    case NBD_INFO_BLOCK_SIZE: {
      if (payload.length !== 14)
        throw new NbdProtocolError(
          "bad-length",
          `NBD_INFO_BLOCK_SIZE of ${payload.length} bytes (must be 14)`,
        );
      const minimum = payload.readUInt32BE(2);
      const preferred = payload.readUInt32BE(6);
      const maximum = payload.readUInt32BE(10);
      if (!isPow2(minimum) || minimum > 65536)
        throw new NbdProtocolError("bad-value", `minimum block size ${minimum} (a power of 2 up to 64 KiB)`);
      if (!isPow2(preferred) || preferred < Math.max(minimum, 512))
        throw new NbdProtocolError("bad-value", `preferred block size ${preferred} (a power of 2 >= 512)`);
      if (maximum < preferred)
        throw new NbdProtocolError("bad-value", `maximum payload ${maximum} below the preferred block size`);
      return { type: "block-size", minimum, preferred, maximum };
    }
    case NBD_INFO_NAME:
      return { type: "name", name: strictName(payload.subarray(2), "export name") };
    case NBD_INFO_DESCRIPTION:
      return { type: "description", text: displayText(payload.subarray(2)) };
    default:
      return { type: "unknown", code };
  }
}

/** The payload of an NBD_REP_META_CONTEXT reply: context id and name. */
export function decodeMetaContext(payload: Buffer): { id: number; name: string } {
  if (payload.length < 5)
    throw new NbdProtocolError("bad-length", `NBD_REP_META_CONTEXT of ${payload.length} bytes`);
  return { id: payload.readUInt32BE(0), name: strictName(payload.subarray(4), "metadata context name") };
}

/** The answer to NBD_OPT_EXPORT_NAME (the fallback when NBD_OPT_GO is unsupported). */
export function decodeExportNameReply(buf: Buffer): { size: number; transmissionFlags: number } {
  if (buf.length < 10) throw new NbdProtocolError("bad-length", `export reply of ${buf.length} bytes`);
  return { size: safeU64(buf, 0, "export size"), transmissionFlags: buf.readUInt16BE(8) };
}

// ---- transmission ----------------------------------------------------------------------

export interface Request {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
}

/** C: request magic, command flags, type, handle, offset, length (28 bytes). */
export function encodeRequest(r: Request): Buffer {
  const b = Buffer.alloc(REQUEST_BYTES);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** Decodes a request (tests and fake servers use it). */
export function decodeRequest(b: Buffer): Request {
  if (b.length !== REQUEST_BYTES) throw new NbdProtocolError("bad-length", `request of ${b.length} bytes`);
  if (b.readUInt32BE(0) !== NBD_REQUEST_MAGIC) throw new NbdProtocolError("bad-magic", "request magic");
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: b.readBigUInt64BE(8),
    offset: safeU64(b, 16, "offset"),
    length: b.readUInt32BE(24),
  };
}

/** After NBD_SIMPLE_REPLY_MAGIC: error, handle. */
export function decodeSimpleReplyRest(b: Buffer): { error: number; handle: bigint } {
  if (b.length !== SIMPLE_REPLY_REST_BYTES) throw new NbdProtocolError("bad-length", "simple reply header");
  return { error: b.readUInt32BE(0), handle: b.readBigUInt64BE(4) };
}

export interface ChunkHeader {
  flags: number;
  type: number;
  handle: bigint;
  length: number;
}

/** After NBD_STRUCTURED_REPLY_MAGIC: flags, type, handle, payload length. */
export function decodeChunkHeaderRest(b: Buffer): ChunkHeader {
  if (b.length !== STRUCTURED_REPLY_REST_BYTES)
    throw new NbdProtocolError("bad-length", "structured reply header");
  return {
    flags: b.readUInt16BE(0),
    type: b.readUInt16BE(2),
    handle: b.readBigUInt64BE(4),
    length: b.readUInt32BE(12),
  };
}

/** The 8-byte offset at the start of an NBD_REPLY_TYPE_OFFSET_DATA payload. */
export function decodeDataOffset(b: Buffer): number {
  if (b.length !== 8) throw new NbdProtocolError("bad-length", "data chunk offset");
  return safeU64(b, 0, "data chunk offset");
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: offset and a nonzero size (exactly 12 bytes). */
export function decodeHole(b: Buffer): { offset: number; length: number } {
  if (b.length !== 12)
    throw new NbdProtocolError("bad-length", `hole chunk of ${b.length} bytes (must be 12)`);
  const length = b.readUInt32BE(8);
  if (length === 0) throw new NbdProtocolError("bad-value", "hole chunk of size 0");
  return { offset: safeU64(b, 0, "hole offset"), length };
}

export interface Descriptor {
  length: number;
  flags: number;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: context id, then (length, flags) pairs, each length nonzero. */
export function decodeBlockStatus(b: Buffer): { contextId: number; descriptors: Descriptor[] } {
  if (b.length < 12 || (b.length - 4) % 8 !== 0)
    throw new NbdProtocolError("bad-length", `block status chunk of ${b.length} bytes (4 + a multiple of 8)`);
  const descriptors: Descriptor[] = [];
  for (let at = 4; at < b.length; at += 8) {
    const length = b.readUInt32BE(at);
    if (length === 0) throw new NbdProtocolError("bad-value", "block status extent of length 0");
    descriptors.push({ length, flags: b.readUInt32BE(at + 4) });
  }
  return { contextId: b.readUInt32BE(0), descriptors };
}

/** Largest payload of an error chunk: error, message length, the longest message, an offset. */
export const MAX_ERROR_CHUNK_BYTES = 4 + 2 + MAX_STRING_BYTES + 8;

/** Error chunks (bit 15 of the type): error, message length, message, [offset]. */
export function decodeErrorChunk(
  type: number,
  b: Buffer,
): { errno: number; message: string; offset?: number } {
  if (b.length < 6) throw new NbdProtocolError("bad-length", `error chunk of ${b.length} bytes`);
  const errno = b.readUInt32BE(0);
  const msgLen = b.readUInt16BE(4);
  const trailer = type === NBD_REPLY_TYPE_ERROR_OFFSET ? 8 : 0;
  if (6 + msgLen + trailer > b.length)
    throw new NbdProtocolError("bad-length", `error message of ${msgLen} bytes in a chunk of ${b.length}`);
  if (errno === 0) throw new NbdProtocolError("bad-value", "error chunk with error 0");
  const message = displayText(b.subarray(6, 6 + msgLen));
  if (type === NBD_REPLY_TYPE_ERROR_OFFSET) {
    if (b.length !== 6 + msgLen + 8)
      throw new NbdProtocolError(
        "bad-length",
        `error offset chunk of ${b.length} bytes for a ${msgLen}-byte message`,
      );
    return { errno, message, offset: safeU64(b, 6 + msgLen, "error offset") };
  }
  return { errno, message };
}

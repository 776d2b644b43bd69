// Wire format of the page-server protocol (docs/vmi-page-server.md has the full description).
//
// Frame (integers big-endian):
//   u32 N        length of everything after this field (bounded: see FrameReader)
//   u8  kind     HELLO 1, AUTH 2, WELCOME 3, REQUEST 16, REPLY 17, ERROR 18
//   u32 id       request id (0 during the handshake)
//   u8  flags    bit 0: body is deflate-raw compressed
//   u32 H        JSON header length
//   H bytes      JSON header (UTF-8)
//   ...          binary body
//   16 bytes     MAC, only once the handshake is done:
//                HMAC-SHA256(sessionKey, dir || u64 seq || bytes from `kind` to the end of body)
//                truncated to 16 bytes; dir is "C" (client->server) or "S"; seq counts frames
//                per direction from 0, so frames cannot be replayed, reordered or dropped.
//
// Handshake: server HELLO {nonce}; client AUTH {client, nonce, proof, compress, guest?}; server
// WELCOME {proof, limits, guest?: {id, size}} or ERROR (REMOTE_AUTH; REMOTE_FORBIDDEN for a
// guest this client may not read, checked only after the proof). Naming the guest in AUTH saves
// the `info` request.

import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";
import { RemoteError } from "../errors.ts";

export const PROTOCOL = "nestcloud-vmi";
export const VERSION = 1;

export const KIND = {
  HELLO: 1,
  AUTH: 2,
  WELCOME: 3,
  REQUEST: 16,
  REPLY: 17,
  ERROR: 18,
} as const;

export const FLAG_DEFLATE = 1;
export const MAC_LEN = 16;
const FIXED = 1 + 4 + 1 + 4;
/** Frames before authentication are small: an unauthenticated peer cannot make us buffer much. */
export const MAX_HANDSHAKE_FRAME = 4096;
const MAX_HEADER = 256 * 1024;

export interface Frame {
  readonly kind: number;
  readonly id: number;
  readonly flags: number;
  readonly header: Record<string, unknown>;
  readonly body: Buffer;
}

/** Per-direction MAC state once a session key exists. */
export class FrameMac {
  private seq = 0n;
  constructor(
    private readonly key: Buffer,
    private readonly dir: "C" | "S",
  ) {}

  next(data: Buffer): Buffer {
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(this.seq++);
    return createHmac("sha256", this.key)
      .update(this.dir)
      .update(seq)
      .update(data)
      .digest()
      .subarray(0, MAC_LEN);
  }
}

export function encodeFrame(
  kind: number,
  id: number,
  header: Record<string, unknown>,
  body: Uint8Array = new Uint8Array(0),
  flags = 0,
  mac?: FrameMac,
): Buffer {
  const h = Buffer.from(JSON.stringify(header), "utf8");
  const inner = Buffer.allocUnsafe(FIXED + h.length + body.length);
  inner.writeUInt8(kind, 0);
  inner.writeUInt32BE(id >>> 0, 1);
  inner.writeUInt8(flags, 5);
  inner.writeUInt32BE(h.length, 6);
  h.copy(inner, FIXED);
  inner.set(body, FIXED + h.length);
  const tag = mac ? mac.next(inner) : Buffer.alloc(0);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(inner.length + tag.length);
  return Buffer.concat([len, inner, tag]);
}

function protocolError(msg: string): RemoteError {
  return new RemoteError("REMOTE_PROTOCOL", msg);
}

/**
 * Reassembles frames from a byte stream. `maxFrame` bounds every frame before any of it is
 * buffered beyond the 4-byte length; the MAC (when set) is verified before the JSON is parsed.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  mac: FrameMac | undefined;

  constructor(public maxFrame: number) {}

  /** Feeds bytes; returns complete frames. Throws RemoteError on malformed input. */
  push(data: Buffer): Frame[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const n = head.readUInt32BE(0);
      const macLen = this.mac ? MAC_LEN : 0;
      if (n < FIXED + macLen || n > this.maxFrame) throw protocolError(`frame length ${n} out of bounds`);
      if (this.buffered < 4 + n) break;
      const all = this.take(4 + n);
      out.push(this.decode(all.subarray(4), macLen));
    }
    return out;
  }

  private decode(frame: Buffer, macLen: number): Frame {
    const inner = frame.subarray(0, frame.length - macLen);
    if (this.mac) {
      const want = this.mac.next(inner);
      const got = frame.subarray(frame.length - macLen);
      if (!timingSafeEqual(want, got)) throw protocolError("frame MAC mismatch");
    }
    const kind = inner.readUInt8(0);
    const id = inner.readUInt32BE(1);
    const flags = inner.readUInt8(5);
    const hlen = inner.readUInt32BE(6);
    if (hlen > MAX_HEADER || FIXED + hlen > inner.length) throw protocolError("bad header length");
    let header: unknown;
    try {
      header = JSON.parse(inner.toString("utf8", FIXED, FIXED + hlen));
    } catch {
      throw protocolError("header is not JSON");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw protocolError("header is not a JSON object");
    }
    return { kind, id, flags, header: header as Record<string, unknown>, body: inner.subarray(FIXED + hlen) };
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0];
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const frame = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return frame;
  }
}

export function hmac(key: Uint8Array, ...parts: (string | Uint8Array)[]): Buffer {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Proofs and session key of the handshake (both sides compute the same values). */
export function handshakeValues(
  token: Uint8Array,
  clientId: string,
  serverNonce: Buffer,
  clientNonce: Buffer,
) {
  const label = `${PROTOCOL}/${VERSION}`;
  return {
    clientProof: hmac(token, `${label} client\0${clientId}\0`, serverNonce, clientNonce),
    serverProof: hmac(token, `${label} server\0${clientId}\0`, clientNonce, serverNonce),
    sessionKey: hmac(token, `${label} session\0${clientId}\0`, serverNonce, clientNonce),
  };
}

/** Constant-time comparison of a hex proof from the peer with the expected value. */
export function proofMatches(expected: Buffer, hex: unknown): boolean {
  if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) return false;
  return timingSafeEqual(expected, Buffer.from(hex, "hex"));
}

/** Tokens are secrets shared out of band; short ones are refused. */
export function tokenBytes(token: Uint8Array | string): Buffer {
  const b = typeof token === "string" ? Buffer.from(token.trim(), "utf8") : Buffer.from(token);
  if (b.length < 16) throw new RemoteError("REMOTE_AUTH", "token must be at least 16 bytes");
  return b;
}

// ---- request bodies ---------------------------------------------------------------------

/** Ranges as u64 address + u32 length, 12 bytes each. */
export function encodeRanges(ranges: readonly { addr: number | bigint; len: number }[]): Buffer {
  const b = Buffer.allocUnsafe(ranges.length * 12);
  ranges.forEach((r, i) => {
    b.writeBigUInt64BE(BigInt(r.addr), i * 12);
    b.writeUInt32BE(r.len, i * 12 + 8);
  });
  return b;
}

export function decodeRanges(body: Buffer, n: unknown, maxBatch: number): { addr: bigint; len: number }[] {
  if (!Number.isSafeInteger(n) || (n as number) < 0 || (n as number) > maxBatch) {
    throw new RemoteError("REMOTE_LIMIT", `batch of ${String(n)} ranges (max ${maxBatch})`);
  }
  if (body.length !== (n as number) * 12) throw protocolError("range body length mismatch");
  return Array.from({ length: n as number }, (_, i) => ({
    addr: body.readBigUInt64BE(i * 12),
    len: body.readUInt32BE(i * 12 + 8),
  }));
}

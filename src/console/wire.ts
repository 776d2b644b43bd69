/**
 * What both ends of the console protocol share and a browser can load: the wire's constants,
 * its error type, the payloads a client reads and writes, and byte helpers. No node: imports
 * and no Buffer, so the dashboard bundles it as it is (protocol.ts, the agent's side on
 * node:crypto, and subtle.ts, the client's on WebCrypto, both build on it).
 */

export const PROTOCOL_VERSION = 1;

/** Message kinds (first byte of every binary message between the ends). */
export const KIND = { clientHello: 0x01, agentHello: 0x02, record: 0x10 } as const;

/** Record types, visible to the relay (it forwards input from the keyboard holder only). */
export const RECORD = {
  /** agent -> client: [offset u64][bytes] the guest wrote at that offset of its serial stream. */
  output: 0x01,
  /** agent -> client: [input seq u64] every keystroke record up to it is delivered. */
  ack: 0x02,
  /** agent -> client: a JSON notice (Notice). */
  notice: 0x03,
  /** client -> agent: [input seq u64][bytes] keystrokes, numbered from 1 per session. */
  input: 0x81,
} as const;
export type RecordType = (typeof RECORD)[keyof typeof RECORD];
export const AGENT_TYPES: ReadonlySet<number> = new Set<number>([RECORD.output, RECORD.ack, RECORD.notice]);
export const CLIENT_TYPES: ReadonlySet<number> = new Set<number>([RECORD.input]);

/** Largest plaintext of one record; larger output is split, larger input refused. */
export const MAX_RECORD_PLAINTEXT = 16 * 1024;
export const TAG = 16;
export const RECORD_HEADER = 10;
/** Largest binary message either end accepts (a record of the largest plaintext). */
export const MAX_MESSAGE = RECORD_HEADER + MAX_RECORD_PLAINTEXT + TAG;
export const MAX_TICKET = 1024;

export const POINT = 65; // uncompressed P-256 point
export const SIG = 64; // ECDSA P-256 in IEEE P1363 (r || s), WebCrypto's format
export const NONCE = 32;
export const SESSION = 16;
export const CLIENT_HELLO_FIXED = 1 + 1 + SESSION + POINT + NONCE + 1 + 8 + POINT + 2; // + ticket + sig
export const AGENT_HELLO = 1 + 1 + POINT + NONCE + SIG;

export const LABEL_CLIENT = "nestcloud-console-v1 client-hello";
export const LABEL_AGENT = "nestcloud-console-v1 agent-hello";
export const LABEL_KEYS = "nestcloud-console-v1 keys";
export const LABEL_TICKET = "nestcloud-console-v1 ticket";
/** Nonce prefixes: the two directions never share a (key, nonce) pair even by mistake. */
export const DIR_C2A = 0x63326100; // "c2a\0"
export const DIR_A2C = 0x61326300; // "a2c\0"

export type ConsoleErrorCode =
  | "bad-message"
  | "oversized"
  | "version"
  | "bad-signature"
  | "bad-ticket"
  | "ticket-expired"
  | "ticket-mismatch"
  | "bad-key"
  | "replay"
  | "reorder"
  | "auth-failed"
  | "wrong-direction"
  | "exhausted";

/** Every protocol fault: a stable code and a sentence saying what was wrong. */
export class ConsoleProtocolError extends Error {
  override name = "ConsoleProtocolError";
  constructor(
    readonly code: ConsoleErrorCode,
    message: string,
  ) {
    super(message);
  }
}
export const fail = (code: ConsoleErrorCode, msg: string): never => {
  throw new ConsoleProtocolError(code, msg);
};

/** What the agent tells the client besides output and acks. */
export type Notice =
  /**
   * Replay starts at `from`; `skipped` bytes before it are beyond the scrollback. `reset`: the
   * stream is shorter than the client's offset (a log that could not be continued): it
   * starts over at `from`.
   */
  | { kind: "start"; from: number; skipped: number; control: boolean; reset?: boolean }
  /** The guest is migrating away: keystrokes wait (they are delivered where it lands). */
  | { kind: "moving" }
  /** The guest stays here after all (its migration failed): waiting keystrokes go on. */
  | { kind: "staying" }
  /** The guest left this host VM (delivered input is acked above): reattach where it runs now. */
  | { kind: "moved" }
  /** The guest is gone, or stopped (no more output until it starts). */
  | { kind: "ended"; reason: string }
  /** Input was refused (watch-only ticket, a gap in the input seqs). */
  | { kind: "refused"; reason: string };

// ---- bytes -------------------------------------------------------------------------------

export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const utf8 = (s: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(s);

export function writeU64(n: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(n) || n < 0) fail("bad-message", `${n} is not a valid 64-bit counter`);
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

export function readU64(b: Uint8Array, at: number, what: string): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("bad-message", `${what} ${v} is out of range`);
  return Number(v);
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Base64 without padding (`url`: the URL-safe alphabet). */
export function toBase64(b: Uint8Array, url = true): string {
  let s = "";
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = i + 2 < b.length ? 4 : i + 1 < b.length ? 3 : 2;
    for (let c = 0; c < chars; c++) s += B64[(n >> (18 - 6 * c)) & 63];
  }
  return url ? s.replace(/\+/g, "-").replace(/\//g, "_") : s;
}

export function fromBase64(s: string): Uint8Array<ArrayBuffer> {
  const clean = s.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) fail("bad-message", "not base64");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

// ---- the payloads a client reads and writes ------------------------------------------------

export function decodeOutputBytes(p: Uint8Array): { offset: number; bytes: Uint8Array } {
  if (p.length < 8) fail("bad-message", "an output record needs an offset");
  return { offset: readU64(p, 0, "output offset"), bytes: p.subarray(8) };
}
export const encodeInputBytes = (seq: number, bytes: Uint8Array) => concat([writeU64(seq), bytes]);
export function decodeAckBytes(p: Uint8Array): number {
  if (p.length !== 8) fail("bad-message", "an ack record is one seq");
  return readU64(p, 0, "ack seq");
}
export function decodeNoticeBytes(p: Uint8Array): Notice {
  try {
    const n = JSON.parse(new TextDecoder().decode(p)) as Notice;
    if (typeof n?.kind !== "string") throw new Error();
    return n;
  } catch {
    return fail("bad-message", "a notice is not JSON with a kind");
  }
}

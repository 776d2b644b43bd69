/**
 * The console's end-to-end protocol between the host-VM agent (which holds the guest's serial
 * port) and the user's client. Everything in between (the controller's relay, later a
 * security VM) forwards the bytes below and can read none of the guest's output or the
 * user's keystrokes. Pure: no I/O, only node:crypto, and only primitives WebCrypto has too
 * (ECDH and ECDSA on P-256, SHA-256, HKDF-SHA256, AES-256-GCM), so a browser can speak it.
 *
 * Handshake (one round trip, through the relay):
 *
 *   client -> agent  ClientHello: version, session id (16 bytes), the client's ephemeral
 *                    ECDH P-256 key, a nonce, where to resume the output (a byte offset, or
 *                    "tail"), the client's signing key, the console ticket the controller
 *                    issued for that signing key, and an ECDSA signature by that key over
 *                    all of the above.
 *   agent -> client  AgentHello: the agent's ephemeral ECDH key, a nonce, and an ECDSA
 *                    signature by the agent's long-term identity key over SHA-256(ClientHello)
 *                    and the above.
 *
 * The agent checks the ticket (HMAC-SHA256 under the ticket key it shares with the
 * controller; guest, serial port, expiry, and that it names the very signing key that signed
 * the hello); the client checks the agent's signature against the identity key the
 * controller's API named for the guest's current host VM. Both then derive
 *
 *   keys = HKDF-SHA256(ikm = ECDH(ephemerals), salt = SHA-256(ClientHello || AgentHello),
 *                      info = "nestcloud-console-v1 keys", 64 bytes)
 *
 * the first 32 bytes for client -> agent, the last 32 for agent -> client. Ephemeral keys
 * give forward secrecy: a recorded session stays secret even if an identity key leaks later.
 *
 * Records: [kind 0x10][type][seq: u64 big-endian][AES-256-GCM ciphertext and 16-byte tag].
 * The first 10 bytes are the additional data (the relay sees the type and the length, never
 * the content); the nonce is a 4-byte direction label and the seq. Each direction counts its
 * records from 0 and the receiver accepts exactly the next one: a replayed, reordered or
 * dropped record is refused by name, a changed byte fails authentication.
 *
 * Inside the records (see encodeOutput and friends): the guest's output with its byte offset
 * in the serial port's stream, acknowledgements of the client's input, notices (JSON), and
 * the client's keystrokes with their input sequence numbers.
 */
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";

import {
  AGENT_HELLO,
  LABEL_AGENT as AGENT_LABEL,
  AGENT_TYPES,
  CLIENT_HELLO_FIXED,
  LABEL_CLIENT as CLIENT_LABEL,
  CLIENT_TYPES,
  DIR_A2C,
  DIR_C2A,
  fail,
  LABEL_KEYS as KEYS_LABEL,
  KIND,
  LABEL_TICKET,
  MAX_MESSAGE,
  MAX_RECORD_PLAINTEXT,
  MAX_TICKET,
  NONCE,
  type Notice,
  POINT,
  PROTOCOL_VERSION,
  RECORD_HEADER,
  type RecordType,
  SESSION,
  SIG,
  TAG,
} from "./wire.ts";

export {
  type ConsoleErrorCode,
  ConsoleProtocolError,
  KIND,
  MAX_MESSAGE,
  MAX_RECORD_PLAINTEXT,
  MAX_TICKET,
  type Notice,
  PROTOCOL_VERSION,
  RECORD,
  type RecordType,
} from "./wire.ts";

const LABEL_CLIENT = Buffer.from(CLIENT_LABEL);
const LABEL_AGENT = Buffer.from(AGENT_LABEL);
const LABEL_KEYS = Buffer.from(KEYS_LABEL);

// ---- keys --------------------------------------------------------------------------------

/** A signing key pair (ECDSA P-256): an agent's identity, or a client's session key. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  /** The public key as an uncompressed point (65 bytes): what the wire and the API carry. */
  readonly publicRaw: Buffer;
}

export function generateSigningKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicRaw: rawPublicKey(publicKey) };
}

/** A signing key from its PKCS#8 PEM (how an agent keeps its identity on disk). */
export function signingKeyFromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  const d = privateKey.asymmetricKeyDetails;
  if (privateKey.asymmetricKeyType !== "ec" || d?.namedCurve !== "prime256v1")
    fail("bad-key", "the identity key is not an EC P-256 key");
  return { privateKey, publicRaw: rawPublicKey(createPublicKey(privateKey)) };
}

export function signingKeyToPem(k: SigningKey): string {
  return k.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

function rawPublicKey(k: KeyObject): Buffer {
  const jwk = k.export({ format: "jwk" });
  return Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x as string, "base64url"),
    Buffer.from(jwk.y as string, "base64url"),
  ]);
}

/** A P-256 public key from its uncompressed point (refuses anything else, and points off the curve). */
export function publicKeyFromRaw(raw: Uint8Array, what = "public key"): KeyObject {
  if (raw.length !== POINT || raw[0] !== 4) fail("bad-key", `${what}: not an uncompressed P-256 point`);
  try {
    return createPublicKey({
      key: {
        kty: "EC",
        crv: "P-256",
        x: Buffer.from(raw.subarray(1, 33)).toString("base64url"),
        y: Buffer.from(raw.subarray(33, 65)).toString("base64url"),
      },
      format: "jwk",
    });
  } catch {
    return fail("bad-key", `${what}: not a point on P-256`);
  }
}

/** How a key is shown to people (compare it out of band): SHA256 of the point, like ssh. */
export function fingerprint(publicRaw: Uint8Array): string {
  return `SHA256:${createHash("sha256").update(publicRaw).digest("base64").replace(/=+$/, "")}`;
}

const signRaw = (k: KeyObject, data: Buffer) => sign("sha256", data, { key: k, dsaEncoding: "ieee-p1363" });
const verifyRaw = (k: KeyObject, data: Buffer, sig: Uint8Array) =>
  verify("sha256", data, { key: k, dsaEncoding: "ieee-p1363" }, sig);

// ---- tickets -----------------------------------------------------------------------------

/** What a console ticket grants: this signing key may open this guest's serial port until exp. */
export interface TicketClaims {
  v: 1;
  guest: string;
  device: string;
  tenant: string;
  /** Who asked (a token id): recorded by the agent, never trusted for anything else. */
  sub: string;
  /** The client's signing key (base64url of the point). */
  key: string;
  /** The client's session id (base64url, 16 bytes). */
  session: string;
  /** May type (else watch only). */
  control: boolean;
  /** Issued and expires, Unix seconds. */
  iat: number;
  exp: number;
}

/** The ticket key both the controller and the agents derive from the secret they share. */
export function deriveTicketKey(sharedSecret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(sharedSecret), Buffer.alloc(0), LABEL_TICKET, 32));
}

export function issueTicket(key: Uint8Array, claims: TicketClaims): string {
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const mac = createHmac("sha256", key).update(`${LABEL_TICKET}.${body}`).digest("base64url");
  const t = `${body}.${mac}`;
  if (t.length > MAX_TICKET) fail("bad-ticket", `ticket of ${t.length} bytes exceeds ${MAX_TICKET}`);
  return t;
}

/** Checks a ticket's MAC and expiry; the caller checks what it names. */
export function verifyTicket(key: Uint8Array, ticket: string, nowSeconds: number): TicketClaims {
  const [body, mac, extra] = ticket.split(".");
  if (!body || !mac || extra !== undefined) return fail("bad-ticket", "the ticket is malformed");
  const want = createHmac("sha256", key).update(`${LABEL_TICKET}.${body}`).digest();
  const got = Buffer.from(mac, "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want))
    fail("bad-ticket", "the ticket's MAC does not verify (not issued by this cloud's controller)");
  let c: TicketClaims;
  try {
    c = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as TicketClaims;
  } catch {
    return fail("bad-ticket", "the ticket's claims are not JSON");
  }
  if (c.v !== 1 || typeof c.exp !== "number" || typeof c.guest !== "string" || typeof c.key !== "string")
    fail("bad-ticket", "the ticket's claims are incomplete");
  if (c.exp <= nowSeconds)
    fail(
      "ticket-expired",
      `the ticket expired ${Math.round(nowSeconds - c.exp)} s ago (ask the controller again)`,
    );
  return c;
}

// ---- handshake -----------------------------------------------------------------------------

/** Where the client wants the output to start: a byte offset of the stream, or the recent tail. */
export type Resume = { from: "offset"; offset: number } | { from: "tail" };

export interface ClientHello {
  readonly sessionId: Buffer;
  readonly ephemeral: Buffer;
  readonly nonce: Buffer;
  readonly resume: Resume;
  readonly clientKey: Buffer;
  readonly ticket: string;
}

function u64(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) fail("bad-message", `${n} is not a valid 64-bit counter`);
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}
function readU64(b: Buffer, at: number, what: string): number {
  const v = b.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("bad-message", `${what} ${v} is out of range`);
  return Number(v);
}

function checkSize(msg: Uint8Array, max: number, what: string): Buffer {
  if (msg.length > max) fail("oversized", `${what} of ${msg.length} bytes exceeds the limit of ${max}`);
  return Buffer.from(msg.buffer, msg.byteOffset, msg.length);
}

/** The client's side of the handshake: make the hello, then turn the agent's answer into a channel. */
export class ClientHandshake {
  private readonly ecdh = createECDH("prime256v1");
  readonly hello: Buffer;
  readonly sessionId: Buffer;

  constructor(opts: { sessionId: Uint8Array; signing: SigningKey; ticket: string; resume: Resume }) {
    if (opts.sessionId.length !== SESSION) fail("bad-message", `the session id must be ${SESSION} bytes`);
    const ticket = Buffer.from(opts.ticket, "utf8");
    if (ticket.length > MAX_TICKET)
      fail("oversized", `ticket of ${ticket.length} bytes exceeds the limit of ${MAX_TICKET}`);
    this.sessionId = Buffer.from(opts.sessionId);
    const eph = this.ecdh.generateKeys();
    const resume = opts.resume;
    const len = Buffer.alloc(2);
    len.writeUInt16BE(ticket.length);
    const body = Buffer.concat([
      Buffer.from([KIND.clientHello, PROTOCOL_VERSION]),
      this.sessionId,
      eph,
      randomBytes(NONCE),
      Buffer.from([resume.from === "offset" ? 1 : 0]),
      u64(resume.from === "offset" ? resume.offset : 0),
      opts.signing.publicRaw,
      len,
      ticket,
    ]);
    const sig = signRaw(opts.signing.privateKey, Buffer.concat([LABEL_CLIENT, body]));
    this.hello = Buffer.concat([body, sig]);
  }

  /** Checks the agent's answer against the identity key the controller named; the channel. */
  finish(agentHello: Uint8Array, agentIdentity: Uint8Array): SecureChannel {
    const msg = checkSize(agentHello, AGENT_HELLO, "agent hello");
    if (msg.length !== AGENT_HELLO || msg[0] !== KIND.agentHello)
      fail("bad-message", `not an agent hello (${msg.length} bytes, kind ${msg[0]})`);
    if (msg[1] !== PROTOCOL_VERSION)
      fail("version", `the agent speaks version ${msg[1]}, not ${PROTOCOL_VERSION}`);
    const body = msg.subarray(0, AGENT_HELLO - SIG);
    const sig = msg.subarray(AGENT_HELLO - SIG);
    const ik = publicKeyFromRaw(agentIdentity, "the agent's identity key");
    const signed = Buffer.concat([LABEL_AGENT, sha256(this.hello), body]);
    if (!verifyRaw(ik, signed, sig))
      fail(
        "bad-signature",
        `the agent hello is not signed by the expected agent (identity ${fingerprint(agentIdentity)})`,
      );
    const eph = msg.subarray(2, 2 + POINT);
    const shared = computeShared(this.ecdh, eph);
    const keys = deriveKeys(shared, this.hello, msg);
    return new SecureChannel("client", keys.c2a, keys.a2c);
  }
}

/** What the agent learns from an accepted client hello. */
export interface AcceptedClient {
  readonly hello: ClientHello;
  readonly claims: TicketClaims;
  /** The agent's answer, to send back. */
  readonly answer: Buffer;
  readonly channel: SecureChannel;
}

/** Parses a client hello (no checks of signature or ticket: see acceptClient). */
export function parseClientHello(msg: Uint8Array): ClientHello & { signedPart: Buffer; signature: Buffer } {
  const b = checkSize(msg, CLIENT_HELLO_FIXED + MAX_TICKET + SIG, "client hello");
  if (b.length < CLIENT_HELLO_FIXED + SIG || b[0] !== KIND.clientHello)
    fail("bad-message", `not a client hello (${b.length} bytes, kind ${b[0]})`);
  if (b[1] !== PROTOCOL_VERSION)
    fail("version", `the client speaks version ${b[1]}, not ${PROTOCOL_VERSION}`);
  let at = 2;
  const take = (n: number) => b.subarray(at, (at += n));
  const sessionId = take(SESSION);
  const ephemeral = take(POINT);
  const nonce = take(NONCE);
  const flag = take(1)[0];
  const offset = readU64(b, at, "resume offset");
  at += 8;
  const clientKey = take(POINT);
  const ticketLen = b.readUInt16BE(at);
  at += 2;
  if (ticketLen > MAX_TICKET)
    fail("oversized", `ticket of ${ticketLen} bytes exceeds the limit of ${MAX_TICKET}`);
  if (b.length !== at + ticketLen + SIG)
    fail("bad-message", `client hello of ${b.length} bytes, expected ${at + ticketLen + SIG}`);
  if (flag > 1) fail("bad-message", `unknown resume flag ${flag}`);
  const ticket = take(ticketLen).toString("utf8");
  return {
    sessionId,
    ephemeral,
    nonce,
    resume: flag === 1 ? { from: "offset", offset } : { from: "tail" },
    clientKey,
    ticket,
    signedPart: b.subarray(0, at),
    signature: b.subarray(at),
  };
}

/**
 * The agent's side: checks the client hello (signature by the client's key, the ticket's MAC
 * and expiry, that the ticket names that key, this guest and serial port) and answers it.
 */
export function acceptClient(
  msg: Uint8Array,
  opts: {
    identity: SigningKey;
    ticketKey: Uint8Array;
    guest: string;
    device: string;
    nowSeconds: number;
  },
): AcceptedClient {
  const h = parseClientHello(msg);
  const ck = publicKeyFromRaw(h.clientKey, "the client's signing key");
  if (!verifyRaw(ck, Buffer.concat([LABEL_CLIENT, h.signedPart]), h.signature))
    fail("bad-signature", "the client hello's signature does not verify");
  const claims = verifyTicket(opts.ticketKey, h.ticket, opts.nowSeconds);
  if (claims.key !== h.clientKey.toString("base64url"))
    fail("ticket-mismatch", "the ticket was issued for another client key");
  if (claims.session !== h.sessionId.toString("base64url"))
    fail("ticket-mismatch", "the ticket was issued for another console session");
  if (claims.guest !== opts.guest || claims.device !== opts.device)
    fail(
      "ticket-mismatch",
      `the ticket is for ${claims.guest}/${claims.device}, this is ${opts.guest}/${opts.device}`,
    );
  const ecdh = createECDH("prime256v1");
  const eph = ecdh.generateKeys();
  const body = Buffer.concat([Buffer.from([KIND.agentHello, PROTOCOL_VERSION]), eph, randomBytes(NONCE)]);
  const clientHello = Buffer.from(msg);
  const sig = signRaw(opts.identity.privateKey, Buffer.concat([LABEL_AGENT, sha256(clientHello), body]));
  const answer = Buffer.concat([body, sig]);
  const keys = deriveKeys(computeShared(ecdh, h.ephemeral), clientHello, answer);
  return { hello: h, claims, answer, channel: new SecureChannel("agent", keys.a2c, keys.c2a) };
}

function computeShared(ecdh: ReturnType<typeof createECDH>, peer: Uint8Array): Buffer {
  if (peer.length !== POINT || peer[0] !== 4)
    fail("bad-key", "the peer's ephemeral key is not a P-256 point");
  try {
    return ecdh.computeSecret(peer);
  } catch {
    return fail("bad-key", "the peer's ephemeral key is not a point on P-256");
  }
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

function deriveKeys(shared: Buffer, clientHello: Uint8Array, agentHello: Uint8Array) {
  const salt = createHash("sha256").update(clientHello).update(agentHello).digest();
  const okm = Buffer.from(hkdfSync("sha256", shared, salt, LABEL_KEYS, 64));
  return { c2a: okm.subarray(0, 32), a2c: okm.subarray(32, 64) };
}

// ---- records -------------------------------------------------------------------------------

/** The record layer of one handshake: seals what this end sends, opens what the other sent. */
export class SecureChannel {
  private sendSeq = 0;
  private recvSeq = 0;

  constructor(
    readonly role: "client" | "agent",
    private readonly sendKey: Buffer,
    private readonly recvKey: Buffer,
  ) {}

  /** Records sealed and opened so far. */
  get counts(): { sent: number; received: number } {
    return { sent: this.sendSeq, received: this.recvSeq };
  }

  seal(type: RecordType, plaintext: Uint8Array): Buffer {
    const mine = this.role === "agent" ? AGENT_TYPES : CLIENT_TYPES;
    if (!mine.has(type)) fail("wrong-direction", `a ${this.role} does not send records of type ${type}`);
    if (plaintext.length > MAX_RECORD_PLAINTEXT)
      fail("oversized", `record of ${plaintext.length} bytes exceeds the limit of ${MAX_RECORD_PLAINTEXT}`);
    if (this.sendSeq >= Number.MAX_SAFE_INTEGER) fail("exhausted", "the record counter is exhausted");
    const seq = this.sendSeq++;
    const header = Buffer.concat([Buffer.from([KIND.record, type]), u64(seq)]);
    const c = createCipheriv(
      "aes-256-gcm",
      this.sendKey,
      nonceOf(this.role === "client" ? DIR_C2A : DIR_A2C, seq),
    );
    c.setAAD(header);
    return Buffer.concat([header, c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  open(message: Uint8Array): { type: RecordType; plaintext: Buffer } {
    const m = checkSize(message, MAX_MESSAGE, "record");
    if (m.length < RECORD_HEADER + TAG || m[0] !== KIND.record)
      fail("bad-message", `not a record (${m.length} bytes, kind ${m[0]})`);
    const type = m[1];
    const theirs = this.role === "agent" ? CLIENT_TYPES : AGENT_TYPES;
    if (!theirs.has(type)) fail("wrong-direction", `a ${this.role} does not accept records of type ${type}`);
    const seq = readU64(m, 2, "record seq");
    if (seq < this.recvSeq)
      fail("replay", `record ${seq} was received already (next is ${this.recvSeq}): replayed`);
    if (seq > this.recvSeq)
      fail("reorder", `record ${seq} arrived while ${this.recvSeq} is next: records dropped or reordered`);
    const d = createDecipheriv(
      "aes-256-gcm",
      this.recvKey,
      nonceOf(this.role === "client" ? DIR_A2C : DIR_C2A, seq),
    );
    d.setAAD(m.subarray(0, RECORD_HEADER));
    d.setAuthTag(m.subarray(m.length - TAG));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([d.update(m.subarray(RECORD_HEADER, m.length - TAG)), d.final()]);
    } catch {
      return fail(
        "auth-failed",
        `record ${seq} fails authentication: altered, or not sealed with this session's key`,
      );
    }
    this.recvSeq++;
    return { type: type as RecordType, plaintext };
  }
}

function nonceOf(direction: number, seq: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(direction, 0);
  n.writeBigUInt64BE(BigInt(seq), 4);
  return n;
}

/** The kind and (for records) the type of a binary message, as a relay sees it. */
export function peek(message: Uint8Array): { kind: number; type: number | null } {
  if (message.length === 0) return { kind: -1, type: null };
  return { kind: message[0], type: message[0] === KIND.record && message.length > 1 ? message[1] : null };
}

// ---- payloads ------------------------------------------------------------------------------

export function encodeOutput(offset: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([u64(offset), bytes]);
}
export function decodeOutput(p: Buffer): { offset: number; bytes: Buffer } {
  if (p.length < 8) fail("bad-message", "an output record needs an offset");
  return { offset: readU64(p, 0, "output offset"), bytes: p.subarray(8) };
}
export function encodeInput(seq: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([u64(seq), bytes]);
}
export function decodeInput(p: Buffer): { seq: number; bytes: Buffer } {
  if (p.length < 9) fail("bad-message", "an input record needs a seq and at least one byte");
  return { seq: readU64(p, 0, "input seq"), bytes: p.subarray(8) };
}
export const encodeAck = (seq: number) => u64(seq);
export function decodeAck(p: Buffer): number {
  if (p.length !== 8) fail("bad-message", "an ack record is one seq");
  return readU64(p, 0, "ack seq");
}

export const encodeNotice = (n: Notice) => Buffer.from(JSON.stringify(n), "utf8");
export function decodeNotice(p: Buffer): Notice {
  try {
    const n = JSON.parse(p.toString("utf8")) as Notice;
    if (typeof n?.kind !== "string") throw new Error();
    return n;
  } catch {
    return fail("bad-message", "a notice is not JSON with a kind");
  }
}

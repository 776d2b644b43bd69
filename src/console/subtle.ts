/**
 * The client's end of the console protocol (protocol.ts describes the handshake and the
 * records) on WebCrypto alone (globalThis.crypto.subtle: browsers, and Node 20+), so the
 * dashboard and the CLI run the same client code and the browser is an end of the
 * end-to-end channel (the controller's relay forwards what this seals and cannot open it).
 * The agent's end stays on node:crypto (protocol.ts); the wire is the same bytes.
 */
import {
  AGENT_HELLO,
  AGENT_TYPES,
  CLIENT_TYPES,
  concat,
  DIR_A2C,
  DIR_C2A,
  fail,
  KIND,
  LABEL_AGENT,
  LABEL_CLIENT,
  LABEL_KEYS,
  MAX_MESSAGE,
  MAX_RECORD_PLAINTEXT,
  MAX_TICKET,
  NONCE,
  POINT,
  PROTOCOL_VERSION,
  RECORD_HEADER,
  type RecordType,
  SESSION,
  SIG,
  TAG,
  toBase64,
  utf8,
  writeU64,
} from "./wire.ts";

type Subtle = typeof globalThis.crypto.subtle;
type Key = Awaited<ReturnType<Subtle["importKey"]>>;
const subtle = (): Subtle => {
  const s = globalThis.crypto?.subtle;
  if (!s)
    throw new Error("WebCrypto is not available here (a browser needs a secure context: https or localhost)");
  return s;
};
/** A copy with its own ArrayBuffer (what WebCrypto's BufferSource wants). */
const own = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);
export const randomBytes = (n: number): Uint8Array<ArrayBuffer> =>
  globalThis.crypto.getRandomValues(new Uint8Array(n));

/** A client's signing key (ECDSA P-256): the private half never leaves WebCrypto. */
export interface WebSigningKey {
  readonly privateKey: Key;
  /** The public key as an uncompressed point (65 bytes). */
  readonly publicRaw: Uint8Array;
}

export async function generateWebSigningKey(): Promise<WebSigningKey> {
  const pair = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
    "verify",
  ])) as { privateKey: Key; publicKey: Key };
  return {
    privateKey: pair.privateKey,
    publicRaw: new Uint8Array(await subtle().exportKey("raw", pair.publicKey)),
  };
}

/** SHA256:<base64 of the point's hash>, as protocol.ts's fingerprint (and ssh) shows keys. */
export async function webFingerprint(publicRaw: Uint8Array): Promise<string> {
  const h = new Uint8Array(await subtle().digest("SHA-256", own(publicRaw)));
  return `SHA256:${toBase64(h, false)}`;
}

async function importPoint(raw: Uint8Array, alg: "ECDSA" | "ECDH", what: string): Promise<Key> {
  if (raw.length !== POINT || raw[0] !== 4) fail("bad-key", `${what}: not an uncompressed P-256 point`);
  try {
    return await subtle().importKey(
      "raw",
      own(raw),
      { name: alg, namedCurve: "P-256" },
      false,
      alg === "ECDSA" ? ["verify"] : [],
    );
  } catch {
    return fail("bad-key", `${what}: not a point on P-256`);
  }
}

export type Resume = { from: "offset"; offset: number } | { from: "tail" };

/** The client's side of the handshake (protocol.ts's ClientHandshake, on WebCrypto). */
export class WebClientHandshake {
  private constructor(
    readonly hello: Uint8Array<ArrayBuffer>,
    private readonly ephemeral: Key,
  ) {}

  static async create(opts: {
    sessionId: Uint8Array;
    signing: WebSigningKey;
    ticket: string;
    resume: Resume;
  }): Promise<WebClientHandshake> {
    if (opts.sessionId.length !== SESSION) fail("bad-message", `the session id must be ${SESSION} bytes`);
    const ticket = utf8(opts.ticket);
    if (ticket.length > MAX_TICKET)
      fail("oversized", `ticket of ${ticket.length} bytes exceeds the limit of ${MAX_TICKET}`);
    const s = subtle();
    const eph = (await s.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"])) as {
      privateKey: Key;
      publicKey: Key;
    };
    const ephRaw = new Uint8Array(await s.exportKey("raw", eph.publicKey));
    const r = opts.resume;
    const body = concat([
      new Uint8Array([KIND.clientHello, PROTOCOL_VERSION]),
      opts.sessionId,
      ephRaw,
      randomBytes(NONCE),
      new Uint8Array([r.from === "offset" ? 1 : 0]),
      writeU64(r.from === "offset" ? r.offset : 0),
      opts.signing.publicRaw,
      new Uint8Array([ticket.length >> 8, ticket.length & 0xff]),
      ticket,
    ]);
    const sig = new Uint8Array(
      await s.sign(
        { name: "ECDSA", hash: "SHA-256" },
        opts.signing.privateKey,
        concat([utf8(LABEL_CLIENT), body]),
      ),
    );
    return new WebClientHandshake(concat([body, sig]), eph.privateKey);
  }

  /** Checks the agent's answer against the identity key the controller named; the channel. */
  async finish(agentHello: Uint8Array, agentIdentity: Uint8Array): Promise<WebSecureChannel> {
    const msg = agentHello;
    if (msg.length !== AGENT_HELLO || msg[0] !== KIND.agentHello)
      fail("bad-message", `not an agent hello (${msg.length} bytes, kind ${msg[0]})`);
    if (msg[1] !== PROTOCOL_VERSION)
      fail("version", `the agent speaks version ${msg[1]}, not ${PROTOCOL_VERSION}`);
    const s = subtle();
    const body = msg.subarray(0, AGENT_HELLO - SIG);
    const ik = await importPoint(agentIdentity, "ECDSA", "the agent's identity key");
    const helloHash = new Uint8Array(await s.digest("SHA-256", this.hello));
    const ok = await s.verify(
      { name: "ECDSA", hash: "SHA-256" },
      ik,
      own(msg.subarray(AGENT_HELLO - SIG)),
      concat([utf8(LABEL_AGENT), helloHash, body]),
    );
    if (!ok)
      fail(
        "bad-signature",
        `the agent hello is not signed by the expected agent (identity ${toBase64(agentIdentity).slice(0, 16)}...)`,
      );
    const peer = await importPoint(msg.subarray(2, 2 + POINT), "ECDH", "the peer's ephemeral key");
    const shared = await s.deriveBits({ name: "ECDH", public: peer }, this.ephemeral, 256);
    const salt = await s.digest("SHA-256", concat([this.hello, msg]));
    const hk = await s.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
    const okm = new Uint8Array(
      await s.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: utf8(LABEL_KEYS) }, hk, 512),
    );
    const aes = (k: Uint8Array) => s.importKey("raw", own(k), "AES-GCM", false, ["encrypt", "decrypt"]);
    return new WebSecureChannel(await aes(okm.subarray(0, 32)), await aes(okm.subarray(32, 64)));
  }
}

function nonceOf(direction: number, seq: number): Uint8Array<ArrayBuffer> {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(0, direction);
  v.setBigUint64(4, BigInt(seq));
  return n;
}

/**
 * The client's record layer. A seal takes its sequence number when called (not when WebCrypto
 * finishes), so seals made in order stay in order on the wire; opens are awaited one at a
 * time (the session does), each accepting exactly the next record.
 */
export class WebSecureChannel {
  private sendSeq = 0;
  private recvSeq = 0;
  constructor(
    private readonly sendKey: Key,
    private readonly recvKey: Key,
  ) {}

  async seal(type: RecordType, plaintext: Uint8Array): Promise<Uint8Array> {
    if (!CLIENT_TYPES.has(type)) fail("wrong-direction", `a client does not send records of type ${type}`);
    if (plaintext.length > MAX_RECORD_PLAINTEXT)
      fail("oversized", `record of ${plaintext.length} bytes exceeds the limit of ${MAX_RECORD_PLAINTEXT}`);
    const seq = this.sendSeq++;
    const header = concat([new Uint8Array([KIND.record, type]), writeU64(seq)]);
    const ct = await subtle().encrypt(
      { name: "AES-GCM", iv: nonceOf(DIR_C2A, seq), additionalData: header, tagLength: TAG * 8 },
      this.sendKey,
      own(plaintext),
    );
    return concat([header, new Uint8Array(ct)]);
  }

  async open(m: Uint8Array): Promise<{ type: RecordType; plaintext: Uint8Array }> {
    if (m.length > MAX_MESSAGE)
      fail("oversized", `record of ${m.length} bytes exceeds the limit of ${MAX_MESSAGE}`);
    if (m.length < RECORD_HEADER + TAG || m[0] !== KIND.record)
      fail("bad-message", `not a record (${m.length} bytes, kind ${m[0]})`);
    const type = m[1];
    if (!AGENT_TYPES.has(type)) fail("wrong-direction", `a client does not accept records of type ${type}`);
    const seq = Number(new DataView(m.buffer, m.byteOffset, m.byteLength).getBigUint64(2));
    if (seq < this.recvSeq)
      fail("replay", `record ${seq} was received already (next is ${this.recvSeq}): replayed`);
    if (seq > this.recvSeq)
      fail("reorder", `record ${seq} arrived while ${this.recvSeq} is next: records dropped or reordered`);
    let pt: ArrayBuffer;
    try {
      pt = await subtle().decrypt(
        {
          name: "AES-GCM",
          iv: nonceOf(DIR_A2C, seq),
          additionalData: own(m.subarray(0, RECORD_HEADER)),
          tagLength: TAG * 8,
        },
        this.recvKey,
        own(m.subarray(RECORD_HEADER)),
      );
    } catch {
      return fail(
        "auth-failed",
        `record ${seq} fails authentication: altered, or not sealed with this session's key`,
      );
    }
    this.recvSeq++;
    return { type: type as RecordType, plaintext: new Uint8Array(pt) };
  }
}

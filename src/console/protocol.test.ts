import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";
import { test } from "node:test";
import {
  acceptClient,
  ClientHandshake,
  ConsoleProtocolError,
  decodeInput,
  decodeNotice,
  decodeOutput,
  deriveTicketKey,
  encodeInput,
  encodeNotice,
  encodeOutput,
  fingerprint,
  generateSigningKey,
  issueTicket,
  MAX_MESSAGE,
  MAX_RECORD_PLAINTEXT,
  publicKeyFromRaw,
  RECORD,
  type SigningKey,
  signingKeyFromPem,
  signingKeyToPem,
  type TicketClaims,
  verifyTicket,
} from "./index.ts";
import { generateWebSigningKey, randomBytes, WebClientHandshake, webFingerprint } from "./subtle.ts";
import { decodeOutputBytes, encodeInputBytes } from "./wire.ts";

const NOW = 1_800_000_000;
const ticketKey = deriveTicketKey("nc-testbed-token");
const identity = generateSigningKey();

function claims(client: SigningKey, session: Buffer, over: Partial<TicketClaims> = {}): TicketClaims {
  return {
    v: 1,
    guest: "g1",
    device: "s1",
    tenant: "acme",
    sub: "tok_1",
    key: client.publicRaw.toString("base64url"),
    session: session.toString("base64url"),
    control: true,
    iat: NOW,
    exp: NOW + 60,
    ...over,
  };
}

function handshake(opts: { ticket?: (c: SigningKey, s: Buffer) => string; agentIdentity?: SigningKey } = {}) {
  const client = generateSigningKey();
  const session = Buffer.alloc(16, 7);
  const ticket = opts.ticket?.(client, session) ?? issueTicket(ticketKey, claims(client, session));
  const hs = new ClientHandshake({
    sessionId: session,
    signing: client,
    ticket,
    resume: { from: "offset", offset: 42 },
  });
  const accepted = acceptClient(hs.hello, {
    identity: opts.agentIdentity ?? identity,
    ticketKey,
    guest: "g1",
    device: "s1",
    nowSeconds: NOW,
  });
  const clientChannel = hs.finish(accepted.answer, identity.publicRaw);
  return { client, hs, accepted, agent: accepted.channel, clientChannel };
}

function throwsCode(f: () => unknown, code: string, message?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ConsoleProtocolError, `a ConsoleProtocolError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

test("handshake: both ends agree on keys; output, acks, notices and input travel end to end", () => {
  const { accepted, agent, clientChannel } = handshake();
  assert.deepEqual(accepted.hello.resume, { from: "offset", offset: 42 });
  assert.equal(accepted.claims.tenant, "acme");
  const out = agent.seal(RECORD.output, encodeOutput(42, Buffer.from("login: ")));
  const got = clientChannel.open(out);
  assert.equal(got.type, RECORD.output);
  assert.deepEqual(decodeOutput(got.plaintext), { offset: 42, bytes: Buffer.from("login: ") });
  const n = clientChannel.open(agent.seal(RECORD.notice, encodeNotice({ kind: "moving" })));
  assert.deepEqual(decodeNotice(n.plaintext), { kind: "moving" });
  const key = clientChannel.seal(RECORD.input, encodeInput(1, Buffer.from("root\r")));
  assert.deepEqual(decodeInput(agent.open(key).plaintext), { seq: 1, bytes: Buffer.from("root\r") });
  assert.deepEqual(agent.counts, { sent: 2, received: 1 });
  // The ciphertext does not contain the plaintext.
  assert.equal(key.includes(Buffer.from("root")), false);
  assert.equal(out.includes(Buffer.from("login")), false);
});

test("a record whose bytes were changed fails authentication, wherever the change is", () => {
  const { agent, clientChannel } = handshake();
  const rec = agent.seal(RECORD.output, encodeOutput(0, Buffer.from("secret output")));
  for (const at of [12, rec.length - 1, 20]) {
    const bad = Buffer.from(rec);
    bad[at] ^= 0x01;
    throwsCode(() => clientChannel.open(bad), "auth-failed", /record 0 fails authentication/);
  }
  // The header is authenticated too: another type of the same direction.
  const retyped = Buffer.from(rec);
  retyped[1] = RECORD.ack;
  throwsCode(() => clientChannel.open(retyped), "auth-failed");
  // The failed attempts did not consume the counter: the genuine record still opens.
  assert.equal(decodeOutput(clientChannel.open(rec).plaintext).bytes.toString(), "secret output");
});

test("replayed and reordered records are refused by name", () => {
  const { agent, clientChannel } = handshake();
  const r0 = agent.seal(RECORD.output, encodeOutput(0, Buffer.from("a")));
  const r1 = agent.seal(RECORD.output, encodeOutput(1, Buffer.from("b")));
  const r2 = agent.seal(RECORD.output, encodeOutput(2, Buffer.from("c")));
  throwsCode(() => clientChannel.open(r1), "reorder", /record 1 arrived while 0 is next/);
  clientChannel.open(r0);
  throwsCode(() => clientChannel.open(r0), "replay", /record 0 was received already/);
  throwsCode(() => clientChannel.open(r2), "reorder");
  clientChannel.open(r1);
  clientChannel.open(r2);
  // A record of one direction sent back the other way is refused (reflection).
  const input = clientChannel.seal(RECORD.input, encodeInput(1, Buffer.from("x")));
  throwsCode(() => clientChannel.open(input), "wrong-direction");
  throwsCode(() => agent.seal(RECORD.input, Buffer.from("x")), "wrong-direction");
});

test("wrong keys: another agent's signature, another session's records", () => {
  const impostor = generateSigningKey();
  // The relay answers with a hello signed by a key that is not the one the controller named.
  throwsCode(
    () => handshake({ agentIdentity: impostor }),
    "bad-signature",
    /not signed by the expected agent/,
  );
  const a = handshake();
  const b = handshake();
  const rec = a.agent.seal(RECORD.output, encodeOutput(0, Buffer.from("for a only")));
  throwsCode(() => b.clientChannel.open(rec), "auth-failed");
  // An agent hello made for another client hello does not verify either.
  throwsCode(() => a.hs.finish(b.accepted.answer, identity.publicRaw), "bad-signature");
});

test("tickets: forged, expired, for another key, session, guest or port", () => {
  const other = deriveTicketKey("another-cloud");
  throwsCode(
    () => handshake({ ticket: (c, s) => issueTicket(other, claims(c, s)) }),
    "bad-ticket",
    /not issued by this cloud's controller/,
  );
  throwsCode(
    () => handshake({ ticket: (c, s) => issueTicket(ticketKey, claims(c, s, { exp: NOW - 5 })) }),
    "ticket-expired",
    /expired 5 s ago/,
  );
  const stranger = generateSigningKey();
  throwsCode(
    () => handshake({ ticket: (_c, s) => issueTicket(ticketKey, claims(stranger, s)) }),
    "ticket-mismatch",
    /another client key/,
  );
  throwsCode(
    () => handshake({ ticket: (c) => issueTicket(ticketKey, claims(c, Buffer.alloc(16, 1))) }),
    "ticket-mismatch",
    /another console session/,
  );
  throwsCode(
    () => handshake({ ticket: (c, s) => issueTicket(ticketKey, claims(c, s, { guest: "g2" })) }),
    "ticket-mismatch",
    /for g2\/s1, this is g1\/s1/,
  );
  throwsCode(
    () => handshake({ ticket: (c, s) => issueTicket(ticketKey, claims(c, s, { device: "s2" })) }),
    "ticket-mismatch",
  );
  // A ticket with its claims edited keeps its MAC no longer.
  const c = generateSigningKey();
  const t = issueTicket(ticketKey, claims(c, Buffer.alloc(16)));
  const [body, mac] = t.split(".");
  const edited = JSON.parse(Buffer.from(body, "base64url").toString());
  edited.guest = "g9";
  throwsCode(
    () => verifyTicket(ticketKey, `${Buffer.from(JSON.stringify(edited)).toString("base64url")}.${mac}`, NOW),
    "bad-ticket",
  );
  throwsCode(() => verifyTicket(ticketKey, "garbage", NOW), "bad-ticket", /malformed/);
});

test("a client hello changed on the way (resume offset) fails its signature", () => {
  const client = generateSigningKey();
  const session = Buffer.alloc(16, 3);
  const hs = new ClientHandshake({
    sessionId: session,
    signing: client,
    ticket: issueTicket(ticketKey, claims(client, session)),
    resume: { from: "offset", offset: 1000 },
  });
  const bad = Buffer.from(hs.hello);
  // The offset sits after kind, version, session, ephemeral, nonce and the flag.
  bad[2 + 16 + 65 + 32 + 1 + 7] ^= 0xff;
  throwsCode(
    () => acceptClient(bad, { identity, ticketKey, guest: "g1", device: "s1", nowSeconds: NOW }),
    "bad-signature",
  );
});

test("oversized frames and malformed keys are refused with their size or reason", () => {
  const { agent, clientChannel } = handshake();
  throwsCode(
    () => agent.seal(RECORD.output, Buffer.alloc(MAX_RECORD_PLAINTEXT + 1)),
    "oversized",
    /record of 16385 bytes exceeds the limit of 16384/,
  );
  assert.ok(agent.seal(RECORD.output, Buffer.alloc(MAX_RECORD_PLAINTEXT)).length <= MAX_MESSAGE);
  throwsCode(() => clientChannel.open(Buffer.alloc(MAX_MESSAGE + 1, 0x10)), "oversized");
  throwsCode(
    () =>
      acceptClient(Buffer.alloc(5000, 1), {
        identity,
        ticketKey,
        guest: "g1",
        device: "s1",
        nowSeconds: NOW,
      }),
    "oversized",
    /client hello of 5000 bytes/,
  );
  throwsCode(() => clientChannel.open(Buffer.from([0x10, 1, 0])), "bad-message");
  throwsCode(() => publicKeyFromRaw(Buffer.alloc(65, 4)), "bad-key", /not a point on P-256/);
  throwsCode(() => publicKeyFromRaw(Buffer.alloc(33, 2)), "bad-key", /uncompressed/);
  throwsCode(
    () =>
      new ClientHandshake({
        sessionId: Buffer.alloc(16),
        signing: generateSigningKey(),
        ticket: "x".repeat(2000),
        resume: { from: "tail" },
      }),
    "oversized",
  );
});

test("identity keys round-trip through PEM; fingerprints are SHA-256 of the point", () => {
  const k = signingKeyFromPem(signingKeyToPem(identity));
  assert.deepEqual(k.publicRaw, identity.publicRaw);
  assert.equal(
    fingerprint(identity.publicRaw),
    `SHA256:${createHash("sha256").update(identity.publicRaw).digest("base64").replace(/=+$/, "")}`,
  );
});

/**
 * A browser's client, in WebCrypto only (crypto.subtle): it completes the handshake with the
 * agent's node:crypto side, reads output, and sends a keystroke the agent opens. This is what
 * keeps the protocol within what a dashboard can do without a crypto library.
 */
test("WebCrypto interoperates: a client written with crypto.subtle alone", async () => {
  const subtle = webcrypto.subtle;
  const enc = new TextEncoder();
  const sign = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const eph = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const signRaw = Buffer.from(await subtle.exportKey("raw", sign.publicKey));
  const ephRaw = Buffer.from(await subtle.exportKey("raw", eph.publicKey));
  const session = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  const ticket = Buffer.from(
    issueTicket(ticketKey, {
      ...claims({ publicRaw: signRaw } as SigningKey, session),
    }),
  );
  const len = Buffer.alloc(2);
  len.writeUInt16BE(ticket.length);
  const body = Buffer.concat([
    Buffer.from([1, 1]),
    session,
    ephRaw,
    Buffer.from(webcrypto.getRandomValues(new Uint8Array(32))),
    Buffer.from([0]),
    Buffer.alloc(8),
    signRaw,
    len,
    ticket,
  ]);
  const sig = await subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    sign.privateKey,
    Buffer.concat([enc.encode("nestcloud-console-v1 client-hello"), body]),
  );
  const hello = Buffer.concat([body, Buffer.from(sig)]);

  const accepted = acceptClient(hello, { identity, ticketKey, guest: "g1", device: "s1", nowSeconds: NOW });
  assert.deepEqual(accepted.hello.resume, { from: "tail" });
  const answer = accepted.answer;
  const ik = await subtle.importKey(
    "raw",
    identity.publicRaw,
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
  const helloHash = Buffer.from(await subtle.digest("SHA-256", hello));
  const ok = await subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    ik,
    answer.subarray(answer.length - 64),
    Buffer.concat([
      enc.encode("nestcloud-console-v1 agent-hello"),
      helloHash,
      answer.subarray(0, answer.length - 64),
    ]),
  );
  assert.equal(ok, true, "the agent's signature verifies in WebCrypto");
  const agentEph = await subtle.importKey(
    "raw",
    answer.subarray(2, 67),
    { name: "ECDH", namedCurve: "P-256" },
    false,
    [],
  );
  const shared = await subtle.deriveBits({ name: "ECDH", public: agentEph }, eph.privateKey, 256);
  const salt = await subtle.digest("SHA-256", Buffer.concat([hello, answer]));
  const hk = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const okm = Buffer.from(
    await subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt, info: enc.encode("nestcloud-console-v1 keys") },
      hk,
      512,
    ),
  );
  const aes = async (k: Buffer) => subtle.importKey("raw", k, "AES-GCM", false, ["encrypt", "decrypt"]);
  const c2a = await aes(okm.subarray(0, 32));
  const a2c = await aes(okm.subarray(32));
  const nonce = (dir: string, seq: number) => {
    const n = Buffer.alloc(12);
    n.write(dir, 0, "latin1");
    n.writeBigUInt64BE(BigInt(seq), 4);
    return n;
  };

  const rec = accepted.channel.seal(RECORD.output, encodeOutput(7, Buffer.from("hello from the guest")));
  const plain = Buffer.from(
    await subtle.decrypt(
      { name: "AES-GCM", iv: nonce("a2c\0", 0), additionalData: rec.subarray(0, 10), tagLength: 128 },
      a2c,
      rec.subarray(10),
    ),
  );
  assert.deepEqual(decodeOutput(plain), { offset: 7, bytes: Buffer.from("hello from the guest") });

  const header = Buffer.from([0x10, RECORD.input, 0, 0, 0, 0, 0, 0, 0, 0]);
  const ct = await subtle.encrypt(
    { name: "AES-GCM", iv: nonce("c2a\0", 0), additionalData: header, tagLength: 128 },
    c2a,
    encodeInput(1, Buffer.from("ls\r")),
  );
  const opened = accepted.channel.open(Buffer.concat([header, Buffer.from(ct)]));
  assert.deepEqual(decodeInput(opened.plaintext), { seq: 1, bytes: Buffer.from("ls\r") });
});

/**
 * The client the CLI and the dashboard run (subtle.ts, WebCrypto only) against the agent's
 * node:crypto side: the same bytes on the wire, keys agreed, tampering and the wrong agent
 * refused, fingerprints equal to protocol.ts's.
 */
test("the WebCrypto client (subtle.ts) and the node:crypto agent speak one protocol", async () => {
  const signing = await generateWebSigningKey();
  const session = Buffer.from(randomBytes(16));
  const ticket = issueTicket(
    ticketKey,
    claims({ publicRaw: Buffer.from(signing.publicRaw) } as SigningKey, session),
  );
  const hs = await WebClientHandshake.create({
    sessionId: session,
    signing,
    ticket,
    resume: { from: "offset", offset: 42 },
  });
  const accepted = acceptClient(hs.hello, {
    identity,
    ticketKey,
    guest: "g1",
    device: "s1",
    nowSeconds: NOW,
  });
  assert.deepEqual(accepted.hello.resume, { from: "offset", offset: 42 });
  assert.equal(await webFingerprint(identity.publicRaw), fingerprint(identity.publicRaw));

  // Another agent's identity: refused by name.
  await assert.rejects(
    hs.finish(accepted.answer, generateSigningKey().publicRaw),
    /bad-signature|not signed/,
  );
  const hs2 = await WebClientHandshake.create({
    sessionId: session,
    signing,
    ticket,
    resume: { from: "tail" },
  });
  const acc2 = acceptClient(hs2.hello, { identity, ticketKey, guest: "g1", device: "s1", nowSeconds: NOW });
  const channel = await hs2.finish(acc2.answer, identity.publicRaw);

  const recs: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    const rec = acc2.channel.seal(RECORD.output, encodeOutput(100 * i, Buffer.from(`line ${i}\n`)));
    recs.push(rec);
    const { type, plaintext } = await channel.open(rec);
    assert.equal(type, RECORD.output);
    assert.deepEqual(decodeOutputBytes(plaintext), {
      offset: 100 * i,
      bytes: new Uint8Array(Buffer.from(`line ${i}\n`)),
    });
  }
  const input = await channel.seal(RECORD.input, encodeInputBytes(1, Buffer.from("uname -a\r")));
  assert.deepEqual(decodeInput(acc2.channel.open(input).plaintext), {
    seq: 1,
    bytes: Buffer.from("uname -a\r"),
  });
  // A changed byte fails authentication; a replay is refused by name.
  const next = acc2.channel.seal(RECORD.notice, encodeNotice({ kind: "moving" }));
  const bad = Buffer.from(next);
  bad[bad.length - 20] ^= 1;
  await assert.rejects(channel.open(bad), (e: unknown) => (e as ConsoleProtocolError).code === "auth-failed");
  await assert.rejects(channel.open(recs[1]), (e: unknown) => (e as ConsoleProtocolError).code === "replay");
  const { plaintext } = await channel.open(next);
  assert.deepEqual(decodeNotice(Buffer.from(plaintext)), { kind: "moving" });
});

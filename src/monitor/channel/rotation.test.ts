// Credential rotation with the real openssl and real TLS on loopback: a security VM's
// credential is reissued (same name and targets, new key); the new one works at once beside the
// old (no gap), then the old one is revoked and refused from the next handshake by the page
// server; a revocation file is validated; the mirror receiver serves a new certificate to new
// connections.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { BufferPhysicalMemory, connectRemoteMemory, PageServer, RemoteError } from "../../vmi/index.ts";
import { FrameQueue } from "../network/queue.ts";
import { MirrorReceiver } from "../network/receiver.ts";
import { fingerprintOf, Revocations } from "./rotation.ts";
import {
  type CertificateAuthority,
  type Credential,
  createCertificateAuthority,
  expectClient,
  expectServer,
  issueCredential,
  securityVmClient,
  tlsOptions,
} from "./tls.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-rot-"));
let ca: CertificateAuthority;
let server: Credential;
let oldCred: Credential;
const ram = Buffer.alloc(1024 * 1024, 7);

before(async () => {
  ca = await createCertificateAuthority(join(dir, "ca"));
  server = await issueCredential(ca, { name: "pagesrv", role: "page-server", ips: ["127.0.0.1"] });
  oldCred = await issueCredential(ca, {
    name: "secvm-a",
    role: "security-vm",
    targets: ["g1"],
    ips: ["127.0.0.1"],
  });
});
after(() => rmSync(dir, { recursive: true, force: true }));

const open = (port: number, cred: Credential) =>
  connectRemoteMemory({
    host: "127.0.0.1",
    port,
    guest: "g1",
    tls: { ...tlsOptions(cred), verifyServer: expectServer("page-server") },
  });

test("a reissued credential works beside the old one; once the old is revoked the page server refuses it, the new reads on", async () => {
  const revoked = new Revocations();
  const ps = new PageServer({
    clients: [],
    guests: new Map([["g1", new BufferPhysicalMemory(ram)]]),
    tls: { ...tlsOptions(server), identify: revoked.guardIdentify(securityVmClient) },
    limits: { handshakeTimeoutMs: 1000 },
  });
  const { port } = await ps.listen();
  try {
    const a = await open(port, oldCred);
    const newCred = await issueCredential(ca, {
      name: "secvm-a",
      role: "security-vm",
      targets: ["g1"],
      ips: ["127.0.0.1"],
      dir: join(dir, "gen2"),
    });
    assert.notEqual(fingerprintOf(newCred.certPem), fingerprintOf(oldCred.certPem));
    const b = await open(port, newCred);
    // Both read while the old connection is replaced (make before break).
    assert.deepEqual((await a.read([{ addr: 0, len: 16 }]))[0], new Uint8Array(16).fill(7));
    assert.deepEqual((await b.read([{ addr: 0, len: 16 }]))[0], new Uint8Array(16).fill(7));
    a.close();
    assert.equal(revoked.revoke(oldCred), fingerprintOf(oldCred.certPem));
    await assert.rejects(open(port, oldCred), RemoteError, "the old certificate is refused");
    assert.deepEqual((await b.read([{ addr: 4096, len: 8 }]))[0], new Uint8Array(8).fill(7));
    const c = await open(port, newCred);
    c.close();
    b.close();
  } finally {
    await ps.close();
  }
});

test("a revocation file: fingerprints one a line with comments; anything else is refused whole", () => {
  const r = new Revocations();
  const f = join(dir, "revoked");
  const fp = fingerprintOf(oldCred.certPem);
  writeFileSync(f, `# rotated out\n${fp.toLowerCase()}\n\n`);
  assert.equal(r.load(f), 1);
  assert.ok(r.isRevoked({ fingerprint256: fp }));
  writeFileSync(f, `${fp}\nnot-a-fingerprint\n`);
  assert.throws(() => r.load(f), /not a SHA-256 fingerprint/);
  assert.equal(r.size, 1, "the list in force stays");
  assert.ok(
    r
      .guard(() => null)({ fingerprint256: fp } as never)
      ?.includes("revoked"),
  );
});

test("the mirror receiver hands a new certificate to new connections after setCredentials", async () => {
  const qemu = await issueCredential(ca, { name: "qemu-g1", role: "qemu", targets: ["g1"] });
  const r1 = await issueCredential(ca, {
    name: "recv",
    role: "security-vm",
    targets: ["g1"],
    ips: ["127.0.0.1"],
  });
  const r2 = await issueCredential(ca, {
    name: "recv",
    role: "security-vm",
    targets: ["g1"],
    ips: ["127.0.0.1"],
    dir: join(dir, "recv2"),
  });
  const rx = new MirrorReceiver({ queue: new FrameQueue() });
  const addr = await rx.listen({
    type: "tls",
    host: "127.0.0.1",
    port: 0,
    tls: { ...tlsOptions(r1), authorize: expectClient("qemu", "g1") },
  });
  const port = addr.type === "unix" ? 0 : addr.port;
  const served = () =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({
        host: "127.0.0.1",
        port,
        ...tlsOptions(qemu),
        checkServerIdentity: () => undefined,
      });
      s.once("secureConnect", () => {
        const fp = s.getPeerCertificate().fingerprint256;
        s.destroy();
        resolve(fp);
      });
      s.once("error", reject);
    });
  try {
    assert.equal(await served(), fingerprintOf(r1.certPem));
    rx.setCredentials(tlsOptions(r2));
    assert.equal(await served(), fingerprintOf(r2.certPem));
  } finally {
    await rx.close();
  }
});

test("the page server hands its reissued certificate to new connections after setCredentials; open links read on", async () => {
  const ps = new PageServer({
    clients: [],
    guests: new Map([["g1", new BufferPhysicalMemory(ram)]]),
    tls: { ...tlsOptions(server), identify: securityVmClient },
  });
  const { port } = await ps.listen();
  const served = async () => {
    let fp = "";
    const m = await connectRemoteMemory({
      host: "127.0.0.1",
      port,
      guest: "g1",
      tls: {
        ...tlsOptions(oldCred),
        verifyServer: (cert) => {
          fp = cert.fingerprint256;
          return expectServer("page-server")(cert);
        },
      },
    });
    return { m, fp };
  };
  try {
    const a = await served();
    assert.equal(a.fp, fingerprintOf(server.certPem));
    const next = await issueCredential(ca, {
      name: "pagesrv",
      role: "page-server",
      ips: ["127.0.0.1"],
      dir: join(dir, "pagesrv2"),
    });
    ps.setCredentials(tlsOptions(next));
    const b = await served();
    assert.equal(b.fp, fingerprintOf(next.certPem), "a new connection gets the new certificate");
    assert.deepEqual(
      (await a.m.read([{ addr: 0, len: 8 }]))[0],
      new Uint8Array(8).fill(7),
      "the old link reads on",
    );
    assert.deepEqual((await b.m.read([{ addr: 8, len: 8 }]))[0], new Uint8Array(8).fill(7));
    a.m.close();
    b.m.close();
  } finally {
    await ps.close();
  }
  const plain = new PageServer({
    clients: [],
    guests: new Map([["g1", new BufferPhysicalMemory(ram)]]),
    tls: undefined,
  });
  assert.throws(() => plain.setCredentials(tlsOptions(server)), /does not listen with TLS/);
});

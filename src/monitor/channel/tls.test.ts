// The remote channel's credentials with the real openssl and real TLS on loopback: a testbed CA,
// per-security-VM certificates naming their targets; the page server over TLS serves a
// certificate's targets only and refuses clients without one, with another CA's, or with a
// certificate for another target; the mirror receiver over TLS takes the stream of the target's
// QEMU only.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { BufferPhysicalMemory, connectRemoteMemory, PageServer, RemoteError } from "../../vmi/index.ts";
import { encodeMirrorFrame } from "../network/framing.ts";
import { FrameQueue } from "../network/queue.ts";
import { MirrorReceiver, type ReceiverEvent } from "../network/receiver.ts";
import {
  type CertificateAuthority,
  type Credential,
  createCertificateAuthority,
  expectClient,
  expectServer,
  issueCredential,
  peerIdentity,
  qemuAuthzIdentities,
  securityVmClient,
  tlsOptions,
} from "./tls.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-tls-"));
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let server: Credential;
let secvmA: Credential; // names g1
let secvmB: Credential; // names g2
let rogue: Credential; // names g1, signed by another CA
let qemuG1: Credential;
let qemuG2: Credential;
let receiverCred: Credential;

before(async () => {
  ca = await createCertificateAuthority(join(dir, "ca"));
  otherCa = await createCertificateAuthority(join(dir, "other"), "other-ca");
  [server, secvmA, secvmB, qemuG1, qemuG2, receiverCred, rogue] = await Promise.all([
    issueCredential(ca, { name: "pagesrv-s1", role: "page-server", ips: ["127.0.0.1"] }),
    issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: ["g1"] }),
    issueCredential(ca, { name: "secvm-b", role: "security-vm", targets: ["g2"] }),
    issueCredential(ca, { name: "qemu-g1", role: "qemu", targets: ["g1"] }),
    issueCredential(ca, { name: "qemu-g2", role: "qemu", targets: ["g2"] }),
    issueCredential(ca, { name: "secvm-a-net", role: "security-vm", targets: ["g1"], ips: ["127.0.0.1"] }),
    issueCredential(otherCa, { name: "secvm-a", role: "security-vm", targets: ["g1"] }),
  ]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("a certificate says its holder's name, role and targets; QEMU's authz lists those naming its guest", () => {
  const id = peerIdentity({
    subject: { CN: "secvm-a" } as never,
    subjectaltname:
      "URI:urn:nestcloud:role:security-vm, URI:urn:nestcloud:target:g1, URI:urn:nestcloud:target:g3",
  });
  assert.deepEqual(id, { name: "secvm-a", role: "security-vm", targets: ["g1", "g3"] });
  assert.equal(
    peerIdentity({
      subject: { CN: "x" } as never,
      subjectaltname: "URI:urn:nestcloud:role:qemu, URI:urn:nestcloud:role:security-vm",
    }),
    null,
    "two roles: not one of ours",
  );
  assert.equal(peerIdentity({ subject: { CN: "bad name, CN=y" } as never, subjectaltname: "" }), null);
  assert.deepEqual(qemuAuthzIdentities("g1", [secvmA, secvmB, qemuG1]), ["CN=secvm-a"]);
});

describe("page server over TLS", () => {
  const g1 = { ram: randomBytes(1 << 20) };
  const g2 = { ram: randomBytes(1 << 20) };
  let ps: PageServer;
  let port = 0;
  before(async () => {
    ps = new PageServer({
      clients: [],
      guests: new Map([
        ["g1", new BufferPhysicalMemory(g1.ram)],
        ["g2", new BufferPhysicalMemory(g2.ram)],
      ]),
      tls: { ...tlsOptions(server), identify: securityVmClient },
      limits: { handshakeTimeoutMs: 1000 },
    });
    port = (await ps.listen()).port;
  });
  after(() => ps.close());

  const open = (cred: Credential, guest: string, extra: object = {}) =>
    connectRemoteMemory({
      host: "127.0.0.1",
      port,
      guest,
      tls: { ...tlsOptions(cred), verifyServer: expectServer("page-server"), ...extra },
    });

  test("a security VM reads its target's memory", async () => {
    const sessions = new Map<string, Buffer>();
    const m = await open(secvmA, "g1", { sessions });
    try {
      const ranges = [
        { addr: 0, len: 4096 },
        { addr: 123_457, len: 70_000 },
      ];
      const got = await m.read(ranges);
      ranges.forEach((r, i) => {
        assert.ok(Buffer.from(got[i]).equals(g1.ram.subarray(r.addr, r.addr + r.len)));
      });
    } finally {
      m.close();
    }
    // A later connection resumes the TLS session and still gets the same answers.
    assert.equal(sessions.size, 1);
    const again = await open(secvmA, "g1", { sessions });
    try {
      assert.equal(again.size, g1.ram.length);
    } finally {
      again.close();
    }
  });

  test("knowing the guest's size, the first request goes with AUTH; a refusal or a wrong size fails it", async () => {
    const m = await open(secvmA, "g1", { guestSize: g1.ram.length });
    try {
      const [got] = await m.read([{ addr: 8192, len: 100 }]);
      assert.ok(Buffer.from(got).equals(g1.ram.subarray(8192, 8292)));
    } finally {
      m.close();
    }
    const refused = await open(secvmB, "g1", { guestSize: g1.ram.length });
    await assert.rejects(
      refused.read([{ addr: 0, len: 16 }]),
      (e) => e instanceof RemoteError && e.code === "REMOTE_FORBIDDEN",
    );
    const wrong = await open(secvmA, "g1", { guestSize: g1.ram.length * 2 });
    await assert.rejects(wrong.read([{ addr: 0, len: 16 }]), (e) => e instanceof RemoteError);
  });

  test("a certificate for another target is refused that target's memory", async () => {
    await assert.rejects(
      open(secvmB, "g1"),
      (e) => e instanceof RemoteError && e.code === "REMOTE_FORBIDDEN",
    );
    const m = await open(secvmB, "g2");
    try {
      await assert.rejects(
        m.client.request({ op: "read", guest: "g1", n: 0 }),
        (e) => e instanceof RemoteError && e.code === "REMOTE_FORBIDDEN",
      );
    } finally {
      m.close();
    }
  });

  test("no certificate, another CA's, or a non-security-VM certificate: no connection", async () => {
    const before = ps.stats.authFailures;
    const noCert = connectRemoteMemory({
      host: "127.0.0.1",
      port,
      guest: "g1",
      tls: { ca: server.caPem, cert: "", key: "", verifyServer: expectServer("page-server") },
    });
    await assert.rejects(noCert, RemoteError);
    await assert.rejects(open(rogue, "g1"), RemoteError);
    await assert.rejects(open(qemuG1, "g1"), RemoteError);
    assert.ok(ps.stats.authFailures >= before + 3, `${ps.stats.authFailures - before} refusals counted`);
  });

  test("the client refuses a server whose certificate is not a page server's", async () => {
    await assert.rejects(
      connectRemoteMemory({
        host: "127.0.0.1",
        port,
        guest: "g1",
        tls: { ...tlsOptions(secvmA), verifyServer: expectServer("qemu", "g1") },
      }),
      /is not a qemu/,
    );
  });
});

describe("mirror receiver over TLS", () => {
  test("takes the stream of its target's QEMU only", async () => {
    const queue = new FrameQueue();
    const events: ReceiverEvent[] = [];
    const rx = new MirrorReceiver({ queue, onEvent: (e) => events.push(e) });
    const addr = await rx.listen({
      type: "tls",
      host: "127.0.0.1",
      port: 0,
      tls: { ...tlsOptions(receiverCred), authorize: expectClient("qemu", "g1") },
    });
    assert.equal(addr.type, "tls");
    const port = addr.type === "tls" ? addr.port : 0;
    const frame = Buffer.alloc(60, 7);
    const send = (cred: Credential | null) =>
      new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port,
          ca: ca.certPem,
          ...(cred ? { cert: cred.certPem, key: cred.keyPem } : {}),
          checkServerIdentity: () => undefined,
        });
        s.on("secureConnect", () => s.write(encodeMirrorFrame(frame)));
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        setTimeout(() => s.end(), 300);
      });
    try {
      // Hostile over TLS as over a unix socket: a length no frame can have ends the connection,
      // counted as a stream error; nothing of it is buffered.
      await new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port,
          ca: ca.certPem,
          cert: qemuG1.certPem,
          key: qemuG1.keyPem,
          checkServerIdentity: () => undefined,
        });
        const huge = Buffer.alloc(4);
        huge.writeUInt32BE(0xfffffff0);
        s.on("secureConnect", () => s.write(huge));
        s.on("error", () => resolve());
        s.on("close", () => resolve());
      });
      assert.equal(rx.counts().streamErrors, 1);
      assert.ok(events.some((e) => e.type === "stream-error"));
      await send(qemuG1);
      await send(qemuG2);
      await send(null);
      await send(rogue);
      const counts = rx.counts();
      assert.equal(counts.frames, 1, "only the target's QEMU's frame");
      assert.equal(counts.refused, 3, JSON.stringify(events));
      assert.ok(events.some((e) => e.type === "refused" && /does not name g1/.test(e.reason)));
      assert.equal(queue.shift()?.equals(frame), true);
    } finally {
      await rx.close();
    }
  });
});

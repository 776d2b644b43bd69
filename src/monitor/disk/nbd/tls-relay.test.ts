// Revocation through the NBD TLS relay, the remote channel's disk path (issue 12, item 3):
// QEMU 7.2's own TLS NBD server checks only the client's name (tls-authz: an exact DN), so a
// security VM's reissued certificate (same name) cannot be told from the old one there; the
// relay checks fingerprints. Real openssl credentials, real TLS on loopback, a real NBD server
// (qemu-nbd, read-only) behind the relay: the old and the reissued certificate both read; once
// the old one is revoked it is refused at the next handshake (counted), the new one reads on,
// a link opened before the revocation reads on (its holder replaced it first: make before
// break), and a valid certificate naming another guest is refused throughout.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { after, before, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { Revocations } from "../../channel/rotation.ts";
import {
  type CertificateAuthority,
  type Credential,
  createCertificateAuthority,
  expectClient,
  expectServer,
  issueCredential,
  tlsOptions,
} from "../../channel/tls.ts";
import { NbdClient } from "./client.ts";
import { NbdTlsRelay } from "./tls-relay.ts";
import { tlsTransport } from "./transport.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-relay-rev-"));
const sock = join(dir, "nbd.sock");
const image = Buffer.alloc(1024 * 1024);
for (let i = 0; i < image.length; i += 4) image.writeUInt32LE(i, i);
let ca: CertificateAuthority;
let oldCred: Credential;
let newCred: Credential;
let otherGuest: Credential;
let nbd: ChildProcess;
let relay: NbdTlsRelay;
let port = 0;
const revoked = new Revocations();

before(async () => {
  writeFileSync(join(dir, "disk.img"), image);
  nbd = spawn(
    "qemu-nbd",
    ["--read-only", "--persistent", "--shared=8", "-f", "raw", "-x", "d0", "-k", sock, join(dir, "disk.img")],
    { stdio: "ignore" },
  );
  ca = await createCertificateAuthority(join(dir, "ca"));
  const qemu = await issueCredential(ca, { name: "qemu-g1", role: "qemu", targets: ["g1"] });
  oldCred = await issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: ["g1"] });
  newCred = await issueCredential(ca, { name: "secvm-a", role: "security-vm", targets: ["g1"] });
  otherGuest = await issueCredential(ca, { name: "secvm-b", role: "security-vm", targets: ["g2"] });
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(existsSync(sock), "qemu-nbd listens");
  relay = new NbdTlsRelay({
    upstream: sock,
    ...tlsOptions(qemu),
    authorize: revoked.guard(expectClient("security-vm", "g1")),
  });
  port = await relay.listen("127.0.0.1");
});

after(async () => {
  await relay?.close();
  if (nbd?.pid !== undefined && nbd.exitCode === null) {
    const exited = new Promise((r) => nbd.once("exit", r));
    nbd.kill("SIGTERM");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

const open = (cred: Credential) =>
  NbdClient.connect({
    transport: tlsTransport("127.0.0.1", port, {
      ...tlsOptions(cred),
      verifyServer: expectServer("qemu", "g1"),
    }),
    exportName: "d0",
  });

async function reads(c: NbdClient, at: number): Promise<void> {
  const got = await c.read(at, 4096);
  assert.ok(got.equals(image.subarray(at, at + 4096)), `bytes at ${at} as in the image`);
}

test("through the relay: a revoked certificate is refused at its next handshake; the reissued one and an open link read on", async () => {
  // Same name, same targets: QEMU's authz (by DN) could not tell these two apart.
  assert.equal(oldCred.certPem === newCred.certPem, false);
  const held = await open(oldCred);
  await reads(held, 0);
  const fresh = await open(newCred);
  await reads(fresh, 65_536);
  await fresh.close();
  await assert.rejects(open(otherGuest), "a certificate naming another guest is refused");
  const refusedBefore = relay.counts.refused;

  revoked.revoke(oldCred);
  await assert.rejects(open(oldCred), "the revoked certificate is refused from the next handshake");
  assert.equal(relay.counts.refused, refusedBefore + 1, "the refusal is counted by the relay");
  const again = await open(newCred);
  await reads(again, 512 * 1024);
  await again.close();
  // The link opened before the revocation is not cut: its holder closes it after the swap.
  await reads(held, 4096);
  await held.close();
});

test("one transport resumes its TLS session on later connections; a revoked certificate is still refused", async () => {
  const cred = await issueCredential(ca, { name: "secvm-r", role: "security-vm", targets: ["g1"] });
  const base = tlsTransport("127.0.0.1", port, {
    ...tlsOptions(cred),
    verifyServer: expectServer("qemu", "g1"),
  });
  const resumed: boolean[] = [];
  const transport = {
    ...base,
    upgrade: async (raw: Duplex, ms: number) => {
      const t = (await base.upgrade!(raw, ms)) as TLSSocket;
      resumed.push(t.isSessionReused());
      return t;
    },
  };
  for (const at of [0, 8192, 16_384]) {
    const c = await NbdClient.connect({ transport, exportName: "d0" });
    await reads(c, at);
    await c.close();
  }
  assert.deepEqual(resumed, [false, true, true], "the first handshake is full, the later ones resume");
  revoked.revoke(cred);
  await assert.rejects(
    NbdClient.connect({ transport, exportName: "d0" }),
    "a resumed session does not get past a revocation",
  );
});

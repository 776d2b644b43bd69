// The security-VM service (the agent's `secvm-service` process) over the remote channel, on a
// real Debian-kernel guest under QEMU (TCG): the service runs in a network namespace of its own
// joined to the target's side only by a veth pair (its own address, no loopback shared with
// the target), with its uid, and a config whose target is reached over TCP with TLS only:
// memory from the page server of the target's server, the disk through that server's NBD TLS
// relay (to QEMU's unix socket), the mirror from the target's QEMU (its chardev as TLS client)
// to the service's TLS listener. This test plays the agent's part over the IPC channel (config,
// disk views over QMP, alert collection), as src/agent/secvm/manager.ts does.
// Attacks caught and alerted with channel "remote": a process hidden by unlinking it from the
// task list (memory), a file matching the operator's ClamAV signature (disk), a DNS query
// matching a default Suricata rule (network). The page server saw the service's certificate.
// Rotation: the page server's and the relay's own certificates are reissued and swapped in
// while the service runs: new connections get the new ones, the monitors carry on.
//
// The agents provisioning a remote target themselves (a security VM on one testbed server for
// a guest of another) is tested in secvm-direct.test.ts, whose guests are booted already.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { agentCommand } from "../../src/agent/launcher.ts";
import {
  type AgentMessage,
  parseServiceMessage,
  type ServiceConfig,
  type ServiceMessage,
} from "../../src/agent/secvm/protocol.ts";
import { NbdTlsRelay } from "../../src/monitor/disk/nbd/tls-relay.ts";
import {
  type Alert,
  createNetns,
  deleteNetns,
  expectClient,
  expectServer,
  fingerprintOf,
  issueCredential,
  NbdClient,
  securityVmClient,
  tlsOptions,
  tlsTransport,
} from "../../src/monitor/index.ts";
import {
  addNetMirror,
  type DiskView,
  deviceSockets,
  openDiskView,
  removeNetMirror,
} from "../../src/qemu/index.ts";
import {
  connectRemoteMemory,
  discoverKernel,
  gpaToRamOffset,
  type Kernel,
  kernelImageVaToPa,
  listProcesses,
  openRamFile,
  PageServer,
  type RamFile,
  ramLayout,
} from "../../src/vmi/index.ts";
import { type SecvmTarget, startSecvmTarget, TLS_CLIENT_CREDS } from "../support/secvm-target.ts";

const GUEST = "remoteguest";
const MARKER = "NESTCLOUD-REMOTE-MALWARE-4c19e7";
const SUITE_TIMEOUT_MS = 600_000;
const UID = 0x4e000000 + (randomBytes(2).readUInt16BE(0) & 0xfff);
const tag = randomBytes(3).toString("hex");
const NETNS = `ncsvr-${tag}`;
const VETH_HOST = `ncrh${tag}`;
const VETH_SVM = `ncrs${tag}`;
const NET = `10.${200 + (randomBytes(1)[0] % 50)}.${randomBytes(1)[0]}`;
/** The target server's address (page server, relay) and the security VM's own. */
const SERVER_IP = `${NET}.1`;
const SECVM_IP = `${NET}.2`;

let t: SecvmTarget;
let ram: RamFile;
let kernel: Kernel;
let pageServer: PageServer;
let relay: NbdTlsRelay;
let pagePort = 0;
let relayPort = 0;
let service: ChildProcess | undefined;
let dir = "";
let netnsMade = false;
const alerts: Alert[] = [];
let view: DiskView | null = null;
let viewNo = 0;
let recording: string | null = null;
const pageServerPeers: string[] = [];

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

async function until<T>(what: string, f: () => T | null | undefined | false, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) {
      const got = alerts.map((a) => `${a.monitor}/${a.channel} ${a.severity} ${a.summary}`).join("\n  ");
      assert.fail(`timed out waiting for ${what}; alerts so far:\n  ${got}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The agent's answer to a disk-view request: a fleeced, bitmap-rotated export of the disk. */
async function diskView(m: Extract<ServiceMessage, { type: "disk-view-open" | "disk-view-close" }>) {
  try {
    if (view) await view.close();
    view = null;
    if (m.type === "disk-view-close") return { ok: true as const, exportName: "", dirtyBitmap: null };
    const start = `rb${++viewNo}`;
    view = await openDiskView(t.q.qmp, {
      node: t.diskNode,
      exportId: `remote-${randomBytes(6).toString("hex")}`,
      fleeceFile: join(t.stateDir, `fleece-remote-${viewNo}.qcow2`),
      rotate: { freeze: recording ?? undefined, start },
    });
    recording = start;
    return { ok: true as const, exportName: view.exportName, dirtyBitmap: view.frozenBitmap };
  } catch (e) {
    return { ok: false as const, error: (e as Error).message };
  }
}

before(async () => {
  t = await startSecvmTarget({ guestId: GUEST, docs: 40, diskMiB: 64 });
  ram = openRamFile(t.q.poolFile);
  kernel = await discoverKernel(ram.memory);

  // The security VM's namespace, reachable from the target's side over a veth pair only.
  await createNetns(NETNS);
  netnsMade = true;
  ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_SVM);
  ip("link", "set", VETH_SVM, "netns", NETNS);
  ip("addr", "add", `${SERVER_IP}/30`, "dev", VETH_HOST);
  ip("link", "set", VETH_HOST, "up");
  ip("netns", "exec", NETNS, "ip", "addr", "add", `${SECVM_IP}/30`, "dev", VETH_SVM);
  ip("netns", "exec", NETNS, "ip", "link", "set", VETH_SVM, "up");
  ip("netns", "exec", NETNS, "ip", "link", "set", "lo", "up");

  // The target server's side: its page server and NBD relay on its address, TLS only.
  pageServer = new PageServer({
    clients: [],
    guests: new Map([[GUEST, ram.memory]]),
    tls: {
      ...tlsOptions(t.creds.pageServer),
      identify: (cert) => {
        const who = securityVmClient(cert);
        if (who) pageServerPeers.push(who.id);
        return who;
      },
    },
  });
  pagePort = (await pageServer.listen(0, SERVER_IP)).port;
  await t.nbdTransport("local"); // QEMU's NBD server on its unix socket, behind the relay
  relay = new NbdTlsRelay({
    upstream: deviceSockets(t.q.spec.runDir, t.q.spec.devices ?? []).nbd as string,
    ...tlsOptions(t.creds.qemu),
    authorize: expectClient("security-vm", GUEST),
  });
  relayPort = await relay.listen(SERVER_IP);

  // The security VM's private folder: its credential and the operator's signature.
  dir = join("/run/ncsv", `remote-${tag}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string, data: string, mode = 0o600) => {
    writeFileSync(join(dir, name), data, { mode });
    chownSync(join(dir, name), UID, UID);
    return join(dir, name);
  };
  // Its certificate names its targets and its own address: the target's QEMU, as the mirror's
  // TLS client, checks the address it connects to against it.
  const cred = await issueCredential(t.ca, {
    name: "secvm-a",
    role: "security-vm",
    targets: [GUEST],
    ips: [SECVM_IP],
    dir: join(t.stateDir, "secvm-remote-cred"),
  });
  const tls = {
    ca: file("ca.pem", cred.caPem),
    cert: file("cert.pem", cred.certPem),
    key: file("key.pem", cred.keyPem),
  };
  const sig = `Nestcloud.IT.Remote:0:*:${Buffer.from(MARKER).toString("hex")}\n`;
  const db = file("operator.ndb", sig, 0o644);
  mkdirSync(join(dir, "scratch"), { mode: 0o700 });
  chownSync(join(dir, "scratch"), UID, UID);
  chownSync(dir, UID, UID);

  const mirrorPort = 7000 + (randomBytes(2).readUInt16BE(0) % 2000);
  const config: ServiceConfig = {
    type: "config",
    secvmId: `r${tag}`,
    uid: UID,
    gid: UID,
    dir,
    netns: NETNS,
    channel: "remote",
    tls,
    memoryPeriodMs: 1000,
    diskPeriodMs: 3000,
    clamavDatabases: [db],
    ruleFiles: [],
    targets: [
      {
        guestId: GUEST,
        memory: { pageServer: { host: SERVER_IP, port: pagePort, size: ram.memory.size } },
        disk: { relay: { host: SERVER_IP, port: relayPort } },
        nic: { listen: { host: SECVM_IP, port: mirrorPort }, monitorId: `r${tag}0` },
      },
    ],
    heartbeatMs: 1000,
  };
  const logFd = openSync(join(t.stateDir, "service.log"), "a");
  const [node, entry] = agentCommand();
  service = spawn("ip", ["netns", "exec", NETNS, node, entry, "secvm-service"], {
    stdio: ["ignore", logFd, logFd, "ipc"],
    detached: true,
  });
  closeSync(logFd);
  const svc = service;
  const ready = new Promise<void>((resolve, reject) => {
    svc.once("exit", (code, sig) => reject(new Error(`service exited (${code ?? sig}) before it was ready`)));
    svc.on("message", async (raw) => {
      const m = parseServiceMessage(raw, new Set([GUEST]));
      assert.ok(m, `a valid message from the service: ${JSON.stringify(raw).slice(0, 300)}`);
      if (m.type === "ready") resolve();
      else if (m.type === "alert") alerts.push(m.alert);
      else if (m.type === "disk-view-open" || m.type === "disk-view-close") {
        const answer = { type: "disk-view" as const, reqId: m.reqId, ...(await diskView(m)) };
        if (svc.connected) svc.send(answer satisfies AgentMessage, () => {});
      }
    });
  });
  svc.send(config satisfies AgentMessage);
  await ready;
  // The target's QEMU feeds the service's TLS listener (its client certificate names the guest).
  await addNetMirror(t.q.qmp, {
    id: "remote-mirror",
    netdev: "nic-n0",
    to: { type: "inet", host: SECVM_IP, port: mirrorPort, tlsCreds: TLS_CLIENT_CREDS, reconnectSeconds: 1 },
  });
});

after(async () => {
  if (service?.pid !== undefined && service.exitCode === null) {
    const exited = new Promise((r) => service?.once("exit", r));
    try {
      process.kill(-service.pid, "SIGKILL"); // its process group: Suricata, its TAP writer
    } catch {}
    await exited;
  }
  if (t) await removeNetMirror(t.q.qmp, "remote-mirror").catch(() => {});
  if (view) await view.close().catch(() => {});
  await relay?.close();
  await pageServer?.close();
  ram?.close();
  if (netnsMade) {
    try {
      ip("link", "del", VETH_HOST);
    } catch {}
    await deleteNetns(NETNS);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  await t?.close();
});

const remoteAlert = (pred: (a: Alert) => boolean) => () =>
  alerts.find((a) => a.channel === "remote" && pred(a));

describe("the security-VM service over the remote channel", { timeout: SUITE_TIMEOUT_MS }, () => {
  test("memory: a hidden process is alerted over the page server (TLS, from the service's own address)", async () => {
    await until(
      "the memory baseline",
      remoteAlert((a) => a.monitor === "memory" && a.evidence.kind === "baseline"),
      120_000,
    );
    assert.ok(pageServerPeers.includes("secvm-a"), "the page server saw the security VM's certificate");
    assert.ok(
      pageServer.stats.connections >= 1 && pageServer.connectionCounts.authenticated >= 1,
      "the service holds an authenticated connection",
    );
    const started = await t.sh("sleep 8888 >/dev/null 2>&1 & echo VICTIM $!");
    const pid = Number(/VICTIM (\d+)/.exec(started)?.[1]);
    const victim = (await listProcesses(kernel)).find((p) => p.pid === pid);
    assert.ok(victim, "a sleep to hide");
    const off = BigInt(kernel.field("task_struct.tasks").offset);
    const link = victim.task + off;
    const pa = (va: bigint) =>
      va >= kernel.facts.pageOffsetBase && va < 0xffffffff80000000n
        ? Number(va - kernel.facts.pageOffsetBase)
        : kernelImageVaToPa(va, kernel.facts.physBase);
    const u64 = (v: bigint) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, v, true);
      return b;
    };
    const poke = async (writes: { pa: number; bytes: Uint8Array }[]) => {
      const fd = openSync(t.q.poolFile, "r+");
      try {
        for (const w of writes) {
          const loc = gpaToRamOffset(ramLayout("q35", ram.file.size), w.pa);
          assert.equal(loc.kind, "ram");
          if (loc.kind === "ram") writeSync(fd, w.bytes, 0, w.bytes.length, loc.offset);
        }
      } finally {
        closeSync(fd);
      }
    };
    // The attack (DKOM), guest paused while its list is rewritten.
    await t.q.qmp.stop();
    const [next, prev] = await kernel.readU64s([link, link + 8n]);
    await poke([
      { pa: pa(prev), bytes: u64(next) },
      { pa: pa(next + 8n), bytes: u64(prev) },
    ]);
    await t.q.qmp.cont();
    try {
      const a = await until(
        `pid ${pid} hidden`,
        remoteAlert((x) => x.evidence.kind === "hidden-task" && x.evidence.pid === pid),
        90_000,
      );
      assert.equal(a.target, GUEST);
      assert.equal(a.severity, "critical");
    } finally {
      // Relinked: the guest's scheduler must find the task on its list again.
      await t.q.qmp.stop();
      const head = kernel.symbols.require("init_task") + off;
      const [tail] = await kernel.readU64s([head + 8n]);
      await poke([
        { pa: pa(link), bytes: u64(head) },
        { pa: pa(link + 8n), bytes: u64(tail) },
        { pa: pa(tail), bytes: u64(link) },
        { pa: pa(head + 8n), bytes: u64(link) },
      ]);
      await t.q.qmp.cont();
    }
  });

  test("disk: a file matching the operator's signature is alerted through the NBD TLS relay", async () => {
    const admitted = relay.counts.admitted;
    await t.sh(`printf '%s%s' '${MARKER.slice(0, 12)}' '${MARKER.slice(12)}' > /mnt/tmp/.r && sync`);
    const a = await until(
      "malware",
      remoteAlert((x) => x.monitor === "disk" && String(x.summary).startsWith("malware")),
      180_000,
    );
    assert.equal(a.target, GUEST);
    assert.match(a.summary, /\/tmp\/\.r matches/);
    assert.ok(relay.counts.admitted > admitted, "the rounds went through the relay");
    assert.equal(relay.counts.refused, 0);
  });

  test("rotation: the page server and the relay present reissued certificates to new connections; the service's monitors carry on", async () => {
    const client = await issueCredential(t.ca, {
      name: "secvm-probe",
      role: "security-vm",
      targets: [GUEST],
      dir: join(t.stateDir, "probe-cred"),
    });
    const served = { page: "", relay: "" };
    const pageNow = async () => {
      const m = await connectRemoteMemory({
        host: SERVER_IP,
        port: pagePort,
        guest: GUEST,
        tls: {
          ...tlsOptions(client),
          verifyServer: (cert) => {
            served.page = cert.fingerprint256;
            return expectServer("page-server")(cert);
          },
        },
      });
      await m.read([{ addr: 0, len: 8 }]);
      m.close();
      return served.page;
    };
    const relayNow = async () => {
      const transport = tlsTransport(SERVER_IP, relayPort, {
        ...tlsOptions(client),
        verifyServer: (cert) => {
          served.relay = cert.fingerprint256;
          return expectServer("qemu", GUEST)(cert);
        },
      });
      // No such export: the handshake (and its certificate) is all this needs.
      await NbdClient.connect({ transport, exportName: "no-such-export" }).then(
        (c) => c.close(),
        () => {},
      );
      return served.relay;
    };
    assert.equal(await pageNow(), fingerprintOf(t.creds.pageServer.certPem));
    assert.equal(await relayNow(), fingerprintOf(t.creds.qemu.certPem));
    const [page2, qemu2] = await Promise.all([
      issueCredential(t.ca, {
        name: "pagesrv-s1",
        role: "page-server",
        ips: [SERVER_IP],
        dir: join(t.stateDir, "rot-page"),
      }),
      issueCredential(t.ca, {
        name: `qemu-${GUEST}`,
        role: "qemu",
        targets: [GUEST],
        dir: join(t.stateDir, "rot-qemu"),
      }),
    ]);
    const rotatedAt = Date.now();
    pageServer.setCredentials(tlsOptions(page2));
    relay.setCredentials(tlsOptions(qemu2));
    assert.equal(await pageNow(), fingerprintOf(page2.certPem), "the page server's new certificate");
    assert.equal(await relayNow(), fingerprintOf(qemu2.certPem), "the relay's new certificate");
    // The service's memory link stays up (no loss alerted) and its next disk rounds go through
    // the relay with the new certificate.
    const admitted = relay.counts.admitted;
    await until("two disk rounds after the rotation", () => relay.counts.admitted >= admitted + 2, 120_000);
    const after = alerts.filter((a) => a.time >= rotatedAt);
    assert.deepEqual(
      after.filter((a) => a.evidence.kind === "source-lost" || /check failed|round failed/.test(a.summary)),
      [],
      "no monitor lost its target across the rotation",
    );
  });

  test("network: a DNS query matching a default rule is alerted from the TLS mirror", async () => {
    // Once the mirror's connection is up (QEMU retries it every second), a query reaches
    // Suricata; a query sent before that is not mirrored, so ask again until one is seen.
    const seen = remoteAlert((x) => x.monitor === "network" && x.evidence.signatureId === 9000001);
    let a: Alert | undefined;
    for (let i = 0; i < 6 && !a; i++) {
      await t.sh("(timeout 3 nslookup NESTCLOUD-IDS-TEST.example 10.0.2.2 >/dev/null 2>&1 &)");
      const end = Date.now() + 10_000;
      while (!(a = seen()) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(a, `an IDS alert over the remote channel; alerts: ${alerts.map((x) => x.summary).join("; ")}`);
    assert.equal(a.target, GUEST);
    assert.equal(a.evidence.srcIp, "10.0.2.15");
  });
});

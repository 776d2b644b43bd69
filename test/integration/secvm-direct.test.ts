// A security VM on one host VM monitoring a guest of ANOTHER host VM of the same server (the
// direct channel), provisioned by the agents themselves, on real QEMU (TCG) guests of a real
// testbed (one server s1, host VMs h1 and h2): sa is created on h2's agent with its target ga
// (of h1) `via` h1's agent, which exports to sa alone (POST /v1/secvm-exports): QEMU's NBD
// server in a folder of sa's uid, a filter-mirror towards sa's socket, the RAM file's path that
// h2's agent opens read-only for sa's service. Real attacks in ga are caught over that export
// and alerted with channel "direct": a process hidden by unlinking it from the task list
// (memory), a file matching the operator's ClamAV signature (disk, each round's view opened by
// h1's agent on h2's request), a DNS query matching a default Suricata rule (network).
// Credentials across agents: sa's uid reaches its export's socket and nothing of gb (watched
// locally on h1 by sb) nor any RAM file by path; sb's uid reaches nothing of sa's export or
// mirror. A guest has one watcher: h1 refuses a local security VM for ga and a second export.
// Faults: h1's agent killed (its successor does not keep exports: sa sees its export gone,
// asks again, and h1 makes it anew on the adopted QEMU; memory and mirror work again); ga's
// QEMU stopped (sa alerts its target lost) and started again (a fresh export, a new baseline).
// Deleting sa takes its export off ga's QEMU (no export, no mirror, no folder left).
// Remote (a second server s2 with h3): sr on h3 watches ga of s1 `via` h1's agent with channel
// "remote": its namespace joined to the testbed's bridge with a route to s1 only, its
// certificate from the testbed's CA; h1 serves ga over TLS (page server, NBD TLS relay, a
// mirror chardev dialling sr's TLS listener). A hidden process, a malware file and an IDS
// packet are caught with channel "remote"; h1's agent killed, its successor serves sr again
// (memory and disk resume); another security VM's certificate of the same CA
// is refused by the page server and the relay; deleting sr leaves nothing and its
// certificate is refused.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AlertPageAnswer, HostVmAgentClient, SecVmExport, SecVmStatus } from "../../src/agent/index.ts";
import { testbedCa } from "../../src/agent/secvm/remote.ts";
import {
  expectServer,
  issueCredential,
  NbdClient,
  NbdOptionError,
  tlsTransport,
} from "../../src/monitor/index.ts";
import { DEFAULT_GUEST_MODULES } from "../../src/qemu/index.ts";
import {
  connectRemoteMemory,
  discoverKernel,
  gpaToRamOffset,
  type Kernel,
  kernelImageVaToPa,
  listProcesses,
  openRamFile,
  type RamFile,
  ramLayout,
} from "../../src/vmi/index.ts";
import { type Bed, bringUp, tearDown, testbedOf } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
const MARKER = "NESTCLOUD-DIRECT-MALWARE-51be07";
const SIG = "Nestcloud.IT.Direct";
let bed: Bed;
let h1: HostVmAgentClient;
let h2: HostVmAgentClient;
let h3: HostVmAgentClient;
let ramA: RamFile;
let kernel: Kernel;
let poolA = "";
let poolB = "";
let sa: SecVmStatus;
let sb: SecVmStatus;
let exp: SecVmExport;

type Logged = AlertPageAnswer["alerts"][number];
const seen = new Map<string, Logged[]>();
const agentOf = (id: string) => (id === "sa" ? h2 : id === "sr" ? h3 : h1);

async function alertsOf(id: string, waitMs = 0): Promise<Logged[]> {
  const list = seen.get(id) ?? [];
  const page = await agentOf(id).secVmAlerts(id, { after: list.at(-1)?.seq ?? 0, limit: 1000, waitMs });
  list.push(...page.alerts);
  seen.set(id, list);
  return list;
}

async function waitAlert(id: string, what: string, pred: (a: Logged) => boolean, ms = 120_000) {
  const end = Date.now() + ms;
  for (;;) {
    const hit = (await alertsOf(id)).find(pred);
    if (hit) return hit;
    if (Date.now() > end) {
      const got = (seen.get(id) ?? []).map((a) => `${a.monitor}/${a.channel} ${a.severity} ${a.summary}`);
      assert.fail(`no alert of ${id}: ${what} in ${ms} ms; got:\n  ${got.join("\n  ")}`);
    }
    await alertsOf(id, 2000);
  }
}

async function sh(guest: string, command: string, timeoutMs = 60_000): Promise<string> {
  const r = await h1.exec(guest, { command, timeoutMs });
  assert.equal(r.exitCode, 0, `${guest}: ${command}: ${r.output}`);
  return r.output;
}

function makeImage(path: string): void {
  const tree = `${path}.tree`;
  const f = (p: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(tree, p, ".."), { recursive: true });
    writeFileSync(join(tree, p), data, { mode });
  };
  for (const [i, b] of ["sshd", "sudo", "login"].entries())
    f(`bin/${b}`, Buffer.alloc(128 * 1024 + i * 4096, i + 1), 0o755);
  for (let i = 0; i < 20; i++) f(`home/user/doc${i}.txt`, `document ${i}\n`.repeat(50));
  mkdirSync(join(tree, "tmp"), { mode: 0o1777 });
  execFileSync("truncate", ["-s", String(64 * MiB), path]);
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "data", "-d", tree, path]);
  execFileSync("rm", ["-rf", tree]);
}

/** Runs a probe as `uid`: tries to open each file and connect to each unix socket. */
function probeAs(uid: number, files: string[], sockets: string[]): Record<string, string> {
  const code = `
    const fs = require("node:fs"); const net = require("node:net");
    const out = {};
    for (const f of ${JSON.stringify(files)}) { try { fs.closeSync(fs.openSync(f, "r")); out[f] = "open"; } catch (e) { out[f] = e.code; } }
    let n = ${sockets.length};
    const done = () => { if (--n <= 0) { process.stdout.write(JSON.stringify(out)); process.exit(0); } };
    if (n === 0) { n = 1; done(); }
    for (const s of ${JSON.stringify(sockets)}) {
      const c = net.connect(s);
      c.once("connect", () => { out[s] = "connected"; c.destroy(); done(); });
      c.once("error", (e) => { out[s] = e.code; done(); });
    }`;
  const r = spawnSync(process.execPath, ["-e", code], { uid, gid: uid, encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** ga as the attacks need it: a sleep to hide, its disk mounted, its NIC up; its kernel found. */
async function prepareGa(pool: string): Promise<void> {
  await sh("ga", "sleep 1000 & echo ok");
  const disk = await sh("ga", "for b in /sys/block/vd*; do echo DISK $b $(cat $b/size); done");
  const dev = /DISK \/sys\/block\/(vd[a-z]+) 131072/.exec(disk);
  assert.ok(dev, disk);
  await sh("ga", `mkdir -p /mnt && mount -t ext4 /dev/${dev[1]} /mnt && ls /mnt/bin`);
  const nets = await sh("ga", 'for n in /sys/class/net/eth*; do echo "NIC $(basename $n)"; done');
  const eth = /NIC (eth\d+)/.exec(nets)?.[1];
  assert.ok(eth, nets);
  await sh(
    "ga",
    `ip link set ${eth} up; ip addr add 10.0.2.15/24 dev ${eth}; ping -c 1 -W 5 10.0.2.2 >/dev/null`,
  );
  ramA?.close();
  poolA = pool;
  ramA = openRamFile(poolA);
  kernel = await discoverKernel(ramA.memory);
}

/**
 * Hides ga's sleep from its task list (DKOM: unlinked while ga is paused) and waits for
 * security VM `id` to alert it over `channel`; the task is linked back whatever happens.
 */
async function hiddenProcessCaught(id: string, channel: string): Promise<void> {
  const layout = () => ramLayout("q35", ramA.file.size);
  const u64 = (v: bigint) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return b;
  };
  const pa = (va: bigint) =>
    va >= kernel.facts.pageOffsetBase && va < 0xffffffff80000000n
      ? Number(va - kernel.facts.pageOffsetBase)
      : kernelImageVaToPa(va, kernel.facts.physBase);
  const read64 = async (va: bigint) => (await kernel.readU64s([va]))[0];
  type Write = { pa: number; bytes: Uint8Array };
  const poke = async (what: () => Promise<Write[]>) => {
    await h1.qmp("ga", { execute: "stop" });
    let fd: number | undefined;
    try {
      const writes = await what();
      fd = openSync(poolA, "r+");
      for (const w of writes) {
        const loc = gpaToRamOffset(layout(), w.pa);
        assert.equal(loc.kind, "ram");
        if (loc.kind === "ram") writeSync(fd, w.bytes, 0, w.bytes.length, loc.offset);
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
      await h1.qmp("ga", { execute: "cont" });
    }
  };
  const victim = (await listProcesses(kernel)).find((p) => p.comm === "sleep" && p.ppid !== 0);
  assert.ok(victim);
  const off = BigInt(kernel.field("task_struct.tasks").offset);
  const link = victim.task + off;
  await poke(async () => {
    const [next, prev] = [await read64(link), await read64(link + 8n)];
    return [
      { pa: pa(prev), bytes: u64(next) },
      { pa: pa(next + 8n), bytes: u64(prev) },
    ];
  });
  try {
    const a = await waitAlert(
      id,
      `pid ${victim.pid} hidden`,
      (x) => x.evidence.kind === "hidden-task" && x.evidence.pid === victim.pid,
    );
    assert.equal(a.severity, "critical");
    assert.equal(a.target, "ga");
    assert.equal(a.channel, channel);
  } finally {
    const head = kernel.symbols.require("init_task") + off;
    await poke(async () => {
      const tail = await read64(head + 8n);
      return [
        { pa: pa(link), bytes: u64(head) },
        { pa: pa(link + 8n), bytes: u64(tail) },
        { pa: pa(tail), bytes: u64(link) },
        { pa: pa(head + 8n), bytes: u64(link) },
      ];
    });
  }
}

const secvmDir = (s: SecVmStatus) => join("/run/ncsv", s.netns.slice(5));

before(async () => {
  bed = await bringUp(testbedOf({ s1: ["h1", "h2"], s2: ["h3"] }, { cpus: 2 }), {
    modules: [...DEFAULT_GUEST_MODULES, "ext4", "crc32c_generic"],
  });
  h1 = bed.client("s1", "h1");
  h2 = bed.client("s1", "h2");
  h3 = bed.client("s2", "h3");
  const host1 = bed.state.hostVms.find((h) => h.name === "h1");
  assert.ok(host1);
  const images = join(dirname(host1.qemuDir), "images");
  mkdirSync(images, { recursive: true });
  makeImage(join(images, "data.img"));
  const [ga, gb] = await Promise.all([
    h1.createGuest({
      guestId: "ga",
      memoryMiB: 256,
      devices: [
        { kind: "disk", id: "d0", file: "data.img" },
        { kind: "nic", id: "n0" },
      ],
    }),
    h1.createGuest({
      guestId: "gb",
      memoryMiB: 192,
      devices: [{ kind: "disk", id: "d0", file: "data.img" }],
    }),
  ]);
  poolA = ga.poolFile as string;
  poolB = gb.poolFile as string;
  await prepareGa(poolA);
  const signatures = [{ name: SIG, hex: Buffer.from(MARKER).toString("hex") }];
  sb = await h1.createSecVm({ secvmId: "sb", targets: [{ guestId: "gb", disk: "d0" }], diskPeriodMs: 5000 });
  sa = await h2.createSecVm({
    secvmId: "sa",
    targets: [
      {
        guestId: "ga",
        disk: "d0",
        nic: "n0",
        via: { agentUrl: bed.ep("s1", "h1").hostVmUrl, channel: "direct" },
      },
    ],
    memoryPeriodMs: 1000,
    diskPeriodMs: 3000,
    signatures,
  });
  const list = await h1.secVmExports();
  assert.equal(list.length, 1, JSON.stringify(list));
  exp = list[0];
});

after(async () => {
  ramA?.close();
  try {
    if (h2) await h2.deleteSecVm("sa").catch(() => {});
    if (h3) await h3.deleteSecVm("sr").catch(() => {});
    if (h1) await h1.deleteSecVm("sb").catch(() => {});
  } finally {
    await tearDown(bed?.state ? bed : undefined);
  }
});

describe("a security VM of another host VM of the same server (direct)", { timeout: 900_000 }, () => {
  test("h1 exported ga to sa alone: a folder of sa's uid with the NBD socket, the mirror, the RAM file", async () => {
    assert.equal(sa.state, "running");
    assert.deepEqual(
      { guest: exp.guestId, channel: exp.channel, grantee: exp.grantee, running: exp.running },
      {
        guest: "ga",
        channel: "direct",
        grantee: { secvmId: "sa", server: "s1", hostVm: "h2", uid: sa.uid },
        running: true,
      },
    );
    assert.equal(exp.ramFile, poolA);
    assert.ok(exp.nbdSocket && exp.mirror, "disk and NIC exported");
    const st = execFileSync("stat", ["-c", "%u %a", dirname(exp.nbdSocket)], { encoding: "utf8" }).trim();
    assert.equal(st, `${sa.uid} 700`, "the export's folder is sa's alone");
    await waitAlert("sa", "memory baseline", (a) => a.monitor === "memory" && a.evidence.kind === "baseline");
    const base = (seen.get("sa") ?? []).find((a) => a.evidence.kind === "baseline");
    assert.equal(base?.channel, "direct");
  });

  test("credentials across agents: sa reaches its export only; sb (on h1) nothing of sa's", () => {
    const nbdA = exp.nbdSocket as string;
    const mirrorA = join(secvmDir(sa), "mirror-ga.sock");
    const nbdB = join(secvmDir(sb), "nbd-gb.sock");
    const asA = probeAs(sa.uid, [poolA, poolB], [nbdA, nbdB]);
    assert.equal(asA[nbdA], "connected", "sa reaches ga's NBD server through its export");
    assert.equal(asA[nbdB], "EACCES", "sa cannot reach gb's disk");
    assert.equal(asA[poolB], "EACCES", "sa cannot open gb's RAM");
    assert.equal(asA[poolA], "EACCES", "nor its own target's RAM by path (only its descriptor)");
    const asB = probeAs(sb.uid, [poolA], [nbdA, mirrorA, nbdB]);
    assert.equal(asB[nbdB], "connected");
    assert.equal(asB[nbdA], "EACCES", "sb cannot reach ga's disk exported to sa");
    assert.equal(asB[mirrorA], "EACCES", "sb cannot reach ga's traffic mirrored to sa");
    assert.equal(asB[poolA], "EACCES", "sb cannot open ga's RAM");
  });

  test("one watcher per guest: h1 refuses a local security VM for ga and a second export of it", async () => {
    await assert.rejects(h1.createSecVm({ secvmId: "sc", targets: [{ guestId: "ga" }] }), /409.*exported/);
    await assert.rejects(
      h1.createSecVmExport({
        guestId: "ga",
        memory: true,
        channel: "direct",
        grantee: { secvmId: "sz", server: "s1", hostVm: "h2", uid: 0x40000001 },
      }),
      /409.*already exported/,
    );
    await assert.rejects(
      h1.createSecVmExport({
        guestId: "gb",
        memory: true,
        channel: "direct",
        grantee: { secvmId: "sz", server: "s9", hostVm: "h2", uid: 0x40000001 },
      }),
      /400.*another server/,
    );
  });

  test("memory: a process unlinked from ga's task list is alerted hidden over the direct channel", async () => {
    await hiddenProcessCaught("sa", "direct");
  });

  test("disk: a file matching the signature is alerted, each round's view opened by h1 for h2", async () => {
    await sh("ga", `printf '%s%s' '${MARKER.slice(0, 10)}' '${MARKER.slice(10)}' > /mnt/tmp/.d && sync`);
    const mal = await waitAlert(
      "sa",
      "malware",
      (x) => x.monitor === "disk" && String(x.summary).startsWith("malware"),
      180_000,
    );
    assert.equal(mal.channel, "direct");
    assert.equal(mal.target, "ga");
    assert.equal(mal.evidence.path, "/tmp/.d");
    assert.equal(mal.evidence.signature, `${SIG}.UNOFFICIAL`);
    // gb's security VM (its own copy of the image) saw nothing of it.
    assert.ok(!(await alertsOf("sb")).some((x) => x.monitor === "disk" && x.severity === "critical"));
  });

  test("network: a DNS query matching a default rule is alerted from the mirror h1 added", async () => {
    const before = (await alertsOf("sa")).at(-1)?.seq ?? 0;
    const seenIds = () =>
      (seen.get("sa") ?? []).find(
        (x) => x.seq > before && x.monitor === "network" && x.evidence.signatureId === 9000001,
      );
    let a: Logged | undefined;
    // The mirror's chardev connects within a second of the service listening; ask until seen.
    for (let i = 0; i < 6 && !a; i++) {
      await sh("ga", "(timeout 3 nslookup NESTCLOUD-IDS-TEST.example 10.0.2.2 >/dev/null 2>&1 &)");
      const end = Date.now() + 10_000;
      while (!(a = seenIds()) && Date.now() < end) await alertsOf("sa", 1000);
    }
    assert.ok(a, "an IDS alert over the direct channel");
    assert.equal(a.channel, "direct");
    assert.equal(a.target, "ga");
    assert.equal(a.evidence.srcIp, "10.0.2.15");
  });

  test("h1's agent killed: its successor makes sa's export anew on the adopted QEMU; monitoring resumes", async () => {
    const before = (await alertsOf("sa")).at(-1)?.seq ?? 0;
    const agentPid = (await h1.status()).pid;
    process.kill(agentPid, "SIGKILL");
    const lost = await waitAlert(
      "sa",
      "target lost (export gone)",
      (x) => x.seq > before && x.evidence.kind === "target-lost" && x.monitor === "memory",
      180_000,
    );
    assert.match(lost.summary, /export is gone/);
    await waitAlert(
      "sa",
      "target back",
      (x) => x.seq > lost.seq && x.evidence.kind === "target-back",
      60_000,
    );
    await waitAlert(
      "sa",
      "a new baseline",
      (x) => x.seq > lost.seq && x.monitor === "memory" && x.evidence.kind === "baseline",
      180_000,
    );
    assert.notEqual((await h1.status()).pid, agentPid, "a new agent");
    const list = await h1.secVmExports();
    assert.equal(list.length, 1);
    assert.equal(list[0].qemuPid, exp.qemuPid, "the same (adopted) QEMU");
    assert.equal(list[0].exportId, exp.exportId, "the same export, made anew");
    // The mirror was made anew too (the predecessor's of the same id removed first).
    const seq = (await alertsOf("sa")).at(-1)?.seq ?? 0;
    let ids: Logged | undefined;
    for (let i = 0; i < 6 && !ids; i++) {
      await sh("ga", "(timeout 3 nslookup NESTCLOUD-IDS-TEST.again 10.0.2.2 >/dev/null 2>&1 &)");
      const end = Date.now() + 10_000;
      while (
        !(ids = (seen.get("sa") ?? []).find((x) => x.seq > seq && x.evidence.signatureId === 9000001)) &&
        Date.now() < end
      )
        await alertsOf("sa", 1000);
    }
    assert.ok(ids, "an IDS alert through the export's new mirror");
    assert.equal(ids.channel, "direct");
  });

  test("ga's QEMU stopped: sa alerts its target lost; ga started again: a fresh export and a new baseline", async () => {
    const before = (await alertsOf("sa")).at(-1)?.seq ?? 0;
    await h1.stopGuest("ga");
    const lost = await waitAlert(
      "sa",
      "target lost",
      (x) => x.seq > before && x.evidence.kind === "target-lost" && x.monitor === "memory",
      60_000,
    );
    assert.equal(lost.channel, "direct");
    assert.equal(lost.severity, "critical");
    assert.equal(lost.evidence.qemuPid, exp.qemuPid);
    const started = await h1.startGuest("ga");
    await waitAlert(
      "sa",
      "target back",
      (x) => x.seq > lost.seq && x.evidence.kind === "target-back",
      60_000,
    );
    const base = await waitAlert(
      "sa",
      "a new baseline",
      (x) => x.seq > lost.seq && x.monitor === "memory" && x.evidence.kind === "baseline",
      180_000,
    );
    assert.equal(base.channel, "direct");
    const list = await h1.secVmExports();
    assert.equal(list.length, 1, "one export: the old one was taken down");
    assert.equal(list[0].qemuPid, started.pid, "of the new QEMU");
    assert.equal(list[0].running, true);
    exp = list[0];
  });

  test("deleting sa takes its export off ga's QEMU; a local security VM may watch ga then", async () => {
    await h2.deleteSecVm("sa");
    assert.deepEqual(await h1.secVmExports(), [], "no export left on h1");
    assert.equal(existsSync(dirname(exp.nbdSocket as string)), false, "the export's folder is gone");
    const exports = (await h1.qmp("ga", { execute: "query-block-exports" })).return;
    assert.deepEqual(exports, [], "no NBD export on ga's QEMU");
    const objs = (await h1.qmp("ga", { execute: "qom-list", arguments: { path: "/objects" } })).return as {
      name: string;
    }[];
    const names = objs.map((o) => o.name);
    assert.ok(!names.includes(exp.mirror as string), `the mirror ${exp.mirror} is gone (${names.join(",")})`);
    const sc = await h1.createSecVm({ secvmId: "sc", targets: [{ guestId: "ga", disk: "d0" }] });
    assert.equal(sc.state, "running", "ga's QEMU runs an NBD server for a new watcher");
    await h1.deleteSecVm("sc");
  });
});

/** A TLS credential as the remote clients take it (PEM strings). */
type Pem = { ca: string; cert: string; key: string };

/** Reads 8 bytes of ga from the page server with `pem`. */
async function readGaWith(at: { host: string; port: number }, pem: Pem): Promise<void> {
  const m = await connectRemoteMemory({
    ...at,
    guest: "ga",
    connectTimeoutMs: 10_000,
    tls: { ...pem, verifyServer: expectServer("page-server") },
  });
  try {
    await m.read([{ addr: 0, len: 8 }]);
  } finally {
    m.close();
  }
}

/** Opens an NBD session through the relay with `pem` (an export that does not exist). */
async function relayWith(at: { host: string; port: number }, pem: Pem): Promise<unknown> {
  const transport = tlsTransport(at.host, at.port, { ...pem, verifyServer: expectServer("qemu", "ga") });
  return NbdClient.connect({ transport, exportName: "no-such-export" }).then(
    (c) => {
      void c.close();
      return null;
    },
    (e: unknown) => e,
  );
}

/** Whether a TCP port of the target's server still accepts connections (from the test's namespace). */
function accepts(at: { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(at);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

describe("a security VM of another server (remote, provisioned by the agents)", { timeout: 900_000 }, () => {
  let sr: SecVmStatus;
  let rexp: SecVmExport;
  let own: Pem;
  let bridgeLink = "";
  const s1 = () => bed.ep("s1", "h1").address;

  test("sr on s2 watches ga of s1: h1 serves it over TLS (page server, NBD relay, TLS mirror); sr's namespace routes to s1 only", async () => {
    // ga was restarted by the fault test above: a fresh guest to prepare again.
    await prepareGa((await h1.guest("ga")).poolFile as string);
    sr = await h3.createSecVm({
      secvmId: "sr",
      targets: [
        {
          guestId: "ga",
          disk: "d0",
          nic: "n0",
          via: { agentUrl: bed.ep("s1", "h1").hostVmUrl, channel: "remote" },
        },
      ],
      memoryPeriodMs: 1000,
      diskPeriodMs: 3000,
      signatures: [{ name: SIG, hex: Buffer.from(MARKER).toString("hex") }],
    });
    assert.equal(sr.state, "running", sr.error ?? "");
    const list = await h1.secVmExports();
    assert.equal(list.length, 1, JSON.stringify(list));
    rexp = list[0];
    assert.deepEqual(
      { channel: rexp.channel, grantee: rexp.grantee, ramFile: rexp.ramFile, running: rexp.running },
      {
        channel: "remote",
        grantee: { secvmId: "sr", server: "s2", hostVm: "h3", uid: sr.uid },
        ramFile: null,
        running: true,
      },
      "a remote export gets no path of the server's",
    );
    assert.equal(rexp.pageServer?.host, s1(), "the page server listens on s1's address");
    assert.equal(rexp.relay?.host, s1(), "the relay listens on s1's address");
    assert.ok(rexp.mirror && rexp.nbdSocket, "NIC and disk exported");
    const st = execFileSync("stat", ["-c", "%u %a", dirname(rexp.nbdSocket)], { encoding: "utf8" }).trim();
    assert.equal(st, "0 700", "the NBD socket's folder is root's: only the relay reaches it");
    // The namespace was made in the agent's mount namespace: entered through the service's pid.
    const inSr = (...args: string[]) =>
      execFileSync("nsenter", ["-t", String(sr.pid), "-n", "ip", ...args], { encoding: "utf8" });
    const addr = inSr("-o", "-4", "addr", "show", "dev", "eth0");
    assert.match(addr, /inet \d+\.\d+\.\d+\.\d+\/32/, "sr has an address of its own");
    const routes = inSr("-4", "route", "show")
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" ")[0]);
    assert.deepEqual(
      routes,
      [s1()],
      "sr's namespace has a route to s1 (its target's server) and nothing else",
    );
    const links = execFileSync("ip", ["-n", bed.state.network.bridgeNetns as string, "-o", "link", "show"], {
      encoding: "utf8",
      // ip says on stderr that it cannot name the servers' namespaces (not ours to name).
      stdio: ["ignore", "pipe", "ignore"],
    });
    bridgeLink = /\d+: (ncsv\d+)@/.exec(links)?.[1] ?? "";
    assert.ok(bridgeLink, `sr's veth on the testbed's bridge: ${links}`);
    const base = await waitAlert(
      "sr",
      "memory baseline",
      (a) => a.monitor === "memory" && a.evidence.kind === "baseline",
      180_000,
    );
    assert.equal(base.channel, "remote");
  });

  test("memory: a process unlinked from ga's task list is alerted hidden over the remote channel", async () => {
    await hiddenProcessCaught("sr", "remote");
  });

  test("disk: a file matching the signature is alerted through h1's NBD TLS relay", async () => {
    await sh("ga", `printf '%s%s' '${MARKER.slice(0, 10)}' '${MARKER.slice(10)}' > /mnt/tmp/.r && sync`);
    const mal = await waitAlert(
      "sr",
      "malware in /tmp/.r",
      (x) => x.monitor === "disk" && String(x.summary).startsWith("malware") && x.evidence.path === "/tmp/.r",
      180_000,
    );
    assert.equal(mal.channel, "remote");
    assert.equal(mal.target, "ga");
    assert.equal(mal.evidence.signature, `${SIG}.UNOFFICIAL`);
  });

  test("network: a DNS query matching a default rule is alerted from ga's TLS mirror", async () => {
    const before = (await alertsOf("sr")).at(-1)?.seq ?? 0;
    const ids = () =>
      (seen.get("sr") ?? []).find(
        (x) => x.seq > before && x.monitor === "network" && x.evidence.signatureId === 9000001,
      );
    let a: Logged | undefined;
    for (let i = 0; i < 6 && !a; i++) {
      await sh("ga", "(timeout 3 nslookup NESTCLOUD-IDS-TEST.remote 10.0.2.2 >/dev/null 2>&1 &)");
      const end = Date.now() + 10_000;
      while (!(a = ids()) && Date.now() < end) await alertsOf("sr", 1000);
    }
    assert.ok(a, "an IDS alert over the remote channel");
    assert.equal(a.channel, "remote");
    assert.equal(a.target, "ga");
    assert.equal(a.evidence.srcIp, "10.0.2.15");
  });

  test("h1's agent killed: its successor serves ga to sr again (same certificate, a new page server and relay); memory and disk resume", async () => {
    const before = (await alertsOf("sr")).at(-1)?.seq ?? 0;
    const agentPid = (await h1.status()).pid;
    process.kill(agentPid, "SIGKILL");
    const lost = await waitAlert(
      "sr",
      "target lost (export gone)",
      (x) => x.seq > before && x.evidence.kind === "target-lost" && x.monitor === "memory",
      180_000,
    );
    assert.equal(lost.channel, "remote");
    const base = await waitAlert(
      "sr",
      "a new baseline",
      (x) => x.seq > lost.seq && x.monitor === "memory" && x.evidence.kind === "baseline",
      180_000,
    );
    assert.equal(base.channel, "remote");
    assert.notEqual((await h1.status()).pid, agentPid, "a new agent");
    const list = await h1.secVmExports();
    assert.equal(list.length, 1);
    assert.deepEqual(
      { id: list[0].exportId, channel: list[0].channel, qemuPid: list[0].qemuPid },
      { id: rexp.exportId, channel: "remote", qemuPid: rexp.qemuPid },
      "the same export made anew on the adopted QEMU",
    );
    rexp = list[0];
    // The disk through the successor's relay: a new file is caught.
    await sh("ga", `printf '%s%s' '${MARKER.slice(0, 10)}' '${MARKER.slice(10)}' > /mnt/tmp/.r2 && sync`);
    const mal = await waitAlert(
      "sr",
      "malware in /tmp/.r2",
      (x) => x.seq > lost.seq && x.monitor === "disk" && x.evidence.path === "/tmp/.r2",
      180_000,
    );
    assert.equal(mal.channel, "remote");
  });

  test("credentials: sr's certificate reads ga; another security VM's (same CA, even naming ga) is refused by the page server and the relay", async () => {
    const tls = join(secvmDir(sr), "tls");
    const name = `secvm-${sr.netns.slice(5)}`;
    own = {
      ca: readFileSync(join(bed.state.stateDir, "ca", "ca-cert.pem"), "utf8"),
      cert: readFileSync(join(tls, `${name}-cert.pem`), "utf8"),
      key: readFileSync(join(tls, `${name}-key.pem`), "utf8"),
    };
    const ca = await testbedCa(join(bed.state.stateDir, "ca"));
    const dir = join(bed.state.stateDir, "intruders");
    const [namingGa, namingGb] = await Promise.all([
      issueCredential(ca, { name: "secvm-intruder", role: "security-vm", targets: ["ga"], dir }),
      issueCredential(ca, { name: "secvm-other", role: "security-vm", targets: ["gb"], dir }),
    ]);
    const page = rexp.pageServer as { host: string; port: number };
    const relay = rexp.relay as { host: string; port: number };
    await readGaWith(page, own);
    for (const c of [namingGa, namingGb]) {
      const pem = { ca: c.caPem, cert: c.certPem, key: c.keyPem };
      await assert.rejects(readGaWith(page, pem), `the page server refuses ${c.name}'s certificate`);
      const e = await relayWith(relay, pem);
      assert.ok(e && !(e instanceof NbdOptionError), `the relay refuses ${c.name} before NBD: ${String(e)}`);
    }
    // sr's own certificate gets through the relay's TLS to QEMU's NBD server (no such export there).
    const mine = await relayWith(relay, own);
    assert.ok(mine instanceof NbdOptionError, `sr's certificate reaches NBD: ${String(mine)}`);
  });

  test("deleting sr takes everything down: h1's export, relay and page server, sr's namespace and veth; its certificate is refused", async () => {
    const page = rexp.pageServer as { host: string; port: number };
    const relay = rexp.relay as { host: string; port: number };
    await h3.deleteSecVm("sr");
    assert.deepEqual(await h1.secVmExports(), [], "no export left on h1");
    assert.equal(existsSync(dirname(rexp.nbdSocket as string)), false, "the export's folder is gone");
    assert.deepEqual((await h1.qmp("ga", { execute: "query-block-exports" })).return, [], "no NBD export");
    const objs = (await h1.qmp("ga", { execute: "qom-list", arguments: { path: "/objects" } })).return as {
      name: string;
    }[];
    const names = objs.map((o) => o.name);
    assert.ok(!names.includes(rexp.mirror as string), `the mirror is gone (${names.join(",")})`);
    assert.ok(
      !names.includes(`sxt-${rexp.exportId}`),
      `the mirror's TLS credentials are gone (${names.join(",")})`,
    );
    assert.equal(await accepts(relay), false, "the relay no longer listens");
    assert.equal(await accepts(page), false, "the page server (its last grant gone) no longer listens");
    await assert.rejects(readGaWith(page, own), "sr's certificate reads nothing");
    assert.equal(existsSync(`/proc/${sr.pid}`), false, "sr's service is gone");
    const links = execFileSync("ip", ["-n", bed.state.network.bridgeNetns as string, "-o", "link", "show"], {
      encoding: "utf8",
      // ip says on stderr that it cannot name the servers' namespaces (not ours to name).
      stdio: ["ignore", "pipe", "ignore"],
    });
    assert.ok(!links.includes(`${bridgeLink}@`), `sr's veth left the bridge: ${links}`);
    assert.deepEqual(
      (await h3.secVms()).map((v) => v.secvmId),
      [],
      "no security VM left on h3",
    );
  });
});

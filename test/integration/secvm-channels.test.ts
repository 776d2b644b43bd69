// Real QEMU (TCG), a real Debian-kernel guest: every monitor catches a real attack over each
// channel (monitor/channel). Local and direct read the guest's RAM file and its NBD export over
// a unix socket and take its mirror over a unix socket; remote goes over TCP with TLS and
// client certificates: the page server (its own TLS listener), QEMU's NBD server
// (NBD_OPT_STARTTLS; tls-creds-x509 with verify-peer and an authz list), and the mirror stream
// (QEMU's chardev as the TLS client, with the target's certificate).
// Attacks: a hidden process (DKOM) and a hooked syscall written into guest RAM (guest paused);
// a patched system binary and a file matching a ClamAV signature written inside the guest; a
// DNS query matching a tenant's rule. Credentials: a security VM whose certificate names another
// guest, and a client without a certificate, get none of the guest's memory, disk or traffic.
import assert from "node:assert/strict";
import { closeSync, existsSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import {
  type Alert,
  type Channel,
  DiskMonitor,
  expectClient,
  expectServer,
  FrameQueue,
  hexSignature,
  MirrorReceiver,
  NbdClient,
  NetworkMonitor,
  securityVmClient,
  tcpTransport,
  tlsOptions,
  tlsTransport,
  writeSignatureDatabase,
} from "../../src/monitor/index.ts";
import { addNetMirror, openDiskView, removeNetMirror } from "../../src/qemu/index.ts";
import {
  checkSyscallTable,
  connectRemoteMemory,
  discoverKernel,
  findHiddenTasks,
  gpaToRamOffset,
  Kernel,
  kernelImageVaToPa,
  listModules,
  listProcesses,
  openRamFile,
  PageServer,
  type PhysicalMemory,
  RemoteError,
  ramLayout,
} from "../../src/vmi/index.ts";
import { eventsOf } from "../support/follow-analysis.ts";
import {
  AV_MARKER,
  AV_SIGNATURE,
  PACKET_DST_BASE,
  parseCounts,
  READ_COUNTS_COMMAND,
  STOP_GENERATORS_COMMAND,
  startGeneratorsCommand,
} from "../support/follow-events.ts";
import { freePort, GATEWAY, type SecvmTarget, startSecvmTarget } from "../support/secvm-target.ts";
import { alive } from "../support/waiting.ts";

const GUEST = "secvmguest";
const CHANNELS: Channel[] = ["local", "direct", "remote"];
const MARKER_HEAD = "NESTCLOUD-CHAN-DROPPER-";
const MARKER_TAIL = "7d1e0a";
const SUITE_TIMEOUT_MS = 600_000;

let t: SecvmTarget;
let kernel: Kernel;
let ram: ReturnType<typeof openRamFile>;
let pageServer: PageServer;
let pagePort = 0;
const opened: Array<{ close(): void }> = [];

before(async () => {
  t = await startSecvmTarget({ guestId: GUEST, docs: 200, diskMiB: 64 });
  ram = openRamFile(t.q.poolFile);
  kernel = await discoverKernel(ram.memory);
  // The page server of the target's physical server, TLS only: whoever's certificate names the
  // guest reads it.
  pageServer = new PageServer({
    clients: [],
    guests: new Map([[GUEST, ram.memory]]),
    tls: { ...tlsOptions(t.creds.pageServer), identify: securityVmClient },
  });
  pagePort = (await pageServer.listen()).port;
});

after(async () => {
  for (const o of opened) o.close();
  await pageServer?.close();
  ram?.close();
  if (t) {
    const pid = t.q.pid;
    const pool = t.q.poolFile;
    await t.close();
    assert.equal(alive(pid), false, `QEMU pid ${pid} gone`);
    assert.equal(existsSync(pool), false, "pool file removed");
  }
});

/** The memory a security VM reads over `channel`: the RAM file, or the page server over TLS. */
async function memoryOver(channel: Channel, cred = t.creds.secvm): Promise<PhysicalMemory> {
  if (channel !== "remote") {
    const rf = openRamFile(t.q.poolFile);
    opened.push(rf);
    return rf.memory;
  }
  const m = await connectRemoteMemory({
    host: "127.0.0.1",
    port: pagePort,
    guest: GUEST,
    tls: { ...tlsOptions(cred), verifyServer: expectServer("page-server") },
  });
  opened.push(m);
  return m;
}

const kernelOver = (m: PhysicalMemory) =>
  new Kernel(m, kernel.facts, kernel.symbols, kernel.profile, undefined, {});

describe("memory over each channel", { timeout: SUITE_TIMEOUT_MS }, () => {
  type Write = { pa: number; bytes: Uint8Array };
  const layout = () => ramLayout("q35", ram.file.size);
  async function poke(what: Write[] | (() => Promise<Write[]>)): Promise<void> {
    await t.q.qmp.stop();
    let fd: number | undefined;
    try {
      const writes = typeof what === "function" ? await what() : what;
      fd = openSync(t.q.poolFile, "r+");
      for (const w of writes) {
        const loc = gpaToRamOffset(layout(), w.pa);
        assert.equal(loc.kind, "ram");
        if (loc.kind === "ram") writeSync(fd, w.bytes, 0, w.bytes.length, loc.offset);
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
      await t.q.qmp.cont();
    }
  }
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

  test("a hidden process and a hooked syscall are caught over local, direct and remote", async (tc) => {
    const started = await t.sh("sleep 7777 >/dev/null 2>&1 & echo VICTIM $!");
    const pid = Number(/VICTIM (\d+)/.exec(started)?.[1]);
    const victim = (await listProcesses(kernel)).find((p) => p.pid === pid);
    assert.ok(victim, "a sleep to hide");
    const mod = (await listModules(kernel))[0];
    assert.ok(mod, "a module to point a syscall into");
    const off = BigInt(kernel.field("task_struct.tasks").offset);
    const link = victim.task + off;
    const table = kernel.symbols.require("sys_call_table");
    const nr = 246; // kexec_load: nothing in the guest calls it
    const entry = pa(table + BigInt(nr * 8));
    const original = await read64(table + BigInt(nr * 8));
    // The attack: unlink the task (DKOM), point the syscall into the module.
    await poke(async () => {
      const [next, prev] = [await read64(link), await read64(link + 8n)];
      return [
        { pa: pa(prev), bytes: u64(next) },
        { pa: pa(next + 8n), bytes: u64(prev) },
        { pa: entry, bytes: u64(mod.base + 0x10n) },
      ];
    });
    try {
      for (const channel of CHANNELS) {
        const k = kernelOver(await memoryOver(channel));
        const hidden = await findHiddenTasks(k);
        assert.deepEqual(
          hidden.hidden.map((h) => [h.pid, h.comm]),
          [[victim.pid, "sleep"]],
          `${channel}: the hidden task`,
        );
        const sys = await checkSyscallTable(k);
        assert.deepEqual(
          sys.findings.map((f) => [f.nr, f.problem, f.symbol]),
          [[nr, "outside-text", `module:${mod.name}+0x10`]],
          `${channel}: the hooked syscall`,
        );
        tc.diagnostic(`${channel}: hidden pid ${victim.pid}, syscall ${nr} -> module:${mod.name}+0x10`);
      }
    } finally {
      const head = kernel.symbols.require("init_task") + off;
      await poke(async () => {
        const tail = await read64(head + 8n);
        return [
          { pa: pa(link), bytes: u64(head) },
          { pa: pa(link + 8n), bytes: u64(tail) },
          { pa: pa(tail), bytes: u64(link) },
          { pa: pa(head + 8n), bytes: u64(link) },
          { pa: entry, bytes: u64(original) },
        ];
      });
    }
    assert.deepEqual((await findHiddenTasks(kernel)).hidden, []);
    assert.deepEqual((await checkSyscallTable(kernel)).findings, []);
  });

  test("remote: a certificate for another guest, or none, reads nothing", async () => {
    const forbidden = pageServer.stats.forbidden;
    await assert.rejects(
      memoryOver("remote", t.creds.other),
      (e) => e instanceof RemoteError && e.code === "REMOTE_FORBIDDEN",
    );
    assert.equal(pageServer.stats.forbidden, forbidden + 1);
    await assert.rejects(
      connectRemoteMemory({
        host: "127.0.0.1",
        port: pagePort,
        guest: GUEST,
        tls: { ca: t.ca.certPem, cert: "", key: "", verifyServer: expectServer("page-server") },
      }),
      RemoteError,
    );
    // Plain TCP (the token protocol) against the TLS listener gets nowhere either.
    await assert.rejects(
      connectRemoteMemory({
        host: "127.0.0.1",
        port: pagePort,
        guest: GUEST,
        token: "a-token-of-sixteen-bytes-or-more",
        connectTimeoutMs: 2000,
      }),
      RemoteError,
    );
  });
});

describe("disk over each channel", { timeout: SUITE_TIMEOUT_MS }, () => {
  let round = 0;
  let recording: string | null = null;
  /** A fleeced view rotating the bitmap chain; the frozen bitmap covers writes since the last view. */
  async function view() {
    round++;
    const start = `chan${round}`;
    const v = await openDiskView(t.q.qmp, {
      node: t.diskNode,
      exportId: `chan-r${round}`,
      fleeceFile: join(t.stateDir, `fleece-${round}.qcow2`),
      rotate: { freeze: recording ?? undefined, start },
    });
    recording = start;
    return v;
  }

  test("a patched binary and a dropped file are caught over local, direct and remote", async (tc) => {
    const db = await writeSignatureDatabase(join(t.stateDir, "clamav"), "chan.ndb", [
      hexSignature("Nestcloud.Chan.Dropper", Buffer.from(MARKER_HEAD + MARKER_TAIL)),
    ]);
    const binaries: Record<Channel, string> = {
      local: "/bin/sshd",
      direct: "/bin/sudo",
      remote: "/bin/login",
    };
    for (const channel of CHANNELS) {
      const alerts: Alert[] = [];
      const mon = new DiskMonitor({
        target: GUEST,
        channel,
        clamav: { databases: [db], scratchParent: t.stateDir },
        onAlert: (a) => alerts.push(a),
      });
      try {
        // The NBD server first (it is switched between unix and TLS), then the view it exports.
        const transport = await t.nbdTransport(channel);
        let v = await view();
        try {
          const full = await mon.round({ transport, exportName: v.exportName, dirtyBitmap: null });
          assert.equal(full.mode, "full");
          assert.deepEqual(full.alerts, [], `${channel}: clean baseline`);
        } finally {
          await v.close();
        }
        const bin = binaries[channel];
        await t.sh(`printf 'TROJAN-${channel}' | dd of=/mnt${bin} bs=1 seek=4096 conv=notrunc 2>/dev/null`);
        await t.sh(`printf '%s%s' '${MARKER_HEAD}' '${MARKER_TAIL}' > /mnt/tmp/.drop-${channel} && sync`);
        v = await view();
        try {
          const r = await mon.round({
            transport: await t.nbdTransport(channel),
            exportName: v.exportName,
            dirtyBitmap: v.frozenBitmap,
          });
          tc.diagnostic(`${channel}: incremental round read ${r.bytesRead} bytes in ${r.ms} ms`);
          assert.equal(r.mode, "incremental", r.reason);
          assert.deepEqual(
            r.alerts.map((a) => `${a.severity} ${a.summary}`).sort(),
            [
              `critical integrity: ${bin} changed (mtime, sha256)`,
              `critical malware: /tmp/.drop-${channel} matches Nestcloud.Chan.Dropper.UNOFFICIAL`,
            ],
            channel,
          );
          assert.ok(r.alerts.every((a) => a.channel === channel && a.target === GUEST));
        } finally {
          await v.close();
        }
      } finally {
        await mon.close();
        // The next channel's baseline starts clean (its own binary, its own dropped file).
        await t.sh(`rm -f /mnt/tmp/.drop-${channel} && sync`);
      }
    }
  });

  test("remote NBD through the TLS relay: another guest's certificate or no TLS are refused", async () => {
    const v = await openDiskView(t.q.qmp, { node: t.diskNode, exportId: "chan-relay" });
    try {
      const ok = await NbdClient.connect({
        transport: await t.nbdTransport("remote"),
        exportName: v.exportName,
      });
      assert.equal((await ok.read(1024, 1024)).length, 1024);
      await ok.close();
      const refused = t.relay.counts.refused;
      await assert.rejects(
        NbdClient.connect({
          transport: await t.nbdTransport("remote", t.creds.other),
          exportName: v.exportName,
        }),
      );
      const port = Number((await t.nbdTransport("remote")).label.split(/[: ]/)[1]);
      await assert.rejects(
        NbdClient.connect({ transport: tcpTransport("127.0.0.1", port), exportName: v.exportName }),
        /TLS_REQD/,
      );
      assert.equal(t.relay.counts.refused, refused + 2);
    } finally {
      await v.close();
    }
  });

  test("remote NBD with QEMU's own TLS: another guest's certificate, no certificate, or no TLS are refused", async () => {
    await t.nbdTransport("remote", t.creds.secvm, "qemu");
    const v = await openDiskView(t.q.qmp, { node: t.diskNode, exportId: "chan-refuse" });
    try {
      // The right certificate works (the control).
      const ok = await NbdClient.connect({
        transport: await t.nbdTransport("remote", t.creds.secvm, "qemu"),
        exportName: v.exportName,
      });
      assert.equal((await ok.read(1024, 1024)).length, 1024);
      await ok.close();
      // secvm-b's certificate is valid but QEMU's authz list does not name it.
      await assert.rejects(
        NbdClient.connect({
          transport: await t.nbdTransport("remote", t.creds.other, "qemu"),
          exportName: v.exportName,
        }),
      );
      const port = Number((await t.nbdTransport("remote", t.creds.secvm, "qemu")).label.split(/[: ]/)[1]);
      await assert.rejects(
        NbdClient.connect({
          transport: tlsTransport("127.0.0.1", port, {
            ca: t.ca.certPem,
            cert: "",
            key: "",
            verifyServer: expectServer("qemu", GUEST),
          }),
          exportName: v.exportName,
        }),
      );
      await assert.rejects(
        NbdClient.connect({ transport: tcpTransport("127.0.0.1", port), exportName: v.exportName }),
        /TLS_REQD/,
      );
      // And the security VM refuses a server whose certificate is not its target's QEMU.
      await assert.rejects(
        NbdClient.connect({
          transport: tlsTransport("127.0.0.1", port, {
            ...tlsOptions(t.creds.secvm),
            verifyServer: expectServer("qemu", "another-guest"),
          }),
          exportName: v.exportName,
        }),
        /does not serve another-guest/,
      );
    } finally {
      await v.close();
      await t.nbdTransport("local"); // back to the unix socket the relay forwards to
    }
  });
});

describe("network over each channel", { timeout: SUITE_TIMEOUT_MS }, () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function until<T>(what: string, f: () => T | null | undefined | false, ms: number): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(5);
    }
  }

  test("a packet matching a tenant's rule is caught over local, direct and remote", async (tc) => {
    const rules = join(t.stateDir, "tenant.rules");
    writeFileSync(
      rules,
      'alert udp any any -> any 53 (msg:"TENANT channel lookup"; content:"CHAN-FORBIDDEN"; nocase; priority:1; sid:1000101; rev:1;)\n',
    );
    for (const channel of CHANNELS) {
      const alerts: Alert[] = [];
      const listen =
        channel === "remote"
          ? {
              type: "tls" as const,
              host: "127.0.0.1",
              port: await freePort(),
              tls: { ...tlsOptions(t.creds.secvm), authorize: expectClient("qemu", GUEST) },
            }
          : { type: "unix" as const, path: join(t.stateDir, `mirror-${channel}.sock`) };
      const mon = await NetworkMonitor.start({
        target: GUEST,
        channel,
        runDir: join(t.stateDir, `netmon-${channel}`),
        listen,
        ruleFiles: [rules],
        onAlert: (a) => alerts.push(a),
      });
      const id = `chanmirror-${channel}`;
      try {
        await addNetMirror(t.q.qmp, {
          id,
          netdev: "nic-n0",
          to:
            listen.type === "tls"
              ? { type: "inet", host: "127.0.0.1", port: listen.port, tlsCreds: "nc-tls-client" }
              : { type: "unix", path: listen.path },
        });
        await until("the mirror connection", () => mon.stats().receiver.connections > 0, 10_000);
        const name = `chan-forbidden-${channel}.example`;
        const sent = performance.now();
        await t.sh(`(timeout 3 nslookup ${name} ${GATEWAY} >/dev/null 2>&1 &)`);
        const a = await until(
          `the alert over ${channel}`,
          () => alerts.find((x) => x.evidence.signatureId === 1000101),
          30_000,
        );
        tc.diagnostic(`${channel}: alert ${(performance.now() - sent).toFixed(1)} ms after the command`);
        assert.equal(a.channel, channel);
        assert.equal(a.target, GUEST);
        assert.equal(a.severity, "critical");
      } finally {
        await removeNetMirror(t.q.qmp, id);
        await mon.stop();
      }
    }
  });

  test("remote mirror: a receiver that does not accept this QEMU gets no frame; QEMU refuses a server of another CA", async () => {
    const events: string[] = [];
    // A receiver authorizing only another guest's QEMU: this QEMU's stream is refused.
    const rx = new MirrorReceiver({
      queue: new FrameQueue(),
      onEvent: (e) => events.push(e.type === "refused" ? `refused: ${e.reason}` : e.type),
    });
    const addr = await rx.listen({
      type: "tls",
      host: "127.0.0.1",
      port: await freePort(),
      tls: { ...tlsOptions(t.creds.other), authorize: expectClient("qemu", "another-guest") },
    });
    const port = addr.type === "tls" ? addr.port : 0;
    try {
      await addNetMirror(t.q.qmp, {
        id: "chanrefuse",
        netdev: "nic-n0",
        to: { type: "inet", host: "127.0.0.1", port, tlsCreds: "nc-tls-client", reconnectSeconds: 1 },
      });
      await t.sh(`(timeout 2 nslookup refused.example ${GATEWAY} >/dev/null 2>&1 &)`);
      await until("a refusal", () => rx.counts().refused > 0, 15_000);
      assert.equal(rx.counts().frames, 0, "no frame taken");
      assert.ok(
        events.some((e) => /does not name another-guest/.test(e)),
        events.join("; "),
      );
      // No client certificate at all: refused at the TLS handshake.
      const before = rx.counts().refused;
      await new Promise<void>((resolve) => {
        const s = tlsConnect({
          host: "127.0.0.1",
          port,
          ca: t.ca.certPem,
          checkServerIdentity: () => undefined,
        });
        s.on("error", () => resolve());
        s.on("close", () => resolve());
      });
      await until("the certificate-less refusal", () => rx.counts().refused > before, 5000);
    } finally {
      await removeNetMirror(t.q.qmp, "chanrefuse");
      await rx.close();
    }
  });
});

// bench:secvm --follow's guest side (test/support/follow-events.ts) on this guest, which has the
// data disk and the NIC the controller's guests do not have yet: every event of each kind
// reaches its monitor and is told by its number (test/support/follow-analysis.ts).
describe("bench:secvm --follow's event generators", { timeout: SUITE_TIMEOUT_MS }, () => {
  test("a process, a marked file and marked packets, each told by its number by its monitor", async (tc) => {
    const packets = new Set<number>();
    const sock = join(t.stateDir, "mirror-follow.sock");
    const mon = await NetworkMonitor.start({
      target: GUEST,
      channel: "local",
      runDir: join(t.stateDir, "netmon-follow"),
      listen: { type: "unix", path: sock },
      ruleFiles: [], // nestcloud's default rules: the IDS test marker
      onAlert: (a) => {
        const e = eventsOf(a, PACKET_DST_BASE);
        if (e?.kind === "network") for (const s of e.seqs) packets.add(s);
      },
    });
    try {
      await addNetMirror(t.q.qmp, {
        id: "followmirror",
        netdev: "nic-n0",
        to: { type: "unix", path: sock },
      });
      const deadline = Date.now() + 30_000;
      while (mon.stats().receiver.connections === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok(mon.stats().receiver.connections > 0, "the mirror connected");
      assert.match(await t.sh(startGeneratorsCommand(4)), /started/);
      // Four one-a-second events, then the packets stopped too.
      let c = parseCounts(await t.sh(READ_COUNTS_COMMAND));
      while (c.memory < 4 && Date.now() < deadline + 60_000) {
        await new Promise((r) => setTimeout(r, 500));
        c = parseCounts(await t.sh(READ_COUNTS_COMMAND));
      }
      await t.sh(STOP_GENERATORS_COMMAND);
      c = parseCounts(await t.sh(READ_COUNTS_COMMAND));
      tc.diagnostic(`made: ${JSON.stringify(c)}`);
      const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
      assert.equal(c.memory, 4, "four processes");
      assert.equal(c.disk, 4, "four files, on the data disk");
      assert.equal(c.diskDir, "/mnt");
      assert.ok(
        c.sent >= 40 && c.errors === 0,
        `a packet every 50 ms for 4 s or more, none refused: ${JSON.stringify(c)}`,
      );
      // memory: the processes, by name.
      const names = (await listProcesses(kernelOver(ram.memory))).map((p) => /^ev(\d{5})$/.exec(p.comm)?.[1]);
      assert.deepEqual(
        [...new Set(names.filter((x) => x !== undefined).map(Number))].sort((a, b) => a - b),
        upTo(4),
      );
      // disk: a full round with a signature on the marker names each file.
      const db = await writeSignatureDatabase(join(t.stateDir, "clamav-follow"), "follow.ndb", [
        hexSignature(AV_SIGNATURE.name, Buffer.from(AV_MARKER)),
      ]);
      const disk = new DiskMonitor({
        target: GUEST,
        channel: "local",
        clamav: { databases: [db], scratchParent: t.stateDir },
      });
      const transport = await t.nbdTransport("local"); // QEMU's NBD server first, then the view
      const view = await openDiskView(t.q.qmp, {
        node: t.diskNode,
        exportId: "follow-v",
        fleeceFile: join(t.stateDir, "fleece-follow.qcow2"),
      });
      try {
        const r = await disk.round({
          transport,
          exportName: view.exportName,
          dirtyBitmap: null,
        });
        const files = new Set(r.alerts.flatMap((a) => eventsOf(a, PACKET_DST_BASE)?.seqs ?? []));
        assert.deepEqual(
          [...files].sort((a, b) => a - b),
          upTo(4),
          "each file reported by its number",
        );
      } finally {
        await view.close();
        await disk.close();
      }
      // network: every packet sent, by its ports.
      const end = Date.now() + 30_000;
      while (packets.size < c.sent && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(
        [...packets].sort((a, b) => a - b),
        upTo(c.sent),
        "each packet reported by its number",
      );
    } finally {
      await removeNetMirror(t.q.qmp, "followmirror").catch(() => undefined);
      await mon.stop();
    }
  });
});

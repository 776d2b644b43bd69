// Security VMs under load and faults, on real QEMU (TCG) guests.
//
// Flood (the host-VM agent's security VM, local channel): a guest floods its NIC with echo
// requests that each match a tenant's rule, then with large ones while the security VM's TAP
// writer is stopped (the IDS behind). The service's memory stays bounded (its peak RSS, read
// from /proc), what is not inspected is counted and alerted (IDS alerts over the rate bound;
// frames dropped by the full queue), inspection resumes after, and the guest's flood takes no
// more than a bounded factor of its time without a security VM (no stall: the mirror reader
// always reads).
//
// Link cut (remote channel: TLS over TCP through a link the test cuts, CutLink): the memory
// monitor through the page server, the disk monitor through the target's NBD relay and the
// network monitor's mirror from QEMU. Each reports the loss and comes back after the link
// does: memory rounds go on, the disk round cut in the middle finishes incrementally from its
// own view and bitmap, QEMU's mirror reconnects and a rule's packet is caught again. The guest
// answers while the link is down.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AlertPageAnswer, HostVmAgentClient } from "../../src/agent/index.ts";
import { CutLink } from "../../src/monitor/channel/cut-link.testkit.ts";
import {
  type Alert,
  DiskMonitor,
  expectClient,
  expectServer,
  issueCredential,
  MemoryMonitor,
  NbdClient,
  NbdClosedError,
  NbdError,
  NetworkMonitor,
  securityVmClient,
  tlsOptions,
  tlsTransport,
} from "../../src/monitor/index.ts";
import { addNetMirror, openDiskView, removeNetMirror } from "../../src/qemu/index.ts";
import { connectRemoteMemory, openRamFile, PageServer, RemoteError } from "../../src/vmi/index.ts";
import { freePort, GATEWAY, type SecvmTarget, startSecvmTarget } from "../support/secvm-target.ts";
import { alive, sleep } from "../support/waiting.ts";
import { type Bed, bringUp, tearDown, testbedOf } from "./testbed-helpers.ts";

const SUITE_TIMEOUT_MS = 900_000;
type Logged = AlertPageAnswer["alerts"][number];

async function until<T>(
  what: string,
  f: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  ms: number,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe("a guest flooding its security VM (agent, local channel)", { timeout: SUITE_TIMEOUT_MS }, () => {
  let bed: Bed;
  let client: HostVmAgentClient;
  const log: Logged[] = [];
  const FLOOD_SID = 1000201;
  /** Each echo request carries 0x5a bytes (`ping -p 5a`): every one matches the tenant's rule. */
  const RULES = `alert icmp any any -> any any (msg:"TENANT flood marker"; itype:8; content:"|5a 5a 5a 5a 5a 5a 5a 5a|"; sid:${FLOOD_SID}; rev:1;)\n`;
  const small = `for i in 1 2 3 4; do ping -q -A -c 300 -s 200 -p 5a ${GATEWAY} >/dev/null 2>&1 & done; wait; echo done`;
  const large = `for i in 1 2 3 4; do ping -q -A -c 60 -s 30000 -p 5a ${GATEWAY} >/dev/null 2>&1 & done; wait; echo done`;
  const without = { small: 0, large: 0 };

  async function sh(command: string, timeoutMs = 120_000): Promise<string> {
    const r = await client.exec("gf", { command, timeoutMs });
    assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
    return r.output;
  }
  async function timed(command: string): Promise<number> {
    const t0 = Date.now();
    await sh(command, 120_000);
    return Date.now() - t0;
  }
  async function alerts(waitMs = 0): Promise<Logged[]> {
    const page = await client.secVmAlerts("sf", { after: log.at(-1)?.seq ?? 0, limit: 1000, waitMs });
    log.push(...page.alerts);
    return log;
  }
  /** Peak and current RSS of a process (kB, from /proc: VmHWM is the kernel's own high-water mark). */
  function rss(pid: number): { hwm: number; now: number } {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1]);
    return { hwm: kb("VmHWM"), now: kb("VmRSS") };
  }
  /** Pids in a security VM's cgroup folders (as its status shows them). */
  function cgroupPidsOf(dirs: readonly string[]): number[] {
    const out = new Set<number>();
    for (const d of dirs)
      for (const l of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n"))
        if (l.trim()) out.add(Number(l));
    return [...out];
  }
  /** The service's TAP writer (its child in the security VM's namespace). */
  function tapWriterOf(servicePid: number): number {
    for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid !== servicePid) continue;
        if (/tapwriter/.test(readFileSync(`/proc/${p}/cmdline`, "utf8"))) return Number(p);
      } catch {}
    }
    throw new Error(`no TAP writer under ${servicePid}`);
  }

  before(async () => {
    bed = await bringUp(testbedOf({ s1: ["h1"] }, { cpus: 2 }));
    client = bed.client("s1", "h1");
    await client.createGuest({ guestId: "gf", memoryMiB: 256, devices: [{ kind: "nic", id: "n0" }] });
    const nets = await sh('for n in /sys/class/net/eth*; do echo "NIC $(basename $n)"; done');
    const eth = /NIC (eth\d+)/.exec(nets)?.[1];
    assert.ok(eth, nets);
    await sh(
      `ip link set ${eth} up; ip addr add 10.0.2.15/24 dev ${eth}; ping -c 1 -W 5 ${GATEWAY} >/dev/null`,
    );
    // The same floods without a security VM: what "not slowed" is measured against (after a
    // warm-up round: the first flood pays for ARP and slirp's start).
    await timed(small);
    without.small = await timed(small);
    without.large = await timed(large);
    await client.createSecVm({
      secvmId: "sf",
      targets: [{ guestId: "gf", memory: false, nic: "n0" }],
      rules: RULES,
    });
    await until(
      "the mirror stream",
      async () => (await client.secVm("sf")).monitors[0]?.state === "running",
      60_000,
    );
  });

  after(async () => {
    try {
      await client?.deleteSecVm("sf").catch(() => {});
    } finally {
      await tearDown(bed?.state ? bed : undefined);
    }
  });

  test("an alert flood: IDS alerts past the rate bound are counted and alerted; memory bounded; the guest not slowed beyond 3x", async (t) => {
    const s = await client.secVm("sf");
    const pid = s.pid as number;
    const before = rss(pid);
    const ms = await timed(small);
    const after = await until(
      "the suppressed count",
      async () => {
        const l = await alerts(1000);
        return l.some((a) => a.evidence.kind === "alerts-suppressed") && l;
      },
      60_000,
    ).catch(() => log);
    const ids = after.filter((a) => a.evidence.signatureId === FLOOD_SID);
    const suppressed = after
      .filter((a) => a.evidence.kind === "alerts-suppressed")
      .reduce((n, a) => n + Number(a.evidence.suppressed), 0);
    const peak = rss(pid);
    t.diagnostic(
      `flood: ${ms} ms (without a security VM ${without.small} ms, ${(ms / without.small).toFixed(2)}x); ` +
        `IDS alerts passed ${ids.length}, suppressed ${suppressed}; RSS ${before.now} -> peak ${peak.hwm} kB`,
    );
    // 1200 echo requests, each a match: over 100 a second some are not passed on, and said so.
    const perSecond = new Map<number, number>();
    for (const a of ids)
      perSecond.set(Math.floor(a.time / 1000), (perSecond.get(Math.floor(a.time / 1000)) ?? 0) + 1);
    assert.ok(
      Math.max(...perSecond.values()) <= 200,
      "the rate bound holds (100 per window; a second spans two)",
    );
    assert.ok(ids.length > 0, "the flood is inspected");
    // A window that reached the bound had more behind it: those are counted and alerted.
    if (Math.max(...perSecond.values()) >= 100)
      assert.ok(suppressed > 0, "over the bound: suppressed, alerted");
    assert.ok(peak.hwm - before.hwm < 64 * 1024, `service peak RSS grew ${peak.hwm - before.hwm} kB`);
    assert.ok(ms < 3 * without.small + 5000, `the guest's flood took ${ms} ms vs ${without.small} ms`);
  });

  test("the IDS behind (TAP writer stopped) under a frame flood: frames dropped, counted and alerted; memory bounded by the queue; the guest not slowed beyond 3x; inspection resumes", async (t) => {
    const s = await client.secVm("sf");
    const pid = s.pid as number;
    const writer = tapWriterOf(pid);
    const before = rss(pid);
    const seq0 = log.at(-1)?.seq ?? 0;
    process.kill(writer, "SIGSTOP");
    let ms: number;
    try {
      ms = await timed(large);
      await until(
        "frames-dropped",
        async () => (await alerts(1000)).some((a) => a.seq > seq0 && a.evidence.kind === "frames-dropped"),
        30_000,
      );
    } finally {
      process.kill(writer, "SIGCONT");
    }
    const peak = rss(pid);
    const drops = log.filter((a) => a.seq > seq0 && a.evidence.kind === "frames-dropped");
    const dropped = drops.reduce((n, a) => n + Number(a.evidence.dropped), 0);
    t.diagnostic(
      `frame flood with the IDS stopped: ${ms} ms (without a security VM ${without.large} ms, ` +
        `${(ms / without.large).toFixed(2)}x); ${dropped} frames dropped in ${drops.length} alerts; ` +
        `RSS ${before.now} kB -> peak ${peak.hwm} kB`,
    );
    assert.ok(dropped > 0, "frames dropped and alerted");
    assert.equal(drops[0].severity, "warning");
    assert.ok(Number(drops[0].evidence.queueMaxBytes) <= 8 * 1024 * 1024);
    // The queue holds at most 8 MiB: the service's peak stays within that and the runtime's slack.
    assert.ok(peak.hwm - before.hwm < 64 * 1024, `service peak RSS grew ${peak.hwm - before.hwm} kB`);
    assert.ok(ms < 3 * without.large + 5000, `the guest's flood took ${ms} ms vs ${without.large} ms`);
    // The writer runs again: a marker is inspected again.
    const seq1 = log.at(-1)?.seq ?? 0;
    await sh(`ping -c 3 -p 5a ${GATEWAY} >/dev/null; echo ok`);
    await until(
      "an IDS alert after the writer resumed",
      async () => (await alerts(1000)).some((a) => a.seq > seq1 && a.evidence.signatureId === FLOOD_SID),
      30_000,
    );
    const st = await client.secVm("sf");
    assert.equal(st.state, "running");
    assert.equal(st.pid, pid, "the service was not restarted");
  });

  test("the host-VM agent killed: its successor kills what the security VM left (no orphans) and starts it again, alerted", async (t) => {
    const before = await client.secVm("sf");
    const servicePid = before.pid as number;
    const left = [servicePid, tapWriterOf(servicePid), ...cgroupPidsOf(before.cgroup)];
    const agentPid = (await client.status()).pid;
    const pidsBefore = new Set(left);
    process.kill(agentPid, "SIGKILL");
    const t0 = Date.now();
    // The supervisor starts a new agent on the same port; it adopts the guest and the security VM.
    const st = await until(
      "the security VM running under a new agent",
      async () => {
        const h = await client.status().catch(() => null);
        if (!h || h.pid === agentPid) return false;
        const v = await client.secVm("sf").catch(() => null);
        return v?.state === "running" && v.pid !== servicePid && v;
      },
      180_000,
    );
    const ms = Date.now() - t0;
    const gone = [...pidsBefore].filter((p) => alive(p));
    t.diagnostic(
      `running again ${ms} ms after the agent was killed; predecessor's pids ${[...pidsBefore].join(",")}`,
    );
    assert.deepEqual(gone, [], "nothing of the predecessor's security VM is left");
    assert.ok(st.pid && alive(st.pid), "a new service runs");
    const now = cgroupPidsOf(st.cgroup);
    assert.ok(now.includes(st.pid as number), "the new service in its cgroup");
    assert.ok(!now.some((p) => pidsBefore.has(p)), "no old process in the cgroup");
    // The log starts afresh with the recovery alert; inspection works again.
    log.length = 0;
    const rec = await until(
      "secvm-recovered",
      async () => (await alerts(1000)).find((a) => a.evidence.kind === "secvm-recovered"),
      30_000,
    );
    assert.equal(rec.severity, "warning");
    assert.equal(rec.target, "gf");
    assert.ok((await client.guest("gf")).state === "running", "the guest ran on");
    await until(
      "the mirror stream again",
      async () => (await client.secVm("sf")).monitors[0]?.state === "running",
      60_000,
    );
    await sh(`ping -c 3 -p 5a ${GATEWAY} >/dev/null; echo ok`);
    await until(
      "an IDS alert from the new service",
      async () => (await alerts(1000)).some((a) => a.evidence.signatureId === FLOOD_SID),
      30_000,
    );
  });
});

describe("the remote channel's link cut mid-monitoring", { timeout: SUITE_TIMEOUT_MS }, () => {
  const GUEST = "faultguest";
  let t: SecvmTarget;
  let ram: ReturnType<typeof openRamFile>;
  let pages: PageServer;
  let pagePort = 0;
  const links: CutLink[] = [];

  before(async () => {
    t = await startSecvmTarget({ guestId: GUEST, docs: 100, diskMiB: 64 });
    ram = openRamFile(t.q.poolFile);
    pages = new PageServer({
      clients: [],
      guests: new Map([[GUEST, ram.memory]]),
      tls: { ...tlsOptions(t.creds.pageServer), identify: t.revocations.guardIdentify(securityVmClient) },
    });
    pagePort = (await pages.listen()).port;
  });

  after(async () => {
    for (const l of links) await l.close();
    await pages?.close();
    ram?.close();
    await t?.close();
  });

  async function cutLink(port: number): Promise<CutLink> {
    const l = await new CutLink({ type: "tcp", port: 0 }, { type: "tcp", port }).start();
    links.push(l);
    return l;
  }
  /** The guest answers while the link is down (nothing of the monitor holds it). */
  async function guestAnswers(): Promise<number> {
    const t0 = Date.now();
    await t.sh(`ping -c 2 -W 2 ${GATEWAY} >/dev/null; echo up`, 30_000);
    return Date.now() - t0;
  }

  test("memory: the loss is alerted, the guest goes on, rounds resume when the link is back", async (tc) => {
    const link = await cutLink(pagePort);
    const alerts: Alert[] = [];
    let rounds = 0;
    const m = new MemoryMonitor({
      target: GUEST,
      channel: "remote",
      periodMs: 300,
      open: async () => {
        const mem = await connectRemoteMemory({
          host: "127.0.0.1",
          port: link.port,
          guest: GUEST,
          tls: { ...tlsOptions(t.creds.secvm), verifyServer: expectServer("page-server") },
        });
        return { memory: mem, close: () => mem.close() };
      },
      onAlert: (a) => alerts.push(a),
      onRound: (r) => {
        if (r.kind !== "failed") rounds++;
      },
    });
    m.start();
    try {
      await until("the baseline", () => alerts.some((a) => a.evidence.kind === "baseline"), 120_000);
      const cutAt = Date.now();
      link.cut();
      const lost = await until(
        "source-lost",
        () => alerts.find((a) => a.evidence.kind === "source-lost"),
        30_000,
      );
      assert.equal(lost.severity, "critical");
      const answered = await guestAnswers();
      await sleep(2000);
      const roundsWhileDown = rounds;
      link.restore();
      const back = await until(
        "source-back",
        () => alerts.find((a) => a.evidence.kind === "source-back"),
        60_000,
      );
      await until("two rounds after", () => rounds >= roundsWhileDown + 2, 60_000);
      tc.diagnostic(
        `lost alerted ${lost.time - cutAt} ms after the cut; guest answered in ${answered} ms; back: ${back.summary}`,
      );
      assert.ok(lost.time - cutAt < 10_000);
      assert.ok(!alerts.some((a) => a.evidence.kind === "rebaseline"), "the same kernel, no new baseline");
    } finally {
      m.stop();
    }
  });

  test("disk: a round cut in the middle finishes incrementally from its own view and bitmap, and catches the change", async (tc) => {
    // QEMU's NBD server on its unix socket, behind the target server's TLS relay.
    const relayPort = Number((await t.nbdTransport("remote")).label.split(/[: ]/)[1]);
    const link = await cutLink(relayPort);
    const alerts: Alert[] = [];
    const mon = new DiskMonitor({
      target: GUEST,
      channel: "remote",
      clamav: null,
      onAlert: (a) => alerts.push(a),
    });
    const transport = tlsTransport("127.0.0.1", link.port, {
      ...tlsOptions(t.creds.secvm),
      verifyServer: expectServer("qemu", GUEST),
    });
    let n = 0;
    let recording: string | undefined;
    const view = async () => {
      const start = `fault${++n}`;
      const v = await openDiskView(t.q.qmp, {
        node: t.diskNode,
        exportId: `fault-r${n}`,
        fleeceFile: join(t.stateDir, `fault-fleece-${n}.qcow2`),
        rotate: { freeze: recording, start },
      });
      recording = start;
      return v;
    };
    try {
      let v = await view();
      try {
        assert.equal(
          (await mon.round({ transport, exportName: v.exportName, dirtyBitmap: null })).mode,
          "full",
        );
      } finally {
        await v.close();
      }
      // A changed binary (all of it rewritten) while the round below reads.
      await t.sh("dd if=/dev/urandom of=/mnt/bin/ps bs=4096 count=130 conv=notrunc 2>/dev/null; sync");
      v = await view();
      try {
        const before = link.bytes;
        const round = mon.round({ transport, exportName: v.exportName, dirtyBitmap: v.frozenBitmap });
        const at = (await link.cutAfter(16 * 1024)) - before;
        const answered = await guestAnswers();
        await sleep(1500);
        link.restore();
        const r = await round;
        tc.diagnostic(
          `cut ${at} bytes into the round; guest answered in ${answered} ms; round ${r.mode} in ${r.ms} ms, ` +
            `${r.bytesRead} bytes read, ${r.linkLosses} link loss(es)`,
        );
        assert.equal(r.mode, "incremental", r.reason);
        assert.equal(r.linkLosses, 1);
        assert.deepEqual(
          r.alerts.map((a) => a.summary),
          ["integrity: /bin/ps changed (mtime, sha256)"],
        );
        const kinds = alerts
          .map((a) => a.evidence.kind)
          .filter((k) => k === "link-lost" || k === "link-back");
        assert.deepEqual(kinds, ["link-lost", "link-back"]);
        assert.ok(!alerts.some((a) => /disk check failed/.test(a.summary)));
      } finally {
        await v.close();
      }
    } finally {
      await mon.close();
    }
  });

  test("network: the mirror's loss is alerted, QEMU reconnects, a rule's packet is caught again; the guest's network goes on", async (tc) => {
    const rules = join(t.stateDir, "fault.rules");
    writeFileSync(
      rules,
      'alert udp any any -> any 53 (msg:"TENANT fault lookup"; content:"FAULT-FORBIDDEN"; nocase; sid:1000301; rev:1;)\n',
    );
    const alerts: Alert[] = [];
    const port = await freePort();
    const mon = await NetworkMonitor.start({
      target: GUEST,
      channel: "remote",
      runDir: join(t.stateDir, "netmon-fault"),
      listen: {
        type: "tls",
        host: "127.0.0.1",
        port,
        tls: { ...tlsOptions(t.creds.secvm), authorize: expectClient("qemu", GUEST) },
      },
      ruleFiles: [rules],
      onAlert: (a) => alerts.push(a),
    });
    const link = await cutLink(port);
    const id = "faultmirror";
    try {
      await addNetMirror(t.q.qmp, {
        id,
        netdev: "nic-n0",
        to: {
          type: "inet",
          host: "127.0.0.1",
          port: link.port,
          tlsCreds: "nc-tls-client",
          reconnectSeconds: 1,
        },
      });
      await until("the mirror connection", () => mon.stats().receiver.open > 0, 20_000);
      const lookup = async (name: string) => {
        const n = alerts.length;
        await t.sh(`(timeout 3 nslookup ${name} ${GATEWAY} >/dev/null 2>&1 &)`);
        return until(
          `the alert for ${name}`,
          () => alerts.slice(n).find((a) => a.evidence.signatureId === 1000301),
          30_000,
        );
      };
      await lookup("fault-forbidden-1.example");
      link.cut();
      const closed = await until(
        "stream-closed",
        () => alerts.find((a) => a.evidence.kind === "stream-closed"),
        20_000,
      );
      // Down: the guest's network and QEMU go on (the mirror is dropped, not waited for).
      const answered = await guestAnswers();
      await sleep(2000);
      link.restore();
      await until("QEMU's new mirror connection", () => mon.stats().receiver.open > 0, 30_000);
      const again = await lookup("fault-forbidden-2.example");
      tc.diagnostic(
        `loss alerted: ${closed.summary}; guest answered in ${answered} ms while down; caught again: ${again.summary}`,
      );
      assert.ok(answered < 10_000, `the guest answered in ${answered} ms`);
      assert.ok(mon.stats().receiver.connections >= 2, "a second connection from QEMU");
    } finally {
      await removeNetMirror(t.q.qmp, id).catch(() => {});
      await mon.stop();
    }
  });
  test("credentials rotated mid-monitoring: the new ones are picked up without a gap, the old ones refused afterwards", async (tc) => {
    const old = t.creds.secvm;
    let cred = old;
    const alerts: Alert[] = [];
    const ends: number[] = [];
    let failed = 0;
    const m = new MemoryMonitor({
      target: GUEST,
      channel: "remote",
      periodMs: 300,
      open: async () => {
        const mem = await connectRemoteMemory({
          host: "127.0.0.1",
          port: pagePort,
          guest: GUEST,
          tls: { ...tlsOptions(cred), verifyServer: expectServer("page-server") },
        });
        return { memory: mem, close: () => mem.close() };
      },
      onAlert: (a) => alerts.push(a),
      onRound: (r) => {
        if (r.kind === "failed") failed++;
        else ends.push(Date.now());
      },
    });
    m.start();
    try {
      await until("two rounds", () => ends.length >= 2, 120_000);
      // Reissued: same name and targets, a new key and serial.
      const next = await issueCredential(t.ca, {
        name: old.name,
        role: "security-vm",
        targets: [GUEST],
        ips: ["127.0.0.1"],
        dir: join(t.stateDir, "rotated"),
      });
      const t0 = Date.now();
      cred = next;
      await m.reopen();
      t.revocations.revoke(old);
      const swapped = Date.now() - t0;
      const n = ends.length;
      await until("three rounds on the new credential", () => ends.length >= n + 3, 60_000);
      const gaps = ends.slice(1).map((e, i) => e - ends[i]);
      tc.diagnostic(
        `swap took ${swapped} ms; rounds ${ends.length}, largest gap between rounds ${Math.max(...gaps)} ms`,
      );
      assert.equal(failed, 0, "no round failed");
      assert.ok(!alerts.some((a) => a.evidence.kind === "source-lost" || a.evidence.kind === "rebaseline"));
      // The old credential is refused by the page server and the NBD relay; the new one reads.
      await assert.rejects(
        connectRemoteMemory({
          host: "127.0.0.1",
          port: pagePort,
          guest: GUEST,
          tls: { ...tlsOptions(old), verifyServer: expectServer("page-server") },
        }),
        RemoteError,
      );
      const relayPort = Number((await t.nbdTransport("remote")).label.split(/[: ]/)[1]);
      const via = (c: typeof old) =>
        NbdClient.connect({
          transport: tlsTransport("127.0.0.1", relayPort, {
            ...tlsOptions(c),
            verifyServer: expectServer("qemu", GUEST),
          }),
          exportName: "",
        });
      await assert.rejects(via(old), NbdError, "the relay refuses the old certificate");
      // (QEMU's NBD server has no export named "" here: the new certificate gets as far as that.)
      await assert.rejects(via(next), (e: Error) => !(e instanceof NbdClosedError) && e instanceof NbdError);
    } finally {
      await m.stop();
    }
  });
});

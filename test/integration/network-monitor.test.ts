// Real QEMU (TCG) and real Suricata: a guest with a user-mode NIC (restricted: its packets
// never leave QEMU) gets a filter-mirror added at run time, streaming its frames to
// nestcloud's network monitor (receiver -> bounded queue -> TAP device in a namespace of the
// monitor's own -> Suricata -> EVE -> alerts). The guest sends DNS queries carrying markers
// (busybox nslookup to QEMU's gateway 10.0.2.2): a default rule and a tenant's rule alert with
// the right evidence, and the detection latency is measured (mirrored frame arriving ->
// alert; console command -> alert). A consumer that stops (the TAP writer SIGSTOPped) costs
// the guest nothing: frames are dropped, counted and alerted. A mirror peer that stops reading,
// by contrast, freezes QEMU (why the receiver always reads). A hostile stream is bounded and
// reported. Removing the mirror stops the frames. A second monitor rotates its EVE file with
// the real Suricata (SIGHUP) without losing an alert. Every process, the namespaces, their TAP
// devices and the /dev/shm pool are gone afterwards.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  type Alert,
  DEFAULT_NETWORK_RULES,
  encodeMirrorFrame,
  listNetns,
  MIRROR_MAX_FRAME,
  NetworkMonitor,
} from "../../src/monitor/index.ts";
import {
  addNetMirror,
  buildGuestImage,
  listNetMirrors,
  mirrorChardevId,
  QemuProcess,
  QmpTimeoutError,
  removeNetMirror,
  SerialConsole,
} from "../../src/qemu/index.ts";

const MAC = "52:54:00:4e:4d:01";
const GUEST_IP = "10.0.2.15";
const GATEWAY = "10.0.2.2"; // QEMU's own user-mode gateway: restrict=on drops the queries there
const MIRROR = "netmon0";
/** Small, so that a stopped consumer fills it within a second of the guest's pings. */
const QUEUE = { maxFrames: 128, maxBytes: 256 * 1024 };

const stateDir = mkdtempSync(join(tmpdir(), "nc-it-netmon-"));
const poolDir = mkdtempSync("/dev/shm/nc-it-netmon-");
let q: QemuProcess;
let con: SerialConsole;
let mon: NetworkMonitor;
let eth: string;
const alerts: Array<Alert & { at: number }> = [];
const frames: Array<{ at: number; frame: Buffer }> = [];
const servers: Server[] = [];
const sockets: Socket[] = [];

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

function alive(pid: number | null): boolean {
  if (pid === null || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function sh(command: string, timeoutMs = 30_000): Promise<string> {
  const r = await con.run(command, timeoutMs);
  assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
  return r.output;
}

/** The UDP source port of an IPv4 frame, or null. */
function udpSourcePort(f: Buffer): number | null {
  if (f.length < 42 || f.readUInt16BE(12) !== 0x0800 || f[23] !== 17) return null;
  return f.readUInt16BE(14 + (f[14] & 0x0f) * 4);
}

/** The guest sends a DNS query for `name` to the gateway, in the background (nobody answers). */
const query = (name: string) => sh(`(timeout 3 nslookup ${name} ${GATEWAY} >/dev/null 2>&1 &)`);

/**
 * Sends a query carrying `name` and waits for its alert (rule `sid`): the mirrored frame with
 * the name gives the query's source port, the alert must name that port.
 */
async function detect(name: string, sid: number) {
  const sent = performance.now();
  await query(name);
  const f = await until(
    `the mirrored query for ${name}`,
    () => frames.find((x) => x.at >= sent && x.frame.includes(name)),
    20_000,
  );
  const port = udpSourcePort(f.frame);
  assert.ok(port !== null, "a UDP query");
  const a = await until(
    `the alert for ${name} (sid ${sid}, source port ${port})`,
    () => alerts.find((x) => x.evidence.signatureId === sid && x.evidence.srcPort === port),
    20_000,
  );
  return { alert: a, sent, frameAt: f.at, frameToAlertMs: a.at - f.at, sendToAlertMs: a.at - sent };
}

const own = (kind: string) =>
  alerts.filter((a) => a.evidence.source === "monitor" && a.evidence.kind === kind);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

before(async () => {
  const image = await buildGuestImage();
  q = await QemuProcess.start({
    stateDir,
    spec: {
      guestId: "netguest",
      memoryMiB: 192,
      poolDir,
      image,
      bootId: "netmon-boot-1",
      devices: [{ kind: "nic", id: "n0", mac: MAC, backend: "user" }],
    },
  });
  con = await SerialConsole.connect(q.paths.serialSocket, { label: "netguest" });
  await con.waitForLine(/NESTCLOUD-READY netmon-boot-1/, 120_000, { includeHistory: true });
  const nets = await sh('for n in /sys/class/net/eth*; do echo "NIC $(basename $n) $(cat $n/address)"; done');
  const m = new RegExp(`NIC (\\S+) ${MAC}`).exec(nets);
  assert.ok(m, `the NIC in the guest: ${nets}`);
  eth = m[1];
  await sh(
    `ip link set ${eth} up; ip addr add ${GUEST_IP}/24 dev ${eth}; ping -c 1 -W 5 ${GATEWAY} >/dev/null`,
  );

  const tenantRules = join(stateDir, "tenant.rules");
  writeFileSync(
    tenantRules,
    'alert udp any any -> any 53 (msg:"TENANT forbidden lookup"; content:"TENANT-FORBIDDEN"; nocase; priority:1; sid:1000001; rev:1;)\n',
  );
  mon = await NetworkMonitor.start({
    target: "netguest",
    channel: "local",
    runDir: join(stateDir, "netmon"),
    ruleFiles: [tenantRules],
    queue: QUEUE,
    onAlert: (a) => alerts.push({ ...a, at: performance.now() }),
    onFrame: (frame, at) => {
      // Kept for correlation: the guest's DNS queries only (bounded: a few per test).
      if (frames.length < 10_000 && udpSourcePort(frame) !== null && frame.readUInt16BE(36) === 53)
        frames.push({ at, frame });
    },
  });
});

after(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  con?.close();
  if (mon) {
    const { suricata, tapWriter } = mon.pids;
    await mon.stop();
    assert.equal(alive(suricata), false, `Suricata pid ${suricata} gone`);
    assert.equal(alive(tapWriter), false, `TAP writer pid ${tapWriter} gone`);
    assert.equal(
      (await listNetns()).includes(mon.netns),
      false,
      `namespace ${mon.netns} deleted (its TAP with it)`,
    );
  }
  if (q) {
    await q.stop().catch(() => q.kill());
    assert.equal(alive(q.pid), false, `QEMU pid ${q.pid} gone`);
    assert.equal(existsSync(q.poolFile), false, `pool file ${q.poolFile} removed`);
  }
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(poolDir, { recursive: true, force: true });
});

test("the monitor runs Suricata in its own namespace on its TAP device, with the default and the tenant's rules", async () => {
  assert.ok((await listNetns()).includes(mon.netns));
  const links = execFileSync("ip", ["netns", "exec", mon.netns, "ip", "-o", "link", "show", mon.tapName], {
    encoding: "utf8",
  });
  assert.match(links, /state UNKNOWN|UP/, links);
  assert.ok(alive(mon.pids.suricata) && alive(mon.pids.tapWriter));
  const defaults = readFileSync(DEFAULT_NETWORK_RULES, "utf8").match(/^alert /gm)!.length;
  assert.deepEqual(
    { files: mon.stats().rules.files, loaded: mon.stats().rules.loaded, failed: mon.stats().rules.failed },
    { files: 2, loaded: defaults + 1, failed: 0 },
  );
});

test("a mirror added at run time: the guest's packet matching a default rule raises an alert with its evidence; latency measured", async (t) => {
  await addNetMirror(q.qmp, {
    id: MIRROR,
    netdev: "nic-n0",
    to: { type: "unix", path: (mon.address as { path: string }).path, reconnectSeconds: 1 },
  });
  assert.deepEqual(await listNetMirrors(q.qmp), [MIRROR]);
  await until("QEMU's mirror connection", () => mon.stats().receiver.open === 1, 10_000);

  const runs: Array<Awaited<ReturnType<typeof detect>>> = [];
  for (let i = 0; i < 10; i++) runs.push(await detect(`NESTCLOUD-IDS-TEST-${i}`, 9000001));
  const a = runs[0].alert;
  assert.equal(a.monitor, "network");
  assert.equal(a.channel, "local");
  assert.equal(a.target, "netguest");
  assert.equal(a.severity, "warning", "the marker rule's priority 2");
  assert.equal(a.evidence.source, "suricata");
  assert.equal(a.evidence.signature, "NESTCLOUD IDS test marker in a packet");
  assert.equal(a.evidence.srcIp, GUEST_IP);
  assert.equal(a.evidence.destIp, GATEWAY);
  assert.equal(a.evidence.destPort, 53);
  assert.equal(a.evidence.proto, "UDP");
  assert.match(
    a.summary,
    /NESTCLOUD IDS test marker in a packet \(sid 9000001\): 10\.0\.2\.15:\d+ -> 10\.0\.2\.2:53 UDP/,
  );

  const f2a = runs.map((r) => r.frameToAlertMs);
  const s2a = runs.map((r) => r.sendToAlertMs);
  const fmt = (xs: number[]) =>
    `median ${median(xs).toFixed(1)} ms, min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)}`;
  t.diagnostic(`detection latency, mirrored frame arriving -> alert (${runs.length} packets): ${fmt(f2a)}`);
  t.diagnostic(`detection latency, console command -> alert (incl. the serial round trip): ${fmt(s2a)}`);
  assert.ok(median(f2a) < 1000, `frame -> alert median ${median(f2a)} ms`);
  assert.equal(mon.stats().queue.dropped, 0);
});

test("a tenant's rule alerts too, its priority 1 a critical alert", async () => {
  const r = await detect("tenant-forbidden-1", 1000001);
  assert.equal(r.alert.severity, "critical");
  assert.equal(r.alert.evidence.signature, "TENANT forbidden lookup");
  assert.equal(r.alert.evidence.priority, 1);
  assert.equal(r.alert.evidence.srcIp, GUEST_IP);
});

test("a consumer that stops costs the guest nothing: frames dropped, counted and alerted; inspection resumes after", async (t) => {
  const tw = mon.pids.tapWriter!;
  const before = mon.stats();
  process.kill(tw, "SIGSTOP");
  let stalledQmp = 0;
  let ping = "";
  try {
    const pinging = con.run(`ping -c 300 -i 0.01 -s 1400 -W 2 ${GATEWAY} | tail -2`, 120_000);
    // QEMU keeps answering while the guest floods and nobody drains the queue.
    let done = false;
    pinging.finally(() => (done = true)).catch(() => {});
    while (!done) {
      const t0 = performance.now();
      await q.qmp.execute("query-status", undefined, { timeoutMs: 2000 });
      stalledQmp = Math.max(stalledQmp, performance.now() - t0);
      await sleep(200);
    }
    ping = (await pinging).output;
  } finally {
    process.kill(tw, "SIGCONT");
  }
  t.diagnostic(`guest: ${ping.trim().replace(/\s*\n\s*/g, " | ")}`);
  const m = /(\d+) packets transmitted, (\d+) packets received/.exec(ping);
  assert.ok(m, ping);
  assert.equal(m[2], m[1], "every ping answered while the consumer was stopped");
  const rtt = /= [\d.]+\/[\d.]+\/([\d.]+) ms/.exec(ping);
  assert.ok(rtt && Number(rtt[1]) < 1000, `round trips stay short: ${ping}`);
  assert.ok(stalledQmp < 2000, `QMP answered within ${stalledQmp.toFixed(0)} ms`);

  const after = mon.stats();
  const dropped = after.queue.dropped - before.queue.dropped;
  t.diagnostic(
    `consumer stopped: ${dropped} frames dropped, queue peak ${after.queue.peakBytes} bytes (bound ${QUEUE.maxBytes}), ${after.tap.stalls} pipe stalls`,
  );
  assert.ok(dropped > 100, `frames dropped: ${dropped}`);
  assert.ok(after.queue.peakBytes <= QUEUE.maxBytes);
  assert.equal(after.receiver.streamErrors, 0);
  const reported = await until(
    "the drop alerts to add up",
    () => {
      const n = own("frames-dropped").reduce((s, a) => s + (a.evidence.dropped as number), 0);
      return n >= dropped && n;
    },
    5000,
  );
  assert.equal(reported, mon.stats().queue.dropped, "every dropped frame reported");
  assert.equal(own("frames-dropped")[0].severity, "warning");
  // Drained and inspecting again.
  await until("the queue to drain", () => mon.stats().queue.queued === 0, 20_000);
  await detect("NESTCLOUD-IDS-TEST-after-stop", 9000001);
});

test("Suricata that stops capturing: the kernel's capture drops are reported from its stats", async (t) => {
  const pid = mon.pids.suricata!;
  process.kill(pid, "SIGSTOP");
  try {
    // About 3600 frames (8000-byte pings are six fragments each way) into a ring that Suricata
    // does not empty meanwhile.
    await sh(`ping -c 300 -i 0.01 -s 8000 -W 2 ${GATEWAY} | tail -1`, 120_000);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  const a = await until("the capture-drops alert", () => own("capture-drops").at(-1), 15_000);
  t.diagnostic(`Suricata's capture dropped ${a.evidence.droppedTotal} packets while stopped`);
  assert.ok((a.evidence.dropped as number) > 0);
  assert.equal(a.severity, "warning");
  await detect("NESTCLOUD-IDS-TEST-after-capture-drops", 9000001);
});

test("a hostile stream to the receiver is bounded and reported: runts, an oversized frame, a garbage length, too many connections", async () => {
  const path = (mon.address as { path: string }).path;
  const open = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once("error", reject);
      sockets.push(s);
    });
  const before = mon.stats().receiver;
  const s = await open();
  const closed = new Promise((r) => s.once("close", r));
  s.on("error", () => {});
  const header = (n: number) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(n >>> 0);
    return h;
  };
  // Runts, the largest frame allowed, a 4 MiB frame (skipped unread), then a length no frame has.
  s.write(Buffer.concat([header(0), header(3), Buffer.alloc(3)]));
  s.write(encodeMirrorFrame(Buffer.alloc(MIRROR_MAX_FRAME, 0x41)));
  s.write(header(4 * 1024 * 1024));
  for (let i = 0; i < 64; i++) s.write(Buffer.alloc(64 * 1024, 0x42));
  s.write(Buffer.concat([header(0xfffffff0), Buffer.alloc(1024)]));
  await closed;
  const r = mon.stats().receiver;
  assert.equal(r.streamErrors - before.streamErrors, 1);
  assert.equal(r.oversized - before.oversized, 1);
  assert.equal(r.runts - before.runts, 2);
  assert.ok(mon.stats().queue.peakBytes <= QUEUE.maxBytes, "the queue never passed its bound");
  const err = await until("the stream error alert", () => own("stream-error").at(-1), 5000);
  assert.equal(err.evidence.code, "bad-length");
  assert.equal(err.evidence.length, 0xfffffff0);
  await until("the uninspected frames alert", () => own("frames-uninspected").length > 0, 5000);

  // QEMU's connection plus 3 of these fill the 4 allowed; the fifth is refused.
  const extra = [await open(), await open(), await open(), await open()];
  await until("a refusal", () => mon.stats().receiver.refused > before.refused, 5000);
  await until("the refusal alert", () => own("connections-refused").length > 0, 5000);
  for (const x of extra) x.destroy();
  await until("QEMU's connection alone", () => mon.stats().receiver.open === 1, 5000);
  // The guest's own stream was never disturbed.
  await detect("NESTCLOUD-IDS-TEST-after-hostile", 9000001);
});

test("a mirror peer that stops reading freezes QEMU once the socket's buffer is full (why the receiver always reads)", async (t) => {
  const path = join(stateDir, "stall.sock");
  let peer: Socket | null = null;
  const srv = createServer((s) => {
    peer = s;
    s.pause(); // never reads
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(path, r));
  await addNetMirror(q.qmp, { id: "stall0", netdev: "nic-n0", to: { type: "unix", path } });
  await until("QEMU's connection to the stalled peer", () => peer, 5000);
  await sh(`(ping -c 400 -i 0.01 -s 8000 ${GATEWAY} >/dev/null 2>&1 &)`);
  const t0 = performance.now();
  let frozeAfter = -1;
  while (performance.now() - t0 < 30_000) {
    try {
      await q.qmp.execute("query-status", undefined, { timeoutMs: 1000 });
    } catch (e) {
      assert.ok(e instanceof QmpTimeoutError, String(e));
      frozeAfter = performance.now() - t0;
      break;
    }
    await sleep(100);
  }
  t.diagnostic(`QMP stopped answering ${frozeAfter.toFixed(0)} ms into the guest's flood`);
  assert.ok(frozeAfter >= 0, "QEMU froze behind the peer that does not read");
  // Reading (or closing) frees it.
  (peer as unknown as Socket).destroy();
  const t1 = performance.now();
  await q.qmp.execute("query-status", undefined, { timeoutMs: 10_000 });
  t.diagnostic(`QEMU answered again ${(performance.now() - t1).toFixed(0)} ms after the peer went`);
  assert.deepEqual(await removeNetMirror(q.qmp, "stall0"), { filter: true, chardev: true });
  await sh("kill $(pidof ping) 2>/dev/null; true");
});

test("removing the mirror stops the frames; removing it again is a no-op", async () => {
  assert.deepEqual(await removeNetMirror(q.qmp, MIRROR), { filter: true, chardev: true });
  await until("QEMU's mirror connection to close", () => mon.stats().receiver.open === 0, 10_000);
  await until("the stream-closed report", () => own("stream-closed").length > 0, 5000);
  assert.deepEqual(await listNetMirrors(q.qmp), []);
  const chardevs = await q.qmp.execute<Array<{ label: string }>>("query-chardev");
  assert.ok(!chardevs.some((c) => c.label === mirrorChardevId(MIRROR)), "the chardev is gone");
  const framesBefore = mon.stats().receiver.frames;
  const alertsBefore = alerts.length;
  await query("NESTCLOUD-IDS-TEST-unmirrored");
  await sh(`ping -c 5 -i 0.2 ${GATEWAY} >/dev/null`);
  await sleep(2000);
  assert.equal(mon.stats().receiver.frames, framesBefore, "no frame arrives without the mirror");
  assert.equal(alerts.length, alertsBefore, "and nothing is alerted");
  assert.deepEqual(await removeNetMirror(q.qmp, MIRROR), { filter: false, chardev: false });
});

/** An Ethernet frame of a UDP packet from the guest to the gateway's port 53. */
function udpFrame(payload: string, sport: number): Buffer {
  const p = Buffer.from(payload);
  const f = Buffer.alloc(42 + p.length);
  Buffer.from("525400000002", "hex").copy(f, 0);
  Buffer.from(MAC.replaceAll(":", ""), "hex").copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(28 + p.length, 16);
  f[22] = 64;
  f[23] = 17;
  Buffer.from([10, 0, 2, 15]).copy(f, 26);
  Buffer.from([10, 0, 2, 2]).copy(f, 30);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += f.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(~sum & 0xffff, 24);
  f.writeUInt16BE(sport, 34);
  f.writeUInt16BE(53, 36);
  f.writeUInt16BE(8 + p.length, 38);
  p.copy(f, 42);
  return f;
}

test("the EVE file rotates past its bound with the real Suricata (rename, SIGHUP): no alert lost or repeated", async () => {
  const got: Alert[] = [];
  const small = await NetworkMonitor.start({
    target: "rot",
    channel: "local",
    runDir: join(stateDir, "netmon-rot"),
    maxEveFileBytes: 3000,
    onAlert: (a) => got.push(a),
  });
  const pids = small.pids;
  try {
    const s = connect((small.address as { path: string }).path);
    sockets.push(s);
    await new Promise((r) => s.once("connect", r));
    for (let i = 0; i < 30; i++) {
      s.write(encodeMirrorFrame(udpFrame(`q NESTCLOUD-IDS-TEST-rot-${i}`, 41000 + i)));
      await until(
        `alert ${i}`,
        () => got.filter((a) => a.evidence.source === "suricata").length === i + 1,
        10_000,
      );
    }
    const ports = got.filter((a) => a.evidence.source === "suricata").map((a) => a.evidence.srcPort);
    assert.deepEqual(
      ports,
      Array.from({ length: 30 }, (_, i) => 41000 + i),
      "each alert once, in order",
    );
    assert.ok(small.stats().eve.rotations >= 3, `rotations: ${small.stats().eve.rotations}`);
  } finally {
    await small.stop();
  }
  assert.equal(alive(pids.suricata) || alive(pids.tapWriter), false);
  assert.equal((await listNetns()).includes(small.netns), false);
  assert.equal(existsSync(join(stateDir, "netmon-rot", "suricata", "eve.json.old")), false);
});

test("the IDS dying is reported at once, as critical", async () => {
  const pid = mon.pids.suricata!;
  process.kill(pid, "SIGKILL");
  const a = await until("the ids-lost alert", () => own("ids-lost").at(-1), 10_000);
  assert.equal(a.severity, "critical");
  assert.equal(a.evidence.process, "Suricata");
  assert.equal(a.evidence.signal, "SIGKILL");
});

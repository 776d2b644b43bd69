// Suricata's EVE output read defensively: a real Suricata 7 alert becomes a nestcloud alert
// with its evidence; records of the wrong shape are refused with a reason; the tail follows
// a growing file across partial writes, skips oversized lines without holding them, and
// rotates the file (rename, writer reopens) without losing or repeating a line.
import assert from "node:assert/strict";
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { EVIDENCE_LIMITS } from "../alert.ts";
import { EveTail, eveAlertToAlert, parseEveLine, severityOfPriority } from "./eve.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-eve-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// As Suricata 7.0.10 wrote it here (one line).
const REAL =
  '{"timestamp":"2026-12-02T08:52:35.473848+0000","flow_id":909261940495260,"in_iface":"nctap0","event_type":"alert","src_ip":"10.0.2.15","src_port":40000,"dest_ip":"10.0.2.2","dest_port":53,"proto":"UDP","pkt_src":"wire/pcap","alert":{"action":"allowed","gid":1,"signature_id":9000001,"rev":1,"signature":"NESTCLOUD IDS test marker","category":"Misc activity","severity":3},"app_proto":"failed","direction":"to_server","flow":{"pkts_toserver":1,"pkts_toclient":0,"bytes_toserver":68,"bytes_toclient":0,"start":"2026-12-02T08:52:35.473848+0000","src_ip":"10.0.2.15","dest_ip":"10.0.2.2","src_port":40000,"dest_port":53}}';

test("a Suricata alert becomes a network alert: severity from its priority, evidence naming the rule and the flow", () => {
  const r = parseEveLine(REAL);
  assert.equal(r.type, "alert");
  if (r.type !== "alert") return;
  const a = eveAlertToAlert(r.alert, { target: "g1", channel: "direct", time: 1234 });
  assert.deepEqual(a, {
    time: 1234,
    target: "g1",
    monitor: "network",
    channel: "direct",
    severity: "info",
    summary: "NESTCLOUD IDS test marker (sid 9000001): 10.0.2.15:40000 -> 10.0.2.2:53 UDP",
    evidence: {
      source: "suricata",
      signatureId: 9000001,
      gid: 1,
      rev: 1,
      signature: "NESTCLOUD IDS test marker",
      category: "Misc activity",
      priority: 3,
      srcIp: "10.0.2.15",
      srcPort: 40000,
      destIp: "10.0.2.2",
      destPort: 53,
      proto: "UDP",
      appProto: "failed",
      direction: "to_server",
      packetTime: "2026-12-02T08:52:35.473848+0000",
    },
  });
  assert.deepEqual([1, 2, 3, 4, 255].map(severityOfPriority), [
    "critical",
    "warning",
    "info",
    "info",
    "info",
  ]);
});

test("ICMP (no ports) and IPv6 endpoints; rule text with control characters is cleaned and bounded", () => {
  const rec = JSON.parse(REAL);
  delete rec.src_port;
  delete rec.dest_port;
  rec.proto = "ICMP";
  rec.alert.signature = `evil\u001b[2J\nFAKE LINE ${"x".repeat(5000)}`;
  rec.alert.severity = 1;
  const r = parseEveLine(JSON.stringify(rec));
  assert.equal(r.type, "alert");
  if (r.type !== "alert") return;
  const a = eveAlertToAlert(r.alert, { target: "g1", channel: "local", time: 1 });
  assert.equal(a.severity, "critical");
  assert.ok(!a.summary.includes("\n") && !a.summary.includes("\u001b"), a.summary);
  assert.ok(Buffer.byteLength(a.evidence.signature as string) <= EVIDENCE_LIMITS.stringBytes);
  assert.equal(a.evidence.srcPort, null);
  rec.src_ip = "fe80::1";
  rec.src_port = 5;
  const v6 = parseEveLine(JSON.stringify(rec));
  assert.ok(
    v6.type === "alert" &&
      eveAlertToAlert(v6.alert, { target: "g", channel: "local", time: 1 }).summary.includes("[fe80::1]:5"),
  );
});

test("records of the wrong shape are refused with a reason, never trusted", () => {
  const base = JSON.parse(REAL);
  type Rec = { alert: Record<string, unknown> } & Record<string, unknown>;
  const bad = (mutate: (r: Rec) => void) => {
    const r = structuredClone(base);
    mutate(r);
    return parseEveLine(JSON.stringify(r));
  };
  const cases: Array<[string, ReturnType<typeof parseEveLine>]> = [
    ["not JSON", parseEveLine('{"event_type":"alert",')],
    ["not an object", parseEveLine("[1,2]")],
    ["not an object", parseEveLine("null")],
    ["no event_type", parseEveLine('{"x":1}')],
    ["alert without an alert object", bad((r) => ((r as Record<string, unknown>).alert = "x"))],
    ["alert: bad signatureId", bad((r) => (r.alert.signature_id = "9000001"))],
    ["alert: bad signatureId", bad((r) => (r.alert.signature_id = 2 ** 40))],
    ["alert: bad priority", bad((r) => (r.alert.severity = 0))],
    ["alert: bad priority", bad((r) => (r.alert.severity = 1.5))],
    ["alert: bad signature", bad((r) => (r.alert.signature = ["s"]))],
    ["alert: bad srcIp", bad((r) => (r.src_ip = "1".repeat(65)))],
    ["alert: bad srcIp", bad((r) => delete r.src_ip)],
    ["alert: bad proto", bad((r) => (r.proto = { x: 1 }))],
    ["alert: bad port", bad((r) => (r.dest_port = 70000))],
    ["alert: bad timestamp", bad((r) => (r.timestamp = 5))],
    ["line too long", parseEveLine(`{"event_type":"alert","x":"${"a".repeat(300 * 1024)}"}`)],
  ];
  for (const [reason, r] of cases) assert.deepEqual(r, { type: "invalid", reason });
  assert.deepEqual(parseEveLine('{"event_type":"flow"}'), { type: "other", eventType: "flow" });
  assert.deepEqual(
    parseEveLine('{"event_type":"stats","stats":{"capture":{"kernel_packets":10,"kernel_drops":3}}}'),
    { type: "stats", kernelPackets: 10, kernelDrops: 3 },
  );
  assert.deepEqual(parseEveLine('{"event_type":"stats","stats":{"capture":{"kernel_drops":-1}}}'), {
    type: "stats",
    kernelPackets: null,
    kernelDrops: null,
  });
});

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("the tail follows partial writes, skips an oversized line without holding it, and reads the rest", async () => {
  const file = join(dir, "a.json");
  const lines: string[] = [];
  const tail = new EveTail({ file, onLine: (l) => lines.push(l), maxLineBytes: 1000, pollMs: 20 });
  tail.start(); // before the file exists
  appendFileSync(file, '{"n":1}\n{"n":');
  await until("the first line", () => lines.length === 1);
  appendFileSync(file, "2}\n");
  appendFileSync(file, `{"big":"${"x".repeat(600)}`);
  appendFileSync(file, `${"x".repeat(600)}`); // over 1000 bytes with no newline yet: dropped, skipped to the newline
  appendFileSync(file, `${"x".repeat(5000)}"}\n{"n":3}\n`);
  await until("three lines", () => lines.length === 3);
  await tail.close();
  assert.deepEqual(lines, ['{"n":1}', '{"n":2}', '{"n":3}']);
  assert.deepEqual(tail.counts(), { lines: 3, bytes: statSync(file).size, oversizedLines: 1, rotations: 0 });
});

test("rotation past the size bound: renamed, the writer reopens, every line read once, the old file removed", async () => {
  const file = join(dir, "eve.json");
  let fd = openSync(file, "a");
  let reopened = 0;
  const lines: string[] = [];
  const tail = new EveTail({
    file,
    onLine: (l) => lines.push(l),
    maxFileBytes: 2000,
    pollMs: 10,
    // Like Suricata on SIGHUP: later, it closes the old file and creates a new one.
    reopen: () =>
      setTimeout(() => {
        closeSync(fd);
        fd = openSync(file, "a");
        reopened++;
      }, 30),
  });
  tail.start();
  for (let i = 0; i < 400; i++) {
    writeSync(fd, `{"i":${i},"pad":"${"p".repeat(40)}"}\n`);
    if (i % 20 === 0) await new Promise((r) => setTimeout(r, 15));
  }
  await until("all lines", () => lines.length === 400);
  await until("the last reopen", () => reopened === tail.counts().rotations);
  await tail.close();
  closeSync(fd);
  assert.deepEqual(
    lines.map((l) => JSON.parse(l).i),
    Array.from({ length: 400 }, (_, i) => i),
  );
  assert.ok(tail.counts().rotations >= 3, `rotations: ${tail.counts().rotations}`);
  assert.equal(existsSync(`${file}.old`), false);
});

test("a rotation the writer never finished (it stopped first): close reads the renamed file to its end and removes it", async () => {
  const file = join(dir, "stopped.json");
  const fd = openSync(file, "a");
  const lines: string[] = [];
  let asked = 0;
  const tail = new EveTail({
    file,
    onLine: (l) => lines.push(l),
    maxFileBytes: 100,
    pollMs: 10,
    reopen: () => asked++,
  });
  tail.start();
  for (let i = 0; i < 5; i++) writeSync(fd, `{"i":${i},"pad":"${"p".repeat(30)}"}\n`);
  await until("the rename", () => tail.counts().rotations === 1);
  // The writer still has the old file open and writes on, then stops without reopening.
  for (let i = 5; i < 8; i++) writeSync(fd, `{"i":${i}}\n`);
  closeSync(fd);
  await tail.close();
  assert.equal(asked, 1);
  assert.deepEqual(
    lines.map((l) => JSON.parse(l).i),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  assert.equal(existsSync(`${file}.old`), false);
  assert.equal(existsSync(file), false, "no new file was made");
});

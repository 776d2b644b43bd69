// Real QEMU (TCG): the disk monitor against a running guest. The guest has an ext4 data disk
// made with mkfs.ext4 -d (a small root tree: system binaries, libraries, configuration) and
// mounts it. Each check round reads a fleece (point-in-time view) exported read-only over NBD
// with the dirty bitmap frozen at its instant. Round 1 (full) makes the baseline; inside the
// guest an attacker patches a system binary in place and drops a file matching a custom
// ClamAV signature, then syncs (ext4 keeps the new metadata in its journal: the monitor
// applies it); round 2 (incremental) raises an integrity alert for the binary and a malware
// alert for the dropper while reading a small fraction of what round 1 read, and ends with the
// baseline a fresh full check of the same view makes. Round 3 goes over TCP. At the end the
// guest unmounts and e2fsprogs' debugfs reads the same bytes as the monitor hashed. Teardown
// leaves no QEMU (by pid), no /dev/shm pool file, no export, fleece or scratch folder.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  type Alert,
  DiskMonitor,
  hexSignature,
  type RoundReport,
  tcpTransport,
  unixTransport,
  writeSignatureDatabase,
} from "../../src/monitor/index.ts";
import {
  buildGuestImage,
  DEFAULT_GUEST_MODULES,
  deviceSockets,
  diskNodeName,
  listDirtyBitmaps,
  listExports,
  openDiskView,
  type QemuDevice,
  QemuProcess,
  SerialConsole,
  startNbdServer,
  stopNbdServer,
} from "../../src/qemu/index.ts";
import { pseudoRandom } from "../support/bytes.ts";
import { alive } from "../support/waiting.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const DISK_SIZE = 96 * MiB;
// Split so that the signature's bytes never appear in a command typed into the guest either.
const MARKER_HEAD = "NESTCLOUD-IT-DROPPER-";
const MARKER_TAIL = "c41f9e";
const MARKER = Buffer.from(MARKER_HEAD + MARKER_TAIL);

const stateDir = mkdtempSync(join(tmpdir(), "nc-it-diskmon-"));
const poolDir = mkdtempSync("/dev/shm/nc-it-diskmon-");
const diskPath = join(stateDir, "data.raw");
const node = diskNodeName("d0");
let q: QemuProcess;
let con: SerialConsole;
let nbdSock: string;
let monitor: DiskMonitor;
const alerts: Alert[] = [];
const reports: RoundReport[] = [];
let scratchParent: string;

/** The data disk's tree: ~30 MiB of binaries and libraries, configuration, homes. */
function makeTree(root: string): void {
  const f = (p: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), data, { mode });
  };
  const bins = ["sshd", "sudo", "login", "passwd", "su", "mount", "ps", "ls", "netstat", "crond"];
  for (const [i, b] of bins.entries()) f(`bin/${b}`, pseudoRandom(512 * KiB + i * 61 * KiB, 100 + i), 0o755);
  for (let i = 0; i < 10; i++) f(`usr/lib/lib${i}.so.1`, pseudoRandom(1 * MiB + i * 97 * KiB, 200 + i));
  for (let i = 0; i < 8; i++) f(`usr/share/data${i}.bin`, pseudoRandom(1 * MiB, 300 + i));
  f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  f("etc/ssh/sshd_config", "PermitRootLogin no\nPasswordAuthentication no\n");
  for (let i = 0; i < 60; i++) f(`etc/conf.d/c${i}.conf`, `option${i}=yes\n`);
  for (let i = 0; i < 200; i++) f(`home/user/doc${i}.txt`, `document ${i}\n`.repeat(20 + i));
  mkdirSync(join(root, "tmp"), { mode: 0o1777 });
}

async function sh(command: string, timeoutMs = 60_000): Promise<string> {
  const r = await con.run(command, timeoutMs);
  assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
  return r.output;
}

/** The guest's block device of the given size. */
async function guestDisk(bytes: number): Promise<string> {
  const r = await con.run("for b in /sys/block/vd*; do echo DISK $b $(cat $b/size); done", 10_000);
  const m = [...r.output.matchAll(/DISK \/sys\/block\/(vd[a-z]+) (\d+)/g)].find(
    (x) => Number(x[2]) * 512 === bytes,
  );
  assert.ok(m, `a disk of ${bytes} bytes in the guest: ${r.output}`);
  return `/dev/${m[1]}`;
}

let roundNo = 0;
/** One round: a fleeced view with the bitmap rotation at its instant, checked, closed. */
async function checkRound(opts: { tcpPort?: number } = {}): Promise<RoundReport> {
  roundNo++;
  const freeze = roundNo === 1 ? undefined : `dm${roundNo - 1}`;
  const view = await openDiskView(q.qmp, {
    node,
    exportId: `dm-r${roundNo}`,
    fleeceFile: join(stateDir, `fleece-${roundNo}.qcow2`),
    rotate: { freeze, start: `dm${roundNo}` },
  });
  try {
    const transport = opts.tcpPort ? tcpTransport("127.0.0.1", opts.tcpPort) : unixTransport(nbdSock);
    const r = await monitor.round({ transport, exportName: view.exportName, dirtyBitmap: view.frozenBitmap });
    reports.push(r);
    if (roundNo === 2) {
      // A fresh monitor's full check of the same view: the baseline the incremental round kept.
      const fresh = new DiskMonitor({ target: "it", channel: "local", clamav: null });
      await fresh.round({ transport, exportName: view.exportName, dirtyBitmap: null });
      assert.deepEqual(
        new Map(monitor.baseline),
        new Map(fresh.baseline),
        "incremental baseline = full check",
      );
      await fresh.close();
    }
    return r;
  } finally {
    await view.close();
  }
}

const brief = (r: RoundReport) =>
  `${r.mode}: ${(r.bytesRead / MiB).toFixed(2)} MiB in ${r.requests} requests, ${r.filesRead} files read ` +
  `(${(r.bytesHashed / MiB).toFixed(2)} MiB), ${r.filesScanned} scanned (${r.scanMs} ms), dirty ` +
  `${(r.dirtyBytes / KiB).toFixed(0)} KiB, ${r.changedBlocks} changed blocks, ${r.inodesChecked} inodes checked, ` +
  `journal ${r.journal.transactions} tx/${r.journal.blocks} blocks, ${r.ms} ms`;

const summaries = (list: readonly Alert[]) => list.map((a) => `${a.severity} ${a.summary}`).sort();

before(async () => {
  const tree = join(stateDir, "tree");
  makeTree(tree);
  execFileSync("truncate", ["-s", String(DISK_SIZE), diskPath]);
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "data", "-d", tree, diskPath]);
  rmSync(tree, { recursive: true });
  const image = await buildGuestImage({ modules: [...DEFAULT_GUEST_MODULES, "ext4", "crc32c_generic"] });
  assert.ok(
    image.modules.includes("ext4") || image.builtinModules.includes("ext4"),
    "the guest can mount ext4",
  );
  const devices: QemuDevice[] = [{ kind: "disk", id: "d0", path: diskPath, format: "raw" }];
  q = await QemuProcess.start({
    stateDir,
    spec: { guestId: "diskmon", memoryMiB: 256, poolDir, image, bootId: "diskmon-boot-1", devices },
  });
  con = await SerialConsole.connect(q.paths.serialSocket, { label: "diskmon" });
  await con.waitForLine(/NESTCLOUD-READY diskmon-boot-1/, 120_000, { includeHistory: true });
  nbdSock = deviceSockets(q.spec.runDir, devices).nbd;
  await startNbdServer(q.qmp, { type: "unix", path: nbdSock });
  scratchParent = join(stateDir, "scratch");
  mkdirSync(scratchParent);
  const db = await writeSignatureDatabase(join(stateDir, "clamav"), "nestcloud-it.ndb", [
    hexSignature("Nestcloud.IT.Dropper", MARKER),
  ]);
  monitor = new DiskMonitor({
    target: "diskmon",
    channel: "local",
    clamav: { databases: [db], scratchParent },
    onAlert: (a) => alerts.push(a),
  });
});

after(async () => {
  await monitor?.close();
  con?.close();
  if (q) {
    await q.stop().catch(() => q.kill());
    assert.equal(alive(q.pid), false, `QEMU pid ${q.pid} gone`);
    assert.equal(existsSync(q.poolFile), false, `pool file ${q.poolFile} removed`);
  }
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(poolDir, { recursive: true, force: true });
});

test("the guest mounts its data disk; round 1 is full and makes the baseline", async (t) => {
  const dev = await guestDisk(DISK_SIZE);
  await sh(`mkdir -p /mnt && mount -t ext4 ${dev} /mnt && ls /mnt/bin`);
  const r = await checkRound();
  t.diagnostic(`round 1 ${brief(r)}`);
  assert.equal(r.mode, "full");
  assert.deepEqual(r.alerts, [], "a clean disk: no alert");
  assert.ok(r.paths > 290, `${r.paths} paths`);
  assert.ok(r.bytesHashed > 25 * MiB, "every file read");
  assert.equal(r.filesScanned, r.filesRead);
});

test("an attacker patches a system binary and drops malware; round 2 (incremental) alerts both", async (t) => {
  const sshdBefore = monitor.baseline.get("/bin/sshd")!;
  // Patch /bin/sshd in place (a trojaned binary) and drop a file matching the signature.
  await sh("printf 'TROJAN-PAYLOAD' | dd of=/mnt/bin/sshd bs=1 seek=8192 conv=notrunc 2>/dev/null");
  await sh(`printf '%s%s' '${MARKER_HEAD}' '${MARKER_TAIL}' > /mnt/tmp/.cache-x && sync`);
  const r = await checkRound();
  t.diagnostic(`round 2 ${brief(r)}`);
  assert.equal(r.mode, "incremental", r.reason);
  assert.deepEqual(summaries(r.alerts), [
    "critical integrity: /bin/sshd changed (mtime, sha256)",
    "critical malware: /tmp/.cache-x matches Nestcloud.IT.Dropper.UNOFFICIAL",
  ]);
  const integrity = r.alerts.find((a) => a.summary.includes("/bin/sshd"))!;
  assert.equal(integrity.monitor, "disk");
  assert.equal(integrity.target, "diskmon");
  assert.equal(integrity.evidence.sha256Before, sshdBefore.sha256);
  const patched = pseudoRandom(512 * KiB, 100);
  patched.write("TROJAN-PAYLOAD", 8192);
  assert.equal(integrity.evidence.sha256After, createHash("sha256").update(patched).digest("hex"));
  const malware = r.alerts.find((a) => a.summary.startsWith("malware"))!;
  assert.equal(malware.evidence.signature, "Nestcloud.IT.Dropper.UNOFFICIAL");
  assert.equal(malware.evidence.path, "/tmp/.cache-x");
  const full = reports[0];
  const ratio = r.bytesRead / full.bytesRead;
  t.diagnostic(
    `incremental/full: bytes ${ratio.toFixed(4)} (${r.bytesRead} / ${full.bytesRead}), time ${(r.ms / full.ms).toFixed(3)} (${r.ms} / ${full.ms} ms)`,
  );
  assert.ok(ratio < 0.1, `incremental read ${ratio.toFixed(4)} x the full round's bytes`);
  assert.deepEqual(
    alerts
      .slice(-2)
      .map((a) => a.summary)
      .sort(),
    r.alerts.map((a) => a.summary).sort(),
  );
});

test("round 3 over TCP: nothing new, no alert", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  await stopNbdServer(q.qmp);
  await startNbdServer(q.qmp, { type: "inet", host: "127.0.0.1", port });
  try {
    const r = await checkRound({ tcpPort: port });
    t.diagnostic(`round 3 ${brief(r)}`);
    assert.equal(r.mode, "incremental");
    assert.deepEqual(summaries(r.alerts), []);
    assert.ok(r.bytesRead < 0.1 * reports[0].bytesRead);
  } finally {
    await stopNbdServer(q.qmp);
  }
});

test("e2fsprogs reads what the monitor hashed; nothing is left behind", async () => {
  assert.deepEqual(await listExports(q.qmp), [], "no export left");
  const nodes = await q.qmp.execute<Array<{ "node-name": string }>>("query-named-block-nodes", {
    flat: true,
  });
  assert.ok(!nodes.some((n) => n["node-name"].startsWith("fleece-")), "no fleece node left");
  assert.deepEqual(
    (await listDirtyBitmaps(q.qmp, node)).map((b) => b.name),
    [`dm${roundNo}`],
    "only the bitmap recording for the next round",
  );
  assert.deepEqual(
    readdirSync(stateDir).filter((f) => f.startsWith("fleece-")),
    [],
    "fleece overlays removed",
  );
  assert.deepEqual(readdirSync(scratchParent).length, 1, "one scratch folder while the monitor lives");
  assert.deepEqual(readdirSync(join(scratchParent, readdirSync(scratchParent)[0])), [], "and it is empty");
  await sh("umount /mnt && sync");
  for (const path of ["/bin/sshd", "/tmp/.cache-x", "/usr/lib/lib3.so.1"]) {
    const bytes = execFileSync("debugfs", ["-R", `cat ${path}`, diskPath], {
      maxBuffer: 16 * MiB,
      stdio: ["ignore", "pipe", "ignore"],
    });
    assert.equal(
      createHash("sha256").update(bytes).digest("hex"),
      monitor.baseline.get(path)!.sha256,
      `${path} as debugfs reads it`,
    );
  }
});

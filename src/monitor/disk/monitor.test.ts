// The disk monitor's rounds on ext4 images changed between rounds the way a guest changes its
// disk (debugfs as the guest; the dirty extents are the 64 KiB granules that differ, as QEMU's
// bitmap would say): the first round is the baseline, an incremental round alerts exactly the
// changed, added and removed paths (severity by the path policy) and the malware written, reads
// a small part of what the full round read, and ends with the baseline a fresh full check
// makes; changes only in the journal are seen; a round without changes reads almost nothing;
// a failed round alerts and makes the next one full. Then the NBD path, through qemu-nbd.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Alert } from "../alert.ts";
import { CutLink } from "../channel/cut-link.testkit.ts";
import { hexSignature, writeSignatureDatabase } from "./clamav.ts";
import { debugfs, debugfsScript, KiB, MiB, mkfs, pseudoRandom, TempDir } from "./ext4/images.testkit.ts";
import { bufferSource } from "./ext4/source.ts";
import { type FileRecord, PathPolicy } from "./integrity.ts";
import { DiskMonitor, type RoundReport } from "./monitor.ts";
import { unixTransport } from "./nbd/index.ts";

const tmp = new TempDir();
const GRANULE = 64 * KiB;
const MARKER = Buffer.from("NESTCLOUD-DISKMON-TEST-MARKER-51c2");
let databases: string[];

/** A small root file system: binaries, libraries, configuration, a home, a dropper already there. */
function makeRootTree(root: string): void {
  const f = (p: string, data: string | Buffer) => {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), data, { mode: /bin\//.test(p) ? 0o755 : 0o644 });
  };
  for (let i = 0; i < 12; i++) f(`bin/tool${i}`, pseudoRandom(100 * KiB + i * 37 * KiB, 10 + i));
  f("bin/busybox", pseudoRandom(400 * KiB + 5, 1));
  f("usr/bin/passwd", pseudoRandom(60 * KiB, 2));
  for (let i = 0; i < 6; i++) f(`usr/lib/lib${i}.so`, pseudoRandom(1 * MiB + i * 1000, 20 + i));
  f("etc/motd", "welcome\n");
  f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  f("etc/ssh/sshd_config", "PermitRootLogin no\n");
  for (let i = 0; i < 40; i++) f(`home/user/notes/n${i}.txt`, `note ${i}\n`.repeat(50));
  f("home/user/old-dropper", Buffer.concat([pseudoRandom(5000, 3), MARKER, pseudoRandom(100, 4)]));
  mkdirSync(join(root, "tmp"));
}

/** The 64 KiB granules where two images differ (what QEMU's dirty bitmap would name). */
function dirtyBetween(a: Buffer, b: Buffer): Array<{ offset: number; length: number }> {
  const out: Array<{ offset: number; length: number }> = [];
  for (let g = 0; g < a.length; g += GRANULE) {
    if (a.subarray(g, g + GRANULE).equals(b.subarray(g, g + GRANULE))) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === g) last.length += GRANULE;
    else out.push({ offset: g, length: GRANULE });
  }
  return out;
}

const summaries = (alerts: readonly Alert[]) => alerts.map((a) => `${a.severity} ${a.summary}`).sort();

function monitor(alerts?: Alert[]): DiskMonitor {
  return new DiskMonitor({
    target: "g1",
    channel: "local",
    clamav: { databases, scratchParent: tmp.path },
    onAlert: (a) => alerts?.push(a),
  });
}

/** A fresh monitor's baseline of an image: what an incremental round must end with. */
async function fullBaseline(image: Buffer): Promise<Map<string, FileRecord>> {
  const m = monitor();
  try {
    await m.check(bufferSource(image), null);
    return new Map(m.baseline);
  } finally {
    await m.close();
  }
}

before(async () => {
  databases = [
    await writeSignatureDatabase(tmp.path, "test.ndb", [hexSignature("Nestcloud.Test.Dropper", MARKER)]),
  ];
});
after(() => tmp.remove());

describe("rounds on a changing file system", () => {
  const images: Buffer[] = [];
  const alerts: Alert[] = [];
  let m: DiskMonitor;
  const reports: RoundReport[] = [];

  before(async () => {
    const src = tmp.file("root");
    makeRootTree(src);
    const image = tmp.file("v0.img");
    mkfs(image, 32, src, { blockSize: 4096 });
    images.push(readFileSync(image));
    m = monitor(alerts);
  });
  after(() => m.close());

  test("round 1 is full: the baseline, and the dropper already there", async () => {
    const r = await m.check(bufferSource(images[0]), null);
    reports.push(r);
    assert.equal(r.mode, "full");
    assert.equal(r.reason, "first round");
    assert.deepEqual(summaries(r.alerts), [
      "critical malware: /home/user/old-dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
    ]);
    assert.ok(r.paths > 70, `${r.paths} paths`);
    assert.equal(r.filesRead, 12 + 1 + 1 + 6 + 3 + 40 + 1);
    assert.ok(r.bytesRead > r.bytesHashed, "files and metadata");
    assert.equal(r.filesScanned, r.filesRead);
    assert.deepEqual(alerts, r.alerts, "alerts are emitted as made");
    const busybox = m.baseline.get("/bin/busybox")!;
    assert.equal(
      busybox.sha256,
      createHash("sha256")
        .update(pseudoRandom(400 * KiB + 5, 1))
        .digest("hex"),
    );
    assert.equal(busybox.size, 400 * KiB + 5);
    assert.equal(m.baseline.get("/bin")!.type, "dir");
  });

  test("round 2 is incremental: exactly the changes, a fraction of the reads, the full check's baseline", async (t) => {
    const image = tmp.file("v1.img");
    writeFileSync(image, images[0]);
    writeFileSync(tmp.file("busybox-trojan"), pseudoRandom(400 * KiB + 5, 666));
    writeFileSync(tmp.file("dropper"), Buffer.concat([Buffer.from("#!/bin/sh\n"), MARKER]));
    writeFileSync(tmp.file("cron"), "* * * * * root /tmp/dropper\n");
    debugfsScript(
      image,
      [
        "rm /bin/busybox",
        `write ${tmp.file("busybox-trojan")} /bin/busybox`,
        "sif /bin/busybox mode 0100755",
        // A rewrite within the image's own second would keep its mtime: the trojan's is its own.
        "sif /bin/busybox mtime 1000000000",
        "sif /usr/bin/passwd mode 0104755",
        `write ${tmp.file("dropper")} /tmp/dropper`,
        "rm /etc/motd",
        "mkdir /etc/cron.d",
        `write ${tmp.file("cron")} /etc/cron.d/evil`,
        "ln /etc/ssh/sshd_config /etc/ssh/sshd_config.bak",
        "unlink /etc/ssh/sshd_config",
      ],
      tmp,
    );
    images.push(readFileSync(image));
    const dirty = dirtyBetween(images[0], images[1]);
    const r = await m.check(bufferSource(images[1]), dirty);
    reports.push(r);
    assert.equal(r.mode, "incremental", r.reason);
    assert.deepEqual(summaries(r.alerts), [
      "critical integrity: /bin/busybox changed (mtime, sha256)",
      "critical integrity: /etc/ssh/sshd_config removed",
      "critical integrity: /etc/ssh/sshd_config.bak added",
      "critical integrity: /usr/bin/passwd changed (mode)",
      "critical malware: /tmp/dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
      "warning integrity: /etc/cron.d added",
      "warning integrity: /etc/cron.d/evil added",
      "warning integrity: /etc/motd removed",
    ]);
    const changed = r.alerts.find((a) => a.summary.startsWith("integrity: /bin/busybox"))!;
    assert.equal(changed.monitor, "disk");
    assert.equal(changed.target, "g1");
    assert.equal(changed.evidence.change, "changed");
    assert.notEqual(changed.evidence.sha256Before, changed.evidence.sha256After);
    // Read: the changed and new files (busybox, the dropper, cron; passwd's content is not re-read),
    // and files sharing a written 64 KiB granule with them (read again, found unchanged: no
    // alert, not even for the known dropper's unchanged content).
    // Read whole: busybox, the dropper, cron, and sshd_config under its new name. Files next to
    // written blocks (same 64 KiB granule) are checked by their digests there, not re-read.
    assert.equal(r.filesRead, 4);
    t.diagnostic(JSON.stringify({ ...r, alerts: r.alerts.length }));
    assert.ok(r.bytesRead < 0.1 * reports[0].bytesRead, `${r.bytesRead} vs ${reports[0].bytesRead} bytes`);
    // Besides the files read: metadata and 64 KiB chunks of files next to written blocks.
    assert.ok(r.bytesRead - r.bytesHashed < 512 * KiB, `${r.bytesRead - r.bytesHashed} bytes besides files`);
    assert.deepEqual(new Map(m.baseline), await fullBaseline(images[1]), "the baseline a full check makes");
  });

  test("a monitor made elsewhere takes the baseline over: its first round reports what changed since, nothing absorbed", async () => {
    // The first monitor's records after round 1 (v0), handed to a new monitor of the same
    // drive, which first reads v1: every change between them is reported, as round 2 did.
    const first = await fullBaseline(images[0]);
    const got: Alert[] = [];
    const next = monitor(got);
    try {
      next.seed(first.values());
      const r = await next.check(bufferSource(images[1]), null);
      assert.equal(r.mode, "full");
      assert.equal(r.reason, "a baseline taken over from another monitor");
      assert.deepEqual(
        summaries(r.alerts.filter((a) => a.summary.startsWith("integrity"))),
        summaries(reports[1].alerts.filter((a) => a.summary.startsWith("integrity"))),
      );
      // A full round alerts every signature match it reads (the old dropper too).
      assert.deepEqual(summaries(r.alerts.filter((a) => a.summary.startsWith("malware"))), [
        "critical malware: /home/user/old-dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
        "critical malware: /tmp/dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
      ]);
      assert.deepEqual(new Map(next.baseline), new Map(m.baseline), "then its own baseline");
    } finally {
      await next.close();
    }
  });

  test("round 3 without changes: no alert, almost nothing read", async () => {
    const r = await m.check(bufferSource(images[1]), []);
    assert.equal(r.mode, "incremental");
    assert.deepEqual(r.alerts, []);
    assert.equal(r.filesRead, 0);
    assert.ok(r.bytesRead <= 8 * KiB, `${r.bytesRead} bytes`);
  });

  test("a raw write into a file's blocks (its inode untouched) is caught", async () => {
    const image = Buffer.from(images[1]);
    const blocks = debugfs(tmp.file("v1.img"), "blocks /usr/lib/lib2.so")
      .toString()
      .trim()
      .split(/\s+/)
      .map(Number);
    image.write("patched", blocks[100] * 4096 + 17);
    const r = await m.check(bufferSource(image), dirtyBetween(images[1], image));
    assert.deepEqual(summaries(r.alerts), ["critical integrity: /usr/lib/lib2.so changed (sha256)"]);
    assert.equal(r.filesRead, 1);
    // And back: the original bytes again.
    const back = await m.check(bufferSource(images[1]), dirtyBetween(image, images[1]));
    assert.deepEqual(summaries(back.alerts), ["critical integrity: /usr/lib/lib2.so changed (sha256)"]);
    assert.deepEqual(new Map(m.baseline), await fullBaseline(images[1]));
  });

  test("a raw write into one of many small files in a written granule is caught; their blocks are read in a few requests", async () => {
    // /home is not watched (no alert): the baseline shows what the round saw.
    const image = Buffer.from(images[1]);
    const block = Number(debugfs(tmp.file("v1.img"), "blocks /home/user/notes/n7.txt").toString().trim());
    image.write("patched", block * 4096 + 3);
    const dirty = dirtyBetween(images[1], image);
    const was = m.baseline.get("/home/user/notes/n7.txt")!.sha256;
    const r = await m.check(bufferSource(image), dirty);
    assert.deepEqual(r.alerts, []);
    assert.equal(r.filesRead, 1);
    const now = m.baseline.get("/home/user/notes/n7.txt")!.sha256;
    assert.notEqual(now, was, "the new content's hash");
    assert.deepEqual(new Map(m.baseline), await fullBaseline(image), "the baseline a full check makes");
    // The notes sharing the granule are each compared there (their digests), from one read ahead.
    assert.ok(r.inodesChecked >= 8, `${r.inodesChecked} inodes checked`);
    assert.ok(r.requests <= 5, `${r.requests} requests (${r.inodesChecked} inodes checked)`);
    await m.check(bufferSource(images[1]), dirty);
    assert.equal(m.baseline.get("/home/user/notes/n7.txt")!.sha256, was, "back");
    assert.deepEqual(new Map(m.baseline), await fullBaseline(images[1]));
  });

  test("an inode changed among unchanged ones in a written granule is seen; the unchanged inode blocks are not looked into", async () => {
    const image = tmp.file("v1-chmod.img");
    writeFileSync(image, images[1]);
    debugfsScript(image, ["sif /etc/passwd mode 0100600"], tmp);
    const changed = readFileSync(image);
    const dirty = dirtyBetween(images[1], changed);
    const r = await m.check(bufferSource(changed), dirty);
    assert.deepEqual(summaries(r.alerts), ["critical integrity: /etc/passwd changed (mode)"]);
    // The granule holds every inode of this small file system; only the written block's are read.
    const perBlock = 4096 / 256;
    assert.ok(r.inodesChecked <= perBlock, `${r.inodesChecked} inodes checked`);
    assert.deepEqual(new Map(m.baseline), await fullBaseline(changed), "the baseline a full check makes");
    const back = await m.check(bufferSource(images[1]), dirtyBetween(changed, images[1]));
    assert.deepEqual(summaries(back.alerts), ["critical integrity: /etc/passwd changed (mode)"]);
    assert.deepEqual(new Map(m.baseline), await fullBaseline(images[1]));
  });

  test("a change kept in the journal (metadata logged, data home) is seen", async () => {
    // The change made directly on a copy; then the same change as ext4 leaves it while mounted.
    const direct = tmp.file("v2-direct.img");
    writeFileSync(direct, images[1]);
    writeFileSync(tmp.file("tool3"), pseudoRandom(200 * KiB, 777));
    debugfsScript(
      direct,
      [
        "rm /bin/tool3",
        `write ${tmp.file("tool3")} /bin/tool3`,
        "sif /bin/tool3 mode 0100755",
        "sif /bin/tool3 mtime 1000000000",
      ],
      tmp,
    );
    const after = readFileSync(direct);
    const data = new Set(
      debugfs(direct, "blocks /bin/tool3").toString().trim().split(/\s+/).filter(Boolean).map(Number),
    );
    const BS = 4096;
    const journaled = Buffer.from(images[1]);
    const metadata: number[] = [];
    for (let n = 0; n * BS < after.length; n++) {
      if (after.subarray(n * BS, (n + 1) * BS).equals(images[1].subarray(n * BS, (n + 1) * BS))) continue;
      if (data.has(n)) after.copy(journaled, n * BS, n * BS, (n + 1) * BS);
      else if (n !== 0) metadata.push(n);
    }
    const jimage = tmp.file("v2.img");
    writeFileSync(jimage, journaled);
    writeFileSync(
      tmp.file("logged"),
      Buffer.concat(metadata.map((n) => after.subarray(n * BS, (n + 1) * BS))),
    );
    debugfsScript(jimage, ["jo -c", `jw -b ${metadata.join(",")} ${tmp.file("logged")}`, "jc"], tmp);
    images.push(readFileSync(jimage));
    const r = await m.check(bufferSource(images[2]), dirtyBetween(images[1], images[2]));
    assert.equal(r.mode, "incremental");
    assert.equal(r.journal.transactions, 1);
    assert.deepEqual(summaries(r.alerts), ["critical integrity: /bin/tool3 changed (size, mtime, sha256)"]);
    assert.deepEqual(new Map(m.baseline), await fullBaseline(images[2]));
  });

  test("a full round after the baseline compares everything: nothing changed", async () => {
    const r = await m.check(bufferSource(images[2]), null);
    assert.equal(r.mode, "full");
    assert.equal(r.reason, "no dirty bitmap with the view");
    assert.deepEqual(summaries(r.alerts), [
      // A full round scans every file again.
      "critical malware: /home/user/old-dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
      "critical malware: /tmp/dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
    ]);
  });

  test("a change seen by a round that fails midway is alerted by the next (full) round", async () => {
    const image = Buffer.from(images[2]);
    const blocks = debugfs(tmp.file("v1.img"), "blocks /usr/lib/lib4.so")
      .toString()
      .trim()
      .split(/\s+/)
      .map(Number);
    image.write("patched", blocks[10] * 4096);
    const flaky = {
      size: image.length,
      read: async (o: number, l: number) => {
        // Metadata and the chunk's check go through; the connection drops when the file is re-read.
        if (l > 64 * KiB) throw new Error("connection reset");
        return bufferSource(image).read(o, l);
      },
    };
    await assert.rejects(m.check(flaky, dirtyBetween(images[2], image)), /connection reset/);
    const r = await m.check(bufferSource(image), []);
    assert.equal(r.mode, "full");
    assert.deepEqual(summaries(r.alerts), [
      "critical integrity: /usr/lib/lib4.so changed (sha256)",
      "critical malware: /home/user/old-dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
      "critical malware: /tmp/dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
    ]);
    images.push(image);
  });

  test("a failed round is alerted and the next round is full", async () => {
    const last = images[images.length - 1];
    const broken = { size: last.length, read: async () => Promise.reject(new Error("link cut")) };
    const before = alerts.length;
    await assert.rejects(m.check(broken, []), /link cut/);
    assert.deepEqual(summaries(alerts.slice(before)), ["warning disk check failed: link cut"]);
    const r = await m.check(bufferSource(last), []);
    assert.equal(r.mode, "full");
    assert.match(r.reason, /previous round failed: link cut/);
  });
});

test("the path policy: longest rule wins, ignore, unwatched", () => {
  const p = new PathPolicy([
    { path: "/etc", severity: "warning" },
    { path: "/etc/ssh", severity: "critical" },
    { path: "/etc/mtab", severity: "ignore" },
  ]);
  assert.equal(p.severity("/etc/ssh/sshd_config"), "critical");
  assert.equal(p.severity("/etc/sshd"), "warning");
  assert.equal(p.severity("/etc"), "warning");
  assert.equal(p.severity("/etc/mtab"), null);
  assert.equal(p.severity("/home/x"), null);
  assert.throws(() => new PathPolicy([{ path: "etc", severity: "info" }]), RangeError);
});

describe("over NBD (qemu-nbd, read-only)", () => {
  let server: ChildProcess;
  const sock = tmp.file("nbd.sock");
  let image: string;

  before(async () => {
    const src = tmp.file("nbd-root");
    makeRootTree(src);
    image = tmp.file("nbd.img");
    mkfs(image, 32, src, { blockSize: 4096 });
    server = spawn(
      "qemu-nbd",
      ["--read-only", "--persistent", "--shared=4", "-f", "raw", "-k", sock, image],
      {
        stdio: "ignore",
      },
    );
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(sock), "qemu-nbd listens");
  });
  after(async () => {
    if (server.pid !== undefined && server.exitCode === null) {
      const exited = new Promise((r) => server.once("exit", r));
      process.kill(server.pid, "SIGTERM");
      await exited;
    }
  });

  test("a round through nestcloud's NBD client reads like the image", async () => {
    const alerts: Alert[] = [];
    const m = monitor(alerts);
    try {
      const r = await m.round({ transport: unixTransport(sock), exportName: "", dirtyBitmap: null });
      assert.equal(r.mode, "full");
      assert.deepEqual(new Map(m.baseline), await fullBaseline(readFileSync(image)));
      assert.deepEqual(summaries(alerts), [
        "critical malware: /home/user/old-dropper matches Nestcloud.Test.Dropper.UNOFFICIAL",
      ]);
      await assert.rejects(
        m.round({ transport: unixTransport(sock), exportName: "", dirtyBitmap: "nope" }),
        /refused|not|NBD/,
      );
      assert.match(alerts[alerts.length - 1].summary, /disk check failed/);
    } finally {
      await m.close();
    }
  });

  test("a link cut mid-round is connected again: the round finishes from the same view; a link that stays down fails it", async () => {
    const alerts: Alert[] = [];
    const m = new DiskMonitor({
      target: "g",
      channel: "remote",
      clamav: null,
      onAlert: (a) => alerts.push(a),
    });
    const link = await new CutLink(
      { type: "unix", path: tmp.file("cut.sock") },
      { type: "unix", path: sock },
    ).start();
    try {
      const transport = unixTransport(tmp.file("cut.sock"));
      const round = m.round({ transport, exportName: "", dirtyBitmap: null });
      // Cut once 256 KiB went through (the round reads several MiB), back 500 ms later.
      await link.cutAfter(256 * KiB);
      await new Promise((r) => setTimeout(r, 500));
      link.restore();
      const r = await round;
      assert.equal(r.mode, "full");
      assert.equal(r.linkLosses, 1);
      assert.deepEqual(
        new Map(m.baseline),
        await fullBaseline(readFileSync(image)),
        "the same baseline as unbroken",
      );
      const kinds = alerts.map((a) => a.evidence.kind);
      assert.deepEqual(
        kinds.filter((k) => k === "link-lost" || k === "link-back"),
        ["link-lost", "link-back"],
      );
      assert.ok(!alerts.some((a) => /disk check failed/.test(a.summary)), "the round did not fail");
      // Down for longer than the bound: the round fails (alerted) and the next one is full.
      const m2 = new DiskMonitor({
        target: "g",
        channel: "remote",
        clamav: null,
        reconnectWithinMs: 1000,
        onAlert: (a) => alerts.push(a),
      });
      const t0 = Date.now();
      const r2 = m2.round({ transport, exportName: "", dirtyBitmap: null });
      await link.cutAfter(64 * KiB);
      await assert.rejects(r2, /NBD/);
      assert.ok(Date.now() - t0 < 15_000, "failed within the bound");
      assert.match(alerts[alerts.length - 1].summary, /disk check failed/);
      link.restore();
      const again = await m2.round({ transport, exportName: "", dirtyBitmap: "x" }).catch((e) => e);
      assert.match(String(again), /NBD|refused/, "a refused export is not retried");
    } finally {
      await link.close();
      await m.close();
    }
  });
});

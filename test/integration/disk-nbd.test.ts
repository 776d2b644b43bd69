// Real QEMU (TCG): a guest with two disks (a sparse raw image and a qcow2 image, both of known
// content) exports them read-only over NBD, and nestcloud's own NBD client reads them:
// byte for byte like the images, with the block-status map and the bytes cross-checked with
// libnbd (nbdinfo --map, nbdcopy), over a unix socket and over TCP. Then the guest writes
// (and qemu-io through the drive): the frozen dirty bitmap covers exactly the changed blocks.
// Then fleecing: while the guest keeps writing, two reads of the point-in-time view are
// byte-identical, though the live disk changed in between; teardown leaves nothing.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  BASE_ALLOCATION,
  dirtyBitmapContext,
  type Extent,
  NBD_STATE_DIRTY,
  NbdClient,
  type NbdTransport,
  rangesWith,
  tcpTransport,
  unixTransport,
} from "../../src/monitor/index.ts";
import {
  addDirtyBitmap,
  addReadOnlyExport,
  buildGuestImage,
  deviceSockets,
  diskNodeName,
  listDirtyBitmaps,
  listExports,
  openDiskView,
  type QemuDevice,
  QemuProcess,
  removeExport,
  SerialConsole,
  startNbdServer,
  stopNbdServer,
} from "../../src/qemu/index.ts";
import { pseudoRandom } from "../support/bytes.ts";
import { alive } from "../support/waiting.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GRANULE = 64 * KiB; // QEMU's default dirty bitmap granularity
const D0_SIZE = 16 * MiB;
const D1_SIZE = 8 * MiB;

const stateDir = mkdtempSync(join(tmpdir(), "nc-it-nbd-"));
const poolDir = mkdtempSync("/dev/shm/nc-it-nbd-");
const d0Path = join(stateDir, "d0.raw");
const d1Path = join(stateDir, "d1.qcow2");
let d0Original: Buffer;
let d1Original: Buffer;
let q: QemuProcess;
let con: SerialConsole;
let nbdSock: string;
const clients: NbdClient[] = [];

/** d0: sparse raw; labelled 4 KiB blocks in the first MiB, noise at 4 MiB, an island at 12 MiB. */
function makeD0(): void {
  const fd = openSync(d0Path, "w");
  ftruncateSync(fd, D0_SIZE);
  for (let i = 0; i < 256; i++)
    writeSync(fd, Buffer.from(`NESTCLOUD-BLOCK-${i}|`.padEnd(4096, ".")), 0, 4096, i * 4096);
  writeSync(fd, pseudoRandom(MiB, 7), 0, MiB, 4 * MiB);
  writeSync(fd, pseudoRandom(GRANULE, 9), 0, GRANULE, 12 * MiB);
  closeSync(fd);
}

/** d1: a qcow2 converted from a raw image with data at 2-3 MiB (zero clusters unallocated). */
function makeD1(): Buffer {
  const raw = Buffer.alloc(D1_SIZE);
  pseudoRandom(MiB, 11).copy(raw, 2 * MiB);
  raw.write("NESTCLOUD-QCOW2-HEADER", 0);
  const src = join(stateDir, "d1-src.raw");
  writeFileSync(src, raw);
  execFileSync("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", src, d1Path]);
  rmSync(src);
  return raw;
}

const merge = (extents: Array<{ offset: number; length: number; flags: number }>) => {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length === e.offset && last.flags === e.flags) last.length += e.length;
    else out.push({ ...e });
  }
  return out;
};

/** libnbd's view of a metadata context (nbdinfo --map --json), neighbours merged. */
function nbdinfoMap(uri: string, context = BASE_ALLOCATION): Extent[] {
  const out = execFileSync("nbdinfo", [`--map=${context}`, "--json", uri], { encoding: "utf8" });
  const rows = JSON.parse(out) as Array<{ offset: number; length: number; type: number }>;
  return merge(rows.map((r) => ({ offset: r.offset, length: r.length, flags: r.type })));
}

/** libnbd's copy of a whole export (nbdcopy to stdout). */
function nbdcopy(uri: string): Buffer {
  return execFileSync("nbdcopy", [uri, "-"], { maxBuffer: 64 * MiB });
}

const unixUri = (name: string) => `nbd+unix:///${name}?socket=${nbdSock}`;

async function open(transport: NbdTransport, exportName: string, metaContexts: string[] = [BASE_ALLOCATION]) {
  const c = await NbdClient.connect({ transport, exportName, metaContexts });
  clients.push(c);
  return c;
}

/** The guest's block device of the given size (its name depends on probing order). */
async function guestDisk(bytes: number): Promise<string> {
  const r = await con.run("for b in /sys/block/vd*; do echo DISK $b $(cat $b/size); done", 10_000);
  const m = [...r.output.matchAll(/DISK \/sys\/block\/(vd[a-z]+) (\d+)/g)].find(
    (x) => Number(x[2]) * 512 === bytes,
  );
  assert.ok(m, `a disk of ${bytes} bytes in the guest: ${r.output}`);
  return `/dev/${m[1]}`;
}

async function sh(command: string, timeoutMs = 30_000): Promise<string> {
  const r = await con.run(command, timeoutMs);
  assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
  return r.output;
}

/** Granule-aligned cover of the byte ranges where `a` and `b` differ. */
function changedGranules(a: Buffer, b: Buffer): Extent[] {
  const granules: Extent[] = [];
  for (let g = 0; g < a.length; g += GRANULE)
    if (!a.subarray(g, g + GRANULE).equals(b.subarray(g, g + GRANULE)))
      granules.push({ offset: g, length: GRANULE, flags: NBD_STATE_DIRTY });
  return merge(granules);
}

before(async () => {
  makeD0();
  d0Original = readFileSync(d0Path);
  d1Original = makeD1();
  const image = await buildGuestImage();
  const devices: QemuDevice[] = [
    { kind: "disk", id: "d0", path: d0Path, format: "raw" },
    { kind: "disk", id: "d1", path: d1Path, format: "qcow2" },
  ];
  q = await QemuProcess.start({
    stateDir,
    spec: { guestId: "nbdguest", memoryMiB: 256, poolDir, image, bootId: "nbd-boot-1", devices },
  });
  con = await SerialConsole.connect(q.paths.serialSocket, { label: "nbdguest" });
  await con.waitForLine(/NESTCLOUD-READY nbd-boot-1/, 120_000, { includeHistory: true });
  nbdSock = deviceSockets(q.spec.runDir, devices).nbd;
  await startNbdServer(q.qmp, { type: "unix", path: nbdSock });
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  con?.close();
  if (q) {
    await q.stop().catch(() => q.kill());
    assert.equal(alive(q.pid), false, `QEMU pid ${q.pid} gone`);
    assert.equal(existsSync(q.poolFile), false, `pool file ${q.poolFile} removed`);
  }
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(poolDir, { recursive: true, force: true });
});

test("read-only exports read like the images; block status and bytes agree with nbdinfo and nbdcopy", async (t) => {
  for (const [id, original] of [
    ["d0", d0Original],
    ["d1", d1Original],
  ] as const) {
    await addReadOnlyExport(q.qmp, { id, node: diskNodeName(id) });
    const c = await open(unixTransport(nbdSock), id);
    assert.equal(c.size, original.length, `${id}: export size`);
    assert.equal(c.info.readOnly, true, `${id}: exported read-only`);
    const t0 = Date.now();
    const bytes = await c.readRange(0, c.size);
    t.diagnostic(`${id}: read ${c.size / MiB} MiB in ${Date.now() - t0} ms`);
    assert.ok(bytes.equals(original), `${id}: the bytes read are the image's`);
    assert.ok(nbdcopy(unixUri(id)).equals(bytes), `${id}: nbdcopy reads the same bytes`);
    const map = await c.extents(BASE_ALLOCATION);
    assert.deepEqual(map, nbdinfoMap(unixUri(id)), `${id}: base:allocation as nbdinfo --map sees it`);
    t.diagnostic(`${id}: ${map.length} extents: ${JSON.stringify(map.slice(0, 6))}`);
    assert.ok(map.length > 1, `${id}: the sparse image has holes and data`);
    await c.close();
  }
  // The guest's view and QEMU's agree with the image too: the labelled block as the guest reads it.
  const dev = await guestDisk(D0_SIZE);
  assert.match(
    await sh(`dd if=${dev} bs=4096 skip=7 count=1 2>/dev/null | head -c 20`),
    /NESTCLOUD-BLOCK-7\|/,
  );
  for (const id of ["d0", "d1"]) await removeExport(q.qmp, id);
  assert.deepEqual(await listExports(q.qmp), []);
});

test("over TCP: the same bytes and map", async () => {
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
    await addReadOnlyExport(q.qmp, { id: "d0", node: diskNodeName("d0") });
    const c = await open(tcpTransport("127.0.0.1", port), "d0");
    assert.ok((await c.readRange(0, c.size)).equals(d0Original));
    assert.deepEqual(await c.extents(BASE_ALLOCATION), nbdinfoMap(`nbd://127.0.0.1:${port}/d0`));
    await c.close();
    await removeExport(q.qmp, "d0");
  } finally {
    await stopNbdServer(q.qmp);
    await startNbdServer(q.qmp, { type: "unix", path: nbdSock });
  }
});

test("a frozen dirty bitmap covers exactly the blocks written since it started", async (t) => {
  const node = diskNodeName("d0");
  await addDirtyBitmap(q.qmp, node, "nc1");
  const dev = await guestDisk(D0_SIZE);
  // In the guest: 8 KiB inside one granule, and 4 KiB straddling a granule boundary.
  await sh(
    `dd if=/dev/urandom of=${dev} bs=4096 count=2 seek=${(MiB + 200 * KiB) / 4096} iflag=fullblock oflag=direct conv=notrunc`,
  );
  await sh(
    `dd if=/dev/urandom of=${dev} bs=2048 count=2 seek=${(7 * MiB - 2 * KiB) / 2048} iflag=fullblock oflag=direct conv=notrunc`,
  );
  // Through the drive (the device's own block backend): 512 bytes at 15 MiB.
  await q.qmp.execute("human-monitor-command", {
    "command-line": `qemu-io drive-d0 "write -P 0x5a ${15 * MiB} 512"`,
  });

  const view = await openDiskView(q.qmp, { node, exportId: "bm1", rotate: { freeze: "nc1", start: "nc2" } });
  const ctx = dirtyBitmapContext("nc1");
  const c = await open(unixTransport(nbdSock), view.exportName, [ctx]);
  const dirty = rangesWith(await c.extents(ctx), NBD_STATE_DIRTY);
  const expected = [
    { offset: 19 * GRANULE, length: GRANULE, flags: NBD_STATE_DIRTY },
    { offset: 111 * GRANULE, length: 2 * GRANULE, flags: NBD_STATE_DIRTY },
    { offset: 240 * GRANULE, length: GRANULE, flags: NBD_STATE_DIRTY },
  ];
  assert.deepEqual(dirty, expected, "the written granules, and nothing else");
  const now = await c.readRange(0, c.size);
  assert.deepEqual(changedGranules(d0Original, now), expected, "the bytes changed exactly there");
  assert.equal(now.readUInt8(15 * MiB), 0x5a);
  assert.deepEqual(
    rangesWith(nbdinfoMap(unixUri(view.exportName), ctx), NBD_STATE_DIRTY),
    dirty,
    "nbdinfo reads the same bitmap",
  );
  t.diagnostic(`dirty: ${JSON.stringify(dirty)}`);
  await c.close();
  await view.close();
  const bitmaps = await listDirtyBitmaps(q.qmp, node);
  assert.deepEqual(
    bitmaps.map((b) => [b.name, b.recording]),
    [["nc2", true]],
    "the frozen bitmap is gone; the fresh one records",
  );
  assert.equal(bitmaps[0].count, 0, "nothing written since the rotation");
  assert.deepEqual(await listExports(q.qmp), []);
});

test("fleecing: two reads of the point-in-time view are identical while the guest keeps writing", async (t) => {
  const node = diskNodeName("d0");
  const dev = await guestDisk(D0_SIZE);
  const started = await sh(
    `(i=0; while true; do dd if=/dev/urandom of=${dev} bs=65536 count=1 seek=$((i % 128)) iflag=fullblock oflag=direct conv=notrunc; i=$((i+1)); done) >/dev/null 2>&1 & echo WRITER=$!`,
  );
  const writer = Number(/WRITER=(\d+)/.exec(started)?.[1]);
  assert.ok(writer > 0, `the writer started: ${started}`);
  const fleeceFile = join(stateDir, "fleece-d0.qcow2");
  try {
    const view = await openDiskView(q.qmp, {
      node,
      exportId: "fl1",
      fleeceFile,
      rotate: { freeze: "nc2", start: "nc3" },
    });
    assert.ok(existsSync(fleeceFile));
    await addReadOnlyExport(q.qmp, { id: "live", node });
    const snap = await open(unixTransport(nbdSock), view.exportName, [
      BASE_ALLOCATION,
      dirtyBitmapContext("nc2"),
    ]);
    const live = await open(unixTransport(nbdSock), "live");

    const first = await snap.readRange(0, snap.size);
    const liveFirst = await live.readRange(0, 8 * MiB);
    await new Promise((r) => setTimeout(r, 3000));
    const second = await snap.readRange(0, snap.size);
    const liveSecond = await live.readRange(0, 8 * MiB);
    assert.ok(first.equals(second), "the fleece reads the same bytes twice");
    assert.ok(!liveFirst.equals(liveSecond), "while the live disk changed in between");
    assert.ok(!second.subarray(0, 8 * MiB).equals(liveSecond), "the fleece is not the live disk");
    const changed = changedGranules(liveFirst, liveSecond).reduce((s, e) => s + e.length, 0);
    t.diagnostic(`live disk: ${changed / KiB} KiB changed between the reads; fleece unchanged`);
    const recorded = (await listDirtyBitmaps(q.qmp, node)).find((b) => b.name === "nc3");
    assert.ok(recorded && recorded.count > 0, "the fresh bitmap records the guest's writes");
    // The frozen bitmap is offered on the fleece too: what changed before its instant.
    assert.ok(rangesWith(await snap.extents(dirtyBitmapContext("nc2")), NBD_STATE_DIRTY).length > 0);

    await snap.close();
    await live.close();
    await removeExport(q.qmp, "live");
    await view.close();
  } finally {
    await con.run(`kill ${writer}`, 10_000);
  }
  assert.deepEqual(await listExports(q.qmp), []);
  const nodes = await q.qmp.execute<Array<{ "node-name": string }>>("query-named-block-nodes", {
    flat: true,
  });
  assert.ok(!nodes.some((n) => n["node-name"].startsWith("fleece-")), "the fleece node is gone");
  assert.deepEqual(await q.qmp.execute("query-block-jobs"), [], "no backup job left");
  assert.equal(existsSync(fleeceFile), false, "the overlay file is removed");
  assert.deepEqual(
    (await listDirtyBitmaps(q.qmp, node)).map((b) => b.name),
    ["nc3"],
  );
});

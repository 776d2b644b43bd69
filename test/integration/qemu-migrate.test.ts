// Real QEMU (TCG) migrations on loopback with one guest running the verify workload:
// instant handover (x-ignore-shared, same pool file), pre-copy over TCP, and cancel during
// an active pre-copy. The guest must keep heart-beating and never lose a write.
import assert from "node:assert/strict";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  buildGuestImage,
  instantHandover,
  MigrationCancelledError,
  type MigrationDestination,
  type MigrationProgress,
  MigrationStalledError,
  QemuProcess,
  type RamRepair,
  repairingDestination,
  SerialConsole,
  startDestination,
  startMigration,
  startPrecopy,
  switchoverTogether,
} from "../../src/qemu/index.ts";

const stateDir = mkdtempSync(join(tmpdir(), "nc-it-mig-"));
const poolA = mkdtempSync("/dev/shm/nc-it-a-");
const poolB = mkdtempSync("/dev/shm/nc-it-b-");
const poolC = mkdtempSync("/dev/shm/nc-it-c-");
const started: QemuProcess[] = [];
/** The QEMU currently running the guest, and a console on it. */
let current: QemuProcess;
let con: SerialConsole;

function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function heartbeat(c: SerialConsole): Promise<number> {
  return Number((await c.waitForLine(/NESTCLOUD-HB (\d+)/, 5000)).match[1]);
}

async function attach(q: QemuProcess): Promise<void> {
  con?.close();
  current = q;
  con = await SerialConsole.connect(q.paths.serialSocket, { label: q.instanceId });
}

interface VerifyStatus {
  line: string;
  lost: number;
}

async function verifyStatus(): Promise<VerifyStatus> {
  const st = await con.run("nc-wl status verify", 10_000);
  const m = /workload=verify state=\S+ .*lost=(\d+)/.exec(st.output);
  assert.ok(m, `verify workload status: ${st.output}`);
  return { line: st.output.trim(), lost: Number(m[1]) };
}

/** The guest's "NESTCLOUD-VERIFY LOST page=.." lines in q's serial log (kept from its start). */
function lostLines(q: QemuProcess): string[] {
  const log = existsSync(q.paths.serialLog) ? readFileSync(q.paths.serialLog, "latin1") : "";
  return log.split("\n").filter((l) => /NESTCLOUD-VERIFY LOST page=/.test(l));
}

/** Where the guest's loss count stood before a test's migration. */
interface LossBaseline {
  lost: number;
  qemu: QemuProcess;
  logLines: number;
}

async function lossBaseline(): Promise<LossBaseline> {
  // A full sweep after anything earlier, so a loss an earlier move caused is counted here.
  await con.waitForLine(/NESTCLOUD-VERIFY (ok|LOST)/, 10_000);
  const { lost } = await verifyStatus();
  return { lost, qemu: current, logLines: lostLines(current).length };
}

/**
 * This test's migration lost no write: the guest's lost count did not grow since `base`
 * (an earlier test's loss fails that test, not this one), with the LOST lines as evidence.
 */
async function assertNoLoss(base: LossBaseline): Promise<string> {
  // Two reports apart so that at least one full sweep ran on the new side.
  await con.waitForLine(/NESTCLOUD-VERIFY (ok|LOST)/, 10_000);
  await con.waitForLine(/NESTCLOUD-VERIFY (ok|LOST)/, 10_000);
  const st = await verifyStatus();
  // The destination prints a loss in its first sweep, often before the console attaches:
  // the serial log has it.
  const fresh = lostLines(current).slice(current === base.qemu ? base.logLines : 0);
  assert.equal(
    st.lost - base.lost,
    0,
    `this migration lost ${st.lost - base.lost} write(s) (lost ${base.lost} before, ${st.lost} after): ` +
      `${fresh.join(" ; ") || "no LOST line in the serial log"} | ${st.line}`,
  );
  assert.deepEqual(fresh, [], "no new NESTCLOUD-VERIFY LOST line in the serial log");
  return st.line;
}

before(async () => {
  const image = await buildGuestImage();
  const q = await QemuProcess.start({
    stateDir,
    spec: { guestId: "itmig", memoryMiB: 256, poolDir: poolA, image, bootId: "mig-boot" },
  });
  started.push(q);
  await attach(q);
  await con.waitForLine(/NESTCLOUD-READY mig-boot/, 90_000, { includeHistory: true });
  await con.run("nc-wl start verify 32", 10_000);
  await con.waitForLine(/NESTCLOUD-VERIFY ok/, 15_000);
});

after(async () => {
  con?.close();
  for (const q of started) await q.stop().catch(() => q.kill());
  for (const q of started) {
    assert.equal(alive(q.pid), false, `QEMU ${q.instanceId} pid ${q.pid} still alive`);
    assert.equal(existsSync(q.poolFile), false, `pool file ${q.poolFile} left behind`);
  }
  rmSync(stateDir, { recursive: true, force: true });
  for (const d of [poolA, poolB, poolC]) rmSync(d, { recursive: true, force: true });
});

test("instant handover: same pool file, only device state moves, guest keeps running", async (t) => {
  const src = current;
  const base = await lossBaseline();
  const hbBefore = await heartbeat(con);
  const r = await instantHandover(src);
  started.push(r.dst);
  t.diagnostic(
    `instant handover (256 MiB): total ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, wall ${r.wallMs} ms, ` +
      `${r.transferredBytes} bytes`,
  );
  assert.equal(r.kind, "handover");
  assert.ok(r.transferredBytes < 16 * 1024 * 1024, `RAM was not sent (sent ${r.transferredBytes} bytes)`);
  assert.ok(r.downtimeMs < 2000);
  assert.equal(alive(src.pid), false, "source QEMU stopped");
  assert.equal(r.dst.poolFile, src.poolFile);
  assert.ok(existsSync(r.dst.poolFile), "the source's stop left the pool file to the destination");
  assert.ok(r.dst.ownsPoolFile && !src.ownsPoolFile);
  await attach(r.dst);
  const hbAfter = await heartbeat(con);
  assert.ok(hbAfter > hbBefore, `heartbeat continued (${hbBefore} -> ${hbAfter}), no reboot`);
  assert.equal(con.lines().filter((l) => l.includes("NESTCLOUD-READY")).length, 0, "no second boot");
  t.diagnostic(await assertNoLoss(base));
});

test("pre-copy over TCP loopback: progress, completion, no lost writes", async (t) => {
  const src = current;
  const base = await lossBaseline();
  const dst = await startDestination(src, { spec: { poolDir: poolB } });
  started.push(dst);
  const hbBefore = await heartbeat(con);
  const seen: MigrationProgress[] = [];
  const job = startPrecopy(src, dst, {
    downtimeLimitMs: 300,
    onProgress: (p) => seen.push(p),
    timeoutMs: 120_000,
  });
  const r = await job.done;
  t.diagnostic(
    `pre-copy (256 MiB, verify 32 MiB running): total ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, ` +
      `${(r.transferredBytes / 1048576).toFixed(1)} MiB sent, ${r.passes} passes`,
  );
  assert.equal(r.kind, "precopy");
  assert.ok(r.totalTimeMs > 0 && r.downtimeMs > 0);
  assert.ok(seen.length > 0);
  for (let i = 1; i < seen.length; i++) {
    assert.ok(seen[i].percent >= seen[i - 1].percent, "percent never goes down");
    const [a, b] = [seen[i - 1].etaMs, seen[i].etaMs];
    if (a !== null && b !== null) assert.ok(b <= a, "ETA never goes up");
  }
  assert.equal(alive(src.pid), false, "source stopped after success");
  assert.equal(existsSync(src.poolFile), false, "source removed its own pool file");
  await attach(dst);
  const hbAfter = await heartbeat(con);
  assert.ok(hbAfter > hbBefore, `heartbeat continued (${hbBefore} -> ${hbAfter})`);
  t.diagnostic(await assertNoLoss(base));
});

test("pause-before-switchover: source waits in pre-switchover until released", async (t) => {
  const src = current;
  const base = await lossBaseline();
  const dst = await startDestination(src, { spec: { poolDir: poolC } });
  started.push(dst);
  const job = startPrecopy(src, dst, { pauseBeforeSwitchover: true, timeoutMs: 120_000 });
  await job.waitForPreSwitchover(60_000);
  assert.equal(job.currentStatus, "pre-switchover");
  assert.equal((await dst.qmp.queryStatus()).running, false, "destination does not run before release");
  const [r] = await switchoverTogether([job], 1000);
  t.diagnostic(
    `pre-copy with pause-before-switchover: total ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms`,
  );
  await attach(dst);
  await heartbeat(con);
  await assertNoLoss(base);
});

test("post-copy switch: destination runs before all RAM arrived, no lost writes", async (t) => {
  const src = current;
  const base = await lossBaseline();
  const dst = await startDestination(src, { spec: { poolDir: poolB } });
  started.push(dst);
  let sawActive!: () => void;
  const active = new Promise<void>((r) => (sawActive = r));
  const job = startPrecopy(src, dst, {
    postcopy: true,
    maxBandwidth: 8 * 1024 * 1024,
    timeoutMs: 120_000,
    onProgress: (p) => {
      if (p.status === "active" && p.transferredBytes > 0) sawActive();
    },
  });
  await active;
  await job.startPostcopy();
  const r = await job.done;
  t.diagnostic(
    `post-copy: total ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, switched ${r.switchedToPostcopy}`,
  );
  assert.equal(r.switchedToPostcopy, true);
  await attach(dst);
  await heartbeat(con);
  await assertNoLoss(base);
});

test("a pre-copy that cannot converge is detected as stalled and cancelled", async (t) => {
  const src = current;
  const base = await lossBaseline();
  await con.run("nc-wl start dirty 200 64", 10_000);
  await con.waitForLine(/NESTCLOUD-DIRTY/, 10_000);
  const dst = await startDestination(src, { spec: { poolDir: poolC } });
  started.push(dst);
  const job = startPrecopy(src, dst, {
    maxBandwidth: 16 * 1024 * 1024,
    stallTimeoutMs: 4000,
    timeoutMs: 120_000,
  });
  await assert.rejects(job.done, (e: unknown) => {
    assert.ok(e instanceof MigrationStalledError);
    t.diagnostic(e.message);
    return true;
  });
  assert.equal((await src.qmp.queryStatus()).status, "running");
  assert.equal(alive(dst.pid), false);
  await con.run("nc-wl stop dirty", 10_000);
  await heartbeat(con);
  await assertNoLoss(base);
});

test("cancel during active pre-copy leaves the guest running at the source", async () => {
  const src = current;
  const base = await lossBaseline();
  const dst = await startDestination(src, { spec: { poolDir: poolC } });
  started.push(dst);
  // 4 MiB/s over 256 MiB keeps the migration active long enough to cancel it mid-way.
  let sawActive!: () => void;
  const active = new Promise<void>((r) => (sawActive = r));
  const job = startPrecopy(src, dst, {
    maxBandwidth: 4 * 1024 * 1024,
    onProgress: (p) => {
      if (p.status === "active" && p.transferredBytes > 0) sawActive();
    },
  });
  await Promise.race([
    active,
    new Promise((_r, rej) => setTimeout(() => rej(new Error("pre-copy never became active")), 30_000)),
  ]);
  await job.cancel("test cancel");
  await assert.rejects(job.done, MigrationCancelledError);
  assert.equal((await src.qmp.queryStatus()).status, "running");
  assert.equal(alive(dst.pid), false, "destination killed");
  assert.equal(existsSync(dst.poolFile), false, "destination pool file removed");
  assert.ok(existsSync(src.poolFile), "source keeps its RAM");
  const a = await heartbeat(con);
  const b = await heartbeat(con);
  assert.ok(b > a, "guest keeps heart-beating at the source");
  await assertNoLoss(base);
  // The same source can migrate again afterwards (capabilities and state were reset).
  assert.equal(job.currentStatus, "cancelled");
});

/**
 * Makes one verify page of a RAM file stale the way a missed dirty bit does (the header
 * one sequence number behind its body: the guest would report kind=header); returns its
 * page number.
 */
function staleVerifyPage(ramFile: string): number {
  const MAGIC = 0x4e435645524946n;
  const fd = openSync(ramFile, "r+");
  try {
    const page = Buffer.alloc(4096);
    for (let pos = 0; readSync(fd, page, 0, 4096, pos) === 4096; pos += 4096) {
      if (page.readBigUInt64LE(0) !== MAGIC) continue;
      page.writeBigUInt64LE(page.readBigUInt64LE(16) - 1n, 16);
      writeSync(fd, page, 16, 8, pos + 16);
      return pos / 4096;
    }
  } finally {
    closeSync(fd);
  }
  throw new Error(`no verify page in ${ramFile}`);
}

test("RAM repair: a stale page in the paused destination is copied from the frozen source before it runs", async (t) => {
  const src = current;
  const base = await lossBaseline();
  const dst = await startDestination(src, { spec: { poolDir: poolC } });
  started.push(dst);
  const repairs: RamRepair[] = [];
  let statesAtRepair: Promise<string[]> | null = null;
  const repairing = repairingDestination(src, dst, (r) => {
    repairs.push(r);
    // Sent before the repairing destination's `cont` on the same QMP connections.
    statesAtRepair = Promise.all([src.qmp.queryStatus(), dst.qmp.queryStatus()]).then((s) =>
      s.map((x) => x.status),
    );
  });
  let stale = -1;
  const dest: MigrationDestination = {
    ...repairing,
    async complete(kind, timeoutMs) {
      // Loaded and frozen on both sides: now lose a write the way QEMU 7.2 can.
      for (;;) {
        const [s, d] = [await src.qmp.queryStatus(), await dst.qmp.queryStatus()];
        if (s.status === "postmigrate" && d.status === "paused") break;
        assert.ok(d.status === "inmigrate" || d.status === "paused", `destination ${d.status} before repair`);
        await new Promise((r) => setTimeout(r, 5));
      }
      stale = staleVerifyPage(dst.poolFile);
      await repairing.complete(kind, timeoutMs);
    },
  };
  const r = await startMigration(src, dest, { kind: "precopy", uri: "tcp:127.0.0.1:0", timeoutMs: 120_000 })
    .done;
  assert.equal(repairs.length, 1, "one RAM repair");
  const [rep] = repairs;
  t.diagnostic(
    `pre-copy with RAM repair: downtime ${r.downtimeMs} ms, wall ${r.wallMs} ms; repair compared ` +
      `${rep.comparedBytes} bytes in ${rep.ms} ms, copied ${rep.repairedPages} page(s): ${rep.pages.join(",")}`,
  );
  assert.deepEqual(await statesAtRepair, ["postmigrate", "paused"], "both sides frozen while repairing");
  assert.equal(rep.comparedBytes, statSync(dst.poolFile).size, "the whole RAM file compared");
  assert.ok(rep.pages.includes(stale), `the stale page ${stale} was copied back (copied ${rep.pages})`);
  assert.equal(alive(src.pid), false, "source stopped after success");
  await attach(dst);
  await heartbeat(con);
  t.diagnostic(await assertNoLoss(base));
});

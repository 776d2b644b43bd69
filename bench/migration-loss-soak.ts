// Soak (a reproduction aid, not a benchmark): pre-copy a guest running the verify workload
// back and forth between two pools on loopback for N minutes and count the migrations after
// which the guest saw a lost write (docs/qemu-tcg-lost-pages.md). Writes
// bench/results/migration-loss-soak.json.
// Usage: nice node --import tsx bench/migration-loss-soak.ts <minutes> [workaround on|off] [slow 0|1]
//          [pause 0|1] [verify MiB, default 16]
//   workaround: tcgDirtyTrackingWorkaround (off shows QEMU 7.2's fast-path bug at once);
//   slow 1: every other migration at 8 MiB/s with a 4 s downtime limit (the fault tests');
//   pause 1: every other migration with pause-before-switchover, released by
//   switchoverTogether as qemu-migrate.test.ts does (32 MiB verify there);
//   ramcheck 1 (7th argument): destinations start paused (-S); once the source completed
//   (postmigrate, RAM frozen) the two pool files are compared page by page before the
//   destination runs. This sees every page QEMU failed to send, also pages the verify
//   workload does not own, and tells a QEMU miss from a checker error.
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildGuestImage,
  localDestination,
  type MigrationDestination,
  QemuProcess,
  SerialConsole,
  startDestination,
  startMigration,
  switchoverTogether,
} from "../src/qemu/index.ts";
import { writeResults } from "./lib.ts";

const minutes = Number(process.argv[2] ?? 10);
const workaround = (process.argv[3] ?? "on") === "on";
const slow = process.argv[4] === "1";
const pause = process.argv[5] === "1";
const verifyMiB = Number(process.argv[6] ?? 16);
const ramcheck = process.argv[7] === "1";
const stateDir = mkdtempSync(join(tmpdir(), "nc-soak-"));
const pools = [mkdtempSync("/dev/shm/nc-soak-a-"), mkdtempSync("/dev/shm/nc-soak-b-")];
const log = (m: string) => console.log(`${new Date().toISOString().slice(11, 23)} ${m}`);
let q: QemuProcess | null = null;
let con: SerialConsole | null = null;
const lostLines: string[] = [];
let migrations = 0;
let lossMigrations = 0;
let broken = 0;
let ramMismatchMigrations = 0;
const ramMismatches: string[] = [];

/**
 * Pages (4 KiB) that differ between two frozen RAM files, with the verify header (magic,
 * index, seq) each side holds, when the page is one of the workload's.
 */
function differingPages(a: string, b: string): string[] {
  const MAGIC = 0x4e435645524946n;
  const [fa, fb] = [openSync(a, "r"), openSync(b, "r")];
  const out: string[] = [];
  try {
    const chunk = 1 << 20;
    const [ba, bb] = [Buffer.alloc(chunk), Buffer.alloc(chunk)];
    for (let pos = 0; ; pos += chunk) {
      const na = readSync(fa, ba, 0, chunk, pos);
      const nb = readSync(fb, bb, 0, chunk, pos);
      if (na !== nb) {
        out.push(`sizes differ at ${pos}`);
        break;
      }
      if (na === 0) break;
      if (ba.subarray(0, na).equals(bb.subarray(0, nb))) continue;
      for (let off = 0; off < na; off += 4096) {
        const [pa, pb] = [ba.subarray(off, off + 4096), bb.subarray(off, off + 4096)];
        if (pa.equals(pb)) continue;
        const hdr = (p: Buffer) =>
          p.readBigUInt64LE(0) === MAGIC
            ? `idx=${p.readBigUInt64LE(8)} seq=${p.readBigUInt64LE(16)}`
            : "not-verify";
        out.push(`gpa=0x${(pos + off).toString(16)} src[${hdr(pa)}] dst[${hdr(pb)}]`);
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return out;
}

/** A local destination started with -S: compares the frozen RAM files, then lets it run. */
function checkedDestination(src: QemuProcess, dst: QemuProcess, found: string[]): MigrationDestination {
  const local = localDestination(dst);
  return {
    ...local,
    async complete(kind, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [s, d] = [await src.qmp.queryStatus(), await dst.qmp.queryStatus()];
        if (s.status === "postmigrate" && d.status === "paused") break;
        if (Date.now() > deadline) throw new Error(`RAM check: source ${s.status}, destination ${d.status}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      found.push(...differingPages(src.poolFile, dst.poolFile));
      await dst.qmp.cont();
      await local.complete(kind, timeoutMs);
    },
  };
}
try {
  const image = await buildGuestImage();
  q = await QemuProcess.start({
    stateDir,
    spec: {
      guestId: "soak",
      memoryMiB: 256,
      poolDir: pools[0],
      image,
      bootId: "soak",
      tcgDirtyTrackingWorkaround: workaround,
    },
  });
  con = await SerialConsole.connect(q.paths.serialSocket, { label: "soak" });
  await con.waitForLine(/NESTCLOUD-READY soak/, 120_000, { includeHistory: true });
  await con.run(`nc-wl start verify ${verifyMiB}`, 10_000);
  await con.waitForLine(/NESTCLOUD-VERIFY ok/, 15_000);
  const end = Date.now() + minutes * 60_000;
  while (Date.now() < end) {
    const src: QemuProcess = q;
    const dst = await startDestination(src, {
      spec: { poolDir: pools[(migrations + 1) % 2], extraArgs: ramcheck ? ["-S"] : [] },
    });
    const opts = slow && migrations % 2 === 0 ? { maxBandwidth: 8 << 20, downtimeLimitMs: 4000 } : {};
    const paused = pause && migrations % 2 === 1;
    const differing: string[] = [];
    const job = startMigration(
      src,
      ramcheck ? checkedDestination(src, dst, differing) : localDestination(dst),
      {
        ...opts,
        kind: "precopy",
        uri: "tcp:127.0.0.1:0",
        pauseBeforeSwitchover: paused,
        timeoutMs: 180_000,
      },
    );
    let r: Awaited<typeof job.done>;
    if (paused) {
      await job.waitForPreSwitchover(120_000);
      [r] = await switchoverTogether([job], 1000);
    } else r = await job.done;
    migrations++;
    if (differing.length > 0) {
      ramMismatchMigrations++;
      ramMismatches.push(...differing.map((d) => `#${migrations} ${d}`));
    }
    con.close();
    q = dst;
    con = await SerialConsole.connect(dst.paths.serialSocket, { label: "soak" });
    let st: string;
    try {
      await con.waitForLine(/NESTCLOUD-VERIFY (ok|LOST)/, 30_000);
      await con.waitForLine(/NESTCLOUD-VERIFY (ok|LOST)/, 30_000);
      st = (await con.run("nc-wl status verify", 20_000)).output.trim();
    } catch (e) {
      const tail = readFileSync(dst.paths.serialLog, "latin1").split("\n").slice(-15).join("\n");
      const qs = await dst.qmp.queryStatus().catch(() => null);
      log(
        `#${migrations}: guest silent after the move (${(e as Error).message.slice(0, 80)}); run state ${qs?.status}; serial tail:\n${tail}`,
      );
      broken++;
      break;
    }
    const serial = readFileSync(dst.paths.serialLog, "latin1");
    const lost = serial
      .split("\n")
      .filter((l) => /NESTCLOUD-VERIFY LOST page=/.test(l) && !lostLines.includes(l));
    if (lost.length > 0) {
      lossMigrations++;
      lostLines.push(...lost);
    }
    log(
      `#${migrations} ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, ${r.passes} passes, ${(r.transferredBytes / 1048576).toFixed(0)} MiB ${slow && migrations % 2 === 1 ? "(slow)" : ""}${paused ? "(pause)" : ""} | ${st}${lost.length ? ` | NEW: ${lost.join(" ; ")}` : ""}${ramcheck ? ` | RAM ${differing.length ? `DIFFERS: ${differing.slice(0, 8).join(" ; ")}` : "equal"}` : ""}`,
    );
  }
} finally {
  const summary = {
    minutes,
    workaround,
    slow,
    pause,
    verifyMiB,
    ramcheck,
    migrations,
    ramMismatchMigrations,
    ramMismatches: ramMismatches.slice(0, 20),
    lossMigrations,
    broken,
    lostPages: lostLines.length,
    firstLost: lostLines.slice(0, 5),
  };
  console.log(JSON.stringify(summary));
  console.log(`results: ${writeResults("migration-loss-soak", summary)}`);
  con?.close();
  await q?.stop().catch(() => q?.kill());
  rmSync(stateDir, { recursive: true, force: true });
  for (const d of pools) rmSync(d, { recursive: true, force: true });
}

// Soak (a reproduction aid, not a benchmark): pre-copy a guest running the verify workload
// back and forth between two pools on loopback for N minutes and count the migrations after
// which the guest saw a lost write (docs/qemu-tcg-lost-pages.md). Writes
// bench/results/migration-loss-soak.json.
// Usage: nice node --import tsx bench/migration-loss-soak.ts <minutes> [workaround on|off] [slow 0|1]
//   workaround: tcgDirtyTrackingWorkaround (off shows QEMU 7.2's fast-path bug at once);
//   slow 1: every other migration at 8 MiB/s with a 4 s downtime limit (the fault tests').
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildGuestImage,
  QemuProcess,
  SerialConsole,
  startDestination,
  startPrecopy,
} from "../src/qemu/index.ts";
import { writeResults } from "./lib.ts";

const minutes = Number(process.argv[2] ?? 10);
const workaround = (process.argv[3] ?? "on") === "on";
const slow = process.argv[4] === "1";
const stateDir = mkdtempSync(join(tmpdir(), "nc-soak-"));
const pools = [mkdtempSync("/dev/shm/nc-soak-a-"), mkdtempSync("/dev/shm/nc-soak-b-")];
const log = (m: string) => console.log(`${new Date().toISOString().slice(11, 23)} ${m}`);
let q: QemuProcess | null = null;
let con: SerialConsole | null = null;
const lostLines: string[] = [];
let migrations = 0;
let lossMigrations = 0;
let broken = 0;
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
  await con.run("nc-wl start verify 16", 10_000);
  await con.waitForLine(/NESTCLOUD-VERIFY ok/, 15_000);
  const end = Date.now() + minutes * 60_000;
  while (Date.now() < end) {
    const src: QemuProcess = q;
    const dst = await startDestination(src, { spec: { poolDir: pools[(migrations + 1) % 2] } });
    const opts = slow && migrations % 2 === 0 ? { maxBandwidth: 8 << 20, downtimeLimitMs: 4000 } : {};
    const r = await startPrecopy(src, dst, { ...opts, timeoutMs: 180_000 }).done;
    migrations++;
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
      `#${migrations} ${r.totalTimeMs} ms, downtime ${r.downtimeMs} ms, ${r.passes} passes, ${(r.transferredBytes / 1048576).toFixed(0)} MiB ${slow && migrations % 2 === 1 ? "(slow)" : ""} | ${st}${lost.length ? ` | NEW: ${lost.join(" ; ")}` : ""}`,
    );
  }
} finally {
  const summary = {
    minutes,
    workaround,
    slow,
    migrations,
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

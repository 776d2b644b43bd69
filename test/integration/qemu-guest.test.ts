// Real QEMU (TCG): boot one guest shared by the tests of this file; heartbeats, console
// commands, the verify workload, QMP errors, and orphan reaping after an agent crash.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import {
  buildGuestImage,
  type GuestImage,
  QemuProcess,
  QmpError,
  reapOrphans,
  SerialConsole,
} from "../../src/qemu/index.ts";

const stateDir = mkdtempSync(join(tmpdir(), "nc-it-guest-"));
const poolDir = mkdtempSync("/dev/shm/nc-it-guest-");
const started: QemuProcess[] = [];
const extraPids: number[] = [];
let image: GuestImage;
let guest: QemuProcess;
let con: SerialConsole;
let bootMs = 0;

function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

before(async () => {
  image = await buildGuestImage();
  const t0 = Date.now();
  guest = await QemuProcess.start({
    stateDir,
    spec: { guestId: "itguest", memoryMiB: 256, poolDir, image, bootId: "it-boot-1" },
  });
  started.push(guest);
  con = await SerialConsole.connect(guest.paths.serialSocket, { label: "itguest" });
  await con.waitForLine(/NESTCLOUD-READY it-boot-1/, 90_000, { includeHistory: true });
  bootMs = Date.now() - t0;
});

after(async () => {
  con?.close();
  for (const q of started) await q.stop().catch(() => q.kill());
  for (const pid of extraPids) if (alive(pid)) process.kill(pid, "SIGKILL");
  for (const q of started) {
    assert.equal(alive(q.pid), false, `QEMU ${q.instanceId} pid ${q.pid} still alive`);
    assert.equal(existsSync(q.poolFile), false, `pool file ${q.poolFile} left behind`);
  }
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(poolDir, { recursive: true, force: true });
});

test("guest boots, prints READY and heartbeats every second", async (t) => {
  t.diagnostic(`boot to NESTCLOUD-READY: ${bootMs} ms (256 MiB, TCG)`);
  const a = await con.waitForLine(/NESTCLOUD-HB (\d+) ([\d.]+)/, 5000);
  const b = await con.waitForLine(/NESTCLOUD-HB (\d+) ([\d.]+)/, 5000);
  assert.equal(Number(b.match[1]), Number(a.match[1]) + 1);
  assert.ok(Number(b.match[2]) > Number(a.match[2]));
  const st = await guest.qmp.queryStatus();
  assert.equal(st.status, "running");
});

test("console runs commands and returns their output and exit status", async () => {
  const ps = await con.run("ps", 10_000);
  assert.equal(ps.exitCode, 0);
  assert.match(ps.output, /PID/);
  assert.doesNotMatch(ps.output, /NESTCLOUD-HB/);
  const mods = await con.run("cat /proc/modules", 10_000);
  assert.match(mods.output, /^crc7 /m, "the introspection test module is loaded");
  assert.match(mods.output, /^virtio_net /m);
  const fail = await con.run("ls /nonexistent", 10_000);
  assert.notEqual(fail.exitCode, 0);
  assert.match(fail.output, /No such file/);
});

test("verify workload writes, re-checks and reports no loss", async () => {
  const r = await con.run("nc-wl start verify 32", 10_000);
  assert.match(r.output, /started verify pid \d+/);
  await con.waitForLine(/NESTCLOUD-VERIFY ok \d+/, 15_000);
  const st = await con.run("nc-wl status verify", 10_000);
  assert.match(st.output, /workload=verify state=ok sweeps=\d+ .*lost=0/);
  await con.run("nc-wl stop verify", 10_000);
});

test("QMP errors name the command and carry QEMU's class and text", async () => {
  await assert.rejects(guest.qmp.migrateIncoming("tcp:127.0.0.1:0"), (e: unknown) => {
    assert.ok(e instanceof QmpError);
    assert.equal(e.command, "migrate-incoming");
    assert.equal(e.errorClass, "GenericError");
    assert.match(e.message, /^QMP command migrate-incoming failed: GenericError: .+/);
    assert.match(e.desc, /incoming/i);
    return true;
  });
  await assert.rejects(guest.qmp.execute("no-such-command"), /no-such-command failed: CommandNotFound/);
  // The connection stays usable after errors.
  assert.equal((await guest.qmp.queryStatus()).running, true);
});

test("reapOrphans kills the QEMU of a crashed agent by pid and removes its pool file", async () => {
  // A child "agent" starts a QEMU (paused as an incoming destination: no boot needed), reports
  // it, and is then SIGKILLed like a crashed agent.
  const reapState = join(stateDir, "reap");
  const entry = resolve(import.meta.dirname, "../../src/qemu/index.ts");
  const script = `
    import { QemuProcess } from ${JSON.stringify(entry)};
    const q = await QemuProcess.start({ stateDir: ${JSON.stringify(reapState)}, incoming: "defer",
      spec: { guestId: "orphan", memoryMiB: 64, poolDir: ${JSON.stringify(poolDir)},
              image: ${JSON.stringify({ kernel: image.kernel, initrd: image.initrd })} } });
    console.log(JSON.stringify({ pid: q.pid, pool: q.poolFile }));
    setInterval(() => {}, 1000);
  `;
  const agent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  extraPids.push(agent.pid!);
  const line = await new Promise<string>((res, rej) => {
    let buf = "";
    const timer = setTimeout(() => rej(new Error("child agent did not report its QEMU within 30 s")), 30_000);
    agent.stdout.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) {
        clearTimeout(timer);
        res(buf.split("\n")[0]);
      }
    });
  });
  const { pid, pool } = JSON.parse(line) as { pid: number; pool: string };
  extraPids.push(pid);
  agent.kill("SIGKILL");
  await new Promise((r) => agent.once("exit", r));
  assert.ok(alive(pid), "QEMU outlives its crashed agent");
  assert.ok(existsSync(pool));

  const report = await reapOrphans(reapState);
  assert.deepEqual(
    report.killed.map((k) => k.pid),
    [pid],
  );
  assert.deepEqual(report.removedPoolFiles, [pool]);
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(pid), false);
  assert.equal(existsSync(pool), false);
  // Our own guest (a live agent's) was left alone.
  assert.ok(alive(guest.pid));
});

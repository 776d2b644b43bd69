// Real QEMU (TCG): boot one guest shared by the tests of this file; heartbeats, console
// commands, the verify workload, QMP errors, and after an agent crash: orphan reaping, and
// adoption of the orphan by a successor (QMP reconnected, pid-based exit watch and stop).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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

/**
 * A child "agent" starts a QEMU (paused as an incoming destination: no boot needed),
 * records agent data for it, reports it, and then either stays (to be SIGKILLed like a
 * crashed agent) or, with `crash`, throws: an uncaught error ends it through its exit hook.
 */
async function childAgentWithQemu(
  dir: string,
  guestId: string,
  opts: { crash?: boolean; keepOnExit?: boolean } = {},
): Promise<{ agent: ReturnType<typeof spawn>; pid: number; pool: string }> {
  const entry = resolve(import.meta.dirname, "../../src/qemu/index.ts");
  const script = `
    import { QemuProcess, keepQemusOnExit } from ${JSON.stringify(entry)};
    if (${!!opts.keepOnExit}) keepQemusOnExit();
    const q = await QemuProcess.start({ stateDir: ${JSON.stringify(dir)}, incoming: "defer",
      spec: { guestId: ${JSON.stringify(guestId)}, memoryMiB: 64, poolDir: ${JSON.stringify(poolDir)},
              image: ${JSON.stringify({ kernel: image.kernel, initrd: image.initrd })} } });
    q.setAgentData({ role: "incoming", note: "set by the first agent" });
    console.log(JSON.stringify({ pid: q.pid, pool: q.poolFile }));
    if (${!!opts.crash}) setTimeout(() => { throw new Error("agent bug"); }, 100);
    else setInterval(() => {}, 1000);
  `;
  const agent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  extraPids.push(agent.pid!);
  const line = await new Promise<string>((res, rej) => {
    let buf = "";
    const timer = setTimeout(() => rej(new Error("child agent did not report its QEMU within 30 s")), 30_000);
    agent.stdout!.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) {
        clearTimeout(timer);
        res(buf.split("\n")[0]);
      }
    });
  });
  const { pid, pool } = JSON.parse(line) as { pid: number; pool: string };
  extraPids.push(pid);
  return { agent, pid, pool };
}

async function exited(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once("exit", r));
}

test("reapOrphans kills the QEMU of a crashed agent by pid and removes its pool file", async () => {
  const reapState = join(stateDir, "reap");
  const { agent, pid, pool } = await childAgentWithQemu(reapState, "orphan");
  agent.kill("SIGKILL");
  await exited(agent);
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

test("an agent that crashes keeps its QEMUs only with keepQemusOnExit", async () => {
  const dir = join(stateDir, "crash");
  const kept = await childAgentWithQemu(dir, "kept", { crash: true, keepOnExit: true });
  const killed = await childAgentWithQemu(dir, "killed", { crash: true });
  await Promise.all([exited(kept.agent), exited(killed.agent)]);
  assert.equal(kept.agent.exitCode, 1, "the uncaught error ended the agent");
  for (let i = 0; i < 50 && alive(killed.pid); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(killed.pid), false, "by default an exiting process kills its QEMUs");
  assert.ok(alive(kept.pid), "with keepQemusOnExit the QEMU outlives the crash, for a successor");
  const report = await reapOrphans(dir);
  assert.deepEqual(
    report.killed.map((k) => k.pid),
    [kept.pid],
  );
});

test("a successor adopts a dead agent's QEMU: QMP again, its state names the new agent, pid-based stop", async () => {
  const dir = join(stateDir, "adopt");
  const first = await childAgentWithQemu(dir, "adoptee");
  first.agent.kill("SIGKILL");
  await exited(first.agent);
  assert.ok(alive(first.pid));

  let q: QemuProcess | null = null;
  const report = await reapOrphans(dir, () => {}, {
    adopt: async (s) => {
      q = await QemuProcess.adopt(s);
      return true;
    },
  });
  assert.ok(q, "adopt was offered the orphan");
  const a = q as QemuProcess;
  started.push(a);
  assert.deepEqual(
    report.adopted.map((x) => x.pid),
    [first.pid],
  );
  assert.deepEqual(report.killed, []);
  assert.equal(a.pid, first.pid);
  assert.ok(a.adopted && a.isRunning);
  assert.ok(a.ownsPoolFile, "it still owns the pool file it created");
  assert.deepEqual(a.agentData, { role: "incoming", note: "set by the first agent" });
  assert.equal((await a.qmp.queryStatus()).status, "inmigrate", "QMP answers on the new connection");
  const st = JSON.parse(readFileSync(join(a.spec.runDir, "state.json"), "utf8"));
  assert.equal(st.agentPid, process.pid, "the state file names its new agent");
  // Another reap pass (e.g. `testbed down` while we live) leaves it alone now.
  const again = await reapOrphans(dir);
  assert.deepEqual(again.killed, []);
  assert.ok(alive(first.pid));

  // An adopted QEMU that dies is noticed although it is not our child.
  const t0 = Date.now();
  process.kill(first.pid, "SIGKILL");
  const ex = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r("timeout"), 5000))]);
  assert.notEqual(ex, "timeout", "the exit of an adopted QEMU is seen");
  assert.ok(!a.isRunning);
  await a.kill();
  assert.equal(existsSync(first.pool), false, "its pool file went with it");
  assert.equal(existsSync(a.spec.runDir), false);

  // A second orphan, adopted and stopped gracefully (QMP quit, then signals by verified pid).
  const second = await childAgentWithQemu(dir, "adoptee2");
  second.agent.kill("SIGKILL");
  await exited(second.agent);
  const [runDir] = readdirSync(dir);
  const b = await QemuProcess.adopt(JSON.parse(readFileSync(join(dir, runDir, "state.json"), "utf8")));
  started.push(b);
  await b.stop();
  // Gone for us at once (its cmdline is); init reaps the zombie a moment later.
  for (let i = 0; i < 50 && alive(second.pid); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(second.pid), false);
  assert.equal(existsSync(second.pool), false);
  assert.ok(Date.now() - t0 < 30_000);
});

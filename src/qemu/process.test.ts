import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildQemuArgs, QemuAdoptError, QemuProcess, QemuSpecError } from "./process.ts";
import type { QemuLaunchSpec } from "./spec.ts";
import { isOurQemu, processStartTime, reapOrphans, writeState } from "./state.ts";

const base: QemuLaunchSpec = {
  guestId: "g1",
  instanceId: "g1.abcdef0123",
  runDir: "/run/nc/g1.abcdef0123",
  poolDir: "/dev/shm/nc-pool",
  memoryMiB: 256,
  image: { kernel: "/img/vmlinuz", initrd: "/img/initrd.gz", append: "console=ttyS0" },
};

function argAfter(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
}

test("buildQemuArgs: machine, memory backend on the pool file, sockets, no display", () => {
  const args = buildQemuArgs({ ...base, tcgDirtyTrackingWorkaround: false });
  assert.deepEqual(argAfter(args, "-machine"), ["q35,memory-backend=mem"]);
  assert.deepEqual(argAfter(args, "-accel"), ["tcg"]);
  assert.deepEqual(argAfter(args, "-m"), ["256M"]);
  assert.deepEqual(argAfter(args, "-object"), [
    "memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/nc-pool/g1.ram,share=on",
  ]);
  assert.ok(args.includes("-nodefaults") && args.includes("-nographic"));
  assert.deepEqual(argAfter(args, "-qmp"), ["unix:/run/nc/g1.abcdef0123/qmp.sock,server=on,wait=off"]);
  assert.deepEqual(argAfter(args, "-pidfile"), ["/run/nc/g1.abcdef0123/qemu.pid"]);
  assert.match(
    argAfter(args, "-chardev")[0],
    /^socket,id=serial0,path=\/run\/nc\/g1\.abcdef0123\/serial\.sock,server=on,wait=off,logfile=.*serial\.log/,
  );
  assert.deepEqual(argAfter(args, "-serial"), ["chardev:serial0"]);
  assert.deepEqual(argAfter(args, "-kernel"), ["/img/vmlinuz"]);
  assert.deepEqual(argAfter(args, "-append"), ["console=ttyS0"]);
  assert.ok(!args.includes("-incoming"));
  assert.ok(!args.includes("-netdev") && !args.includes("-drive"));
  // Every argument carries the instance id somewhere so reaping can recognise the process.
  assert.ok(args.some((a) => a.includes(base.instanceId)));
});

test("buildQemuArgs: TCG dirty-tracking workaround sizes RAM off the 256 KiB grid by default", () => {
  const args = buildQemuArgs(base);
  assert.deepEqual(argAfter(args, "-m"), [`${256 * 1024 + 8}K`]);
  assert.match(argAfter(args, "-object")[0], new RegExp(`size=${256 * 1024 + 8}K,`));
});

test("buildQemuArgs: incoming, bootId, user net with forwards, tap, disk, tb-size", () => {
  const a = buildQemuArgs({
    ...base,
    incoming: "defer",
    bootId: "b-1",
    append: "foo=1",
    cpus: 2,
    tcgTbSizeMiB: 64,
    noReboot: true,
    net: { mode: "user", mac: "52:54:00:12:34:56", hostfwd: [{ hostPort: 2222, guestPort: 22 }] },
    disk: { path: "/var/disk.qcow2", format: "qcow2", readOnly: true },
  });
  assert.deepEqual(argAfter(a, "-incoming"), ["defer"]);
  assert.deepEqual(argAfter(a, "-append"), ["console=ttyS0 nestcloud.bootid=b-1 foo=1"]);
  assert.deepEqual(argAfter(a, "-smp"), ["2"]);
  assert.deepEqual(argAfter(a, "-accel"), ["tcg,tb-size=64"]);
  assert.deepEqual(argAfter(a, "-netdev"), ["user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"]);
  assert.deepEqual(argAfter(a, "-device"), [
    "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56",
    "virtio-blk-pci,drive=disk0",
  ]);
  assert.deepEqual(argAfter(a, "-drive"), ["file=/var/disk.qcow2,if=none,id=disk0,format=qcow2,readonly=on"]);
  assert.ok(a.includes("-no-reboot"));
  const t = buildQemuArgs({ ...base, net: { mode: "tap", ifname: "nctap0" } });
  assert.deepEqual(argAfter(t, "-netdev"), ["tap,id=net0,ifname=nctap0,script=no,downscript=no"]);
});

test("buildQemuArgs rejects what QEMU's option parser would misread", () => {
  assert.throws(() => buildQemuArgs({ ...base, guestId: "bad id" }), QemuSpecError);
  assert.throws(() => buildQemuArgs({ ...base, poolDir: "/dev/shm/a,b" }), /without commas/);
  assert.throws(() => buildQemuArgs({ ...base, memoryMiB: 1.5 }), /memoryMiB/);
  assert.throws(() => buildQemuArgs({ ...base, runDir: `/tmp/${"x".repeat(120)}` }), /socket path too long/);
  assert.throws(() => buildQemuArgs({ ...base, net: { mode: "user", mac: "zz" } }), /MAC/);
  assert.throws(() => buildQemuArgs({ ...base, instanceId: "other.1" }), /instanceId/);
  assert.throws(() => buildQemuArgs({ ...base, append: "a\nb" }), /one line/);
});

test("buildQemuArgs: a guest's own devices, with fixed PCI slots and ids from the device ids", () => {
  const a = buildQemuArgs({
    ...base,
    devices: [
      { kind: "disk", id: "d0", path: "/st/g1/d0.raw", format: "raw" },
      { kind: "nic", id: "n0", mac: "52:54:00:00:00:01", backend: "user" },
      { kind: "nic", id: "n1", mac: "52:54:00:00:00:02", backend: "socket" },
      { kind: "serial", id: "s1", logFile: "/st/g1/s1.log" },
      { kind: "disk", id: "d1", path: "/st/g1/d1.qcow2", format: "qcow2", readOnly: true },
      { kind: "nic-tap", id: "t0", nic: "n0" },
    ],
  });
  const run = base.runDir;
  assert.deepEqual(argAfter(a, "-drive"), [
    "file=/st/g1/d0.raw,if=none,id=drive-d0,node-name=disk-d0,format=raw",
    "file=/st/g1/d1.qcow2,if=none,id=drive-d1,node-name=disk-d1,format=qcow2,readonly=on",
  ]);
  assert.deepEqual(argAfter(a, "-netdev"), [
    "user,id=nic-n0,restrict=on",
    `stream,id=nic-n1,server=on,addr.type=unix,addr.path=${run}/n-n1.sock`,
  ]);
  assert.deepEqual(argAfter(a, "-device"), [
    "virtio-blk-pci,drive=drive-d0,id=dev-d0,bus=pcie.0,addr=0x8",
    "virtio-net-pci,netdev=nic-n0,id=dev-n0,mac=52:54:00:00:00:01,bus=pcie.0,addr=0x9",
    "virtio-net-pci,netdev=nic-n1,id=dev-n1,mac=52:54:00:00:00:02,bus=pcie.0,addr=0xa",
    "isa-serial,chardev=serial-s1,id=dev-s1",
    "virtio-blk-pci,drive=drive-d1,id=dev-d1,bus=pcie.0,addr=0xb",
  ]);
  assert.deepEqual(argAfter(a, "-chardev").slice(1), [
    `socket,id=serial-s1,path=${run}/s-s1.sock,server=on,wait=off,logfile=/st/g1/s1.log,logappend=on`,
    `socket,id=tap-t0,path=${run}/t-t0.sock,server=on,wait=off`,
  ]);
  assert.equal(argAfter(a, "-object")[1], "filter-mirror,id=tapf-t0,netdev=nic-n0,queue=all,outdev=tap-t0");
  const nic = { kind: "nic", id: "n0", mac: "52:54:00:00:00:01", backend: "user" } as const;
  assert.throws(() => buildQemuArgs({ ...base, devices: [nic, nic] }), /used twice/);
  assert.throws(
    () => buildQemuArgs({ ...base, devices: [{ kind: "nic-tap", id: "t0", nic: "n9" }] }),
    /no NIC n9/,
  );
  assert.throws(
    () => buildQemuArgs({ ...base, devices: [{ kind: "disk", id: "d0", path: "/a,b", format: "raw" }] }),
    /commas/,
  );
  const serials = ["s1", "s2", "s3", "s4"].map((id) => ({ kind: "serial", id }) as const);
  assert.throws(() => buildQemuArgs({ ...base, devices: serials }), /at most 3 extra serial/);
  assert.throws(
    () =>
      buildQemuArgs({
        ...base,
        runDir: `/tmp/${"x".repeat(85)}`,
        devices: [{ kind: "serial", id: "abcdefghijkl" }],
      }),
    /socket path too long/,
  );
});

const tmp = mkdtempSync(join(tmpdir(), "nc-proc-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("reapOrphans never kills a pid that is not our QEMU, and cleans the dead agent's files", async () => {
  // A live process whose pid is recorded but which is not QEMU (as after pid reuse).
  const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    const stateDir = join(tmp, "state");
    const runDir = join(stateDir, "g9.0000000001");
    mkdirSync(runDir, { recursive: true });
    const pool = join(tmp, "g9.ram");
    writeFileSync(pool, "ram");
    writeState(runDir, {
      version: 1,
      instanceId: "g9.0000000001",
      guestId: "g9",
      pid: sleeper.pid!,
      pidFile: join(runDir, "qemu.pid"),
      poolFiles: [pool],
      runDir,
      agentPid: 2 ** 22 + 7, // no such process: the agent is dead
      agentStartTime: 1,
      startedAt: new Date().toISOString(),
    });
    assert.equal(isOurQemu(sleeper.pid!, "g9.0000000001"), false);
    const report = await reapOrphans(stateDir);
    assert.deepEqual(report.killed, []);
    assert.equal(sleeper.exitCode, null, "the unrelated process must survive");
    assert.ok(!sleeper.killed);
    assert.deepEqual(report.removedPoolFiles, [pool]);
    assert.equal(existsSync(pool), false);
    assert.equal(existsSync(runDir), false);
  } finally {
    sleeper.kill("SIGKILL");
  }
});

test("reapOrphans keeps a dead instance's pool file that another process has mapped (the guest's RAM in use)", async () => {
  const stateDir = join(tmp, "state-mapped");
  const runDir = join(stateDir, "g8.0000000001");
  mkdirSync(runDir, { recursive: true });
  const pool = join(tmp, "g8.ram");
  writeFileSync(pool, Buffer.alloc(4096));
  // Another process maps the file shared, as the QEMU that took the guest over does.
  const holder = spawn(
    "python3",
    [
      "-c",
      "import mmap,sys,time\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),0)\nprint('mapped',flush=True)\ntime.sleep(30)",
      pool,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    await new Promise<void>((ok) => holder.stdout!.once("data", () => ok()));
    writeState(runDir, {
      version: 1,
      instanceId: "g8.0000000001",
      guestId: "g8",
      pid: null,
      pidFile: join(runDir, "qemu.pid"),
      poolFiles: [pool],
      runDir,
      agentPid: 2 ** 22 + 7, // no such process: the agent is dead
      agentStartTime: 1,
      startedAt: new Date().toISOString(),
    });
    const report = await reapOrphans(stateDir);
    assert.deepEqual(report.removedPoolFiles, []);
    assert.ok(existsSync(pool), "the RAM file in use must stay");
    assert.match(report.skipped.map((x) => x.reason).join(), new RegExp(`in use by pid ${holder.pid}`));
  } finally {
    holder.kill("SIGKILL");
  }
  // Once nobody maps it, a reap removes it.
  await new Promise((r) => holder.once("exit", r));
  mkdirSync(runDir, { recursive: true });
  writeState(runDir, {
    version: 1,
    instanceId: "g8.0000000001",
    guestId: "g8",
    pid: null,
    pidFile: join(runDir, "qemu.pid"),
    poolFiles: [pool],
    runDir,
    agentPid: 2 ** 22 + 7,
    agentStartTime: 1,
    startedAt: new Date().toISOString(),
  });
  assert.deepEqual((await reapOrphans(stateDir)).removedPoolFiles, [pool]);
});

test("reapOrphans takes a dead agent that is not reaped yet (a zombie) for dead", async () => {
  // The agent: a child of `sleep 30`, which never waits for it, so it stays a zombie.
  const parent = spawn("bash", ["-c", "sleep 0.05 & echo $!; exec sleep 30"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const agentPid = Number(
      await new Promise<string>((r) => parent.stdout.once("data", (d) => r(String(d)))),
    );
    for (let i = 0; i < 100 && !/\) Z /.test(readFileSync(`/proc/${agentPid}/stat`, "utf8")); i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.match(readFileSync(`/proc/${agentPid}/stat`, "utf8"), /\) Z /, "the agent is a zombie");
    const stateDir = join(tmp, "state3");
    const runDir = join(stateDir, "g7.0000000003");
    mkdirSync(runDir, { recursive: true });
    writeState(runDir, {
      version: 1,
      instanceId: "g7.0000000003",
      guestId: "g7",
      pid: null,
      pidFile: join(runDir, "qemu.pid"),
      poolFiles: [],
      runDir,
      agentPid,
      agentStartTime: processStartTime(agentPid),
      startedAt: new Date().toISOString(),
    });
    const report = await reapOrphans(stateDir);
    assert.deepEqual(report.skipped, []);
    assert.equal(existsSync(runDir), false, "the dead agent's entry is cleaned up");
  } finally {
    parent.kill("SIGKILL");
  }
});

test("reapOrphans leaves entries of a live agent alone", async () => {
  const stateDir = join(tmp, "state2");
  const runDir = join(stateDir, "g8.0000000002");
  mkdirSync(runDir, { recursive: true });
  writeState(runDir, {
    version: 1,
    instanceId: "g8.0000000002",
    guestId: "g8",
    pid: null,
    pidFile: join(runDir, "qemu.pid"),
    poolFiles: [],
    runDir,
    agentPid: process.pid,
    agentStartTime: processStartTime(process.pid),
    startedAt: new Date().toISOString(),
  });
  const report = await reapOrphans(stateDir);
  assert.equal(report.skipped.length, 1);
  assert.equal(existsSync(runDir), true);
});

test("adopt refuses a recorded pid that is not that QEMU, and a state without a spec", async () => {
  const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    const runDir = join(tmp, "adopt", "g7.0000000003");
    mkdirSync(runDir, { recursive: true });
    const state = {
      version: 1 as const,
      instanceId: "g7.0000000003",
      guestId: "g7",
      pid: sleeper.pid!,
      pidFile: join(runDir, "qemu.pid"),
      poolFiles: [],
      runDir,
      agentPid: 2 ** 22 + 7,
      agentStartTime: 1,
      startedAt: new Date().toISOString(),
    };
    await assert.rejects(QemuProcess.adopt(state), (e: unknown) => {
      assert.ok(e instanceof QemuAdoptError);
      assert.match(e.message, /no launch spec/);
      return true;
    });
    const spec = { ...base, instanceId: state.instanceId, runDir, guestId: "g7" };
    await assert.rejects(QemuProcess.adopt({ ...state, spec }), (e: unknown) => {
      assert.ok(e instanceof QemuAdoptError);
      assert.match(e.message, /is not that QEMU/);
      return true;
    });
    assert.equal(sleeper.exitCode, null, "the unrelated process is untouched");
  } finally {
    sleeper.kill("SIGKILL");
  }
});

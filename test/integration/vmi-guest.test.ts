// Introspection of a real Debian-kernel guest under QEMU (TCG), from its RAM file, with no debug
// symbols: while it boots, discovery says "not found" or "still booting" until the process list
// is real; then the process list equals what the guest's own ps reports, the module list equals
// its /proc/modules, the page server authenticates, refuses other guests and lets a client in
// while 500 idle connections are open, the IDS checks see a DKOM-hidden process, a hooked syscall
// and modified kernel text (each undone afterwards), and discovery still works without
// VMCOREINFO and over QMP.
//
// The guest kernel: NESTCLOUD_GUEST_KERNEL=default (the default: what Debian's
// linux-image-amd64 names), backports (the newest kernel in bookworm-backports; needs
// scripts/ensure-backports.sh) or a package name such as linux-image-6.1.0-57-amd64.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildGuestImage, QemuProcess, SerialConsole } from "../../src/qemu/index.ts";
import {
  BufferPhysicalMemory,
  checkKernelText,
  checkSyscallTable,
  connectRemoteMemory,
  discoverKernel,
  findHiddenTasks,
  gpaToRamOffset,
  type Kernel,
  kernelImageVaToPa,
  listModules,
  listProcesses,
  openRamFile,
  PageServer,
  type PhysicalMemory,
  type ProcessInfo,
  QmpMemory,
  type RamFile,
  RamFileMemory,
  RemoteError,
  ramLayout,
  TextBaselineStore,
  VmiError,
} from "../../src/vmi/index.ts";
import { SyntheticGuest } from "../../src/vmi/kernel/synthetic-guest.testkit.ts";

const root = resolve(import.meta.dirname, "../..");
/** Each suite takes seconds; a hang fails it instead of stalling CI. */
const SUITE_TIMEOUT_MS = 120_000;
const stateDir = mkdtempSync(join(tmpdir(), "nc-it-vmi-"));
const poolDir = mkdtempSync("/dev/shm/nc-it-vmi-");
let guest: QemuProcess;
let con: SerialConsole;
let ram: RamFile;
let kernel: Kernel;
let release = "";
const KERNEL = process.env.NESTCLOUD_GUEST_KERNEL ?? "default";
/** What discovery + ps answered while the guest booted, in order (error codes, or "ps"). */
const duringBoot: string[] = [];
/** The same with the error messages, for the test's diagnostics. */
const duringBootDetail: string[] = [];

/** Introspects the RAM file again and again until `done`; records each outcome. */
async function probeWhileBooting(poolFile: string, done: () => boolean): Promise<void> {
  while (!done()) {
    if (existsSync(poolFile)) {
      const rf = openRamFile(poolFile);
      try {
        const ps = await listProcesses(await discoverKernel(rf.memory));
        duringBoot.push(ps.some((p) => p.pid === 1) ? "ps" : `ps without pid 1 (${ps.length} entries)`);
      } catch (e) {
        duringBoot.push(e instanceof VmiError ? e.code : `not a VmiError: ${String(e)}`);
        duringBootDetail.push(`${duringBoot.at(-1)}: ${(e as Error).message}`);
      } finally {
        rf.close();
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  const image = await buildGuestImage({ kernel: KERNEL });
  release = image.kernelRelease;
  guest = await QemuProcess.start({
    stateDir,
    spec: { guestId: "vmiguest", memoryMiB: 256, poolDir, image, bootId: "vmi-it-1" },
  });
  con = await SerialConsole.connect(guest.paths.serialSocket, { label: "vmiguest" });
  let booted = false;
  const probe = probeWhileBooting(guest.poolFile, () => booted);
  try {
    await con.waitForLine(/NESTCLOUD-READY vmi-it-1/, 90_000, { includeHistory: true });
  } finally {
    booted = true;
    await probe;
  }
  // Long-lived processes to compare, one as uid 1000 (busybox su; its setpriv cannot change
  // uids); the heartbeat's `sleep 1` comes and goes.
  const user = await con.run(
    "echo 'nc:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd && echo 'nc:x:1000:' >> /etc/group",
    10_000,
  );
  assert.equal(user.exitCode, 0, user.output);
  await con.run("sleep 1000 & sleep 1001 & su nc -c 'exec sleep 1002' & echo started", 10_000);
  ram = openRamFile(guest.poolFile);
  kernel = await discoverKernel(ram.memory);
});

after(async () => {
  ram?.close();
  con?.close();
  await guest?.stop().catch(() => guest.kill());
  if (guest) assert.equal(existsSync(guest.poolFile), false, "pool file removed");
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(poolDir, { recursive: true, force: true });
});

interface GuestProc {
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
}

/** ps prints names for the users in the guest's /etc/passwd (only the one we add), else uids. */
function uidOf(user: string): number {
  if (user === "nc") return 1000;
  assert.match(user, /^\d+$/, `unknown user ${user}`);
  return Number(user);
}

/** Runs the nestcloud command; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [join(root, "bin/nestcloud.js"), ...args], { cwd: root });
    let out = "";
    let err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    c.once("error", rej);
    c.once("close", (code) => res({ code, out, err }));
  });
}

/** The guest's own view: busybox ps (comm from /proc/<pid>/stat). */
async function guestPs(): Promise<GuestProc[]> {
  const r = await con.run("ps -o pid,ppid,user,comm", 15_000);
  assert.equal(r.exitCode, 0, r.output);
  return r.output
    .split("\n")
    .map((l) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.+?)\s*$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), uid: uidOf(m[3]), comm: m[4] }));
}

/**
 * busybox ps shows /proc's name cut to 15 characters. For a workqueue worker /proc appends what
 * it last ran to task->comm: "-desc", or "+desc" while running (wq_worker_comm() in
 * kernel/workqueue.c). task->comm itself may hold dashes: rescuers are "kworker/R-<wq>" since
 * 6.9, cut to 15 characters like any comm. So a guest name matches ours when it is equal, or
 * for a kworker when it is ours followed by "-" or "+" and the rest of the description.
 */
function sameComm(ours: string, guest: string): boolean {
  if (ours === guest) return true;
  return ours.startsWith("kworker/") && guest.startsWith(ours) && /^[-+]/.test(guest.slice(ours.length));
}

/** A guest name without a worker's description, for matching two guest listings. */
function guestKey(p: { pid: number; comm: string }): string {
  return `${p.pid}:${p.comm.replace(/^(kworker\/u?\d+:\d+H?)[-+].*$/, "$1")}`;
}

/**
 * Compares our list with two guest listings taken before and after it: processes in both guest
 * listings must be in ours with the same comm, parent and uid; ours may only add processes that
 * came and went in between (the heartbeat's sleep, the console's ps, a fork of the init script
 * caught before it execs).
 */
function compareWithGuest(ours: readonly ProcessInfo[], a: GuestProc[], c: GuestProc[]): void {
  const later = new Set(c.map(guestKey));
  const stable = a.filter((p) => later.has(guestKey(p)) && p.comm !== "ps");
  const byPid = new Map(ours.map((p) => [p.pid, p]));
  for (const g of stable) {
    const o = byPid.get(g.pid);
    assert.ok(o, `pid ${g.pid} (${g.comm}) missing from the introspected list`);
    assert.ok(sameComm(o.comm, g.comm), `comm of pid ${g.pid}: ours ${o.comm}, guest's ps ${g.comm}`);
    assert.equal(o.ppid, g.ppid, `ppid of pid ${g.pid}`);
    assert.equal(o.uid, g.uid, `uid of pid ${g.pid}`);
  }
  const seen = [...a, ...c];
  for (const o of ours) {
    if (seen.some((g) => g.pid === o.pid && sameComm(o.comm, g.comm))) continue;
    // The guest's init is a shell script: a child it forks is named "init" until it execs.
    const initFork =
      o.comm === "init" && o.pid !== 1 && ours.some((p) => p.pid === o.ppid && p.comm === "init");
    assert.ok(
      ["sleep", "ps", "sh"].includes(o.comm) || initFork,
      `unexpected process ${o.pid} ${o.comm} (parent ${o.ppid})`,
    );
  }
  assert.ok(stable.length >= 40, `compared ${stable.length} processes`);
}

test("process names: a kworker's /proc description is not part of its name; dashes in names are", () => {
  // 6.1: task->comm "kworker/0:1", busybox ps "kworker/0:1-eve" (cut at 15) or "+eve" running.
  assert.ok(sameComm("kworker/0:1", "kworker/0:1-eve"));
  assert.ok(sameComm("kworker/u4:2", "kworker/u4:2+ev"));
  assert.ok(sameComm("kworker/0:0H", "kworker/0:0H-kb"));
  // 6.9+: rescuers are named "kworker/R-<wq>" (cut to 15): the dash belongs to the name.
  assert.ok(sameComm("kworker/R-mm_pe", "kworker/R-mm_pe"));
  assert.ok(sameComm("kworker/R-md", "kworker/R-md-md"));
  assert.ok(!sameComm("kworker/R-mm_pe", "kworker/R"));
  assert.ok(!sameComm("kworker/0:1", "kworker/0:10"));
  assert.ok(!sameComm("sleep", "sleep-x"));
  assert.equal(guestKey({ pid: 7, comm: "kworker/0:1-eve" }), guestKey({ pid: 7, comm: "kworker/0:1+mm_" }));
  assert.equal(guestKey({ pid: 8, comm: "kworker/R-mm_pe" }), "8:kworker/R-mm_pe");
});

describe("introspection of a real guest", { timeout: SUITE_TIMEOUT_MS }, () => {
  test("while the guest boots: 'no kernel' or 'still booting' until the process list is real", (t) => {
    t.diagnostic(`kernel ${KERNEL} (${release}); during boot: ${duringBoot.join(" ")}`);
    for (const d of new Set(duringBootDetail)) t.diagnostic(d);
    const allowed = new Set(["KERNEL_NOT_FOUND", "KERNEL_NOT_READY", "ps"]);
    assert.deepEqual(
      duringBoot.filter((o) => !allowed.has(o)),
      [],
      "only those answers while booting",
    );
    assert.ok(duringBoot.includes("KERNEL_NOT_READY"), "a booting kernel was seen");
    // Once the kernel runs, it stays readable.
    const first = duringBoot.indexOf("ps");
    if (first >= 0)
      assert.deepEqual(
        duringBoot.slice(first).filter((o) => o !== "ps"),
        [],
      );
  });

  test("discovery: VMCOREINFO, kallsyms, BTF of the distribution kernel", (t) => {
    assert.equal(kernel.facts.path, "vmcoreinfo", kernel.facts.notes.join("\n"));
    assert.equal(kernel.facts.osRelease, release);
    assert.ok(kernel.symbols.size > 50_000);
    t.diagnostic(`${kernel.facts.osRelease}, KASLR 0x${kernel.facts.kernelOffset.toString(16)}`);
    t.diagnostic(
      `timings ${JSON.stringify(kernel.facts.timings, (_k, v) => (typeof v === "number" ? Math.round(v) : v))}`,
    );
  });

  test("the process list is exactly what the guest's ps reports", async () => {
    for (let round = 0; round < 2; round++) {
      const a = await guestPs();
      const ours = await listProcesses(kernel);
      const c = await guestPs();
      compareWithGuest(ours, a, c);
    }
    const ours = await listProcesses(kernel);
    const sleeps = ours.filter((p) => p.comm === "sleep" && p.ppid !== 0).map((p) => p.uid);
    assert.ok(sleeps.filter((u) => u === 1000).length === 1, "the su sleep runs as uid 1000");
  });

  test("`nestcloud vmi ps --ram-file` prints the same processes as JSON", async () => {
    const a = await guestPs();
    const r = await cli(["vmi", "ps", "--ram-file", guest.poolFile, "-o", "json", "--no-profile-cache"]);
    assert.equal(r.code, 0, r.err);
    compareWithGuest(JSON.parse(r.out) as ProcessInfo[], a, await guestPs());
  });

  test("the module list matches /proc/modules, also after rmmod and insmod", async () => {
    const procModules = async () => {
      const r = await con.run("cat /proc/modules", 10_000);
      return r.output
        .split("\n")
        .map((l) => /^(\S+) (\d+) \d+ \S+ (\w+) 0x([0-9a-f]+)/.exec(l.trim()))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({
          name: m[1],
          size: Number(m[2]),
          state: m[3].toLowerCase(),
          base: BigInt(`0x${m[4]}`),
        }));
    };
    const same = async () => {
      const ours = (await listModules(kernel)).map(({ name, size, state, base }) => ({
        name,
        size,
        state,
        base,
      }));
      assert.deepEqual(ours, await procModules());
      return ours;
    };
    const before = await same();
    assert.ok(before.some((m) => m.name === "crc7"));
    await con.run("rmmod crc7", 10_000);
    assert.ok(!(await same()).some((m) => m.name === "crc7"));
    const r = await con.run(`insmod /lib/modules/${release}/crc7.ko`, 10_000);
    assert.equal(r.exitCode, 0, r.output);
    assert.ok((await same()).some((m) => m.name === "crc7"));
  });
});

describe("page server on a real guest", { timeout: SUITE_TIMEOUT_MS }, () => {
  const TOKEN_A = "security-vm-a-token-0123456789";
  const TOKEN_B = "security-vm-b-token-0123456789";
  let server: PageServer;
  let port = 0;
  before(async () => {
    server = new PageServer({
      clients: [
        { id: "secvm-a", token: TOKEN_A, guests: ["vmiguest"] },
        { id: "secvm-b", token: TOKEN_B, guests: ["other"] },
      ],
      guests: new Map<string, PhysicalMemory>([
        ["vmiguest", ram.memory],
        ["other", new BufferPhysicalMemory(new SyntheticGuest().ram)],
      ]),
    });
    port = (await server.listen()).port;
  });
  after(() => server.close());

  test("an authenticated client lists the guest's processes in one round trip per query", async () => {
    const m = await connectRemoteMemory({
      host: "127.0.0.1",
      port,
      token: TOKEN_A,
      clientId: "secvm-a",
      guest: "vmiguest",
    });
    try {
      const k = await discoverKernel(m);
      const a = await guestPs();
      const before = m.stats.roundTrips;
      const ours = await listProcesses(k);
      assert.equal(m.stats.roundTrips - before, 1);
      compareWithGuest(ours, a, await guestPs());
    } finally {
      m.close();
    }
  });

  test("while 500 idle connections are open, a real client lists the guest's processes", async () => {
    const idle = Array.from({ length: 500 }, () => netConnect(port, "127.0.0.1").on("error", () => {}));
    await Promise.all(idle.map((c) => new Promise((r) => c.once("connect", r).once("close", r))));
    try {
      assert.ok(server.connectionCounts.unauthenticated <= server.limits.maxUnauthenticated);
      const m = await connectRemoteMemory({
        host: "127.0.0.1",
        port,
        token: TOKEN_A,
        clientId: "secvm-a",
        guest: "vmiguest",
      });
      try {
        const a = await guestPs();
        compareWithGuest(await listProcesses(await discoverKernel(m)), a, await guestPs());
      } finally {
        m.close();
      }
    } finally {
      for (const c of idle) c.destroy();
    }
  });

  test("`nestcloud vmi ps --remote` over the page server prints the same processes", async () => {
    const tokenFile = join(stateDir, "token-a");
    writeFileSync(tokenFile, `${TOKEN_A}\n`);
    const remote = ["--remote", `127.0.0.1:${port}`, "--guest", "vmiguest", "--token-file", tokenFile];
    const a = await guestPs();
    const r = await cli([
      "vmi",
      "ps",
      ...remote,
      "--client-id",
      "secvm-a",
      "-o",
      "json",
      "--no-profile-cache",
    ]);
    assert.equal(r.code, 0, r.err);
    compareWithGuest(JSON.parse(r.out) as ProcessInfo[], a, await guestPs());
    // The same token under another client's name: refused, a one-line user error (exit 2).
    const bad = await cli(["vmi", "ps", ...remote, "--client-id", "secvm-b", "--no-profile-cache"]);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /REMOTE_AUTH/);
    assert.equal(bad.out, "");
  });

  test("wrong tokens and other guests' memory are refused", async () => {
    const code = (c: string) => (e: unknown) => e instanceof RemoteError && e.code === c;
    await assert.rejects(
      connectRemoteMemory({
        host: "127.0.0.1",
        port,
        token: TOKEN_B,
        clientId: "secvm-a",
        guest: "vmiguest",
      }),
      code("REMOTE_AUTH"),
    );
    await assert.rejects(
      connectRemoteMemory({
        host: "127.0.0.1",
        port,
        token: TOKEN_B,
        clientId: "secvm-b",
        guest: "vmiguest",
      }),
      code("REMOTE_FORBIDDEN"),
    );
    await assert.rejects(
      connectRemoteMemory({ host: "127.0.0.1", port, token: TOKEN_A, clientId: "secvm-a", guest: "other" }),
      code("REMOTE_FORBIDDEN"),
    );
    assert.ok(server.stats.forbidden >= 2);
  });
});

describe("IDS checks against real tampering (undone afterwards)", { timeout: SUITE_TIMEOUT_MS }, () => {
  const layout = () => ramLayout("q35", ram.file.size);
  /** Writes guest-physical memory through the RAM file, with the guest paused. */
  type Write = { pa: number; bytes: Uint8Array };
  /**
   * Writes guest RAM while the guest is stopped. Given a function, it reads what it needs and
   * computes the writes while stopped too: a pointer read while the guest runs may be stale by
   * the time it is written (a fork links a new task at the list's tail in between).
   */
  async function poke(what: Write[] | (() => Promise<Write[]>)): Promise<void> {
    await guest.qmp.stop();
    let fd: number | undefined;
    try {
      const writes = typeof what === "function" ? await what() : what;
      fd = openSync(guest.poolFile, "r+");
      for (const w of writes) {
        const loc = gpaToRamOffset(layout(), w.pa);
        assert.equal(loc.kind, "ram");
        if (loc.kind === "ram") writeSync(fd, w.bytes, 0, w.bytes.length, loc.offset);
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
      await guest.qmp.cont();
    }
  }
  const u64 = (v: bigint) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return b;
  };
  /** PA of a kernel VA in the direct map or the kernel image (where tasks and tables live). */
  const pa = (va: bigint) =>
    va >= kernel.facts.pageOffsetBase && va < 0xffffffff80000000n
      ? Number(va - kernel.facts.pageOffsetBase)
      : kernelImageVaToPa(va, kernel.facts.physBase);
  const read64 = async (va: bigint) => (await kernel.readU64s([va]))[0];

  test("a process unlinked from the task list (DKOM) is reported hidden, then relinked", async () => {
    const target = (await listProcesses(kernel)).find((p) => p.uid === 1000 && p.comm === "sleep");
    assert.ok(target);
    assert.deepEqual((await findHiddenTasks(kernel)).hidden, []);
    const off = BigInt(kernel.field("task_struct.tasks").offset);
    const link = target.task + off;
    await poke(async () => {
      const [next, prev] = [await read64(link), await read64(link + 8n)];
      return [
        { pa: pa(prev), bytes: u64(next) }, // prev->next = next
        { pa: pa(next + 8n), bytes: u64(prev) }, // next->prev = prev
      ];
    });
    try {
      assert.equal(
        (await listProcesses(kernel)).some((p) => p.pid === target.pid),
        false,
      );
      const r = await findHiddenTasks(kernel);
      assert.deepEqual(
        r.hidden.map((h) => [h.pid, h.comm, h.seenIn.includes("pid-idr")]),
        [[target.pid, "sleep", true]],
      );
    } finally {
      // Relink at the tail (list_add_tail): correct whatever changed meanwhile.
      const head = kernel.symbols.require("init_task") + off;
      await poke(async () => {
        const tail = await read64(head + 8n);
        return [
          { pa: pa(link), bytes: u64(head) },
          { pa: pa(link + 8n), bytes: u64(tail) },
          { pa: pa(tail), bytes: u64(link) },
          { pa: pa(head + 8n), bytes: u64(link) },
        ];
      });
    }
    assert.ok((await listProcesses(kernel)).some((p) => p.pid === target.pid));
    assert.deepEqual((await findHiddenTasks(kernel)).hidden, []);
  });

  test("a syscall pointed into a module is reported with the module's name, then restored", async () => {
    assert.deepEqual((await checkSyscallTable(kernel)).findings, []);
    const table = kernel.symbols.require("sys_call_table");
    const nr = 246; // kexec_load: nothing in the guest calls it
    const entry = table + BigInt(nr * 8);
    const original = await read64(entry);
    const crc7 = (await listModules(kernel)).find((m) => m.name === "crc7");
    assert.ok(crc7);
    const at = pa(entry);
    await poke([{ pa: at, bytes: u64(crc7.base + 0x10n) }]);
    try {
      const r = await checkSyscallTable(kernel);
      assert.deepEqual(
        r.findings.map((f) => [f.nr, f.problem, f.symbol]),
        [[nr, "outside-text", "module:crc7+0x10"]],
      );
    } finally {
      await poke([{ pa: at, bytes: u64(original) }]);
    }
    assert.deepEqual((await checkSyscallTable(kernel)).findings, []);
  });

  test("kernel text: baseline at first sight, a modified byte is named, restored text matches", async () => {
    const store = new TextBaselineStore(join(stateDir, "baselines"));
    assert.equal((await checkKernelText(kernel, store)).status, "baseline-recorded");
    assert.equal((await checkKernelText(kernel, store)).status, "match");
    const fn = kernel.symbols.require("__x64_sys_kexec_load");
    const at = pa(fn + 3n);
    const [orig] = await ram.memory.read([{ addr: at, len: 1 }]);
    await poke([{ pa: at, bytes: Uint8Array.of(orig[0] ^ 0xff) }]);
    try {
      const r = await checkKernelText(kernel, store);
      assert.equal(r.status, "mismatch");
      const start = kernel.symbols.require("_stext");
      const offset = Number(fn + 3n - start);
      assert.deepEqual(
        r.changed.map((c) => c.offset),
        [offset - (offset % r.current.chunk)],
      );
    } finally {
      await poke([{ pa: at, bytes: orig }]);
    }
    assert.equal((await checkKernelText(kernel, store)).status, "match");
  });
});

describe("other discovery paths on the real guest", { timeout: SUITE_TIMEOUT_MS }, () => {
  test("without VMCOREINFO: banner, exported symbols and kallsyms found by shape give the same list", async (t) => {
    // A snapshot (the guest keeps running): both paths read the same bytes.
    const snap = new Uint8Array(readFileSync(guest.poolFile));
    const mem = new RamFileMemory(ramLayout("q35", snap.length), new BufferPhysicalMemory(snap));
    const viaInfo = await listProcesses(await discoverKernel(mem));
    const text = Buffer.from(snap.buffer, snap.byteOffset, snap.length);
    for (let at = text.indexOf("OSRELEASE="); at >= 0; at = text.indexOf("OSRELEASE=", at + 1))
      text.fill(0, at, at + 10);
    const k = await discoverKernel(mem);
    assert.equal(k.facts.path, "banner+ksymtab+kallsyms-scan");
    assert.equal(k.facts.osRelease, release);
    assert.equal(k.facts.kernelOffset, kernel.facts.kernelOffset);
    assert.equal(k.facts.physBase, kernel.facts.physBase);
    for (const n of k.facts.notes) t.diagnostic(n);
    assert.deepEqual(await listProcesses(k), viaInfo);
    assert.deepEqual(
      (await listModules(k)).map((m) => m.name),
      (await listModules(kernel)).map((m) => m.name),
    );
  });

  test("over QMP (pmemsave) for guests without a shared RAM file", async (t) => {
    const mem = await QmpMemory.open(guest.qmp, { tmpDir: stateDir });
    try {
      const t0 = Date.now();
      const k = await discoverKernel(mem);
      const a = await guestPs();
      const ours = await listProcesses(k);
      compareWithGuest(ours, a, await guestPs());
      t.diagnostic(`QMP: discovery + ps in ${Date.now() - t0} ms, ${mem.calls} pmemsave calls`);
    } finally {
      mem.close();
    }
  });
});

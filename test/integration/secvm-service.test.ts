// Security VMs as services of the host-VM agent, on real QEMU (TCG) guests of a real testbed:
// the agent starts a security VM for guest ga (memory, its ext4 data disk, its NIC) and one for
// gb (memory, disk), each in its own cgroup, network namespace and uid. Real attacks inside ga
// are caught by each monitor over the local channel and read back through the agent's API and
// `nestcloud secvm alerts`: a process hidden by unlinking it from the task list (DKOM) and a
// syscall pointed into a module (memory), a file matching the operator's ClamAV signature and
// a patched system binary (disk), a DNS query matching a default Suricata rule (network). A
// security VM's credentials (its uid, its private folder, its descriptors) reach neither the
// other guest's RAM file nor the other security VM's NBD and mirror sockets. Faults: the
// service killed (alerted, restarted), the service stopped (wedged: killed within the watchdog
// bound and restarted; the guest's network keeps working), the target's QEMU killed (alerted).
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AlertPageAnswer, HostVmAgentClient, SecVmStatus } from "../../src/agent/index.ts";
import { parseServiceMessage } from "../../src/agent/secvm/protocol.ts";
import { DEFAULT_GUEST_MODULES } from "../../src/qemu/index.ts";
import {
  discoverKernel,
  gpaToRamOffset,
  type Kernel,
  kernelImageVaToPa,
  listModules,
  listProcesses,
  openRamFile,
  type RamFile,
  ramLayout,
} from "../../src/vmi/index.ts";
import { type Bed, bringUp, tearDown, testbedOf } from "./testbed-helpers.ts";

const root = resolve(import.meta.dirname, "../..");
const MiB = 1024 * 1024;
const MARKER = "NESTCLOUD-SECVM-MALWARE-7f3a91";
const SIG = "Nestcloud.IT.SecVm";
let bed: Bed;
let client: HostVmAgentClient;
let ramA: RamFile;
let kernel: Kernel;
let poolA = "";
let poolB = "";

type Logged = AlertPageAnswer["alerts"][number];
const seen = new Map<string, Logged[]>();

/** Every alert of a security VM so far (read through the agent's API, cursor kept). */
async function alertsOf(id: string, waitMs = 0): Promise<Logged[]> {
  const list = seen.get(id) ?? [];
  const page = await client.secVmAlerts(id, { after: list.at(-1)?.seq ?? 0, limit: 1000, waitMs });
  list.push(...page.alerts);
  seen.set(id, list);
  return list;
}

async function waitAlert(
  id: string,
  what: string,
  pred: (a: Logged) => boolean,
  ms = 90_000,
): Promise<Logged> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = (await alertsOf(id)).find(pred);
    if (hit) return hit;
    if (Date.now() > end) {
      const got = (seen.get(id) ?? []).map((a) => `${a.monitor} ${a.severity} ${a.summary}`).join("\n  ");
      assert.fail(`no alert of ${id}: ${what} in ${ms} ms; got:\n  ${got}`);
    }
    await alertsOf(id, 2000);
  }
}

async function sh(guest: string, command: string, timeoutMs = 60_000): Promise<string> {
  const r = await client.exec(guest, { command, timeoutMs });
  assert.equal(r.exitCode, 0, `${guest}: ${command}: ${r.output}`);
  return r.output;
}

/** The data disk: binaries, configuration, homes (a small ext4 image made here). */
function makeImage(path: string): void {
  const tree = `${path}.tree`;
  const f = (p: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(join(tree, p, ".."), { recursive: true });
    writeFileSync(join(tree, p), data, { mode });
  };
  for (const [i, b] of ["sshd", "sudo", "login", "su", "ps"].entries())
    f(`bin/${b}`, Buffer.alloc(256 * 1024 + i * 4096, i + 1), 0o755);
  f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  for (let i = 0; i < 40; i++) f(`home/user/doc${i}.txt`, `document ${i}\n`.repeat(50));
  mkdirSync(join(tree, "tmp"), { mode: 0o1777 });
  execFileSync("truncate", ["-s", String(64 * MiB), path]);
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-L", "data", "-d", tree, path]);
  execFileSync("rm", ["-rf", tree]);
}

/** Runs a probe as `uid`: tries to open each file and connect to each unix socket; answers per path. */
function probeAs(uid: number, files: string[], sockets: string[]): Record<string, string> {
  const code = `
    const fs = require("node:fs"); const net = require("node:net");
    const out = {};
    for (const f of ${JSON.stringify(files)}) { try { fs.closeSync(fs.openSync(f, "r")); out[f] = "open"; } catch (e) { out[f] = e.code; } }
    let n = ${sockets.length};
    const done = () => { if (--n <= 0) { process.stdout.write(JSON.stringify(out)); process.exit(0); } };
    if (n === 0) { n = 1; done(); }
    for (const s of ${JSON.stringify(sockets)}) {
      const c = net.connect(s);
      c.once("connect", () => { out[s] = "connected"; c.destroy(); done(); });
      c.once("error", (e) => { out[s] = e.code; done(); });
    }`;
  const r = spawnSync(process.execPath, ["-e", code], { uid, gid: uid, encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

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

let sa: SecVmStatus;
let sb: SecVmStatus;
const secvmDir = (s: SecVmStatus) => join("/run/ncsv", s.netns.slice(5));

before(async () => {
  bed = await bringUp(testbedOf({ s1: ["h1"] }, { cpus: 2 }), {
    modules: [...DEFAULT_GUEST_MODULES, "ext4", "crc32c_generic"],
  });
  client = bed.client("s1", "h1");
  const h = bed.state.hostVms[0];
  const images = join(dirname(h.qemuDir), "images");
  mkdirSync(images, { recursive: true });
  makeImage(join(images, "data.img"));
  const [ga, gb] = await Promise.all([
    client.createGuest({
      guestId: "ga",
      memoryMiB: 256,
      devices: [
        { kind: "disk", id: "d0", file: "data.img" },
        { kind: "nic", id: "n0" },
      ],
    }),
    client.createGuest({
      guestId: "gb",
      memoryMiB: 256,
      devices: [{ kind: "disk", id: "d0", file: "data.img" }],
    }),
  ]);
  poolA = ga.poolFile as string;
  poolB = gb.poolFile as string;
  // Long-lived processes to hide; the disk mounted; the NIC up on QEMU's user network.
  await sh("ga", "sleep 1000 & sleep 1001 & echo ok");
  const disk = await sh("ga", "for b in /sys/block/vd*; do echo DISK $b $(cat $b/size); done");
  const dev = /DISK \/sys\/block\/(vd[a-z]+) 131072/.exec(disk);
  assert.ok(dev, disk);
  await sh("ga", `mkdir -p /mnt && mount -t ext4 /dev/${dev[1]} /mnt && ls /mnt/bin`);
  const nets = await sh("ga", 'for n in /sys/class/net/eth*; do echo "NIC $(basename $n)"; done');
  const eth = /NIC (eth\d+)/.exec(nets)?.[1];
  assert.ok(eth, nets);
  await sh(
    "ga",
    `ip link set ${eth} up; ip addr add 10.0.2.15/24 dev ${eth}; ping -c 1 -W 5 10.0.2.2 >/dev/null`,
  );
  ramA = openRamFile(poolA);
  kernel = await discoverKernel(ramA.memory);
  const signatures = [{ name: SIG, hex: Buffer.from(MARKER).toString("hex") }];
  sa = await client.createSecVm({
    secvmId: "sa",
    targets: [{ guestId: "ga", disk: "d0", nic: "n0" }],
    memoryPeriodMs: 1000,
    diskPeriodMs: 3000,
    signatures,
  });
  sb = await client.createSecVm({
    secvmId: "sb",
    targets: [{ guestId: "gb", disk: "d0" }],
    memoryPeriodMs: 2000,
    diskPeriodMs: 5000,
    signatures,
  });
});

after(async () => {
  ramA?.close();
  const agentPid = bed?.state?.hostVms[0].agent?.pid;
  try {
    if (client) {
      for (const id of ["sa", "sb"]) await client.deleteSecVm(id).catch(() => {});
      const left = await client.secVms().catch(() => []);
      assert.deepEqual(left, [], "no security VM left");
      const ns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
      for (const s of [sa, sb].filter(Boolean)) {
        assert.ok(!ns.includes(s.netns), `namespace ${s.netns} removed`);
        assert.equal(existsSync(secvmDir(s)), false, `${secvmDir(s)} removed`);
        for (const d of s.cgroup) assert.equal(existsSync(d), false, `cgroup ${d} removed`);
      }
    }
  } finally {
    await tearDown(bed?.state ? bed : undefined);
  }
  // The agent's private cgroup mounts went with it.
  if (agentPid) assert.equal(existsSync(`/run/ncsv/.cgroup-${agentPid}`), false);
});

describe("security VMs placed like guests", { timeout: 600_000 }, () => {
  test("each runs in its own cgroup, network namespace and uid; baselines are taken", async () => {
    for (const s of [sa, sb]) {
      assert.equal(s.state, "running");
      assert.ok(s.pid, "a service pid");
      assert.ok(s.cgroup.length > 0, "a cgroup of its own");
      const procs = s.cgroup.flatMap((d) =>
        execFileSync("cat", [join(d, "cgroup.procs")], { encoding: "utf8" }).split("\n"),
      );
      assert.ok(procs.includes(String(s.pid)), `service ${s.pid} in its cgroup`);
      const status = execFileSync("cat", [`/proc/${s.pid}/status`], { encoding: "utf8" });
      assert.match(status, new RegExp(`\\nUid:\\s+${s.uid}\\s+${s.uid}\\s+${s.uid}`), "runs as its own uid");
      // Its namespace is neither the agent's (the server's) nor the root one; its TAP is there.
      // (Named namespaces made inside the agent's mount namespace are not entered by name here.)
      const ns = execFileSync("readlink", [`/proc/${s.pid}/ns/net`], { encoding: "utf8" }).trim();
      const agentPid = bed.state.hostVms[0].agent?.pid as number;
      const agentNs = execFileSync("readlink", [`/proc/${agentPid}/ns/net`], { encoding: "utf8" }).trim();
      assert.notEqual(ns, agentNs, "not the agent's namespace");
      assert.notEqual(ns, execFileSync("readlink", ["/proc/self/ns/net"], { encoding: "utf8" }).trim());
      if (s.secvmId === "sa") {
        const links = execFileSync("nsenter", ["-t", String(s.pid), "-n", "ip", "-o", "link"], {
          encoding: "utf8",
        });
        assert.match(links, /nctap-sa0/, "the TAP device for Suricata is in its namespace");
      }
    }
    assert.notEqual(sa.uid, sb.uid);
    await waitAlert("sa", "memory baseline", (a) => a.monitor === "memory" && a.evidence.kind === "baseline");
    await waitAlert("sb", "memory baseline", (a) => a.monitor === "memory" && a.evidence.kind === "baseline");
  });

  test("credentials: a security VM reaches its own sockets only, and no guest's RAM file by path", () => {
    const a = secvmDir(sa);
    const b = secvmDir(sb);
    const asA = probeAs(
      sa.uid,
      [poolA, poolB, join(b, "operator.ndb")],
      [join(a, "nbd-ga.sock"), join(b, "nbd-gb.sock")],
    );
    assert.equal(asA[join(a, "nbd-ga.sock")], "connected", "sa reaches its target's NBD server");
    assert.equal(asA[join(b, "nbd-gb.sock")], "EACCES", "sa cannot reach gb's disk");
    assert.equal(asA[poolB], "EACCES", "sa cannot open gb's RAM");
    assert.equal(
      asA[poolA],
      "EACCES",
      "not even its own target's RAM by path (only the descriptor it was given)",
    );
    assert.equal(asA[join(b, "operator.ndb")], "EACCES");
    const asB = probeAs(
      sb.uid,
      [poolA],
      [join(a, "mirror-ga.sock"), join(a, "nbd-ga.sock"), join(b, "nbd-gb.sock")],
    );
    assert.equal(asB[join(b, "nbd-gb.sock")], "connected");
    assert.equal(asB[join(a, "mirror-ga.sock")], "EACCES", "sb cannot reach ga's traffic");
    assert.equal(asB[join(a, "nbd-ga.sock")], "EACCES", "sb cannot reach ga's disk");
    assert.equal(asB[poolA], "EACCES", "sb cannot open ga's RAM");
    // The agent takes nothing from a service about a guest it does not watch.
    const own = new Set(["gb"]);
    assert.equal(parseServiceMessage({ type: "disk-view-open", reqId: 1, guestId: "ga" }, own), null);
    assert.equal(
      parseServiceMessage(
        {
          type: "alert",
          alert: {
            time: 1,
            target: "ga",
            monitor: "disk",
            channel: "local",
            severity: "info",
            summary: "x",
            evidence: {},
          },
        },
        own,
      ),
      null,
    );
  });
});

describe("each monitor catches a real attack (local channel)", { timeout: 600_000 }, () => {
  const layout = () => ramLayout("q35", ramA.file.size);
  type Write = { pa: number; bytes: Uint8Array };
  async function poke(what: Write[] | (() => Promise<Write[]>)): Promise<void> {
    await client.qmp("ga", { execute: "stop" });
    let fd: number | undefined;
    try {
      const writes = typeof what === "function" ? await what() : what;
      fd = openSync(poolA, "r+");
      for (const w of writes) {
        const loc = gpaToRamOffset(layout(), w.pa);
        assert.equal(loc.kind, "ram");
        if (loc.kind === "ram") writeSync(fd, w.bytes, 0, w.bytes.length, loc.offset);
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
      await client.qmp("ga", { execute: "cont" });
    }
  }
  const u64 = (v: bigint) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return b;
  };
  const pa = (va: bigint) =>
    va >= kernel.facts.pageOffsetBase && va < 0xffffffff80000000n
      ? Number(va - kernel.facts.pageOffsetBase)
      : kernelImageVaToPa(va, kernel.facts.physBase);
  const read64 = async (va: bigint) => (await kernel.readU64s([va]))[0];

  test("memory: a process unlinked from the task list is alerted hidden, with evidence", async (t) => {
    const target = (await listProcesses(kernel)).find((p) => p.comm === "sleep" && p.ppid !== 0);
    assert.ok(target);
    const off = BigInt(kernel.field("task_struct.tasks").offset);
    const link = target.task + off;
    const t0 = Date.now();
    await poke(async () => {
      const [next, prev] = [await read64(link), await read64(link + 8n)];
      return [
        { pa: pa(prev), bytes: u64(next) },
        { pa: pa(next + 8n), bytes: u64(prev) },
      ];
    });
    try {
      const a = await waitAlert(
        "sa",
        `pid ${target.pid} hidden`,
        (x) => x.evidence.kind === "hidden-task" && x.evidence.pid === target.pid,
      );
      t.diagnostic(`hidden task alerted ${Date.now() - t0} ms after the unlink: ${a.summary}`);
      assert.equal(a.severity, "critical");
      assert.equal(a.target, "ga");
      assert.equal(a.monitor, "memory");
      assert.equal(a.channel, "local");
      assert.equal(a.evidence.comm, "sleep");
      assert.ok((a.evidence.seenIn as string[]).includes("pid-idr"));
    } finally {
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
    await waitAlert(
      "sa",
      "no longer hidden",
      (x) => x.evidence.kind === "hidden-task-gone" && x.evidence.pid === target.pid,
    );
  });

  test("memory: a syscall pointed into a module is alerted with the module's name, then restored", async () => {
    const table = kernel.symbols.require("sys_call_table");
    const nr = 246;
    const entry = table + BigInt(nr * 8);
    const original = await read64(entry);
    const crc7 = (await listModules(kernel)).find((m) => m.name === "crc7");
    assert.ok(crc7);
    await poke([{ pa: pa(entry), bytes: u64(crc7.base + 0x10n) }]);
    try {
      const a = await waitAlert(
        "sa",
        "syscall hooked",
        (x) => x.evidence.kind === "syscall-hooked" && x.evidence.nr === nr,
      );
      assert.equal(a.severity, "critical");
      assert.equal(a.evidence.symbol, "module:crc7+0x10");
    } finally {
      await poke([{ pa: pa(entry), bytes: u64(original) }]);
    }
    await waitAlert(
      "sa",
      "syscall restored",
      (x) => x.evidence.kind === "syscall-restored" && x.evidence.nr === nr,
    );
  });

  test("disk: a file matching the operator's signature and a patched binary are alerted", async () => {
    await waitAlert("sa", "a first disk round", () => true); // the service runs
    const head = MARKER.slice(0, 10);
    const tail = MARKER.slice(10);
    await sh("ga", "printf 'TROJAN' | dd of=/mnt/bin/sshd bs=1 seek=4096 conv=notrunc 2>/dev/null");
    await sh("ga", `printf '%s%s' '${head}' '${tail}' > /mnt/tmp/.x && sync`);
    const mal = await waitAlert(
      "sa",
      "malware",
      (x) => x.monitor === "disk" && String(x.summary).startsWith("malware"),
    );
    assert.equal(mal.severity, "critical");
    assert.equal(mal.evidence.path, "/tmp/.x");
    assert.equal(mal.evidence.signature, `${SIG}.UNOFFICIAL`);
    const bin = await waitAlert(
      "sa",
      "sshd changed",
      (x) => x.monitor === "disk" && x.summary.includes("/bin/sshd changed"),
    );
    assert.equal(bin.severity, "critical");
    // gb's security VM saw nothing of it (its own copy of the image, untouched).
    assert.ok(!(await alertsOf("sb")).some((x) => x.monitor === "disk" && x.severity === "critical"));
  });

  test("network: a DNS query matching a default rule is alerted with its endpoints", async () => {
    await sh("ga", "(timeout 3 nslookup NESTCLOUD-IDS-TEST.example 10.0.2.2 >/dev/null 2>&1 &)");
    const a = await waitAlert(
      "sa",
      "IDS marker",
      (x) => x.monitor === "network" && x.evidence.signatureId === 9000001,
      30_000,
    );
    assert.equal(a.target, "ga");
    assert.equal(a.evidence.srcIp, "10.0.2.15");
  });

  test("nestcloud secvm alerts prints them (table and JSON)", async () => {
    const common = ["--root", dirname(bed.state.stateDir)];
    const tableRun = await cli(["secvm", "alerts", ...common, "--secvm", "sa"]);
    assert.equal(tableRun.code, 0, tableRun.err);
    assert.match(tableRun.out, /SEVERITY/);
    assert.match(tableRun.out, /hidden task: pid \d+ \(sleep\)/);
    assert.match(tableRun.out, /malware: \/tmp\/\.x/);
    const json = await cli(["secvm", "alerts", ...common, "-o", "json"]);
    assert.equal(json.code, 0, json.err);
    const list = JSON.parse(json.out) as Logged[];
    assert.ok(list.some((x) => x.monitor === "network" && x.evidence.signatureId === 9000001));
    assert.ok(
      list.every(
        (x) => typeof x.seq === "number" && ["sa", "sb"].includes((x as unknown as { secvm: string }).secvm),
      ),
    );
    const follow = await cli([
      "secvm",
      "alerts",
      ...common,
      "--secvm",
      "sa",
      "-o",
      "json",
      "--follow",
      "--follow-ms",
      "3000",
    ]);
    assert.equal(follow.code, 0, follow.err);
    const lines = follow.out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Logged);
    assert.ok(lines.length >= list.filter((x) => (x as unknown as { secvm: string }).secvm === "sa").length);
  });
});

describe("faults: monitors report the loss, come back, never wedge the guest", { timeout: 600_000 }, () => {
  test("a stopped service (its mirror reader wedged) is killed within the bound; the guest's network goes on", async (t) => {
    const before = await client.secVm("sa");
    const pid = before.pid as number;
    const t0 = Date.now();
    process.kill(pid, "SIGSTOP");
    // Four 60 KB pings a second (fragments: ~40 frames each), mirrored to a reader that reads nothing.
    await sh(
      "ga",
      "for i in 1 2 3 4; do (ping -c 15 -s 60000 10.0.2.2 >/dev/null 2>&1 &); done; echo started",
    );
    const wedged = await waitAlert("sa", "wedged", (x) => x.evidence.kind === "secvm-wedged", 60_000);
    const r = await client.exec("ga", { command: "echo alive", timeoutMs: 60_000 });
    const stalled = Date.now() - t0;
    t.diagnostic(`wedged alert after ${wedged.time - t0} ms; guest answered ${stalled} ms after the stop`);
    assert.equal(r.exitCode, 0);
    assert.ok(wedged.time - t0 < 6000 + 5000, `killed ${wedged.time - t0} ms after it stopped`);
    assert.ok(stalled < 30_000, `guest answered ${stalled} ms after the stop`);
    assert.equal(
      existsSync(`/proc/${pid}`) &&
        !execFileSync("cat", [`/proc/${pid}/status`], { encoding: "utf8" }).includes("zombie"),
      false,
      "the stopped service is gone",
    );
    // Started again: a new process, a new baseline, the network monitor inspecting again.
    const end = Date.now() + 120_000;
    let now = await client.secVm("sa");
    while ((now.state !== "running" || now.pid === pid || now.restarts < 1) && Date.now() < end) {
      await new Promise((res) => setTimeout(res, 1000));
      now = await client.secVm("sa");
    }
    const told = () =>
      `${now.state} after ${now.restarts} restart(s), error: ${now.error ?? "none"}; alerts since the stop:\n  ${(
        seen.get("sa") ?? []
      )
        .filter((x) => x.seq >= wedged.seq)
        .map((x) => `${new Date(x.time).toISOString()} ${x.monitor} ${x.severity} ${x.summary}`)
        .join("\n  ")}`;
    await alertsOf("sa");
    assert.equal(now.state, "running", told());
    assert.notEqual(now.pid, pid);
    const after = wedged.seq;
    await waitAlert("sa", "a new memory baseline", (x) => x.seq > after && x.evidence.kind === "baseline");
    await sh("ga", "(timeout 3 nslookup NESTCLOUD-IDS-TEST.again 10.0.2.2 >/dev/null 2>&1 &)");
    await waitAlert("sa", "IDS again", (x) => x.seq > after && x.evidence.signatureId === 9000001, 60_000);
  });

  test("a killed service is alerted and started again", async () => {
    const before = await client.secVm("sb");
    process.kill(before.pid as number, "SIGKILL");
    const died = await waitAlert("sb", "died", (x) => x.evidence.kind === "secvm-died", 30_000);
    assert.equal(died.severity, "critical");
    await waitAlert("sb", "baseline again", (x) => x.seq > died.seq && x.evidence.kind === "baseline");
    const now = await client.secVm("sb");
    assert.equal(now.state, "running");
    assert.ok(now.restarts >= 1);
  });

  test("the target's QEMU dies: every monitor of it reports the loss", async () => {
    const g = await client.guest("gb");
    process.kill(g.pid as number, "SIGKILL");
    const lost = await waitAlert("sb", "target lost", (x) => x.evidence.kind === "target-lost", 30_000);
    assert.equal(lost.severity, "critical");
    assert.equal(lost.target, "gb");
    const kinds = (await alertsOf("sb"))
      .filter((x) => x.evidence.kind === "target-lost")
      .map((x) => x.monitor);
    assert.deepEqual(kinds.sort(), ["disk", "memory"]);
  });
});

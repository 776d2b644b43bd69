// `nestcloud testbed up|status|down` as users run it, and crashes: a host-VM agent killed
// (its supervisor restarts it and the new agent adopts the guest's QEMU), then its
// supervisor and agent both killed (status shows the agent down; the QEMU is orphaned until
// `down` reaps it), and `testbed up` itself killed half-way. In every case `down` leaves
// no process, namespace, pool folder or state behind.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { alive, sleep } from "../support/waiting.ts";

const repo = resolve(import.meta.dirname, "../..");
const bin = join(repo, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nc-tbcli-"));
const root = join(dir, "tb");
const leftovers: string[] = [];

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args, "--root", root], {
    cwd: repo,
    encoding: "utf8",
    timeout: 240_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function netns(): string[] {
  return execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter(Boolean);
}

after(() => {
  // Last resort if a test failed half-way: the CLI's own down, by id.
  for (const id of leftovers) run("testbed", "down", id);
  rmSync(dir, { recursive: true, force: true });
});

test("up, status, an agent crash, down: nothing left", async (t) => {
  const file = join(dir, "one.yaml");
  writeFileSync(
    file,
    [
      "name: clitest",
      "servers:",
      "  - name: s1",
      "    hostVms: [{ name: h1, memoryMiB: 512 }, { name: h2, memoryMiB: 512 }]",
      "guests:",
      "  - { name: c1, server: s1, hostVm: h1, memoryMiB: 128, workloads: [{ kind: verify, mib: 8 }] }",
      "",
    ].join("\n"),
  );
  leftovers.push("clitest");
  const u = run("testbed", "up", file, "-q");
  assert.equal(u.code, 0, u.err);
  assert.match(u.out, /testbed clitest is up \(netns\)/);
  assert.match(u.out, /c1 running/);

  const s = run("testbed", "status", "clitest", "--output", "json");
  assert.equal(s.code, 0, s.err);
  const [view] = JSON.parse(s.out);
  assert.equal(view.infra.id, "clitest");
  const h1 = view.hostVms.find((h: { hostVm: string }) => h.hostVm === "h1");
  const [g] = h1.guests;
  assert.equal(g.guestId, "c1");
  assert.equal(g.state, "running");
  const infraH1 = () =>
    JSON.parse(run("testbed", "status", "clitest", "--output", "json").out)[0].infra.hostVms.find(
      (h: { name: string }) => h.name === "h1",
    ) as { agentPid: number; agentAlive: boolean; supervisorPid: number; agentRestarts: number };
  const agentPid = infraH1().agentPid;
  const qemuPid = g.pid as number;
  const pool = g.poolFile as string;
  t.diagnostic(`agent ${agentPid}, QEMU ${qemuPid}, pool ${pool}`);

  // The host-VM agent crashes: its supervisor starts a new one, which adopts the guest.
  process.kill(agentPid, "SIGKILL");
  let h1now = infraH1();
  for (let i = 0; i < 240 && !(h1now.agentPid !== agentPid && h1now.agentAlive); i++) {
    await sleep(250);
    h1now = infraH1();
  }
  assert.ok(h1now.agentPid !== agentPid && h1now.agentAlive, "the supervisor restarted the agent");
  assert.equal(h1now.agentRestarts, 1);
  // Alive is not yet answering: the new agent adopts its QEMU before it serves its guests.
  type HostVmView = { hostVm: string; guests?: Array<{ guestId: string; state: string; pid: number }> };
  const h1Guests = () =>
    (JSON.parse(run("testbed", "status", "clitest", "--output", "json").out)[0].hostVms as HostVmView[]).find(
      (h) => h.hostVm === "h1",
    )?.guests;
  let guests = h1Guests();
  for (let i = 0; i < 120 && guests === undefined; i++) {
    await sleep(250);
    guests = h1Guests();
  }
  assert.ok(guests, "the restarted agent answers with its guests");
  const [g2] = guests;
  assert.deepEqual([g2.guestId, g2.state, g2.pid], ["c1", "running", qemuPid], "the same QEMU, adopted");
  assert.match(run("testbed", "status", "clitest").out, /restarted 1x by its supervisor/);

  // Now the supervisor and the agent die: nobody restarts it; its QEMU keeps running, orphaned.
  const agent2 = h1now.agentPid;
  process.kill(h1now.supervisorPid, "SIGKILL");
  process.kill(agent2, "SIGKILL");
  for (let i = 0; i < 100 && (alive(agent2) || alive(h1now.supervisorPid)); i++) await sleep(50);
  assert.ok(alive(qemuPid), "QEMU outlives its crashed agent");
  const st = run("testbed", "status", "clitest");
  assert.equal(st.code, 0);
  t.diagnostic(st.out);
  const h1Row = st.out.slice(st.out.search(/│\s+│ h1\s/), st.out.search(/│\s+│ h2\s/));
  assert.match(h1Row, new RegExp(`DOWN: agent pid ${agent2} is gone`), "the table says the agent is down");
  assert.match(h1Row, /SUPERVISOR DOWN/);
  assert.doesNotMatch(h1Row, /c1 running/, "no guest shown as if its agent reported it");

  const d = run("testbed", "down", "clitest");
  assert.equal(d.code, 0, d.err);
  assert.match(d.out, /testbed clitest down: \d agent\(s\) stopped, 1 orphaned QEMU\(s\) reaped/);
  assert.equal(alive(qemuPid), false, "the orphan was reaped by pid");
  assert.equal(existsSync(pool), false, "its pool file removed");
  assert.equal(existsSync("/dev/shm/nestcloud-clitest"), false);
  assert.equal(existsSync(join(root, "clitest")), false);
  assert.ok(!netns().some((n) => n.startsWith("nc-clitest-")), "namespaces removed");
  for (const h of view.infra.hostVms) assert.equal(alive(h.agentPid), false);
  for (const sv of view.infra.servers) assert.equal(alive(sv.agentPid), false);
  leftovers.pop();
});

test("`testbed up` killed half-way: down removes what its state file recorded", async () => {
  const file = join(dir, "crash.yaml");
  writeFileSync(
    file,
    [
      "name: crashup",
      "servers:",
      "  - { name: s1, hostVms: [{ name: h1, memoryMiB: 512 }] }",
      "  - { name: s2, hostVms: [{ name: h1, memoryMiB: 512 }] }",
      "",
    ].join("\n"),
  );
  leftovers.push("crashup");
  const up = spawn(process.execPath, [bin, "testbed", "up", file, "-q", "--root", root], {
    cwd: repo,
    stdio: "ignore",
  });
  const stateFile = join(root, "crashup", "testbed.json");
  let pids: number[] = [];
  for (let i = 0; i < 2400; i++) {
    if (existsSync(stateFile)) {
      try {
        const s = JSON.parse(readFileSync(stateFile, "utf8"));
        pids = s.servers.map((x: { agent: { pid: number } | null }) => x.agent?.pid).filter(Boolean);
        // Kill once the server agents were launched, before the host-VM agents are ready.
        if (pids.length === 2) break;
      } catch {
        // being rewritten
      }
    }
    await sleep(50);
  }
  assert.equal(pids.length, 2, "up got as far as starting the server agents");
  up.kill("SIGKILL");
  await new Promise((r) => up.once("exit", r));
  assert.ok(
    netns().some((n) => n.startsWith("nc-crashup-")),
    "namespaces exist after the crash",
  );

  const d = run("testbed", "down", "crashup");
  assert.equal(d.code, 0, d.err);
  await sleep(200);
  for (const p of pids) assert.equal(alive(p), false, `agent ${p} stopped by pid`);
  assert.ok(!netns().some((n) => n.startsWith("nc-crashup-")), "namespaces removed");
  assert.equal(existsSync("/dev/shm/nestcloud-crashup"), false);
  assert.equal(existsSync(join(root, "crashup")), false);
  leftovers.pop();
});

test("loopback fallback: the same agents on 127.0.x.y, with a warning", async () => {
  const file = join(dir, "lo.yaml");
  writeFileSync(
    file,
    [
      "name: lotest",
      "network: { loopback: true }",
      "servers:",
      "  - { name: s1, hostVms: [{ name: h1, memoryMiB: 512 }] }",
      "  - { name: s2, hostVms: [{ name: h1, memoryMiB: 512 }] }",
      "",
    ].join("\n"),
  );
  leftovers.push("lotest");
  const u = run("testbed", "up", file, "-q");
  assert.equal(u.code, 0, u.err);
  assert.match(u.out, /WARNING: loopback mode/);
  assert.match(u.out, /testbed lotest is up \(loopback\)/);
  const [view] = JSON.parse(run("testbed", "status", "lotest", "--output", "json").out);
  const addrs = view.infra.servers.map((s: { address: string }) => s.address);
  assert.equal(new Set(addrs).size, 2, "one loopback address per server");
  for (const a of addrs) assert.match(a, /^127\.0\.\d+\.\d+$/);
  assert.deepEqual(view.infra.namespaces, {}, "no namespaces in loopback mode");
  assert.ok(
    view.servers.every((s: { iface: unknown }) => s.iface === null),
    "no per-server counters",
  );
  const pids = [...view.infra.servers, ...view.infra.hostVms].map((x: { agentPid: number }) => x.agentPid);
  const d = run("testbed", "down", "lotest");
  assert.equal(d.code, 0, d.err);
  for (const p of pids) assert.equal(alive(p), false);
  assert.equal(existsSync(join(root, "lotest")), false);
  leftovers.pop();
});

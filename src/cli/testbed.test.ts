// `nestcloud testbed` user errors: one line, exit code 2, nothing started.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import type { HostVmStatus, ServerStatus } from "../agent/index.ts";
import { renderTable, type TestbedView } from "./testbed.ts";

const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-tb-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("bad testbed files are one line naming the field, exit 2", () => {
  const f = join(dir, "bad.yaml");
  writeFileSync(f, "servers:\n  - name: s1\n    hostVms: [{ name: h1, memoryMiB: 64 }]\n");
  const r = run("testbed", "up", f, "--root", join(dir, "tb"));
  assert.equal(r.code, 2);
  assert.match(r.err, /^nestcloud: .*bad\.yaml: servers\[0\]\.hostVms\[0\]\.memoryMiB: .*\n$/);
  const missing = run("testbed", "up", join(dir, "nope.yaml"), "--root", join(dir, "tb"));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /nope\.yaml: cannot read/);
});

test("down and status of testbeds that do not exist", () => {
  const empty = join(dir, "empty");
  let r = run("testbed", "down", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /^nestcloud: no testbed under .*empty\n$/);
  r = run("testbed", "down", "abc", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /no testbed abc under/);
  r = run("testbed", "status", "--root", empty);
  assert.equal(r.code, 0);
  assert.match(r.out, /no testbed under/);
  r = run("testbed", "status", "--output", "yaml", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /--output yaml: expected table or json/);
  r = run("testbed", "status", "--output", "json", "--root", empty);
  assert.deepEqual(JSON.parse(r.out), []);
});

test("status table: a dead host-VM agent is DOWN even though the server agent still lists it", () => {
  const hv = (name: string, pid: number, alive: boolean) => ({
    server: "s1",
    name,
    cpus: 1,
    memoryMiB: 512,
    limits: null,
    agentPid: pid,
    agentAlive: alive,
    url: `http://10.213.0.10:${pid}`,
    supervisorPid: pid + 1,
    supervisorAlive: alive,
    agentRestarts: 0,
  });
  const ledger = (name: string, pid: number, alive: boolean) => ({
    name,
    memoryMiB: 512,
    reservedMiB: 128,
    pendingMiB: 0,
    guests: [{ guestId: `g-${name}`, memoryMiB: 128, pending: false }],
    url: `http://10.213.0.10:${pid}`,
    pid,
    agentAlive: alive,
  });
  const view: TestbedView = {
    infra: {
      id: "tb1",
      mode: "netns",
      subnet: "10.213.0.0/24",
      warnings: [],
      cgroups: { mode: "none", note: "test" },
      complete: true,
      namespaces: {},
      servers: [
        {
          name: "s1",
          netns: "nc-tb1-s1",
          address: "10.213.0.10",
          poolDir: "/dev/shm/x",
          agentPid: 100,
          agentAlive: true,
          url: "http://10.213.0.10:100",
        },
      ],
      hostVms: [hv("h1", 4001, false), hv("h2", 4002, true)],
    },
    servers: [
      {
        role: "server",
        server: "s1",
        address: "10.213.0.10",
        pid: 100,
        poolFiles: [],
        iface: null,
        hostVms: [ledger("h1", 4001, false), ledger("h2", 4002, true)],
      } as unknown as ServerStatus,
    ],
    hostVms: [
      { server: "s1", hostVm: "h1", error: "unreachable (ECONNREFUSED)" },
      {
        role: "hostvm",
        server: "s1",
        hostVm: "h2",
        pid: 4002,
        guests: [{ guestId: "g-h2", state: "running", heartbeat: { seq: 7 }, verify: null }],
      } as unknown as HostVmStatus,
    ],
  };
  const out = renderTable(view);
  const rows = out.split("\n");
  const h1 = rows.findIndex((l) => /│\s+│ h1\s/.test(l));
  const h2 = rows.findIndex((l) => /│\s+│ h2\s/.test(l));
  assert.ok(h1 > 0 && h2 > h1, out);
  const h1Block = rows.slice(h1, h2).join("\n");
  assert.match(h1Block, /DOWN: agent pid 4001 is gone/);
  assert.match(h1Block, /unreachable \(ECONNREFUSED\)/);
  assert.doesNotMatch(h1Block, /http:\/\/10\.213\.0\.10:4001 pid 4001/, "not listed as if it ran");
  assert.match(h1Block, /│ \?\s+│/, "its guests are unknown, not 'none'");
  assert.match(rows.slice(h2).join("\n"), /http:\/\/10\.213\.0\.10:4002 pid 4002/);
  assert.match(rows.slice(h2).join("\n"), /g-h2 running hb 7/);
  // The server agent down: its host VMs still show, with what their own agents say.
  const noServer = renderTable({
    ...view,
    servers: [{ server: "s1", error: "unreachable (ECONNREFUSED)" }],
    infra: { ...view.infra, servers: [{ ...view.infra.servers[0], agentAlive: false }] },
  });
  assert.match(noServer, /DOWN: agent pid 100 is gone, unreachable \(ECONNREFUSED\)/);
  assert.match(noServer, / h2 /);
  assert.match(noServer, /\?\/512/, "h2's ledger figures are unknown without its server agent");
});

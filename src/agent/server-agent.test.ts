// The server agent in-process (fastify inject): a registered host-VM agent that dies is
// shown dead and refused as a handover party; ledger entries that no host VM stands
// behind are reconciled away. The "host-VM agents" are real processes (their pids are
// checked) answering status from a small HTTP server.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Fastify from "fastify";
import pino from "pino";
import type { ServerStatus } from "./api-types.ts";
import { buildServerAgent } from "./server-agent.ts";

const TOKEN = "t".repeat(43);
const auth = { authorization: `Bearer ${TOKEN}` };
const dir = mkdtempSync(join(tmpdir(), "nc-server-agent-"));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function agent(name: string, timing = { everyMs: 60_000, graceMs: 0 }) {
  return buildServerAgent(
    {
      role: "server",
      testbedId: "t",
      server: "s1",
      address: "127.0.0.1",
      poolDir: join(dir, name),
      tokenFile: join(dir, "token"),
      readyFile: join(dir, `${name}.ready`),
      iface: null,
      hostVms: [
        { name: "h1", memoryMiB: 1024, cpus: 1 },
        { name: "h2", memoryMiB: 1024, cpus: 1 },
      ],
    },
    TOKEN,
    pino({ level: "silent" }),
    timing,
  );
}

function processStandIn(): ChildProcess {
  const c = spawn("sleep", ["600"], { stdio: "ignore" });
  children.push(c);
  return c;
}

async function status(app: ReturnType<typeof agent>): Promise<ServerStatus> {
  const r = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
  assert.equal(r.statusCode, 200);
  return r.json() as ServerStatus;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a registered host-VM agent that dies is shown dead and refused for handovers", async () => {
  const app = agent("live");
  try {
    const [p1, p2] = [processStandIn(), processStandIn()];
    for (const [hv, p, port] of [
      ["h1", p1, 1111],
      ["h2", p2, 2222],
    ] as const) {
      const r = await app.inject({
        method: "POST",
        url: `/v1/hostvms/${hv}/register`,
        headers: auth,
        payload: { url: `http://127.0.0.1:${port}`, pid: p.pid },
      });
      assert.equal(r.statusCode, 204);
    }
    await app.inject({
      method: "POST",
      url: "/v1/reservations",
      headers: auth,
      payload: { hostVm: "h1", guestId: "g1", memoryMiB: 256 },
    });
    assert.deepEqual(
      (await status(app)).hostVms.map((h) => [h.name, h.pid, h.agentAlive]),
      [
        ["h1", p1.pid, true],
        ["h2", p2.pid, true],
      ],
    );
    p2.kill("SIGKILL");
    await new Promise((r) => p2.once("exit", r));
    // At once, not only after the next periodic check.
    const st = await status(app);
    assert.deepEqual(
      st.hostVms.map((h) => [h.name, h.agentAlive]),
      [
        ["h1", true],
        ["h2", false],
      ],
    );
    const r = await app.inject({
      method: "POST",
      url: "/v1/handovers",
      headers: auth,
      payload: { guestId: "g1", fromHostVm: "h1", toHostVm: "h2" },
    });
    assert.equal(r.statusCode, 409);
    assert.match(r.json().message, new RegExp(`host-VM agent h2 \\(pid ${p2.pid}\\) is not running`));
    // Its successor registers: alive again, handovers possible.
    const p3 = processStandIn();
    await app.inject({
      method: "POST",
      url: "/v1/hostvms/h2/register",
      headers: auth,
      payload: { url: "http://127.0.0.1:2222", pid: p3.pid },
    });
    assert.equal((await status(app)).hostVms[1].agentAlive, true);
    const ok = await app.inject({
      method: "POST",
      url: "/v1/handovers",
      headers: auth,
      payload: { guestId: "g1", fromHostVm: "h1", toHostVm: "h2" },
    });
    assert.equal(ok.statusCode, 201);
  } finally {
    await app.close();
  }
});

test("reconciliation releases reservations no live host-VM agent stands behind", async () => {
  // What the host-VM agents report: h1 runs g-runs; h2 expects g-arriving (an incoming).
  const reports: Record<string, { pid: number; guests: string[]; incoming: string[] }> = {};
  const fakes = await Promise.all(
    ["h1", "h2"].map(async (hv) => {
      const f = Fastify();
      f.get("/v1/status", async () => ({
        pid: reports[hv].pid,
        guests: reports[hv].guests.map((guestId) => ({ guestId })),
        incoming: reports[hv].incoming.map((guestId) => ({ guestId, state: "listening" })),
      }));
      await f.listen({ host: "127.0.0.1", port: 0 });
      return { f, url: `http://127.0.0.1:${(f.server.address() as { port: number }).port}` };
    }),
  );
  const app = agent("reconcile", { everyMs: 100, graceMs: 0 });
  try {
    const [p1, p2] = [processStandIn(), processStandIn()];
    reports.h1 = { pid: p1.pid!, guests: ["g-runs"], incoming: [] };
    reports.h2 = { pid: p2.pid!, guests: [], incoming: ["g-arriving"] };
    for (const [i, hv, p] of [
      [0, "h1", p1],
      [1, "h2", p2],
    ] as const) {
      await app.inject({
        method: "POST",
        url: `/v1/hostvms/${hv}/register`,
        headers: auth,
        payload: { url: fakes[i].url, pid: p.pid },
      });
    }
    for (const [hostVm, guestId] of [
      ["h1", "g-runs"],
      ["h2", "g-arriving"],
      ["h2", "g-expired"],
    ]) {
      await app.inject({
        method: "POST",
        url: "/v1/reservations",
        headers: auth,
        payload: { hostVm, guestId, memoryMiB: 128 },
      });
    }
    let st = await status(app);
    for (let i = 0; i < 100 && st.reconciled.length === 0; i++) {
      await sleep(50);
      st = await status(app);
    }
    assert.deepEqual(
      st.reconciled.map((r) => [r.action, r.hostVm, r.guestId]),
      [["released", "h2", "g-expired"]],
    );
    assert.deepEqual(
      st.hostVms.map((h) => h.guests.map((g) => g.guestId)),
      [["g-runs"], ["g-arriving"]],
    );
    // A dead agent's host VM is not judged: its entries stay.
    p1.kill("SIGKILL");
    await new Promise((r) => p1.once("exit", r));
    reports.h1.guests = [];
    await sleep(500);
    assert.deepEqual(
      (await status(app)).hostVms[0].guests.map((g) => g.guestId),
      ["g-runs"],
    );
  } finally {
    await app.close();
    for (const x of fakes) await x.f.close();
  }
});

// The orchestrator's order of calls and its decision at "finish", against fake agents (no
// QEMU): success, a destination that is gone (rollback), and a finish of unknown fate
// (the source is never resumed then: no two running copies).
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import type { AgentEndpoint } from "./migration-orchestrator.ts";
import { MigrationFailedError, MigrationOrchestrator } from "./migration-orchestrator.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type FinishMode = "ok" | "gone" | "reset";

/** One fake server agent and two fake host-VM agents on loopback; records every call. */
async function fakes(finish: FinishMode, devices?: unknown[]) {
  const calls: string[] = [];
  const prepared: unknown[] = [];
  const apps = [Fastify(), Fastify(), Fastify()];
  const [server, src, dst] = apps;
  for (const [name, a] of [
    ["server", server],
    ["src", src],
    ["dst", dst],
  ] as const) {
    a.addHook("onRequest", async (req) => {
      calls.push(`${name} ${req.method} ${req.url.replace(/m-g1-[0-9a-f]+/, "M").replace(/h-\w+/, "H")}`);
    });
  }
  server.post("/v1/handovers", async () => ({
    handover: { handoverId: "h-1" },
    from: {},
    to: {},
    poolFile: "",
  }));
  server.post("/v1/handovers/:id/commit", async () => ({}));
  server.post("/v1/handovers/:id/abort", async () => ({}));
  src.get("/v1/guests/g1", async () => ({
    guestId: "g1",
    state: "running",
    memoryMiB: 256,
    cpus: 1,
    bootId: "b",
    workloads: [],
    ...(devices ? { devices } : {}),
  }));
  const status = (phase: string) => ({
    migrationId: "m",
    guestId: "g1",
    mode: "handover",
    phase,
    progress: null,
    result: null,
    error: null,
    timing: { migrateAt: 1000, stoppedAt: 1001, completedAt: 1002 },
    cpu: { start: 0, end: 0 },
    pid: 1,
  });
  src.post("/v1/guests/g1/outgoing", async (_req, reply) => reply.code(202).send(status("completed")));
  src.get("/v1/outgoing/:id", async () => status("completed"));
  src.post("/v1/outgoing/:id/confirm", async (req) =>
    status((req.body as { outcome: string }).outcome === "success" ? "confirmed" : "rolled-back"),
  );
  const inc = (state: string) => ({
    migrationId: "m",
    guestId: "g1",
    mode: "handover",
    state,
    uri: "unix:/tmp/x.sock",
    pid: 2,
    instanceId: "i",
    qemuStatus: null,
    resumedAt: 1010,
    error: null,
    cpu: { start: 0, end: 0 },
    leaseExpiresAt: null,
  });
  dst.post("/v1/incoming", async (req, reply) => {
    prepared.push(req.body);
    return reply.code(201).send(inc("listening"));
  });
  dst.get("/v1/incoming/:id", async () => inc("listening"));
  dst.delete("/v1/incoming/:id", async () => inc("aborted"));
  dst.post("/v1/incoming/:id/finish", async (req, reply) => {
    if (finish === "ok") return inc("running");
    if (finish === "gone")
      return reply.code(409).send({ statusCode: 409, error: "destination_gone", message: "QEMU exited" });
    // Fate unknown: the connection dies mid-request, then the agent is gone for good.
    req.raw.socket.destroy();
    setImmediate(() => void dst.close());
  });
  const urls: string[] = [];
  for (const a of apps) {
    await a.listen({ host: "127.0.0.1", port: 0 });
    urls.push(`http://127.0.0.1:${(a.server.address() as { port: number }).port}`);
  }
  const ep = (hostVmUrl: string, hostVm: string): AgentEndpoint => ({
    server: "s1",
    hostVm,
    hostVmUrl,
    serverUrl: urls[0],
    address: "127.0.0.1",
  });
  return {
    calls,
    prepared,
    from: ep(urls[1], "h1"),
    to: ep(urls[2], "h2"),
    close: () => Promise.all(apps.map((a) => a.close().catch(() => {}))),
  };
}

test("instant handover: account, prepare, perform, finish, confirm, commit — in that order", async () => {
  const f = await fakes("ok");
  try {
    const r = await new MigrationOrchestrator("t").migrate({ guestId: "g1", from: f.from, to: f.to });
    assert.equal(r.mechanism, "instant");
    assert.equal(r.downtimeMs, 9, "destination RESUME minus source STOP");
    assert.deepEqual(
      f.calls.filter((c) => !c.includes("GET /v1/incoming")),
      [
        "src GET /v1/guests/g1",
        "server POST /v1/handovers",
        "dst POST /v1/incoming",
        "src POST /v1/guests/g1/outgoing",
        "dst POST /v1/incoming/M/finish",
        "src POST /v1/outgoing/M/confirm",
        "server POST /v1/handovers/H/commit",
      ],
    );
  } finally {
    await f.close();
  }
});

test("the guest's devices travel to the destination, with where to fetch what the stream does not carry", async () => {
  const devices = [
    { kind: "disk", id: "d0", format: "raw", sizeMiB: 8 },
    { kind: "serial", id: "s1", log: true },
  ];
  const f = await fakes("ok", devices);
  try {
    await new MigrationOrchestrator("t").migrate({ guestId: "g1", from: f.from, to: f.to });
    const [body] = f.prepared as Array<{ guest: { devices?: unknown }; source?: { url: string } }>;
    assert.deepEqual(body.guest.devices, devices, "the destination QEMU gets the same devices");
    assert.deepEqual(body.source, { url: f.from.hostVmUrl });
  } finally {
    await f.close();
  }
  const plain = await fakes("ok");
  try {
    await new MigrationOrchestrator("t").migrate({ guestId: "g1", from: plain.from, to: plain.to });
    const [body] = plain.prepared as Array<Record<string, unknown> & { guest: Record<string, unknown> }>;
    assert.ok(
      !("devices" in body.guest) && !("source" in body),
      "a guest without devices: the request as before",
    );
  } finally {
    await plain.close();
  }
});

test("a destination that cannot start: the source resumes (rollback), the handover is aborted", async () => {
  const f = await fakes("gone");
  try {
    const err = await new MigrationOrchestrator("t")
      .migrate({ guestId: "g1", from: f.from, to: f.to })
      .catch((e) => e);
    assert.ok(err instanceof MigrationFailedError);
    assert.equal(err.outcome, "rolled-back");
    assert.equal(err.guestAt, "source");
    const tail = f.calls.filter((c) => !c.includes("GET /v1/incoming")).slice(4);
    assert.deepEqual(tail, [
      "dst POST /v1/incoming/M/finish",
      "dst DELETE /v1/incoming/M",
      "src POST /v1/outgoing/M/confirm",
      "dst DELETE /v1/incoming/M",
      "server POST /v1/handovers/H/abort",
    ]);
  } finally {
    await f.close();
  }
});

test("a finish of unknown fate never resumes the source", async () => {
  const f = await fakes("reset");
  try {
    // The destination agent never comes back: given up after agentRecoveryMs.
    const err = await new MigrationOrchestrator("t", { agentRecoveryMs: 2000 })
      .migrate({ guestId: "g1", from: f.from, to: f.to })
      .catch((e) => e);
    assert.ok(err instanceof MigrationFailedError, String(err));
    assert.equal(err.outcome, "unresolved");
    assert.equal(err.guestAt, "unknown");
    assert.ok(!f.calls.some((c) => c.includes("/confirm")), "no rollback (and no confirm) of the source");
  } finally {
    await f.close();
  }
});

/**
 * A fake agent that can die (its port then refuses connections) and be restarted on the
 * same port with other answers, like a host-VM agent under its supervisor.
 */
async function restartable(name: string, calls: string[], routes: (a: FastifyInstance) => void) {
  let app = Fastify();
  const setup = (a: FastifyInstance) => {
    a.addHook("onRequest", async (req) => {
      calls.push(`${name} ${req.method} ${req.url.replace(/m-g1-[0-9a-f]+/, "M")}`);
    });
    routes(a);
  };
  setup(app);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    async kill() {
      await app.close();
    },
    async restart(newRoutes: (a: FastifyInstance) => void) {
      app = Fastify();
      routes = newRoutes;
      setup(app);
      await app.listen({ host: "127.0.0.1", port });
    },
    close: () => app.close().catch(() => {}),
  };
}

const outStatus = (phase: string) => ({
  migrationId: "m",
  guestId: "g1",
  mode: "precopy",
  phase,
  progress: null,
  result: null,
  error: null,
  timing: { migrateAt: 1000, stoppedAt: 1001, completedAt: 1002 },
  cpu: { start: 0, end: 0 },
  pid: 1,
});
const incStatus = (state: string) => ({
  migrationId: "m",
  guestId: "g1",
  mode: "precopy",
  state,
  uri: "tcp:127.0.0.1:4444",
  pid: 2,
  instanceId: "i",
  qemuStatus: null,
  resumedAt: 1010,
  error: null,
  cpu: { start: 0, end: 0 },
  leaseExpiresAt: null,
});
const guestRoute = (a: FastifyInstance) =>
  a.get("/v1/guests/g1", async () => ({
    guestId: "g1",
    state: "running",
    memoryMiB: 256,
    cpus: 1,
    bootId: "b",
    workloads: [],
  }));

test("source agent down mid pre-copy: the lease is kept, its successor reports completion, the move finishes", async () => {
  const calls: string[] = [];
  const server = await restartable("server", calls, (a) => {
    a.post("/v1/reservations", async (_r, reply) => reply.code(201).send({}));
    a.delete("/v1/reservations/:h/:g", async (_r, reply) => reply.code(204).send());
  });
  let startBody: Record<string, unknown> = {};
  const src = await restartable("src", calls, (a) => {
    guestRoute(a);
    a.post("/v1/guests/g1/outgoing", async (req, reply) => {
      startBody = req.body as Record<string, unknown>;
      return reply.code(202).send(outStatus("running"));
    });
    a.get("/v1/outgoing/:id", async () => outStatus("running"));
  });
  const dst = await restartable("dst", calls, (a) => {
    a.post("/v1/incoming", async (_r, reply) => reply.code(201).send(incStatus("listening")));
    a.get("/v1/incoming/:id", async () => incStatus("listening"));
    a.post("/v1/incoming/:id/finish", async () => incStatus("running"));
  });
  const ep = (hostVmUrl: string, server: string): AgentEndpoint => ({
    server,
    hostVm: "h1",
    hostVmUrl,
    serverUrl: urlOf(server),
    address: "127.0.0.1",
  });
  const urlOf = (_s: string) => server.url;
  try {
    const orch = new MigrationOrchestrator("t", { leaseMs: 4000, agentRecoveryMs: 20_000 });
    const h = orch.start({ guestId: "g1", from: ep(src.url, "s1"), to: ep(dst.url, "s2") });
    // Let it watch the source for a moment, then the source agent is down for 11 s (longer
    // than the ~10 s after which an orchestrator used to give up as "unresolved").
    while (!calls.some((c) => c.startsWith("src GET /v1/outgoing"))) await sleep(20);
    await src.kill();
    const downAt = calls.length;
    await sleep(11_000);
    const renewalsWhileDown = calls.slice(downAt).filter((c) => c === "dst GET /v1/incoming/M?renew=true");
    await src.restart((a) => {
      a.get("/v1/outgoing/:id", async () => outStatus("completed"));
      a.post("/v1/outgoing/:id/confirm", async () => outStatus("confirmed"));
    });
    const r = await h.done;
    assert.equal(r.guestId, "g1");
    assert.ok(
      renewalsWhileDown.length >= 2,
      `the destination's lease was renewed meanwhile (${renewalsWhileDown.length}x)`,
    );
    const tail = calls.filter((c) => !c.includes("GET /v1/incoming") && !c.includes("GET /v1/outgoing"));
    assert.deepEqual(tail.slice(-3), [
      "dst POST /v1/incoming/M/finish",
      "src POST /v1/outgoing/M/confirm",
      "server DELETE /v1/reservations/h1/g1",
    ]);
    assert.deepEqual(
      startBody.destination,
      { url: dst.url, resolveAfterMs: 8000 },
      "the source is told where the destination is, to settle the migration if nobody confirms it",
    );
  } finally {
    await Promise.all([server.close(), src.close(), dst.close()]);
  }
});

test("destination agent restarted after a finish of unknown fate: it adopted the running guest, the move succeeds", async () => {
  const calls: string[] = [];
  const server = await restartable("server", calls, (a) => {
    a.post("/v1/handovers", async () => ({
      handover: { handoverId: "h-1" },
      from: {},
      to: {},
      poolFile: "",
    }));
    a.post("/v1/handovers/:id/commit", async () => ({}));
  });
  const src = await restartable("src", calls, (a) => {
    guestRoute(a);
    a.post("/v1/guests/g1/outgoing", async (_r, reply) => reply.code(202).send(outStatus("completed")));
    a.get("/v1/outgoing/:id", async () => outStatus("completed"));
    a.post("/v1/outgoing/:id/confirm", async (req) =>
      outStatus((req.body as { outcome: string }).outcome === "success" ? "confirmed" : "rolled-back"),
    );
  });
  let restartP: Promise<void> = Promise.resolve();
  const dst = await restartable("dst", calls, (a) => {
    a.post("/v1/incoming", async (_r, reply) => reply.code(201).send(incStatus("listening")));
    a.get("/v1/incoming/:id", async () => incStatus("listening"));
    a.post("/v1/incoming/:id/finish", async (req) => {
      // The agent dies mid-request (after its QEMU started); restarted 4 s later (an
      // orchestrator used to stop asking after 2 s of refusals), it has adopted the QEMU,
      // which runs the guest.
      req.raw.socket.destroy();
      restartP = (async () => {
        await dst.kill();
        await sleep(4000);
        await dst.restart((b) => b.get("/v1/incoming/:id", async () => incStatus("running")));
      })();
      return new Promise(() => {});
    });
  });
  const ep = (hostVmUrl: string, hostVm: string): AgentEndpoint => ({
    server: "s1",
    hostVm,
    hostVmUrl,
    serverUrl: server.url,
    address: "127.0.0.1",
  });
  try {
    const r = await new MigrationOrchestrator("t", { agentRecoveryMs: 20_000 }).migrate({
      guestId: "g1",
      from: ep(src.url, "h1"),
      to: ep(dst.url, "h2"),
    });
    await restartP;
    assert.equal(r.destination.state, "running");
    assert.ok(
      calls.includes("src POST /v1/outgoing/M/confirm") &&
        calls.includes("server POST /v1/handovers/h-1/commit"),
      "the source was confirmed (stopped) and the accounting committed",
    );
  } finally {
    await Promise.all([server.close(), src.close(), dst.close()]);
  }
});

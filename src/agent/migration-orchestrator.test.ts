// The orchestrator's order of calls and its decision at "finish", against fake agents (no
// QEMU): success, a destination that is gone (rollback), and a finish of unknown fate
// (the source is never resumed then: no two running copies).
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import type { AgentEndpoint } from "./migration-orchestrator.ts";
import { MigrationFailedError, MigrationOrchestrator } from "./migration-orchestrator.ts";

type FinishMode = "ok" | "gone" | "reset";

/** One fake server agent and two fake host-VM agents on loopback; records every call. */
async function fakes(finish: FinishMode) {
  const calls: string[] = [];
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
  dst.post("/v1/incoming", async (_req, reply) => reply.code(201).send(inc("listening")));
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
    const err = await new MigrationOrchestrator("t")
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

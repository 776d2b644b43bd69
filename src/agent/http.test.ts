// The agents' shared HTTP behaviour without QEMU: auth, validation messages, error shapes,
// and the client's classification of failures.
import assert from "node:assert/strict";
import { test } from "node:test";
import pino from "pino";
import { Type } from "typebox";
import { QmpError } from "../qemu/index.ts";
import { ConfirmBody, StartOutgoingBody, WaitQuery, WorkloadSchema } from "./api-types.ts";
import { AgentClient, AgentHttpError, AgentUnreachableError } from "./client.ts";
import { AgentError, createApp } from "./http.ts";
import { bearerMatches } from "./token.ts";

const TOKEN = "t0ken-0123456789abcdef";

function app() {
  const a = createApp(TOKEN, pino({ level: "silent" }));
  a.post(
    "/x",
    { schema: { body: Type.Object({ n: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }) } },
    async (req) => ({ n: req.body.n }),
  );
  a.get("/qmp", async () => {
    throw new QmpError("migrate", "GenericError", "There's a migration process in progress");
  });
  a.get("/gone", async () => {
    throw new AgentError(409, "conflict", "busy");
  });
  return a;
}

test("bearer token: missing, wrong, right", () => {
  assert.equal(bearerMatches(undefined, TOKEN), "missing");
  assert.equal(bearerMatches("Basic abc", TOKEN), "missing");
  assert.equal(bearerMatches(`Bearer ${TOKEN}x`, TOKEN), "wrong");
  assert.equal(bearerMatches(`Bearer ${TOKEN}`, TOKEN), "ok");
});

test("401 before anything else, 400 naming the field, QMP errors as 502 with QEMU's text", async () => {
  const a = app();
  const auth = { authorization: `Bearer ${TOKEN}` };
  let r = await a.inject({ method: "POST", url: "/x", payload: { n: 0 } });
  assert.equal(r.statusCode, 401);
  r = await a.inject({ method: "POST", url: "/x", payload: { n: 0 }, headers: auth });
  assert.equal(r.statusCode, 400);
  assert.match(r.json().message, /body\/n must be >= 1/);
  r = await a.inject({ method: "POST", url: "/x", payload: { n: 1, m: 2 }, headers: auth });
  assert.equal(r.statusCode, 400);
  assert.match(r.json().message, /body\/m/);
  r = await a.inject({ method: "POST", url: "/x", payload: { n: 3 }, headers: auth });
  assert.deepEqual(r.json(), { n: 3 });
  assert.equal(r.headers.connection, "close", "no keep-alive: refused means not delivered");
  r = await a.inject({ method: "GET", url: "/qmp", headers: auth });
  assert.equal(r.statusCode, 502);
  assert.deepEqual(
    { ...(r.json() as object), message: undefined },
    {
      statusCode: 502,
      error: "qmp_error",
      command: "migrate",
      errorClass: "GenericError",
      desc: "There's a migration process in progress",
      message: undefined,
    },
  );
  r = await a.inject({ method: "GET", url: "/gone", headers: auth });
  assert.equal(r.statusCode, 409);
  r = await a.inject({ method: "GET", url: "/nope", headers: auth });
  assert.equal(r.statusCode, 404);
  assert.match(r.json().message, /no route GET \/nope/);
});

test("fields with fixed values: one 400 line listing them (the agents' own schemas)", async () => {
  const a = createApp(TOKEN, pino({ level: "silent" }));
  a.post("/workload", { schema: { body: WorkloadSchema } }, async () => ({}));
  a.post("/outgoing", { schema: { body: StartOutgoingBody } }, async () => ({}));
  a.get("/wait", { schema: { querystring: WaitQuery } }, async () => ({}));
  a.post("/confirm", { schema: { body: ConfirmBody } }, async () => ({}));
  const headers = { authorization: `Bearer ${TOKEN}` };
  const cases: Array<[string, string, unknown, string]> = [
    ["POST", "/workload", { kind: "busy", mib: 8 }, "body/kind must be one of verify, dirty"],
    ["POST", "/workload", { kind: "verify", mib: 0 }, "body/mib must be >= 1"],
    [
      "POST",
      "/outgoing",
      { migrationId: "m1", mode: "postcopy", uri: "unix:/run/x.sock" },
      "body/mode must be one of handover, precopy",
    ],
    [
      "GET",
      "/wait?unless=paused",
      undefined,
      "querystring/unless must be one of running, pre-switchover, postcopy, completed, failed, cancelled, confirmed, rolled-back",
    ],
    ["POST", "/confirm", { outcome: "maybe" }, "body/outcome must be one of success, rollback"],
  ];
  for (const [method, url, payload, message] of cases) {
    const r = await a.inject({ method: method as "GET" | "POST", url, payload: payload as object, headers });
    assert.equal(r.statusCode, 400, url);
    assert.equal(r.json().message, message, url);
  }
});

test("the client tells answered errors from undelivered requests", async () => {
  const a = app();
  await a.listen({ host: "127.0.0.1", port: 0 });
  const port = (a.server.address() as { port: number }).port;
  try {
    const c = new AgentClient(`http://127.0.0.1:${port}`, TOKEN);
    assert.deepEqual(await c.call("POST", "/x", { n: 5 }), { n: 5 });
    await assert.rejects(c.call("POST", "/x", { n: 0 }), (e: unknown) => {
      assert.ok(e instanceof AgentHttpError);
      assert.equal(e.status, 400);
      assert.match(e.message, /body\/n must be >= 1/);
      return true;
    });
  } finally {
    await a.close();
  }
  const dead = new AgentClient(`http://127.0.0.1:${port}`, TOKEN);
  await assert.rejects(dead.call("GET", "/x"), (e: unknown) => {
    assert.ok(e instanceof AgentUnreachableError);
    assert.equal(e.delivered, "no", "connection refused: the agent never saw it");
    return true;
  });
});

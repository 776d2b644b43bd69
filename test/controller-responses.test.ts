// Every route declares its answers (request and response schemas), and fastify serializes
// JSON answers with the response schema: a field the schema does not declare would be dropped
// and a value of another type coerced. A second server on the same controller records each
// payload before serialization and compares it with what was sent, route by route.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../src/controller/index.ts";
import { until } from "./support/controller-process.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let t: TenantController;
let app: FastifyInstance;
/** Per route ("GET /api/vms/:id"), what the handler returned and what the client got. */
const seen = new Map<string, Array<{ status: number; before: unknown; after: unknown }>>();
const unserialized = Symbol("payload before serialization");

before(async () => {
  t = await startTenantController("nestcloud-responses-");
  app = await buildServer(t.c.controller);
  app.addHook("preSerialization", async (req, _reply, payload) => {
    (req as unknown as Record<symbol, string>)[unserialized] = JSON.stringify(payload);
    return payload;
  });
  app.addHook("onSend", async (req, reply, payload) => {
    const before = (req as unknown as Record<symbol, string | undefined>)[unserialized];
    if (before !== undefined && typeof payload === "string") {
      const route = `${req.method} ${req.routeOptions.url}`;
      const list = seen.get(route) ?? [];
      list.push({ status: reply.statusCode, before: JSON.parse(before), after: JSON.parse(payload) });
      seen.set(route, list);
    }
    return payload;
  });
  await app.ready();
});

after(async () => {
  await app?.close();
  await t?.close();
});

async function call(method: string, url: string, token: string, body?: unknown) {
  const res = await app.inject({
    method: method as "GET",
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as object }),
  });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined, raw: res.body };
}

describe("response schemas", () => {
  test("no route drops or changes a field of what its handler returned", async () => {
    const admin = t.c.adminToken;
    const { acme } = t;
    // Read everything, as an admin and as a tenant.
    for (const token of [admin, acme]) {
      for (const path of [
        "/health",
        "/api/overview",
        "/api/servers",
        "/api/placement",
        "/api/hostvms",
        "/api/security-vms",
        "/api/migrations?limit=1000",
        "/api/plans?limit=1000",
        "/api/settings",
        "/api/tokens",
        "/api/history?points=50",
        "/api/openapi.json",
        "/api/vms/no-such-vm",
      ])
        await call("GET", path, token);
    }
    // Guests: made, read, changed, stopped and started, moved, deleted; and refusals.
    const made = await call("POST", "/api/vms", acme, { id: "resp-1", mipsPerVcpu: 500, memoryMiB: 512 });
    assert.equal(made.status, 201, made.raw);
    assert.equal(
      (await call("POST", "/api/vms", acme, { id: "resp-1", mipsPerVcpu: 1, memoryMiB: 64 })).status,
      409,
    );
    assert.equal((await call("GET", "/api/vms/resp-1", acme)).status, 200);
    assert.equal((await call("PATCH", "/api/vms/resp-1", acme, { automation: "suggest" })).status, 200);
    assert.equal((await call("POST", "/api/vms/resp-1/stop", acme)).status, 200);
    assert.equal((await call("POST", "/api/vms/resp-1/start", acme)).status, 200);
    // One move to its end (a migration to list), one cancelled at once (if still applying).
    const moved = await call("POST", "/api/vms/resp-1/migrate", acme, {});
    assert.equal(moved.status, 202, moved.raw);
    const settled = async (plan: number) =>
      until(`plan ${plan} to settle`, async () => {
        const p = (await call("GET", `/api/plans/${plan}`, admin)).body;
        return ["applied", "failed", "cancelled"].includes(p.status) ? p : undefined;
      });
    await settled(moved.body.plan);
    const again = await call("POST", "/api/vms/resp-1/migrate", acme, {});
    assert.equal(again.status, 202, again.raw);
    const cancelled = await call("POST", `/api/plans/${again.body.plan}/cancel`, admin);
    assert.ok([200, 409].includes(cancelled.status), cancelled.raw);
    await settled(again.body.plan);
    assert.equal((await call("POST", `/api/plans/${moved.body.plan}/approve`, admin)).status, 409);
    assert.equal((await call("POST", "/api/plans/preview", admin)).status, 200);
    const target = (await call("GET", "/api/vms?limit=1", t.globex)).body[0].id;
    const sec = await call("POST", "/api/security-vms", t.globex, { id: "resp-sec", targets: [target] });
    assert.equal(sec.status, 201, sec.raw);
    assert.equal((await call("GET", "/api/security-vms", t.globex)).status, 200);
    // (A deleted guest's migrations are no longer listed: list them first.)
    await call("GET", "/api/migrations?limit=1000", admin);
    await call("GET", "/api/migrations?limit=1000", acme);
    await call("GET", "/api/plans?limit=1000", admin);
    assert.equal((await call("DELETE", "/api/vms/resp-1", acme)).status, 204);
    // Host VMs, settings, tokens.
    const server = (await call("GET", "/api/servers", admin)).body[0].id;
    const acquired = await call("POST", "/api/hostvms", admin, { type: "hvm.4x32", server });
    assert.equal(acquired.status, 202, acquired.raw);
    const busy = (await call("GET", "/api/hostvms", admin)).body.find(
      (h: { guests: string[] }) => h.guests.length,
    );
    assert.equal((await call("DELETE", `/api/hostvms/${busy.id}`, admin)).status, 409);
    assert.equal((await call("PUT", "/api/settings", admin, { automation: "manual" })).status, 200);
    const token = await call("POST", "/api/tokens", admin, { role: "tenant", tenant: "acme", label: "x" });
    assert.equal(token.status, 201, token.raw);
    assert.equal((await call("DELETE", `/api/tokens/${token.body.id}`, admin)).status, 200);
    await call("GET", "/api/tokens", admin);

    const changed: string[] = [];
    for (const [route, answers] of seen)
      for (const a of answers)
        if (JSON.stringify(a.after) !== JSON.stringify(a.before)) {
          try {
            assert.deepEqual(a.after, a.before);
          } catch (e) {
            changed.push(`${route} ${a.status}: ${(e as Error).message.slice(0, 600)}`);
          }
        }
    assert.deepEqual(changed, []);
    const expected = [
      "GET /health",
      "GET /api/overview",
      "GET /api/servers",
      "GET /api/placement",
      "GET /api/hostvms",
      "POST /api/hostvms",
      "DELETE /api/hostvms/:id",
      "GET /api/vms/:id",
      "POST /api/vms",
      "PATCH /api/vms/:id",
      "POST /api/vms/:id/start",
      "POST /api/vms/:id/stop",
      "POST /api/vms/:id/migrate",
      "GET /api/security-vms",
      "POST /api/security-vms",
      "GET /api/plans",
      "GET /api/plans/:id",
      "POST /api/plans/preview",
      "POST /api/plans/:id/approve",
      "POST /api/plans/:id/cancel",
      "GET /api/migrations",
      "GET /api/settings",
      "PUT /api/settings",
      "GET /api/tokens",
      "POST /api/tokens",
      "DELETE /api/tokens/:id",
      "GET /api/history",
      "GET /api/openapi.json",
    ];
    assert.deepEqual(
      expected.filter((r) => !seen.has(r)),
      [],
      "every JSON route was compared",
    );
    // Answers of every kind were compared, and non-empty lists among them.
    assert.ok(seen.get("GET /api/plans")?.some((a) => (a.after as unknown[]).length > 0));
    assert.ok(seen.get("GET /api/migrations")?.some((a) => (a.after as unknown[]).length > 0));
  });

  test("GET /api/vms pages are served pre-serialized, and equal the guests one by one", async () => {
    const admin = t.c.adminToken;
    const before = seen.get("GET /api/vms")?.length ?? 0;
    const page = await call("GET", "/api/vms?limit=20", admin);
    assert.equal(page.status, 200);
    assert.equal((await call("GET", "/api/vms?limit=20", admin)).status, 200);
    assert.equal(seen.get("GET /api/vms")?.length ?? 0, before, "a cached page skips the serializer");
    assert.equal(page.body.length, 20);
    for (const g of page.body as Array<{ id: string; cpu: number | null }>) {
      const one = (await call("GET", `/api/vms/${g.id}`, admin)).body;
      // The load changes with every audit; everything else is the guest's own.
      assert.deepEqual({ ...one, cpu: typeof one.cpu }, { ...g, cpu: typeof g.cpu });
    }
  });

  test("the OpenAPI document describes every route's answers, errors as { error }", async () => {
    const doc = (await call("GET", "/api/openapi.json", t.c.adminToken)).body as {
      paths: Record<
        string,
        Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>
      >;
    };
    const problems: string[] = [];
    const errorBody = { type: "object", required: ["error"], properties: { error: { type: "string" } } };
    for (const [path, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops)) {
        const codes = Object.keys(op.responses);
        // A WebSocket's success is its upgrade (101): the console.
        const success = path.endsWith("/console") ? /^101$/ : /^2\d\d$/;
        if (!codes.some((c) => success.test(c))) problems.push(`${method} ${path}: no success answer`);
        for (const c of ["4XX", "5XX"]) {
          const schema = op.responses[c]?.content?.["application/json"]?.schema;
          if (JSON.stringify(schema) !== JSON.stringify(errorBody)) problems.push(`${method} ${path}: ${c}`);
        }
      }
    assert.deepEqual(problems, []);
    assert.ok(Object.keys(doc.paths).length >= 20);
  });
});

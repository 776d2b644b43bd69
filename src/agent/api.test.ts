// The agents' route plugins without QEMU: every route is described (OpenAPI) with its
// request and answer schemas, shares the one auth and error setup, and answers what its
// schema says.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import pino from "pino";
import Value from "typebox/value";
import { type HostVmStatus, HostVmStatusSchema, ServerStatusSchema } from "./api-types.ts";
import { buildHostVmAgent } from "./hostvm-agent.ts";
import { buildServerAgent } from "./server-agent.ts";

const TOKEN = "t".repeat(43);
const auth = { authorization: `Bearer ${TOKEN}` };
const dir = mkdtempSync(join(tmpdir(), "nc-agent-api-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const silent = pino({ level: "silent" });

function hostVmAgent(hostVm = "h1", pool = "pool") {
  return buildHostVmAgent(
    {
      role: "hostvm",
      testbedId: "t",
      server: "s1",
      hostVm,
      address: "127.0.0.1",
      poolDir: join(dir, pool),
      qemuDir: join(dir, "q"),
      tokenFile: join(dir, "token"),
      readyFile: join(dir, "h1.ready"),
      // Never contacted by these tests (no guest is created).
      serverAgentUrl: "http://127.0.0.1:9",
      memoryMiB: 1024,
      cpus: 1,
      image: { kernel: "/nonexistent/vmlinuz", initrd: "/nonexistent/initrd" },
    },
    TOKEN,
    silent,
  );
}

function serverAgent() {
  return buildServerAgent(
    {
      role: "server",
      testbedId: "t",
      server: "s1",
      address: "127.0.0.1",
      poolDir: join(dir, "pool"),
      tokenFile: join(dir, "token"),
      readyFile: join(dir, "s1.ready"),
      iface: null,
      hostVms: [{ name: "h1", memoryMiB: 1024, cpus: 1 }],
    },
    TOKEN,
    silent,
    { everyMs: 60_000, graceMs: 0 },
  );
}

interface OpenApi {
  info: { title: string };
  paths: Record<
    string,
    Record<string, { tags?: string[]; requestBody?: unknown; responses?: Record<string, unknown> }>
  >;
}

/** Every operation: a tag (its resource), a 2xx answer with a schema, and the shared 400/401/500. */
function checkDescribed(doc: OpenApi, expected: string[]): void {
  const ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ id: `${method.toUpperCase()} ${path}`, op })),
  );
  assert.deepEqual(ops.map((o) => o.id).sort(), [...expected].sort());
  for (const { id, op } of ops) {
    assert.ok(op.tags?.length, `${id} names its resource`);
    const codes = Object.keys(op.responses ?? {});
    // A WebSocket's success is its upgrade (101).
    assert.ok(
      codes.some((c) => /^2/.test(c)) || (id.endsWith("/console") && codes.includes("101")),
      `${id} describes its success answer (${codes})`,
    );
    for (const c of ["400", "401", "500"]) assert.ok(codes.includes(c), `${id} describes ${c}`);
    // Actions (start, stop, continue, post-copy, commit, abort, a post-copy's serial logs) take no body.
    if (/^POST/.test(id) && !/\/(start|stop|continue|postcopy|commit|abort|serial-logs)$/.test(id))
      assert.ok(op.requestBody, `${id} describes its request body`);
  }
}

test("host-VM agent: one plugin per resource, every route described with its answers", async () => {
  const { app } = hostVmAgent();
  try {
    let r = await app.inject({ method: "GET", url: "/v1/openapi.json" });
    assert.equal(r.statusCode, 401, "the description is behind the token too");
    r = await app.inject({ method: "GET", url: "/v1/openapi.json", headers: auth });
    assert.equal(r.statusCode, 200);
    const doc = r.json() as OpenApi;
    assert.match(doc.info.title, /host-VM agent s1\/h1/);
    checkDescribed(doc, [
      "GET /v1/status",
      "POST /v1/restart",
      "POST /v1/guests",
      "GET /v1/guests/{guestId}",
      "POST /v1/guests/{guestId}/start",
      "POST /v1/guests/{guestId}/stop",
      "DELETE /v1/guests/{guestId}",
      "GET /v1/guests/{guestId}/devices/{deviceId}/image",
      "GET /v1/guests/{guestId}/devices/{deviceId}/log",
      "GET /v1/guests/{guestId}/devices/{deviceId}/console",
      "GET /v1/console/identity",
      "GET /v1/guests/{guestId}/devices/{deviceId}/console/inputs",
      "POST /v1/guests/{guestId}/workloads",
      "DELETE /v1/guests/{guestId}/workloads/{kind}",
      "POST /v1/guests/{guestId}/exec",
      "POST /v1/guests/{guestId}/qmp",
      "POST /v1/guests/{guestId}/outgoing",
      "GET /v1/outgoing/{migrationId}",
      "GET /v1/outgoing/{migrationId}/ram-digest",
      "POST /v1/outgoing/{migrationId}/cancel",
      "POST /v1/outgoing/{migrationId}/continue",
      "POST /v1/outgoing/{migrationId}/postcopy",
      "POST /v1/outgoing/{migrationId}/confirm",
      "POST /v1/incoming",
      "GET /v1/incoming/{migrationId}",
      "GET /v1/incoming/{migrationId}/ram-digest",
      "POST /v1/incoming/{migrationId}/finish",
      "POST /v1/incoming/{migrationId}/serial-logs",
      "DELETE /v1/incoming/{migrationId}",
      "POST /v1/placement/probes",
      "GET /v1/placement/probes",
      "DELETE /v1/placement/probes/{nonce}",
      "POST /v1/secvms",
      "GET /v1/secvms",
      "GET /v1/secvms/{secvmId}",
      "DELETE /v1/secvms/{secvmId}",
      "GET /v1/secvms/{secvmId}/alerts",
      "GET /v1/secvms/{secvmId}/disk-baseline",
      "POST /v1/secvm-exports",
      "GET /v1/secvm-exports",
      "GET /v1/secvm-exports/{exportId}",
      "POST /v1/secvm-exports/{exportId}/disk-view",
      "DELETE /v1/secvm-exports/{exportId}",
      "POST /v1/guests/{guestId}/power",
      "GET /v1/guests/{guestId}/inventory",
      "GET /v1/power/events",
    ]);
    const tags = new Set(
      Object.values(doc.paths).flatMap((m) => Object.values(m).flatMap((o) => o.tags ?? [])),
    );
    assert.deepEqual([...tags].sort(), [
      "console",
      "devices",
      "guests",
      "migrations-in",
      "migrations-out",
      "placement",
      "power",
      "qmp",
      "secvms",
      "status",
      "workloads",
    ]);

    r = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
    assert.equal(r.statusCode, 200);
    const st = r.json() as HostVmStatus;
    assert.ok(Value.Check(HostVmStatusSchema, st), "the status matches its schema");
    assert.deepEqual([st.role, st.server, st.hostVm, st.guests.length], ["hostvm", "s1", "h1", 0]);

    // A restart ends the process: only an agent with a supervisor (main.ts) allows it.
    r = await app.inject({ method: "POST", url: "/v1/restart", payload: {} });
    assert.equal(r.statusCode, 401);
    r = await app.inject({ method: "POST", url: "/v1/restart", headers: auth, payload: {} });
    assert.equal(r.statusCode, 409);
    assert.match(r.body, /cannot restart itself/);

    r = await app.inject({ method: "GET", url: "/v1/guests/nosuch", headers: auth });
    assert.equal(r.statusCode, 404);
    assert.deepEqual(Object.keys(r.json()).sort(), ["error", "message", "statusCode"]);
    r = await app.inject({ method: "POST", url: "/v1/guests", headers: auth, payload: { guestId: "g1" } });
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /memoryMiB/);
    r = await app.inject({ method: "POST", url: "/v1/outgoing/m1/confirm", headers: auth, payload: {} });
    assert.equal(r.statusCode, 400, "body before lookup");
    r = await app.inject({
      method: "POST",
      url: "/v1/outgoing/m1/confirm",
      headers: auth,
      payload: { outcome: "success" },
    });
    assert.equal(r.statusCode, 404);
    assert.match(r.json().message, /no outgoing migration m1 on host VM s1\/h1/);
  } finally {
    await app.close();
  }
});

test("server agent: one plugin per resource, every route described with its answers", async () => {
  const app = serverAgent();
  try {
    const r = await app.inject({ method: "GET", url: "/v1/openapi.json", headers: auth });
    assert.equal(r.statusCode, 200);
    const doc = r.json() as OpenApi;
    assert.match(doc.info.title, /server agent s1/);
    checkDescribed(doc, [
      "GET /v1/status",
      "GET /v1/pool",
      "POST /v1/hostvms/{hostVm}/register",
      "POST /v1/reservations",
      "DELETE /v1/reservations/{hostVm}/{guestId}",
      "POST /v1/handovers",
      "POST /v1/handovers/{handoverId}/commit",
      "POST /v1/handovers/{handoverId}/abort",
      "PUT /v1/hostvms/{hostVm}",
      "DELETE /v1/hostvms/{hostVm}",
    ]);
    const st = await app.inject({ method: "GET", url: "/v1/status", headers: auth });
    assert.ok(Value.Check(ServerStatusSchema, st.json()), "the status matches its schema");
    const res = await app.inject({
      method: "POST",
      url: "/v1/reservations",
      headers: auth,
      payload: { hostVm: "h1", guestId: "g1", memoryMiB: 256 },
    });
    assert.equal(res.statusCode, 201);
    assert.deepEqual(res.json(), { hostVm: "h1", guestId: "g1", memoryMiB: 256 });
    const full = await app.inject({
      method: "POST",
      url: "/v1/reservations",
      headers: auth,
      payload: { hostVm: "h1", guestId: "g2", memoryMiB: 4096 },
    });
    assert.equal(full.statusCode, 409);
    assert.equal(full.json().error, "capacity");
    const pool = await app.inject({ method: "GET", url: "/v1/pool", headers: auth });
    assert.deepEqual(pool.json(), { poolDir: join(dir, "pool"), files: [] });
    const del = await app.inject({ method: "DELETE", url: "/v1/reservations/h1/g1", headers: auth });
    assert.equal(del.statusCode, 204);
    assert.equal(del.body, "");
  } finally {
    await app.close();
  }
});

test("co-residency probe: a probe file is seen by host VMs sharing the pool, by no other", async () => {
  const { mkdirSync } = await import("node:fs");
  mkdirSync(join(dir, "pool"), { recursive: true });
  mkdirSync(join(dir, "pool2"), { recursive: true });
  const agents = [hostVmAgent("h1"), hostVmAgent("h2"), hostVmAgent("h3", "pool2")];
  const [h1, h2, h3] = agents.map((a) => a.app);
  try {
    const nonce = "0123456789abcdef0123456789abcdef";
    let r = await h1!.inject({
      method: "POST",
      url: "/v1/placement/probes",
      headers: auth,
      payload: { nonce },
    });
    assert.equal(r.statusCode, 201);
    assert.deepEqual(r.json(), { nonce, hostVm: "h1" });
    const seen = async (app: typeof h1) =>
      (await app!.inject({ method: "GET", url: "/v1/placement/probes", headers: auth })).json().nonces;
    assert.deepEqual(await seen(h2), [nonce], "h2 shares h1's pool");
    assert.deepEqual(await seen(h3), [], "h3 has another pool");
    // The same nonce again is someone else's file: refused.
    r = await h2!.inject({ method: "POST", url: "/v1/placement/probes", headers: auth, payload: { nonce } });
    assert.equal(r.statusCode, 409);
    // Hostile input: not 32 hex digits.
    r = await h1!.inject({
      method: "POST",
      url: "/v1/placement/probes",
      headers: auth,
      payload: { nonce: "../../etc/passwd" },
    });
    assert.equal(r.statusCode, 400);
    r = await h1!.inject({ method: "GET", url: "/v1/placement/probes" });
    assert.equal(r.statusCode, 401, "probes need the token");
    // Only the writer removes its probe.
    r = await h2!.inject({ method: "DELETE", url: `/v1/placement/probes/${nonce}`, headers: auth });
    assert.equal(r.statusCode, 404);
    r = await h1!.inject({ method: "DELETE", url: `/v1/placement/probes/${nonce}`, headers: auth });
    assert.equal(r.statusCode, 204);
    assert.deepEqual(await seen(h2), []);
  } finally {
    for (const a of agents) await a.app.close();
  }
});

test("server agent: a host VM moved here is attached, an empty one detached, a busy one kept", async () => {
  const app = serverAgent();
  try {
    let r = await app.inject({
      method: "PUT",
      url: "/v1/hostvms/h9",
      headers: auth,
      payload: { memoryMiB: 512, cpus: 1 },
    });
    assert.equal(r.statusCode, 204);
    r = await app.inject({
      method: "PUT",
      url: "/v1/hostvms/h9",
      headers: auth,
      payload: { memoryMiB: 512, cpus: 1 },
    });
    assert.equal(r.statusCode, 409, "attached already");
    r = await app.inject({
      method: "POST",
      url: "/v1/reservations",
      headers: auth,
      payload: { hostVm: "h9", guestId: "g9", memoryMiB: 128 },
    });
    assert.ok(r.statusCode < 300, `a guest may reserve on the attached host VM (${r.statusCode} ${r.body})`);
    r = await app.inject({ method: "DELETE", url: "/v1/hostvms/h9", headers: auth });
    assert.equal(r.statusCode, 409);
    assert.match(r.json().message, /still holds 1 guest/);
    r = await app.inject({ method: "DELETE", url: "/v1/reservations/h9/g9", headers: auth });
    assert.ok(r.statusCode < 300);
    r = await app.inject({ method: "DELETE", url: "/v1/hostvms/h9", headers: auth });
    assert.equal(r.statusCode, 204);
    r = await app.inject({ method: "DELETE", url: "/v1/hostvms/h9", headers: auth });
    assert.equal(r.statusCode, 404);
  } finally {
    await app.close();
  }
});

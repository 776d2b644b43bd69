// The controller as an attacker meets it: authentication decided by the matched route (no
// bypass through encoded or odd paths), an event stream that cannot break the controller,
// tokens that can be listed, revoked and expire, guest ids that do not leak other tenants',
// metrics for admins and scrape tokens only, and a data dir only its owner can read.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import WebSocket from "ws";
import { type RunningController, runController } from "../src/controller/index.ts";
import { until } from "./support/controller-process.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let c: RunningController;
let dir: string;
let acme: string;
let globex: string;

interface Answer {
  status: number;
  body: any;
  text: string;
}

/** A raw request: node's http client sends the path exactly as given (fetch would normalize it). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Answer> {
  const u = new URL(c.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        headers: { ...headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => {
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

const call = (method: string, path: string, token: string | undefined, body?: unknown) =>
  raw(method, path, token ? { authorization: `Bearer ${token}` } : {}, body);

let t: TenantController;

before(async () => {
  t = await startTenantController("nestcloud-sec-");
  ({ c, dir, acme, globex } = t);
});

after(() => t.close());

/** Variants of a path that a router may take for the same route, or that name no route. */
function variants(path: string): string[] {
  const letters = [...path].map((ch, i) => ({ ch, i })).filter(({ ch }) => /[a-z]/i.test(ch));
  const encodeAt = (i: number) =>
    path.slice(0, i) + `%${path.charCodeAt(i).toString(16)}` + path.slice(i + 1);
  const out = new Set<string>([
    path,
    // the first letter of the path, of each segment, and every letter, percent-encoded
    encodeAt(letters[0].i),
    path.replace(/\/([a-z])/gi, (_m, ch: string) => `/%${ch.charCodeAt(0).toString(16)}`),
    [...path]
      .map((ch) => (/[a-z]/i.test(ch) ? `%${ch.charCodeAt(0).toString(16).toUpperCase()}` : ch))
      .join(""),
    // doubled slashes, a trailing slash and a trailing dot
    `/${path}`,
    path.replace(/\//g, "//"),
    `${path}/`,
    `${path}.`,
    // mixed and upper case
    path.toUpperCase(),
    [...path].map((ch, i) => (i % 2 ? ch.toUpperCase() : ch)).join(""),
  ]);
  return [...out];
}

describe("authentication is decided by the matched route", () => {
  test("every route in the OpenAPI document, through encoded, doubled-slash, trailing-dot and mixed-case paths, answers 401 without a token", async () => {
    const doc = (await call("GET", "/api/openapi.json", c.adminToken)).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    const routes = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => ({ method: m.toUpperCase(), path: p.replace(/\{[^}]+\}/g, "1") })),
    );
    assert.ok(routes.length >= 20, `the document lists the API (${routes.length} routes)`);
    for (const r of ["/metrics", "/api/openapi.json", "/api/events", "/api/tokens"])
      assert.ok(
        routes.some((x) => x.path === r),
        `${r} is in the document`,
      );
    let tried = 0;
    for (const r of routes) {
      if (r.path === "/health") continue; // the one open route
      for (const v of variants(r.path)) {
        for (const headers of [{}, { authorization: "Bearer nc_wrong" }] as Record<string, string>[]) {
          const a = await raw(r.method, v, headers);
          assert.equal(
            a.status,
            401,
            `${r.method} ${v} ${JSON.stringify(headers)} -> ${a.status} ${a.text.slice(0, 80)}`,
          );
          tried++;
        }
      }
      // The query-string token works only where the route allows it, and never for a bad token.
      const q = await raw(r.method, `${r.path}?token=nc_wrong`);
      assert.equal(q.status, 401, `${r.method} ${r.path}?token=nc_wrong`);
    }
    assert.ok(tried > 300, `${tried} requests`);
  });

  test("/health is open; an unknown path is 401 without a token and 404 with one", async () => {
    assert.equal((await raw("GET", "/health")).status, 200);
    assert.equal((await raw("GET", "/no/such/thing")).status, 401);
    assert.equal((await call("GET", "/no/such/thing", c.adminToken)).status, 404);
    assert.equal(
      (await call("GET", "/%61pi/vms", c.adminToken)).status,
      200,
      "a valid token still works encoded",
    );
  });

  test("the ?token= form is accepted by the event stream only", async () => {
    assert.equal((await raw("GET", `/api/vms?token=${c.adminToken}`)).status, 401);
    assert.equal((await raw("GET", `/metrics?token=${c.adminToken}`)).status, 401);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const u = new URL(c.url);
      http
        .get({ host: u.hostname, port: u.port, path: `/api/events?token=${c.adminToken}` }, resolve)
        .on("error", reject);
    });
    assert.equal(res.statusCode, 200);
    res.destroy();
  });
});

/** A WebSocket upgrade of the console: the HTTP status it was refused with, or "open". */
function upgrade(path: string, headers: Record<string, string> = {}): Promise<number | "open"> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(c.url.replace(/^http/, "ws") + path, { headers });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once("open", () => {
      resolve("open");
      ws.close();
    });
    ws.once("error", (e) => reject(e));
  });
}

describe("the console (WebSocket)", () => {
  test("the upgrade needs a token, is tenant-scoped, and refuses guests of a plane without consoles", async () => {
    const vms = (await call("GET", "/api/vms", c.adminToken)).body as Array<{ id: string; tenant: string }>;
    const acmeVm = vms.find((g) => g.tenant === "acme")!;
    const path = `/api/vms/${acmeVm.id}/console`;
    for (const v of variants(path)) assert.equal(await upgrade(v), 401, `${v} without a token`);
    assert.equal(await upgrade(path, { authorization: "Bearer nc_wrong" }), 401);
    assert.equal(await upgrade(`${path}?token=nc_wrong`), 401);
    // Another tenant's guest does not exist for it, by header or by query token.
    assert.equal(await upgrade(path, { authorization: `Bearer ${globex}` }), 404);
    assert.equal(await upgrade(`${path}?token=${globex}`), 404);
    assert.equal(await upgrade("/api/vms/no-such-vm/console", { authorization: `Bearer ${acme}` }), 404);
    // Its own guest: the simulated cloud's guests have no serial ports.
    assert.equal(await upgrade(path, { authorization: `Bearer ${acme}` }), 409);
    // A plain GET is refused the same way.
    assert.equal((await call("GET", path, globex)).status, 404);
    assert.equal((await call("GET", path, acme)).status, 409);
  });
});

describe("metrics", () => {
  test("/metrics needs an admin or a metrics token; a metrics token reads nothing else", async () => {
    assert.equal((await call("GET", "/metrics", acme)).status, 403);
    const scrape = await call("POST", "/api/tokens", c.adminToken, { role: "metrics", label: "prometheus" });
    assert.equal(scrape.status, 201, scrape.text);
    const m = await call("GET", "/metrics", scrape.body.token);
    assert.equal(m.status, 200);
    assert.match(m.text, /nestcloud_guests/);
    assert.equal((await call("GET", "/metrics", c.adminToken)).status, 200);
    for (const p of ["/api/vms", "/api/overview", "/api/events", "/api/openapi.json", "/api/migrations"])
      assert.equal((await call("GET", p, scrape.body.token)).status, 403, p);
  });
});

describe("tokens", () => {
  test("listed without secrets, revoked at once, refused after expiry", async () => {
    const made = await call("POST", "/api/tokens", c.adminToken, {
      role: "tenant",
      tenant: "acme",
      label: "ci",
      expiresInSeconds: 3600,
    });
    assert.equal(made.status, 201, made.text);
    const { token, id } = made.body as { token: string; id: string };
    assert.match(id, /^tok_[0-9a-f]{16}$/);
    assert.ok(made.body.expiresAt > Date.now() / 1000 + 3500);

    const list = await call("GET", "/api/tokens", c.adminToken);
    assert.equal(list.status, 200);
    const mine = (list.body as Array<{ id: string; label: string }>).find((t) => t.id === id);
    assert.equal(mine?.label, "ci");
    assert.ok(!list.text.includes(token), "no secret in the list");
    assert.ok(!list.text.includes(c.adminToken), "not even the admin's");
    assert.ok(!/"hash"|[0-9a-f]{64}/.test(list.text), "nor any hash");
    assert.equal((await call("GET", "/api/tokens", acme)).status, 403);

    // Revocation: the very next request is refused (no cache window).
    assert.equal((await call("GET", "/api/vms", token)).status, 200);
    const revoked = await call("DELETE", `/api/tokens/${id}`, c.adminToken);
    assert.equal(revoked.status, 200, revoked.text);
    assert.ok(revoked.body.revokedAt > 0);
    assert.equal((await call("GET", "/api/vms", token)).status, 401);
    assert.equal((await call("DELETE", "/api/tokens/tok_0000000000000000", c.adminToken)).status, 404);

    // Expiry: a token whose time has come is refused by the next request.
    const short = await call("POST", "/api/tokens", c.adminToken, {
      role: "tenant",
      tenant: "acme",
      expiresInSeconds: 60,
    });
    assert.equal((await call("GET", "/api/vms", short.body.token)).status, 200);
    await c.store.db
      .updateTable("tokens")
      .set({ expires_at: Date.now() / 1000 - 1 })
      .where("id", "=", short.body.id)
      .execute();
    assert.equal((await call("GET", "/api/vms", short.body.token)).status, 401);
    assert.equal(
      (
        await call("POST", "/api/tokens", c.adminToken, {
          role: "tenant",
          tenant: "acme",
          expiresInSeconds: 5,
        })
      ).status,
      400,
      "expiry below a minute is refused",
    );
    assert.equal(
      (await call("POST", "/api/tokens", c.adminToken, { role: "admin", tenant: "acme" })).status,
      400,
      "only tenant tokens have a tenant",
    );
  });

  test("the data dir is the owner's alone: 0700, database and token files 0600", () => {
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of ["nestcloud.db", "nestcloud.db-wal", "admin-token"])
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    assert.equal(readFileSync(join(dir, "admin-token"), "utf8").trim(), c.adminToken);
    assert.equal(c.adminTokenIsNew, true);
  });

  test("`nestcloud token show` prints the kept admin token; list and revoke work from the CLI", async () => {
    const bin = join(import.meta.dirname, "../bin/nestcloud.js");
    // Asynchronously: the controller answering the CLI runs in this process.
    const cli = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [bin, ...args],
          { encoding: "utf8", timeout: 120_000 },
          (err, stdout, stderr) =>
            resolve({ status: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }),
        );
      });
    const shown = await cli("token", "show", "--data-dir", dir);
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal(shown.stdout.trim(), c.adminToken);
    const missing = await cli("token", "show", "--data-dir", join(dir, "nope"));
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^nestcloud: no admin token in .*nope/);
    const made = await cli(
      "token",
      "create",
      "--role",
      "tenant",
      "--tenant",
      "cli",
      "--url",
      c.url,
      "--data-dir",
      dir,
    );
    assert.equal(made.status, 0, made.stderr);
    const id = /token (tok_[0-9a-f]{16}) made/.exec(made.stderr)?.[1];
    assert.ok(id, made.stderr);
    const listed = await cli("token", "list", "-o", "json", "--url", c.url, "--data-dir", dir);
    assert.ok(!listed.stdout.includes(made.stdout.trim()), "no secret listed");
    assert.ok((JSON.parse(listed.stdout) as Array<{ id: string }>).some((t) => t.id === id));
    assert.equal((await cli("token", "revoke", id!, "--url", c.url, "--data-dir", dir)).status, 0);
  });

  test("a restart keeps the admin token and does not make a new one", async () => {
    const own = mkdtempSync(join(tmpdir(), "nestcloud-restart-"));
    try {
      const start = () =>
        runController({ provider: "sim", port: 0, dataDir: own, log: pino({ level: "silent" }) });
      const first = await start();
      const token = first.adminToken;
      assert.equal(first.adminTokenIsNew, true);
      await first.close();
      const second = await start();
      await second.close();
      assert.equal(second.adminTokenIsNew, false);
      assert.equal(second.adminToken, token);
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe("guest ids do not reveal other tenants' guests", () => {
  test("another tenant's id gets the same answer as a retired one; one's own is named", async () => {
    const spec = (id: string) => ({ id, mipsPerVcpu: 300, memoryMiB: 128 });
    assert.equal((await call("POST", "/api/vms", acme, spec("dup-live"))).status, 201);
    assert.equal((await call("POST", "/api/vms", acme, spec("dup-gone"))).status, 201);
    assert.equal((await call("DELETE", "/api/vms/dup-gone", acme)).status, 204);

    const theirs = await call("POST", "/api/vms", globex, spec("dup-live"));
    const retired = await call("POST", "/api/vms", globex, spec("dup-gone"));
    assert.equal(theirs.status, 409);
    assert.equal(retired.status, 409);
    assert.equal(theirs.body.error.replace("dup-live", "ID"), retired.body.error.replace("dup-gone", "ID"));
    assert.doesNotMatch(theirs.body.error, /acme|exists/);
    const sec = await call("POST", "/api/security-vms", globex, { id: "dup-live", targets: ["dup-live"] });
    assert.equal(sec.status, 409, "security VM ids are guarded the same way");
    assert.equal(sec.body.error, theirs.body.error);

    const own = await call("POST", "/api/vms", acme, spec("dup-live"));
    assert.equal(own.status, 409);
    assert.match(own.body.error, /exists already/);
    // A deleted guest's id is never handed out again, not even to its old tenant.
    assert.equal((await call("POST", "/api/vms", acme, spec("dup-gone"))).status, 409);
  });
});

/** An SSE connection; collects what arrives. `read: false` never reads (a stalled client). */
function openStream(headers: Record<string, string>, read = true) {
  const u = new URL(c.url);
  let text = "";
  let status = 0;
  const req = http.get({ host: u.hostname, port: u.port, path: "/api/events", headers }, (res) => {
    status = res.statusCode ?? 0;
    if (!read) return res.pause();
    res.setEncoding("utf8");
    res.on("data", (d) => (text += d));
  });
  req.on("error", () => {});
  return { text: () => text, status: () => status, close: () => req.destroy() };
}

describe("the event stream cannot break the controller", () => {
  test("Last-Event-ID: a bounded integer; a future id gets a reset, then the retained events", async () => {
    for (const bad of ["abc", "1e9", "-1", "1234567890123456", "9".repeat(400)]) {
      const a = await raw("GET", "/api/events", {
        authorization: `Bearer ${c.adminToken}`,
        "last-event-id": bad,
      });
      assert.equal(a.status, 400, `Last-Event-ID ${bad.slice(0, 20)}: ${a.text.slice(0, 80)}`);
    }
    const s = openStream({ authorization: `Bearer ${c.adminToken}`, "last-event-id": "999999999" });
    try {
      await until(
        "the reset event",
        async () => (s.text().includes("event: reset") ? true : undefined),
        10_000,
      );
      assert.equal(s.status(), 200);
      assert.ok(s.text().startsWith("event: reset\n"), "the reset comes first");
    } finally {
      s.close();
    }
  });

  test("with hostile subscribers connected, creates, stops and migrations answer 2xx and tell the truth", async () => {
    // An in-process subscriber that throws on every event (it re-subscribes before throwing),
    // a stream resuming from a future id, and a stream that never reads.
    let thrown = 0;
    const hostile = () => {
      c.controller.events.subscribe(() => {
        thrown++;
        hostile();
        throw new Error("hostile subscriber");
      });
    };
    hostile();
    const future = openStream({ authorization: `Bearer ${acme}`, "last-event-id": "999999999" });
    const stalled = openStream({ authorization: `Bearer ${c.adminToken}` }, false);
    try {
      const made: string[] = [];
      for (const id of ["ev-1", "ev-2", "ev-3"]) {
        const r = await call("POST", "/api/vms", acme, { id, mipsPerVcpu: 300, memoryMiB: 256 });
        assert.equal(r.status, 201, r.text);
        assert.equal((await call("GET", `/api/vms/${id}`, acme)).body.powerState, "running");
        made.push(id);
      }
      const stopped = await call("POST", "/api/vms/ev-1/stop", acme);
      assert.equal(stopped.status, 200, stopped.text);
      assert.equal(stopped.body.powerState, "stopped");
      assert.equal((await call("GET", "/api/vms/ev-1", acme)).body.powerState, "stopped");

      const plans: number[] = [];
      for (const id of ["ev-2", "ev-3"]) {
        const m = await call("POST", `/api/vms/${id}/migrate`, acme, {});
        assert.equal(m.status, 202, m.text);
        plans.push(m.body.plan);
        // One at a time: a guest's second move waits for the first plan to settle.
        await until(`plan ${m.body.plan} to settle`, async () => {
          const p = (await call("GET", `/api/plans/${m.body.plan}`, c.adminToken)).body;
          return p.status === "applied" || p.status === "failed" ? p : undefined;
        });
      }
      assert.ok(thrown >= 5, `the hostile subscriber saw the events (${thrown})`);

      // Every plan's recorded outcome matches its migrations and where its guests are now.
      const migrations = (await call("GET", "/api/migrations?limit=1000", c.adminToken)).body as Array<{
        plan: number | null;
        guest: string;
        to: string;
        status: string;
      }>;
      const all = (await call("GET", "/api/plans?limit=1000", c.adminToken)).body as Array<{
        id: number;
        status: string;
        actions: Array<{ kind: string; guest?: string; status: string }>;
      }>;
      for (const id of plans) {
        const p = all.find((x) => x.id === id)!;
        const ms = migrations.filter((m) => m.plan === id);
        assert.ok(ms.length > 0, `plan ${id} has its migration`);
        assert.equal(p.status, "applied", `plan ${id}: ${JSON.stringify(p)}`);
        for (const m of ms) {
          assert.equal(m.status, "completed", `plan ${id}'s migration of ${m.guest}`);
          assert.equal((await call("GET", `/api/vms/${m.guest}`, acme)).body.hostVm, m.to);
        }
      }
      for (const p of all) {
        if (p.status !== "applied" && p.status !== "failed") continue;
        for (const m of migrations.filter((x) => x.plan === p.id)) {
          if (p.status === "applied") assert.equal(m.status, "completed", `applied plan ${p.id}`);
        }
        if (p.status === "failed")
          assert.ok(
            p.actions.some((a) => a.status === "failed" || a.status === "cancelled"),
            `failed plan ${p.id} names a failed action`,
          );
      }
      // The resuming tenant stream got a reset and then only acme's events.
      assert.match(future.text(), /event: reset/);
      assert.match(future.text(), /"ev-3"/);
      for (const line of future
        .text()
        .split("\n")
        .filter((l) => l.startsWith('data: {"seq"')))
        assert.equal(JSON.parse(line.slice(6)).tenant, "acme");
      assert.equal((await raw("GET", "/health")).status, 200);
    } finally {
      future.close();
      stalled.close();
    }
  });

  test("a tenant cannot hold more than its share of streams", async () => {
    const streams = Array.from({ length: 16 }, () => openStream({ authorization: `Bearer ${globex}` }));
    try {
      await until(
        "16 streams open",
        async () => (streams.every((s) => s.status() === 200) ? true : undefined),
        10_000,
      );
      const extra = await raw("GET", "/api/events", { authorization: `Bearer ${globex}` });
      assert.equal(extra.status, 429, extra.text);
      const other = openStream({ authorization: `Bearer ${acme}` });
      await until("another tenant's stream", async () => (other.status() === 200 ? true : undefined), 10_000);
      other.close();
    } finally {
      for (const s of streams) s.close();
    }
  });
});

// The controller's API with the simulated provider: auth on every route, tenants fenced off
// from each other, validation naming the field, migrations and plan approval end to end.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PROVIDER_ERROR_STATUS, type RunningController } from "../src/controller/index.ts";
import { ProviderError } from "../src/providers/index.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let c: RunningController;

let acme: string;
let globex: string;

async function call(method: string, path: string, token: string | undefined, body?: unknown) {
  const res = await fetch(c.url + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let t: TenantController;

before(async () => {
  t = await startTenantController("nestcloud-api-");
  ({ c, acme, globex } = t);
});

after(() => t.close());

describe("authentication", () => {
  test("only /health answers without a token", async () => {
    assert.equal((await call("GET", "/health", undefined)).status, 200);
    for (const path of [
      "/api/vms",
      "/api/servers",
      "/api/placement",
      "/api/plans",
      "/api/migrations",
      "/metrics",
      "/api/openapi.json",
      "/api/events",
    ]) {
      assert.equal((await call("GET", path, undefined)).status, 401, path);
      assert.equal((await call("GET", path, "nc_wrong")).status, 401, path);
    }
  });

  test("metrics are Prometheus text behind the token", async () => {
    const res = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${c.adminToken}` } });
    const text = await res.text();
    assert.match(text, /nestcloud_guests\{state="running"\} \d+/);
    assert.match(text, /nestcloud_api_request_seconds_bucket/);
  });
});

describe("validation", () => {
  test("invalid bodies name the field", async () => {
    const r = await call("POST", "/api/vms", c.adminToken, {
      id: "x1",
      tenant: "acme",
      mipsPerVcpu: 1000,
      memoryMiB: 1,
    });
    assert.equal(r.status, 400);
    assert.match(r.body.error, /body\/memoryMiB/);
    const unknown = await call("POST", "/api/vms", c.adminToken, {
      id: "x1",
      tenant: "acme",
      mipsPerVcpu: 1000,
      memoryMiB: 512,
      colour: "red",
    });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /colour|additional/);
    const badId = await call("GET", "/api/vms/..%2Fetc", c.adminToken);
    assert.ok(badId.status === 400 || badId.status === 404);
  });

  test("a field with fixed values gets one error listing them", async () => {
    const guest = ((await call("GET", "/api/vms", c.adminToken)).body as Array<{ id: string }>)[0].id;
    const migrationsOf = async () =>
      ((await call("GET", "/api/migrations", c.adminToken)).body as Array<{ guest: string }>).filter(
        (m) => m.guest === guest,
      ).length;
    const before = await migrationsOf();
    const cases: Array<[string, string, unknown, string]> = [
      [
        "POST",
        `/api/vms/${guest}/migrate`,
        { mechanism: "bogus" },
        "body/mechanism must be one of auto, instant, precopy, postcopy",
      ],
      [
        "PUT",
        "/api/settings",
        { automation: "always" },
        "body/automation must be one of manual, suggest, automatic",
      ],
      [
        "PATCH",
        `/api/vms/${guest}`,
        { automation: "always" },
        "body/automation must be one of manual, suggest, automatic, or null",
      ],
      ["POST", "/api/tokens", { role: "root" }, "body/role must be one of admin, tenant, metrics"],
      [
        "GET",
        "/api/plans?status=done",
        undefined,
        "querystring/status must be one of proposed, approved, applying, applied, failed, cancelled, superseded",
      ],
      [
        "GET",
        "/api/migrations?status=done",
        undefined,
        "querystring/status must be one of running, completed, failed, cancelled",
      ],
    ];
    for (const [method, path, body, error] of cases) {
      const r = await call(method, path, c.adminToken, body);
      assert.equal(r.status, 400, `${method} ${path}`);
      assert.equal(r.body.error, error, `${method} ${path}`);
    }
    // Nothing moved: the refused migration never started.
    assert.equal(await migrationsOf(), before);
    // The allowed values are documented, too.
    const spec = (await call("GET", "/api/openapi.json", c.adminToken)).body;
    const migrate = spec.paths["/api/vms/{id}/migrate"].post.requestBody.content["application/json"].schema;
    assert.deepEqual(migrate.properties.mechanism.enum, ["auto", "instant", "precopy", "postcopy"]);
  });

  test("unknown ids get 404 with the id", async () => {
    const r = await call("GET", "/api/vms/no-such-vm", c.adminToken);
    assert.equal(r.status, 404);
    assert.match(r.body.error, /no-such-vm/);
    assert.equal((await call("POST", "/api/plans/99999/approve", c.adminToken)).status, 404);
  });
});

describe("provider errors", () => {
  test("each provider error code answers with its kind's status and the provider's message", async () => {
    assert.deepEqual(PROVIDER_ERROR_STATUS, {
      "not-found": 404,
      invalid: 422,
      conflict: 409,
      exists: 409,
      capacity: 409,
      unavailable: 503,
    });
    const guest = ((await call("GET", "/api/vms", acme)).body as Array<{ id: string }>)[0].id;
    const provider = c.controller.provider as {
      setGuestRunning: (id: string, running: boolean) => Promise<void>;
    };
    const real = provider.setGuestRunning;
    try {
      for (const [code, status] of Object.entries(PROVIDER_ERROR_STATUS)) {
        provider.setGuestRunning = async (id) => {
          throw new ProviderError(code as ProviderError["code"], `scripted ${code} for ${id}`);
        };
        const r = await call("POST", `/api/vms/${guest}/stop`, acme);
        assert.equal(r.status, status, code);
        assert.deepEqual(r.body, { error: `scripted ${code} for ${guest}` }, code);
      }
    } finally {
      provider.setGuestRunning = real;
    }
    // Nothing was recorded: the guest still runs.
    assert.equal((await call("GET", `/api/vms/${guest}`, acme)).body.powerState, "running");
  });
});

describe("tenants", () => {
  test("a tenant lists only its own guests and cannot see or touch another's", async () => {
    const mine = (await call("GET", "/api/vms", acme)).body as Array<{ id: string; tenant: string }>;
    assert.ok(mine.length > 0);
    assert.ok(mine.every((g) => g.tenant === "acme"));
    const all = (await call("GET", "/api/vms", c.adminToken)).body as Array<{ id: string; tenant: string }>;
    const theirs = all.find((g) => g.tenant === "globex")!;
    assert.equal((await call("GET", `/api/vms/${theirs.id}`, acme)).status, 404);
    assert.equal((await call("POST", `/api/vms/${theirs.id}/stop`, acme)).status, 404);
    assert.equal((await call("POST", `/api/vms/${theirs.id}/migrate`, acme, {})).status, 404);
    assert.equal((await call("PATCH", `/api/vms/${theirs.id}`, acme, { automation: "manual" })).status, 404);
    assert.equal((await call("DELETE", `/api/vms/${theirs.id}`, acme)).status, 404);
    assert.equal(
      (
        await call("POST", "/api/vms", acme, {
          id: "sneaky",
          tenant: "globex",
          mipsPerVcpu: 500,
          memoryMiB: 256,
        })
      ).status,
      403,
    );
    assert.equal((await call("GET", "/api/servers", acme)).status, 403);
    assert.equal((await call("GET", "/api/placement", acme)).status, 403);
    assert.equal((await call("GET", "/api/plans", acme)).status, 403);
  });

  test("placement (admin): a provider that names servers is told placement, source provider, fresh", async () => {
    const r = await call("GET", "/api/placement", c.adminToken);
    assert.equal(r.status, 200);
    const p = r.body as {
      mode: string;
      hostVms: {
        hostVm: string;
        server: string | null;
        source: string;
        confidence: number;
        ageSeconds: number;
      }[];
    };
    assert.equal(p.mode, "told");
    const hosts = (await call("GET", "/api/hostvms", c.adminToken)).body as { id: string; server: string }[];
    assert.deepEqual(
      p.hostVms.map((h) => [h.hostVm, h.server]).sort(),
      hosts.map((h) => [h.id, h.server]).sort(),
    );
    assert.ok(p.hostVms.every((h) => h.source === "provider" && h.confidence === 1 && h.ageSeconds === 0));
  });

  test("placement trials (admin): refused to tenants, validated, and a provider without agents has none", async () => {
    const host = ((await call("GET", "/api/hostvms", c.adminToken)).body as { id: string }[])[0]!.id;
    const body = { from: host, to: "nope" };
    assert.equal((await call("POST", "/api/placement/trials", undefined, body)).status, 401);
    assert.equal((await call("POST", "/api/placement/trials", acme, body)).status, 403);
    assert.equal((await call("POST", "/api/placement/trials", c.adminToken, { from: host })).status, 400);
    assert.equal(
      (await call("POST", "/api/placement/trials", c.adminToken, { from: "a/../b", to: host })).status,
      400,
    );
    // The simulated provider tells placement: nothing to measure.
    const r = await call("POST", "/api/placement/trials", c.adminToken, body);
    assert.equal(r.status, 409);
    assert.match(JSON.stringify(r.body), /no trials/);
  });

  test("security VMs: created for one's own guests only, invisible to other tenants", async () => {
    const target = ((await call("GET", "/api/vms", globex)).body as Array<{ id: string }>)[0].id;
    const made = await call("POST", "/api/security-vms", globex, { id: "sec-globex", targets: [target] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const acmeTarget = ((await call("GET", "/api/vms", acme)).body as Array<{ id: string }>)[0].id;
    assert.equal(
      (await call("POST", "/api/security-vms", globex, { id: "sec-x", targets: [acmeTarget] })).status,
      422,
    );
    assert.deepEqual(((await call("GET", "/api/security-vms", acme)).body as unknown[]).length, 0);
    assert.equal(((await call("GET", "/api/security-vms", globex)).body as unknown[]).length, 1);
  });

  test("a tenant creates, stops and migrates its own guest", async () => {
    const created = await call("POST", "/api/vms", acme, {
      id: "acme-new",
      mipsPerVcpu: 500,
      memoryMiB: 512,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.tenant, "acme");
    assert.equal((await call("POST", "/api/vms/acme-new/stop", acme)).body.powerState, "stopped");
    const moved = await call("POST", "/api/vms/acme-new/migrate", acme, {});
    assert.equal(moved.status, 202, JSON.stringify(moved.body));
    // Waits on the plan and its migration, however slow a loaded machine is; a plan that
    // fails ends the wait at once with its reason.
    const done = await until(
      "the migration to complete",
      async () => {
        const plan = (await call("GET", `/api/plans/${moved.body.plan}`, c.adminToken)).body as {
          status: string;
          actions: Array<{ error: string | null }>;
        };
        if (plan.status === "failed" || plan.status === "cancelled")
          throw new Error(`plan ${moved.body.plan} ${plan.status}: ${JSON.stringify(plan.actions)}`);
        const ms = (await call("GET", "/api/migrations", acme)).body as Array<{
          guest: string;
          plan: number;
          status: string;
          progress: number;
        }>;
        const m = ms.find((x) => x.guest === "acme-new" && x.plan === moved.body.plan);
        return m && m.status !== "running" ? m : undefined;
      },
      180_000,
    );
    assert.equal(done.status, "completed");
    assert.equal(done.progress, 1);
    const others = (await call("GET", "/api/migrations", globex)).body as Array<{ guest: string }>;
    assert.ok(!others.some((m) => m.guest === "acme-new"), "another tenant does not see it");
  });
});

describe("plans", () => {
  test("with automation 'suggest' plans wait for approval, then apply", async () => {
    await call("PUT", "/api/settings", c.adminToken, { automation: "suggest" });
    const plan = await until("a proposed plan", async () => {
      const ps = (await call("GET", "/api/plans?status=proposed", c.adminToken)).body as Array<{
        id: number;
        actions: Array<{ kind: string }>;
      }>;
      return ps.find((p) => p.actions.some((a) => a.kind === "migrate"));
    });
    assert.equal((await call("POST", `/api/plans/${plan.id}/approve`, c.adminToken)).status, 200);
    assert.equal(
      (await call("POST", `/api/plans/${plan.id}/approve`, c.adminToken)).status,
      409,
      "approving twice is refused",
    );
    const final = await until("the plan to finish", async () => {
      const p = (await call("GET", `/api/plans/${plan.id}`, c.adminToken)).body as { status: string };
      return p.status === "applied" || p.status === "failed" ? p : undefined;
    });
    assert.equal(final.status, "applied");
    await call("PUT", "/api/settings", c.adminToken, { automation: "manual" });
  });
});

describe("history", () => {
  test("the cloud's size and cost over time: admin only, bounded by ?points", async () => {
    assert.equal((await call("GET", "/api/history", acme)).status, 403);
    const h = await until("two samples", async () => {
      const r = (await call("GET", "/api/history", c.adminToken)).body as {
        samples: Array<{ at: number; hostVms: number; costPerHour: number; guests: number }>;
      };
      return r.samples.length >= 2 ? r.samples : undefined;
    });
    assert.ok(h.every((s, i) => i === 0 || s.at > h[i - 1].at));
    assert.ok(h.every((s) => s.hostVms > 0 && s.costPerHour > 0 && s.guests > 0));
    const two = (await call("GET", "/api/history?points=2", c.adminToken)).body.samples as unknown[];
    assert.ok(two.length <= 2);
    assert.equal((await call("GET", "/api/history?points=1", c.adminToken)).status, 400);
  });
});

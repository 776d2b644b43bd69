// A co-migrate action (issue 13 item 4) through the controller's journal and executor: on the
// simulated provider both guests move in lock-step and the plan applies; on a plane without
// lock-step moves it fails with its reason, never split. The API's co-migration of a security VM
// with its targets (POST /api/security-vms/:id/co-migrate) on the simulated provider.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import pino from "pino";
import { CO_MIGRATE_UNSUPPORTED } from "../src/controller/executor.ts";
import { type RunningController, runController } from "../src/controller/index.ts";
import { demoWorld, SimProvider, type World } from "../src/providers/index.ts";
import { api, until } from "./support/controller-process.ts";
import { startTenantController } from "./support/tenant-controller.ts";

const dirs: string[] = [];
const running: RunningController[] = [];

/** One server, two host VMs; a target and its security VM on the first. */
function pairWorld(): World {
  const w = demoWorld({ servers: 1, guests: 0, speed: 600 });
  w.hostVms = w.hostVms.slice(0, 2);
  const g = (id: string, series: number) => ({
    id,
    tenant: "acme",
    vcpus: 1,
    mipsPerVcpu: 1000,
    memoryMiB: 1024,
    dirtyRateMiBps: 5,
    hostVm: w.hostVms[0].id,
    running: true,
    series,
  });
  w.guests = [g("target", 0), g("secvm", 1)];
  return w;
}

async function start(lockStep: boolean) {
  const dir = mkdtempSync(join(tmpdir(), "nestcloud-comigrate-"));
  dirs.push(dir);
  let saved: string | undefined;
  const provider = await SimProvider.open(
    {
      load: async () => saved,
      save: async (json) => {
        saved = json;
      },
    },
    pairWorld,
  );
  const { coMigrate: _c, ...noLockStep } = provider;
  const c = await runController({
    provider: "sim",
    providerInstance: lockStep ? provider : noLockStep,
    port: 0,
    dataDir: dir,
    intervalSeconds: 86400,
    log: pino({ level: "silent" }),
  });
  running.push(c);
  const call = (method: string, path: string, body?: unknown) =>
    api({ url: c.url, token: c.adminToken }, method, path, body);
  await call("PUT", "/api/settings", { automation: "manual" });
  await until("the guests adopted", async () =>
    (await call("GET", "/api/vms")).body.length === 2 ? true : undefined,
  );
  const hostVms = ((await call("GET", "/api/hostvms")).body as { id: string }[]).map((h) => h.id).sort();
  const plan = await c.controller.submitActions(
    [
      {
        payload: {
          kind: "co-migrate",
          members: [
            { guest: "target", from: hostVms[0], mechanism: "instant", seconds: 1 },
            { guest: "secvm", from: hostVms[0], mechanism: "instant", seconds: 2 },
          ],
          to: { hostVm: hostVms[1] },
          reason: "monitoring",
        },
        dependsOn: [],
      },
    ],
    "test",
  );
  const settled = await until("the plan to settle", async () => {
    const x = (await call("GET", `/api/plans/${plan}`)).body as {
      status: string;
      actions: Array<{
        kind: string;
        status: string;
        error: string | null;
        members: { migration?: string }[];
      }>;
    };
    return x.status === "failed" || x.status === "applied" ? x : undefined;
  });
  const where = new Map(
    ((await call("GET", "/api/vms")).body as { id: string; hostVm: string }[]).map((g) => [g.id, g.hostVm]),
  );
  return { settled, where, hostVms };
}

after(async () => {
  for (const c of running) await c.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("on the simulated provider a co-migration moves both guests and the plan applies", async () => {
  const { settled, where, hostVms } = await start(true);
  assert.equal(settled.status, "applied", JSON.stringify(settled));
  const a = settled.actions[0];
  assert.deepEqual([a.kind, a.status, a.error], ["co-migrate", "done", null]);
  assert.equal(a.members.filter((m) => m.migration).length, 2, "each member's migration journaled");
  assert.equal(where.get("target"), hostVms[1]);
  assert.equal(where.get("secvm"), hostVms[1]);
});

test("on a plane without lock-step moves the co-migration fails with its reason and nothing moves", async () => {
  const { settled, where, hostVms } = await start(false);
  assert.equal(settled.status, "failed");
  assert.deepEqual(
    settled.actions.map((a) => [a.kind, a.status, a.error]),
    [["co-migrate", "failed", CO_MIGRATE_UNSUPPORTED]],
  );
  assert.equal(where.get("target"), hostVms[0]);
  assert.equal(where.get("secvm"), hostVms[0]);
});

test("POST /api/security-vms/:id/co-migrate: tenant-scoped, validated, 409 while in flight; both arrive and the pair is local", async () => {
  const t = await startTenantController("nestcloud-comigrate-api-");
  try {
    const admin = t.c.adminToken;
    const as = (token: string) => (method: string, path: string, body?: unknown) =>
      api({ url: t.c.url, token }, method, path, body);
    const [g, a, root] = [as(t.globex), as(t.acme), as(admin)];
    const vms = (await g("GET", "/api/vms")).body as { id: string; hostVm: string; memoryMiB: number }[];
    const target = vms[0];
    const made = await g("POST", "/api/security-vms", { id: "sv-co", targets: [target.id], memoryMiB: 256 });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const sv = await until("the security VM placed", async () => {
      const x = (await g("GET", "/api/security-vms/sv-co")).body as { hostVm: string | null };
      return x.hostVm ? x : undefined;
    });
    // A host VM that is neither's, with room for both.
    const hosts = (await root("GET", "/api/hostvms")).body as Array<{ id: string; state: string }>;
    const views = (await root("GET", "/api/vms")).body as { hostVm: string | null; memoryMiB: number }[];
    const used = (h: string) => views.filter((v) => v.hostVm === h).reduce((s, v) => s + v.memoryMiB, 0);
    const to = hosts
      .filter((h) => h.state === "running" && h.id !== target.hostVm && h.id !== sv.hostVm)
      .sort((x, y) => used(x.id) - used(y.id))[0];
    assert.ok(to, "a third host VM");

    assert.equal((await a("POST", "/api/security-vms/sv-co/co-migrate", { to: to.id })).status, 404);
    const notMine = await g("POST", "/api/security-vms/sv-co/co-migrate", { to: to.id, targets: ["x1"] });
    assert.equal(notMine.status, 422, JSON.stringify(notMine.body));
    assert.equal((await g("POST", "/api/security-vms/sv-co/co-migrate", { to: "nowhere" })).status, 422);
    assert.equal(
      (await g("POST", "/api/security-vms/sv-co/co-migrate", { to: to.id, extra: 1 })).status,
      400,
    );

    // Two at once: one is planned, the other refused while it is in flight (409).
    const both = await Promise.all([
      g("POST", "/api/security-vms/sv-co/co-migrate", { to: to.id }),
      g("POST", "/api/security-vms/sv-co/co-migrate", { to: to.id }),
    ]);
    assert.deepEqual(both.map((r) => r.status).sort(), [202, 409], JSON.stringify(both.map((r) => r.body)));
    const ok = both.find((r) => r.status === 202)!;
    assert.match(JSON.stringify(both.find((r) => r.status === 409)?.body), /moving already/);
    assert.deepEqual(
      (ok.body.members as { guest: string }[]).map((m) => m.guest),
      ["sv-co", target.id],
    );
    const plan = await until("the co-migration applied", async () => {
      const p = (await root("GET", `/api/plans/${ok.body.plan}`)).body as {
        status: string;
        actions: unknown[];
      };
      return ["applied", "failed", "cancelled"].includes(p.status) ? p : undefined;
    });
    assert.equal(plan.status, "applied", JSON.stringify(plan));
    assert.equal(((await g("GET", "/api/security-vms/sv-co")).body as { hostVm: string }).hostVm, to.id);
    assert.equal(((await g(`GET`, `/api/vms/${target.id}`)).body as { hostVm: string }).hostVm, to.id);
    const pair = await until("the pair local", async () => {
      const p = ((await g("GET", "/api/security-vms/sv-co/channels")).body as { channel: string }[])[0];
      return p.channel === "local" ? p : undefined;
    });
    assert.equal(pair.channel, "local");
  } finally {
    await t.close();
  }
});

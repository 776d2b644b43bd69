// A co-migrate action (issue 13 item 4) through the controller's journal and executor: on the
// simulated provider both guests move in lock-step and the plan applies; on a plane without
// lock-step moves (the agents' today) it fails with its not-yet reason, never split.
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

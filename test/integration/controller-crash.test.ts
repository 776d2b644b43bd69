// Crash safety: kill -9 the controller while a plan is applying; after a restart every guest
// runs exactly once and the store's plan, journal and placement agree with the world.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import Database from "better-sqlite3";
import {
  api,
  type ControllerProcess,
  killHard,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";

const dir = mkdtempSync(join(tmpdir(), "nestcloud-crash-"));
let current: ControllerProcess | undefined;
after(async () => {
  if (current) await stopGently(current);
  rmSync(dir, { recursive: true, force: true });
});

const args = ["--data-dir", dir, "--port", "0", "--speed", "30"];

test("kill -9 mid-plan, restart: every guest once, journal and placement consistent", async () => {
  current = await startControllerProcess(args);
  const first = current;
  // Wait for a plan whose migrations are under way, then kill the controller outright.
  const plan = await until("a plan with a running migration", async () => {
    const plans = (await api(first, "GET", "/api/plans")).body as Array<{
      id: number;
      status: string;
      actions: Array<{ kind: string; status: string }>;
    }>;
    return plans.find(
      (p) => p.status === "applying" && p.actions.some((a) => a.kind === "migrate" && a.status === "running"),
    );
  });
  await killHard(first);

  current = await startControllerProcess(args);
  const second = current;
  // The journal is resumed: the plan finishes (applied, or failed where the world moved on).
  const final = await until(`plan ${plan.id} to finish after the restart`, async () => {
    const p = (await api(second, "GET", `/api/plans/${plan.id}`)).body as {
      status: string;
      actions: Array<{ status: string }>;
    };
    return p.status === "applied" || p.status === "failed" ? p : undefined;
  });
  assert.ok(
    final.actions.every((a) => ["done", "failed", "cancelled"].includes(a.status)),
    JSON.stringify(final.actions),
  );
  await until("no plan left applying", async () => {
    const plans = (await api(second, "GET", "/api/plans?status=applying")).body as unknown[];
    return plans.length === 0 ? true : undefined;
  });
  await stopGently(second);
  current = undefined;

  // Read the world and the store directly.
  const db = new Database(join(dir, "nestcloud.db"), { readonly: true });
  try {
    const world = JSON.parse(
      (db.prepare("select value from provider_state where key = 'sim-world'").get() as { value: string })
        .value,
    ) as {
      guests: Array<{ id: string; hostVm?: string }>;
      hostVms: Array<{ id: string; state: string }>;
      migrations: Array<{ guest: string; status: string }>;
    };
    const ids = world.guests.map((g) => g.id);
    assert.equal(new Set(ids).size, ids.length, "each guest exists once in the world");
    const running = new Set(world.hostVms.filter((h) => h.state === "running").map((h) => h.id));
    for (const g of world.guests)
      assert.ok(g.hostVm && running.has(g.hostVm), `guest ${g.id} runs on a running host VM (${g.hostVm})`);
    assert.equal(world.migrations.filter((m) => m.status === "running").length, 0);
    const stored = db.prepare("select id, host_vm_id from guests").all() as Array<{
      id: string;
      host_vm_id: string;
    }>;
    assert.equal(stored.length, world.guests.length);
    const where = new Map(world.guests.map((g) => [g.id, g.hostVm]));
    for (const g of stored) assert.equal(g.host_vm_id, where.get(g.id), `store and world agree on ${g.id}`);
    const stuck = db.prepare("select count(*) n from plan_actions where status = 'running'").get() as {
      n: number;
    };
    assert.equal(stuck.n, 0, "no action left running in the journal");
    const dangling = db.prepare("select count(*) n from migrations where status = 'running'").get() as {
      n: number;
    };
    assert.equal(dangling.n, 0);
  } finally {
    db.close();
  }
});

// The controller's picture stays consistent when its loops interleave with a provider that
// is slow to answer (as a testbed's agents are): an audit whose snapshot was taken before the
// executor settled a migration neither moves the guest back nor turns the migration back to
// running; the API shows a settled move at once (not at the next audit); an audit adopting a
// guest while the API creates it does not make the creation fail. A scripted provider stands
// in for the world so that each interleaving happens exactly.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import { type RunningController, runController } from "../src/controller/index.ts";
import {
  composeProvider,
  DEMO_HOST_VM_TYPE,
  type GuestDataPlane,
  type GuestSpec,
  type HostVmRental,
  type ProviderGuest,
  type ProviderMigration,
} from "../src/providers/index.ts";
import { api } from "./support/controller-process.ts";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * One server, two host VMs; guests and migrations move only when the test says so. It is
 * both the rental and the data plane (composed into a provider below).
 */
class ScriptedWorld implements HostVmRental, GuestDataPlane {
  readonly name = "scripted";
  readonly clock = "wall";
  readonly speed = 1;
  guests: Mutable<ProviderGuest>[] = [];
  migrations: Mutable<ProviderMigration>[] = [];
  /** The next snapshot is read now but answered only when the test releases it. */
  gateNext: Promise<void> | undefined;
  /** Runs inside createGuest, after the guest exists (an audit racing the API). */
  duringCreate: (() => Promise<void>) | undefined;

  now(): number {
    return Date.now() / 1000;
  }
  async describe() {
    return {
      servers: [
        {
          id: "s1",
          cores: 8,
          mipsPerCore: 2660,
          memoryMiB: 65536,
          networkMbps: 10_000,
          power: { watts: [86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117] },
          hostVmSlots: 2,
        },
      ],
      hostVmTypes: [DEMO_HOST_VM_TYPE],
    };
  }
  async hostVms() {
    return ["h1", "h2"].map((id) => ({
      id,
      type: DEMO_HOST_VM_TYPE.name,
      server: "s1",
      state: "running" as const,
      acquiredAt: 0,
      stateSince: 0,
    }));
  }
  /** What it reads is as of the call; the answer waits for the gate. */
  async observe() {
    const seen = {
      guests: this.guests.map((g) => ({ ...g })),
      migrations: this.migrations.map((m) => ({ ...m })),
    };
    const gate = this.gateNext;
    this.gateNext = undefined;
    if (gate) await gate;
    return seen;
  }
  async inUse(hostVm: string) {
    return this.guests.some((g) => g.hostVm === hostVm);
  }
  async acquireHostVm(): Promise<never> {
    throw new Error("not in this test");
  }
  async releaseHostVm(): Promise<void> {}
  async createGuest(spec: GuestSpec, hostVm: string): Promise<void> {
    this.guests.push({
      id: spec.id,
      spec,
      hostVm,
      running: true,
      cpu: 0.1,
      residentMiB: spec.memoryMiB,
      dirtyRateMiBps: 0,
    });
    await this.duringCreate?.();
  }
  async setGuestRunning(): Promise<void> {}
  async deleteGuest(id: string): Promise<void> {
    this.guests = this.guests.filter((g) => g.id !== id);
  }
  async migrate(guest: string, to: string, mechanism: ProviderMigration["mechanism"]) {
    const g = this.guests.find((x) => x.id === guest)!;
    const m: Mutable<ProviderMigration> = {
      id: `m${this.migrations.length + 1}`,
      guest,
      from: g.hostVm!,
      to,
      mechanism,
      status: "running",
      progress: 0.1,
      remainingBytes: 0,
      etaSeconds: 1,
      startedAt: this.now(),
      finishedAt: undefined,
      error: undefined,
    };
    this.migrations.push(m);
    return { ...m };
  }
  /** The move ends: the guest runs at the destination. */
  complete(id: string): void {
    const m = this.migrations.find((x) => x.id === id)!;
    Object.assign(m, {
      status: "completed",
      progress: 1,
      finishedAt: this.now(),
      etaSeconds: 0,
      pauseMs: 12.5,
    });
    this.guests.find((g) => g.id === m.guest)!.hostVm = m.to;
  }
  async migration(id: string) {
    const m = this.migrations.find((x) => x.id === id);
    return m ? { ...m } : undefined;
  }
  async cancelMigration(): Promise<void> {}
  async close(): Promise<void> {}
}

const provider = new ScriptedWorld();
let c: RunningController;
let dir: string;

/** The controller's API as its admin. */
const call = (method: string, path: string, body?: unknown) =>
  api({ url: c.url, token: c.adminToken }, method, path, body);

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const placeOf = async (id: string) =>
  ((await call("GET", "/api/vms")).body as Array<{ id: string; hostVm: string }>).find((v) => v.id === id)
    ?.hostVm;
const migration = async (id: string) =>
  (
    (await call("GET", "/api/migrations")).body as Array<{
      id: string;
      status: string;
      progress: number;
      detail: Record<string, number | null>;
    }>
  ).find((m) => m.id === id);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "nestcloud-consistency-"));
  c = await runController({
    provider: "sim",
    providerInstance: composeProvider("scripted", provider, provider),
    port: 0,
    dataDir: dir,
    // No planning round and no audit loop during the test: the test runs them itself.
    intervalSeconds: 3600,
    log: pino({ level: "silent" }),
  });
  await call("PUT", "/api/settings", { automation: "manual" });
});

after(async () => {
  await c.close();
  rmSync(dir, { recursive: true, force: true });
});

test("an audit adopting a guest while the API creates it does not fail the creation", async () => {
  provider.duringCreate = async () => {
    await c.controller.reconciler.audit();
  };
  try {
    const r = await call("POST", "/api/vms", {
      id: "g1",
      tenant: "acme",
      mipsPerVcpu: 1000,
      memoryMiB: 512,
      hostVm: "h1",
      automation: "suggest",
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.automation, "suggest", "the API's definition wins over the adoption");
    assert.equal(r.body.hostVm, "h1");
  } finally {
    provider.duringCreate = undefined;
  }
  const all = (await call("GET", "/api/vms")).body as Array<{ id: string }>;
  assert.deepEqual(
    all.map((v) => v.id),
    ["g1"],
  );
});

test("a migration settled while an audit's snapshot was on its way stays settled, and shows at once", async () => {
  const r = await call("POST", "/api/vms/g1/migrate", { to: "h2", mechanism: "instant" });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const m = await until("the migration to start", async () => (await call("GET", "/api/migrations")).body[0]);
  assert.equal(m.status, "running");

  // An audit asks for a snapshot: the provider reads the world now (g1 at h1, moving) ...
  let release!: () => void;
  provider.gateNext = new Promise<void>((r) => {
    release = r;
  });
  const audit = c.controller.reconciler.audit();
  // ... meanwhile the move ends and the executor settles it.
  provider.complete(m.id);
  await until("the executor to settle the migration", async () =>
    (await migration(m.id))?.status === "completed" ? true : undefined,
  );
  // The API shows the new place now, not after the next audit.
  assert.equal(await placeOf("g1"), "h2");
  const hostvms = (await call("GET", "/api/hostvms")).body as Array<{ id: string; guests: string[] }>;
  assert.deepEqual(
    hostvms.map((h) => [h.id, h.guests]),
    [
      ["h1", []],
      ["h2", ["g1"]],
    ],
  );

  // The audit's answer arrives, older than the settlement: it must not undo it.
  release();
  const stale = await audit;
  assert.equal(stale.guests.find((g) => g.id === "g1")?.hostVm, "h1", "the snapshot was indeed stale");
  assert.equal(await placeOf("g1"), "h2", "the guest stays where the migration took it");
  const after = await migration(m.id);
  assert.equal(after?.status, "completed", "the migration stays completed");
  assert.equal(after?.progress, 1);
  const row = await c.store.db
    .selectFrom("guests")
    .select("host_vm_id")
    .where("id", "=", "g1")
    .executeTakeFirst();
  assert.equal(row?.host_vm_id, "h2");
  const running = await c.store.db
    .selectFrom("migrations")
    .select("id")
    .where("status", "=", "running")
    .execute();
  assert.deepEqual(running, [], "nothing the planner would take as in flight");

  // A fresh audit agrees.
  await c.controller.reconciler.audit();
  assert.equal(await placeOf("g1"), "h2");
  assert.equal((await migration(m.id))?.status, "completed");
});

test("an audit's older reading never moves a running migration's progress back", async () => {
  const r = await call("POST", "/api/vms/g1/migrate", { to: "h1", mechanism: "instant" });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const m = await until("the migration to start", async () =>
    ((await call("GET", "/api/migrations")).body as Array<{ id: string; status: string }>).find(
      (x) => x.status === "running",
    ),
  );
  const stored = async () =>
    (await c.store.db.selectFrom("migrations").select("progress").where("id", "=", m.id).executeTakeFirst())
      ?.progress;
  // An audit reads the world at 10 % ...
  let release!: () => void;
  provider.gateNext = new Promise<void>((res) => {
    release = res;
  });
  const audit = c.controller.reconciler.audit();
  // ... the move gets to 90 % and the executor stores that ...
  provider.migrations.find((x) => x.id === m.id)!.progress = 0.9;
  await until("the executor to store 90 %", async () => ((await stored()) === 0.9 ? true : undefined));
  // ... then the audit's answer, at 10 %, arrives.
  release();
  const stale = await audit;
  assert.equal(stale.migrations.find((x) => x.id === m.id)?.progress, 0.1, "the snapshot was indeed older");
  assert.equal(await stored(), 0.9, "stored progress only moves forward");
  assert.equal((await migration(m.id))?.progress, 0.9);
  provider.complete(m.id);
  await until("the migration to settle", async () =>
    (await migration(m.id))?.status === "completed" ? true : undefined,
  );
  assert.equal(await placeOf("g1"), "h1");
});

test("a live figure the API showed is never followed by an older stored one", async () => {
  const r = await call("POST", "/api/vms/g1/migrate", { to: "h2", mechanism: "instant" });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const m = await until("the migration to start", async () =>
    ((await call("GET", "/api/migrations")).body as Array<{ id: string; status: string }>).find(
      (x) => x.status === "running",
    ),
  );
  // The executor's next poll waits: it stores nothing while the test looks.
  let release!: () => void;
  provider.gateNext = new Promise<void>((res) => {
    release = res;
  });
  provider.migrations.find((x) => x.id === m.id)!.progress = 0.9;
  const shown = await migration(m.id);
  assert.equal(shown?.status, "running");
  assert.equal(shown?.progress, 0.9, "the API shows the provider's live figure");
  // The move ends; the executor has not settled it yet, so the API reads the store.
  provider.complete(m.id);
  const next = await migration(m.id);
  assert.equal(next?.status, "running", "not settled by the executor yet");
  assert.ok(
    (next?.progress ?? 0) >= 0.9,
    `progress shown after the live 0.9 must not go back (got ${next?.progress})`,
  );
  release();
  await until("the migration to settle", async () =>
    (await migration(m.id))?.status === "completed" ? true : undefined,
  );
  assert.equal((await migration(m.id))?.progress, 1);
  assert.equal(
    (await migration(m.id))?.detail.pauseMs,
    12.5,
    "the guest's pause as the provider measured it",
  );
  assert.equal(await placeOf("g1"), "h2");
});

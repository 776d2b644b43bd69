// A rolling rejuvenation run by the controller on the simulated cloud: the rollout's steps
// are the planner's rejuvenate actions in the rounds' plans (with their notes), executed by
// the executor one host VM at a time; a controller restarted mid-rollout picks the running
// renewal up from the journal and the rollout resumes; every guest ends on one host VM.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import pino from "pino";
import { durableRollout, openStore, type RunningController, runController } from "../src/controller/index.ts";
import { demoWorld, SimProvider } from "../src/providers/index.ts";
import { until } from "./support/controller-process.ts";

const dir = mkdtempSync(join(tmpdir(), "nestcloud-rollout-"));
let saved: string | undefined;
let c: RunningController | undefined;

after(async () => {
  await c?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningController> {
  const provider = await SimProvider.open(
    {
      load: async () => saved,
      save: async (json) => {
        saved = json;
      },
    },
    () => demoWorld({ servers: 2, guests: 8, speed: 600 }),
  );
  // Installed "now" on the provider's first start: every hypervisor of the world predates it.
  const installedAt = installed ?? provider.now();
  installed = installedAt;
  return runController({
    provider: "sim",
    providerInstance: provider,
    port: 0,
    dataDir: dir,
    intervalSeconds: 60,
    rollout: () => ({ kind: "version", version: "qemu-10.1", installedAt, mode: "in-place" }),
    log: pino({ level: "silent" }),
  });
}
let installed: number | undefined;

interface Renewal {
  plan: number;
  source: string;
  notes: readonly string[];
  hostVm: string;
  status: string;
  startedAt: number | null;
  finishedAt: number | null;
}

async function renewals(ctl: RunningController): Promise<Renewal[]> {
  const out: Renewal[] = [];
  for (const p of await ctl.store.repos.plans.list({ limit: 1000 }))
    for (const a of await ctl.store.repos.plans.actions(p.id))
      if (a.payload.kind === "rejuvenate")
        out.push({
          plan: p.id,
          source: p.source,
          notes: p.notes,
          hostVm: a.payload.hostVm,
          status: a.status,
          startedAt: a.startedAt,
          finishedAt: a.finishedAt,
        });
  return out.sort((a, b) => a.plan - b.plan);
}

test("a version rolled out by the controller: every host VM renewed once, one at a time, across a controller restart", async () => {
  c = await start();
  const first = c;
  const hosts0 = (await first.store.repos.hostVms.list())
    .filter((h) => h.state === "running")
    .map((h) => h.id);
  assert.ok(hosts0.length >= 2, `${hosts0.length} host VMs`);
  // Restart the controller once the first renewal is done (the rollout has more to do).
  await until("a first renewal done", async () =>
    (await renewals(first)).some((r) => r.status === "done") ? true : undefined,
  );
  await first.close();
  c = await start();
  const second = c;
  const done = await until(
    "every host VM of the start renewed or released",
    async () => {
      const rs = await renewals(second);
      const live = (await second.store.repos.hostVms.list())
        .filter((h) => h.state !== "released")
        .map((h) => h.id);
      const renewed = new Set(rs.filter((r) => r.status === "done").map((r) => r.hostVm));
      return hosts0.every((h) => renewed.has(h) || !live.includes(h)) ? rs : undefined;
    },
    60_000,
  );
  // Each a step of a round's plan, said in its notes; none failed or lost in the restart.
  for (const r of done) {
    assert.equal(r.source, "reconciler");
    assert.equal(r.status, "done", JSON.stringify(r));
    assert.ok(
      r.notes.some((n) =>
        n.startsWith(`rejuvenate ${r.hostVm}: hypervisor predates version qemu-10.1, in-place`),
      ),
    );
  }
  // Once each, and never two at a time.
  assert.equal(new Set(done.map((r) => r.hostVm)).size, done.length);
  for (let i = 1; i < done.length; i++)
    assert.ok(
      (done[i].startedAt ?? 0) >= (done[i - 1].finishedAt ?? Number.POSITIVE_INFINITY),
      JSON.stringify(done),
    );
  // Every guest runs on exactly one host VM, as many as at the start.
  const guests = await second.store.repos.guests.list();
  assert.equal(guests.length, 8);
  for (const g of guests) assert.ok(g.hostVm, `${g.id} has no host VM`);
});

test("a version's installation time is the one the store first recorded (a restarted controller keeps it)", async () => {
  const store = await openStore("sqlite::memory:");
  try {
    const v = (version: string, installedAt: number) =>
      ({ kind: "version", version, installedAt, mode: "in-place" }) as const;
    assert.equal(
      ((await durableRollout(store, v("qemu-10.1", 100))) as { installedAt: number }).installedAt,
      100,
    );
    // A restart later on: the first record holds.
    assert.equal(
      ((await durableRollout(store, v("qemu-10.1", 500))) as { installedAt: number }).installedAt,
      100,
    );
    // Another version is its own rollout.
    assert.equal(
      ((await durableRollout(store, v("qemu-10.2", 700))) as { installedAt: number }).installedAt,
      700,
    );
    const age = { kind: "max-age", maxAgeSeconds: 3600, mode: "evacuate" } as const;
    assert.deepEqual(await durableRollout(store, age), age);
  } finally {
    await store.close();
  }
});

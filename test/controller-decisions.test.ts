// The controller places and refuses with the planner's decisions: a new guest goes where the
// policy's placeNew puts it (a host VM it wants acquired is rented only in automatic, else the
// answer says to acquire one first), and a planner action the provider cannot carry out
// (rejuvenate, on a provider without it) is stored and failed with its reason, never dropped.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import { REJUVENATE_UNSUPPORTED } from "../src/controller/executor.ts";
import { type RunningController, runController } from "../src/controller/index.ts";
import { DEMO_HOST_VM_TYPE, demoWorld, SimProvider, type World } from "../src/providers/index.ts";
import { api, until } from "./support/controller-process.ts";

let c: RunningController;
let dir: string;

/** The controller's API as its admin. */
const call = (method: string, path: string, body?: unknown) =>
  api({ url: c.url, token: c.adminToken }, method, path, body);

/** One server with one host VM, nearly full of memory (one 28 GiB guest of 31 GiB usable). */
function smallWorld(): World {
  const w = demoWorld({ servers: 1, guests: 0, speed: 600 });
  w.hostVms = [w.hostVms[0]];
  w.guests = [
    {
      id: "big",
      tenant: "acme",
      vcpus: 1,
      mipsPerVcpu: 1000,
      memoryMiB: 28672,
      dirtyRateMiBps: 5,
      hostVm: w.hostVms[0].id,
      running: true,
      series: 0,
    },
  ];
  return w;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "nestcloud-decisions-"));
  let saved: string | undefined;
  const provider = await SimProvider.open(
    {
      load: async () => saved,
      save: async (json) => {
        saved = json;
      },
    },
    smallWorld,
  );
  // The simulated cloud renews host VMs; this one is a provider that cannot (as OpenStack's).
  const { rejuvenate: _r, rejuvenation: _s, ...cannotRejuvenate } = provider;
  c = await runController({
    provider: "sim",
    providerInstance: cannotRejuvenate,
    port: 0,
    dataDir: dir,
    intervalSeconds: 86400,
    log: pino({ level: "silent" }),
  });
  await call("PUT", "/api/settings", { automation: "manual" });
  await until("the guest adopted", async () =>
    (await call("GET", "/api/vms")).body.length > 0 ? true : undefined,
  );
});

after(async () => {
  await c.close();
  rmSync(dir, { recursive: true, force: true });
});

const vm = (id: string, memoryMiB: number) => ({ id, tenant: "acme", mipsPerVcpu: 1000, memoryMiB });

test("a guest that fits goes where the planner places it", async () => {
  const r = await call("POST", "/api/vms", vm("fits", 1024));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.hostVm, "srv-1-hv1");
});

test("in manual, a guest the planner would rent a host VM for is refused: acquire one first", async () => {
  const r = await call("POST", "/api/vms", vm("too-big", 4096));
  assert.equal(r.status, 409);
  assert.equal(r.body.error, "no running host VM has room for 4096 MiB; acquire a host VM first");
  const hosts = (await call("GET", "/api/hostvms")).body as unknown[];
  assert.equal(hosts.length, 1, "nothing was rented");
});

test("in automatic, the host VM the planner wants is acquired and the guest created on it", async () => {
  await call("PUT", "/api/settings", { automation: "automatic" });
  try {
    const r = await call("POST", "/api/vms", vm("rented-for", 4096));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const hosts = (await call("GET", "/api/hostvms")).body as Array<{
      id: string;
      type: string;
      guests: string[];
    }>;
    assert.equal(hosts.length, 2);
    const fresh = hosts.find((h) => h.id !== "srv-1-hv1")!;
    assert.equal(fresh.type, DEMO_HOST_VM_TYPE.name);
    assert.equal(r.body.hostVm, fresh.id);
    assert.deepEqual(fresh.guests, ["rented-for"]);
  } finally {
    await call("PUT", "/api/settings", { automation: "manual" });
  }
});

test("a rejuvenate action is stored and failed with its reason, and what depends on it fails", async () => {
  const plan = await c.controller.submitActions(
    [
      { payload: { kind: "rejuvenate", hostVm: "srv-1-hv1" }, dependsOn: [] },
      { payload: { kind: "release-host-vm", hostVm: "srv-1-hv1" }, dependsOn: [0] },
    ],
    "test",
  );
  const p = await until("the plan to settle", async () => {
    const x = (await call("GET", `/api/plans/${plan}`)).body as {
      status: string;
      actions: Array<{ kind: string; status: string; error: string | null }>;
    };
    return x.status === "failed" || x.status === "applied" ? x : undefined;
  });
  assert.equal(p.status, "failed");
  assert.deepEqual(
    p.actions.map((a) => [a.kind, a.status, a.error]),
    [
      ["rejuvenate", "failed", REJUVENATE_UNSUPPORTED],
      ["release-host-vm", "failed", "an action it depends on failed"],
    ],
  );
  assert.ok((await call("GET", "/api/hostvms")).body.some((h: { id: string }) => h.id === "srv-1-hv1"));
});

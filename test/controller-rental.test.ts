// Renting follows the cloud's automation level: in manual nothing is acquired or released by
// the planner, in suggest its releases wait for approval, and a host VM an operator acquired
// is kept until the operator releases it or approves a plan that does.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { RunningController } from "../src/controller/index.ts";
import { api, until } from "./support/controller-process.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let t: TenantController;
let c: RunningController;

/** The controller's API as its admin. */
const call = (method: string, path: string, body?: unknown) =>
  api({ url: c.url, token: c.adminToken }, method, path, body);

interface HostVm {
  id: string;
  server: string;
  state: string;
  kept: boolean;
  guests: string[];
}
interface Plan {
  id: number;
  status: string;
  source: string;
  actions: Array<{ kind: string; hostVm?: string; status: string }>;
}

const hostVms = async () => (await call("GET", "/api/hostvms")).body as HostVm[];
const plans = async () => (await call("GET", "/api/plans?limit=1000")).body as Plan[];
/** Planning rounds happen every interval of provider time: wait for `n` of them. */
const rounds = (n: number) =>
  new Promise((r) => setTimeout(r, n * c.controller.roundWallSeconds * 1000 + 500));

async function acquire(server: string): Promise<HostVm> {
  const before = new Set((await hostVms()).map((h) => h.id));
  const r = await call("POST", "/api/hostvms", { type: "hvm.4x32", server });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return until(
    "the acquired host VM to run",
    async () => (await hostVms()).find((h) => !before.has(h.id) && h.state === "running"),
    60_000,
  );
}

before(async () => {
  t = await startTenantController("nestcloud-rental-");
  c = t.c;
});
after(() => t.close());

describe("renting follows the automation level", () => {
  test("manual: an acquired host VM stays and takes a guest; the planner rents and returns nothing", async () => {
    const plansBefore = (await plans()).length;
    const h = await acquire("srv-1");
    assert.equal(h.kept, true);
    await rounds(6);
    const now = (await hostVms()).find((x) => x.id === h.id);
    assert.equal(now?.state, "running", "still rented after six rounds");
    const newPlans = (await plans()).slice(0, (await plans()).length - plansBefore);
    assert.ok(
      newPlans.every((p) => p.source === "api"),
      `the planner made no plan: ${JSON.stringify(newPlans.map((p) => [p.source, p.actions.map((a) => a.kind)]))}`,
    );
    const g = await call("POST", "/api/vms", {
      id: "on-kept",
      tenant: "acme",
      mipsPerVcpu: 500,
      memoryMiB: 512,
      hostVm: h.id,
    });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    assert.equal(g.body.hostVm, h.id);
    // Its owner releases it: refused while it hosts a guest, done once it is empty.
    const busy = await call("DELETE", `/api/hostvms/${h.id}`);
    assert.equal(busy.status, 409);
    assert.match(busy.body.error, /on-kept/);
    assert.equal((await call("DELETE", "/api/vms/on-kept")).status, 204);
    assert.equal((await call("DELETE", `/api/hostvms/${h.id}`)).status, 202);
    await until(
      "the released host VM to go",
      async () => ((await hostVms()).some((x) => x.id === h.id) ? undefined : true),
      60_000,
    );
  });

  test("automatic: a kept host VM is released only by a plan the operator approves (or by DELETE)", async () => {
    const h = await acquire("srv-2");
    await call("PUT", "/api/settings", { automation: "automatic" });
    // The planner wants the empty host VM gone: it may propose it, never apply it by itself.
    const proposal = await until(
      "a proposal to release the kept host VM",
      async () =>
        (await plans()).find(
          (p) =>
            p.status === "proposed" &&
            p.actions.some((a) => a.kind === "release-host-vm" && a.hostVm === h.id),
        ),
      60_000,
    );
    for (const p of await plans()) {
      if (p.status === "proposed") continue;
      assert.ok(
        !p.actions.some((a) => a.kind === "release-host-vm" && a.hostVm === h.id),
        `plan ${p.id} (${p.status}) does not release ${h.id}`,
      );
    }
    assert.equal((await hostVms()).find((x) => x.id === h.id)?.state, "running");
    assert.equal((await call("POST", `/api/plans/${proposal.id}/approve`)).status, 200);
    await until(
      "the approved release",
      async () => ((await hostVms()).some((x) => x.id === h.id) ? undefined : true),
      60_000,
    );
  });

  test("suggest: the planner's releases wait for approval", async () => {
    await call("PUT", "/api/settings", { automation: "suggest" });
    const since = Math.max(0, ...(await plans()).map((p) => p.id));
    const proposal = await until(
      "a proposal that releases a host VM",
      async () =>
        (await plans()).find(
          (p) =>
            p.id > since && p.status === "proposed" && p.actions.some((a) => a.kind === "release-host-vm"),
        ),
      60_000,
    );
    await rounds(3);
    for (const p of (await plans()).filter((x) => x.id > since && x.source === "reconciler"))
      assert.ok(
        p.status === "proposed" ||
          p.status === "superseded" ||
          !p.actions.some((a) => a.kind === "release-host-vm"),
        `plan ${p.id} (${p.status}) released a host VM without approval`,
      );
    const released = proposal.actions.filter((a) => a.kind === "release-host-vm").map((a) => a.hostVm);
    const running = new Set((await hostVms()).map((h) => h.id));
    assert.ok(
      released.every((id) => running.has(id!)),
      "the proposal's host VMs are still rented",
    );
  });
});

describe("settings from the CLI", () => {
  const bin = join(import.meta.dirname, "../bin/nestcloud.js");
  // Asynchronously: the controller answering the CLI runs in this process.
  const cli = (...args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        process.execPath,
        [bin, ...args, "--url", c.url, "--token", c.adminToken],
        { encoding: "utf8", timeout: 120_000 },
        (e, out, err) => resolve({ code: e ? Number(e.code ?? 1) : 0, out, err }),
      );
    });

  test("read, set, and a bad level names the allowed ones", async () => {
    assert.equal((await cli("settings", "automation", "manual")).code, 0);
    const shown = await cli("settings", "-o", "json");
    assert.equal(shown.code, 0, shown.err);
    assert.deepEqual(JSON.parse(shown.out), [{ automation: "manual" }]);
    const set = await cli("settings", "automation", "suggest");
    assert.equal(set.code, 0, set.err);
    assert.equal(((await call("GET", "/api/settings")).body as { automation: string }).automation, "suggest");
    const read = await cli("settings", "automation");
    assert.match(read.out, /suggest/);
    const bad = await cli("settings", "automation", "sometimes");
    assert.equal(bad.code, 2);
    assert.equal(
      bad.err.trim(),
      "nestcloud: automation sometimes: expected one of manual, suggest, automatic",
    );
  });
});

describe("rejuvenation through the API", () => {
  test("POST /api/hostvms/:id/rejuvenate: admin only, validated, a plan the executor runs (the simulated cloud renews it: each guest paused once)", async () => {
    const h = (await hostVms()).find((x) => x.state === "running")!;
    const path = `/api/hostvms/${h.id}/rejuvenate`;
    const asTenant = await fetch(c.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${t.acme}`, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(asTenant.status, 403, "a tenant may not rejuvenate host VMs");
    const noToken = await fetch(c.url + path, { method: "POST", body: "{}" });
    assert.equal(noToken.status, 401);
    const bad = await call("POST", path, { mode: "reboot" });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /mode must be one of in-place, evacuate/);
    const extra = await call("POST", path, { mode: "in-place", force: true });
    assert.equal(extra.status, 400, "unknown fields are refused");
    assert.equal((await call("POST", "/api/hostvms/no-such-host/rejuvenate", {})).status, 404);
    const ok = await call("POST", path, { mode: "in-place" });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    const plan = await until(
      "the rejuvenation plan to end",
      async () => {
        const p = (await call("GET", `/api/plans/${ok.body.plan}`)).body as Omit<Plan, "actions"> & {
          actions: Array<Plan["actions"][number] & { mode?: string; error: string | null }>;
        };
        return p.status === "failed" || p.status === "applied" ? p : undefined;
      },
      30_000,
    );
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.hostVm, a.mode, a.status]),
      [["rejuvenate", h.id, "in-place", "done"]],
    );
    const result = (
      plan.actions[0] as { result?: { guests: { guest: string; outcome: string; pauseMs: number }[] } }
    ).result;
    assert.deepEqual(
      result?.guests.map((g) => [g.guest, g.outcome, g.pauseMs]).sort(),
      h.guests.map((g) => [g, "moved", 55]).sort(),
    );
  });
});

// The virtual AMT through the API on the simulated cloud (its power states modelled): each
// action answers and is recorded in the guest's event log with who asked; a tenant reaches
// only its own guests (another tenant's is 404, as if it did not exist, and leaves no trace);
// bad input is refused naming the field; the log is paged newest first with its total; the
// guests list shows a powered-off guest stopped; and the CLI's vm power / inventory / events.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { api, until } from "./support/controller-process.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let t: TenantController;
let guest: string;
let other: string;

before(async () => {
  t = await startTenantController("nestcloud-amt-");
  const list = (await api({ url: t.c.url, token: t.acme }, "GET", "/api/vms")).body as Array<{ id: string }>;
  guest = list[0].id;
  const all = (await api({ url: t.c.url, token: t.c.adminToken }, "GET", "/api/vms")).body as Array<{
    id: string;
    tenant: string;
  }>;
  other = all.find((g) => g.tenant === "globex")!.id;
});

after(() => t.close());

const as = (token: string) => (method: string, path: string, body?: unknown) =>
  api({ url: t.c.url, token }, method, path, body);

test("power actions answer, change the guest's state and are logged with who asked", async () => {
  const acme = as(t.acme);
  const off = await acme("POST", `/api/vms/${guest}/power`, { action: "off" });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.equal(off.body.power, "off");
  assert.equal(off.body.outcome, "done");
  await until("the guest shown stopped", async () =>
    (await acme("GET", `/api/vms/${guest}`)).body.powerState === "stopped" ? true : undefined,
  );
  assert.equal((await acme("POST", `/api/vms/${guest}/power`, { action: "on" })).body.power, "on");
  const rescue = await acme("POST", `/api/vms/${guest}/power`, { action: "rescue", append: "RESCUEMARK=1" });
  assert.equal(rescue.body.boot, "rescue");
  const inv = await acme("GET", `/api/vms/${guest}/inventory`);
  assert.equal(inv.status, 200);
  assert.match(inv.body.commandLine, /nestcloud\.rescue=1 RESCUEMARK=1/);
  assert.equal(inv.body.nics.length, 1);
  assert.match(inv.body.nics[0].mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  assert.equal((await acme("POST", `/api/vms/${guest}/power`, { action: "normal" })).body.boot, "normal");
  const admin = as(t.c.adminToken);
  assert.equal((await admin("POST", `/api/vms/${guest}/power`, { action: "reset" })).status, 200);

  const ev = await acme("GET", `/api/vms/${guest}/events?limit=100`);
  assert.equal(ev.status, 200);
  const actions = (ev.body as Array<{ kind: string; actor: string | null; detail: string }>).filter((e) =>
    e.kind.startsWith("power."),
  );
  // Newest first.
  assert.deepEqual(
    actions.map((e) => e.kind),
    ["power.reset", "power.normal", "power.rescue", "power.on", "power.off"],
  );
  assert.match(actions[0].actor!, /^admin \(tok_[0-9a-f]{16}\)$/);
  for (const e of actions.slice(1)) assert.match(e.actor!, /^tenant:acme \(tok_[0-9a-f]{16}\)$/);
  assert.match(actions[2].detail, /append RESCUEMARK=1/);
  // The model's boots come in as the guest's own events (no actor).
  await until("the boots logged", async () => {
    const all = (await acme("GET", `/api/vms/${guest}/events`)).body as Array<{
      kind: string;
      actor: unknown;
    }>;
    const boots = all.filter((e) => e.kind === "guest.booted");
    return boots.length >= 4 && boots.every((e) => e.actor === null) ? true : undefined;
  });
});

test("the event log is paged newest first with its total", async () => {
  const acme = as(t.acme);
  const all = await fetch(`${t.c.url}/api/vms/${guest}/events?limit=1000`, {
    headers: { authorization: `Bearer ${t.acme}` },
  });
  const total = Number(all.headers.get("x-total-count"));
  const rows = (await all.json()) as Array<{ id: number }>;
  assert.equal(rows.length, total);
  assert.ok(total >= 5);
  const ids = rows.map((r) => r.id);
  assert.deepEqual(
    ids,
    [...ids].sort((a, b) => b - a),
  );
  const p2 = (await acme("GET", `/api/vms/${guest}/events?limit=2&offset=2`)).body as Array<{ id: number }>;
  assert.deepEqual(
    p2.map((r) => r.id),
    ids.slice(2, 4),
  );
});

test("another tenant's guest is 404 for every AMT route and its log stays empty", async () => {
  const acme = as(t.acme);
  for (const [m, path, body] of [
    ["POST", `/api/vms/${other}/power`, { action: "off" }],
    ["GET", `/api/vms/${other}/inventory`, undefined],
    ["GET", `/api/vms/${other}/events`, undefined],
    ["POST", "/api/vms/nosuchguest/power", { action: "off" }],
  ] as const) {
    const r = await acme(m, path, body);
    assert.equal(r.status, 404, `${m} ${path}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error, /not found/);
  }
  const theirs = await as(t.globex)("GET", `/api/vms/${other}/events`);
  assert.equal(theirs.status, 200);
  assert.deepEqual(theirs.body, [], "nothing was done to globex's guest");
  assert.equal((await as(t.globex)("GET", `/api/vms/${other}`)).body.powerState, "running");
  // No token at all: 401.
  const anon = await fetch(`${t.c.url}/api/vms/${guest}/power`, { method: "POST" });
  assert.equal(anon.status, 401);
});

test("every logged entry is announced to the guest's tenant (vm.event), the guest's own boots too", async () => {
  const seen: Array<{ kind: string; tenant: string | undefined; data: Readonly<Record<string, unknown>> }> =
    [];
  const stop = t.c.controller.events.subscribe((e) => {
    if (e.kind === "vm.event") seen.push(e);
  });
  try {
    const r = await as(t.acme)("POST", `/api/vms/${guest}/power`, { action: "reset" });
    assert.equal(r.status, 200);
    const logged = await until("the reset and its boot announced", async () => {
      const kinds = seen.filter((e) => e.data.id === guest).map((e) => e.data.kind);
      return kinds.includes("power.reset") && kinds.includes("guest.booted") ? seen : undefined;
    });
    for (const e of logged) assert.equal(e.tenant, "acme", "announced to the guest's tenant only");
    const reset = logged.find((e) => e.data.kind === "power.reset")!;
    assert.match(String(reset.data.actor), /^tenant:acme \(tok_[0-9a-f]{16}\)$/);
    const newest = (await as(t.acme)("GET", `/api/vms/${guest}/events?limit=5`)).body as Array<{
      id: number;
    }>;
    assert.ok(
      logged.some((e) => newest.some((n) => n.id === e.data.event)),
      "the announcement names the log entry's id",
    );
  } finally {
    stop();
  }
});

test("bad input is refused naming the field", async () => {
  const acme = as(t.acme);
  const cases: Array<[unknown, RegExp]> = [
    [{ action: "explode" }, /body\/action/],
    [{}, /action/],
    [{ action: "rescue", append: "x; rm -rf /" }, /body\/append/],
    [{ action: "rescue", append: "a".repeat(300) }, /body\/append/],
    [{ action: "shutdown", waitMs: 10_000_000 }, /body\/waitMs/],
    [{ action: "on", extra: 1 }, /extra|additional/],
  ];
  for (const [body, re] of cases) {
    const r = await acme("POST", `/api/vms/${guest}/power`, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body.error, re);
  }
  const q = await acme("GET", `/api/vms/${guest}/events?limit=100000`);
  assert.equal(q.status, 400);
});

test("the CLI: vm power, vm inventory, vm events", async () => {
  const run = (...args: string[]) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
      env: { ...process.env, NESTCLOUD_URL: t.c.url, NESTCLOUD_TOKEN: t.acme },
    });
  const off = await run("vm", "power", guest, "off");
  assert.match(off.stdout, /power off: done, now off/);
  const on = await run("vm", "power", guest, "on");
  assert.match(on.stdout, /now on/);
  const inv = await run("vm", "inventory", guest);
  assert.match(inv.stdout, /commandLine/);
  const ev = await run("vm", "events", guest, "--limit", "2");
  assert.match(ev.stdout, /power\.on/);
  assert.match(ev.stdout, /tenant:acme/);
  await assert.rejects(run("vm", "power", other, "off"), /404/);
});

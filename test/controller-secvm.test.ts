// Security VMs in the controller on the simulated provider (issue 13): each (security VM,
// target) pair's channel follows placement (a move of the target switches it: reported on the
// security VM, as an event on the tenant's stream and in the metrics); alerts are paged and
// filtered through GET /api/alerts, a tenant seeing its own only; delete is tenant-scoped. The
// simulated plane models security VMs by placement only (it runs no monitors), so the alerts
// here are put into the controller's log directly (the testbed's are in
// test/integration/secvm-follow.test.ts).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { alert } from "../src/monitor/index.ts";
import { startTenantController, type TenantController } from "./support/tenant-controller.ts";

let t: TenantController;

async function call(method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(t.c.url + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** What a new client of the event stream gets at once (the retained events replayed). */
async function streamed(token: string): Promise<string> {
  const ac = new AbortController();
  const res = await fetch(`${t.c.url}/api/events`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let text = "";
  const end = Date.now() + 1500;
  while (Date.now() < end) {
    const r = await Promise.race([reader.read(), new Promise<null>((ok) => setTimeout(() => ok(null), 300))]);
    if (r === null) break;
    if (r.done) break;
    text += Buffer.from(r.value).toString();
  }
  ac.abort();
  return text;
}

type Pair = { target: string; channel: string | null; monitor: unknown };
type Vm = { id: string; hostVm: string | null; server: string | null };

before(async () => {
  t = await startTenantController("nestcloud-secvm-");
});
after(() => t.close());

describe("security VMs follow placement", () => {
  test("a move of the target switches the pair's channel: on the security VM, the tenant's stream and the metrics", async () => {
    const { globex, acme } = t;
    const admin = t.c.adminToken;
    const target = ((await call("GET", "/api/vms", globex)).body as Vm[])[0].id;
    const made = await call("POST", "/api/security-vms", globex, { id: "sv-follow", targets: [target] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const first = await until("the pair's channel", async () => {
      const r = await call("GET", "/api/security-vms/sv-follow/channels", globex);
      const p = (r.body as Pair[])[0];
      return p?.channel ? p : undefined;
    });
    assert.equal(first.target, target);
    assert.equal(first.monitor, null, "the simulated plane runs no monitors");
    assert.equal((await call("GET", "/api/security-vms/sv-follow/channels", acme)).status, 404);

    // Where each side is, and a destination for the target that changes the channel.
    const sv = (await call("GET", "/api/security-vms/sv-follow", globex)).body as Vm;
    const tg = (await call("GET", `/api/vms/${target}`, admin)).body as Vm;
    const hosts = (await call("GET", "/api/hostvms", admin)).body as Array<{
      id: string;
      server: string | null;
      state: string;
    }>;
    const expected = (h: { id: string; server: string | null }) =>
      h.id === sv.hostVm ? "local" : h.server && h.server === sv.server ? "direct" : "remote";
    const candidates = hosts.filter(
      (h) => h.state === "running" && h.id !== tg.hostVm && expected(h) !== first.channel,
    );
    assert.ok(candidates.length > 0, "some host VM changes the channel");
    let moved: { status: number; body: { plan: number } } | undefined;
    let to: (typeof candidates)[number] | undefined;
    for (const h of candidates) {
      const r = await call("POST", `/api/vms/${target}/migrate`, admin, { to: h.id });
      if (r.status === 202) {
        moved = r;
        to = h;
        break;
      }
    }
    assert.ok(moved && to, "a move of the target was accepted");
    const want = expected(to);
    const now = await until(`the channel ${first.channel} -> ${want}`, async () => {
      const plan = (await call("GET", `/api/plans/${moved.body.plan}`, admin)).body as { status: string };
      if (plan.status === "failed" || plan.status === "cancelled") throw new Error(`plan ${plan.status}`);
      const p = ((await call("GET", "/api/security-vms/sv-follow/channels", globex)).body as Pair[])[0];
      return p.channel === want ? p : undefined;
    });
    assert.equal(now.channel, want);

    // The switch on globex's stream (retained events are replayed to a new client), not on acme's.
    const mine = await streamed(globex);
    assert.match(mine, /secvm\.channel/);
    assert.match(mine, new RegExp(`"from":"${first.channel}","to":"${want}"`));
    assert.doesNotMatch(await streamed(acme), /secvm\.channel/);
    const metrics = await (
      await fetch(`${t.c.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
    ).text();
    assert.match(
      metrics,
      new RegExp(`nestcloud_secvm_channel_switches_total\\{from="${first.channel}",to="${want}"\\} [1-9]`),
    );
    assert.match(metrics, new RegExp(`nestcloud_secvm_pairs\\{channel="${want}"\\} [1-9]`));
  });
});

describe("GET /api/alerts", () => {
  test("filtered and paged; a tenant sees its own only; an admin filters by tenant", async () => {
    const { globex, acme } = t;
    const admin = t.c.adminToken;
    const a = (target: string, monitor: "memory" | "disk", severity: "info" | "critical", n: number) =>
      alert({
        time: 1_700_000_000_000 + n,
        target,
        monitor,
        channel: "local",
        severity,
        summary: `finding ${n}`,
      });
    t.c.controller.monitoring.ingest("sv-g", "globex", [
      a("g1", "memory", "critical", 1),
      a("g1", "disk", "info", 2),
      a("g2", "memory", "critical", 3),
    ]);
    t.c.controller.monitoring.ingest("sv-a", "acme", [a("a1", "memory", "critical", 4)]);
    const page = async (token: string, qs: string) => {
      const r = await call("GET", `/api/alerts${qs}`, token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body as { alerts: Array<{ summary: string; tenant: string }>; next: number; more: boolean };
    };
    const sums = (p: { alerts: Array<{ summary: string }> }) => p.alerts.map((x) => x.summary);
    assert.deepEqual(sums(await page(acme, "")), ["finding 4"]);
    assert.deepEqual(sums(await page(globex, "?severity=critical")), ["finding 1", "finding 3"]);
    assert.deepEqual(sums(await page(globex, "?monitor=disk")), ["finding 2"]);
    assert.deepEqual(sums(await page(globex, "?target=g2&secvm=sv-g")), ["finding 3"]);
    assert.deepEqual(sums(await page(globex, "?since=1700000000002")), ["finding 2", "finding 3"]);
    const p1 = await page(globex, "?limit=2");
    assert.deepEqual([sums(p1), p1.more], [["finding 1", "finding 2"], true]);
    const p2 = await page(globex, `?limit=2&after=${p1.next}`);
    assert.deepEqual([sums(p2), p2.more], [["finding 3"], false]);
    assert.deepEqual(sums(await page(admin, "?tenant=acme")), ["finding 4"]);
    assert.equal((await page(admin, "")).alerts.length, 4);
    assert.equal((await call("GET", "/api/alerts?tenant=globex", acme)).status, 403);
    const bad = await call("GET", "/api/alerts?severity=fatal", globex);
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /severity must be one of info, warning, critical/);
    assert.equal((await call("GET", "/api/alerts?limit=100000", globex)).status, 400);
    const metrics = await (
      await fetch(`${t.c.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
    ).text();
    assert.match(metrics, /nestcloud_secvm_alerts_total\{monitor="memory",severity="critical"\} 3/);
    // Each alert is an event of its tenant's stream only (the dashboard's panel takes them live).
    const acmeStream = await streamed(acme);
    assert.match(acmeStream, /event: alert\n.*"summary":"finding 4"/);
    assert.doesNotMatch(acmeStream, /"summary":"finding [123]"/, "no other tenant's alert on acme's stream");
    assert.match(await streamed(globex), /"summary":"finding 3"/);
  });
});

describe("monitoring metrics", () => {
  test("each monitor move's gap in nestcloud_secvm_monitoring_gap_seconds (an unknown one left out), and its make time", async () => {
    const admin = t.c.adminToken;
    const sw = { secvm: "sv-m", target: "g1", from: "h1", to: "h2", makeMs: 800, heldMs: null };
    t.c.controller.monitoring.moved({ ...sw, gapMs: 0 }, "globex");
    t.c.controller.monitoring.moved({ ...sw, gapMs: 3200 }, "globex");
    t.c.controller.monitoring.moved({ ...sw, gapMs: null }, "globex");
    const metrics = await (
      await fetch(`${t.c.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
    ).text();
    assert.match(metrics, /nestcloud_secvm_monitoring_gap_seconds_bucket\{le="0"\} 1\n/);
    assert.match(metrics, /nestcloud_secvm_monitoring_gap_seconds_bucket\{le="2"\} 1\n/);
    assert.match(metrics, /nestcloud_secvm_monitoring_gap_seconds_bucket\{le="5"\} 2\n/);
    assert.match(metrics, /nestcloud_secvm_monitoring_gap_seconds_sum 3\.2\n/);
    assert.match(metrics, /nestcloud_secvm_monitoring_gap_seconds_count 2\n/);
    assert.match(metrics, /nestcloud_secvm_monitor_move_seconds_count 3\n/);
  });
});

describe("nestcloud alerts", () => {
  test("the CLI reads the controller's alerts as a tenant: its own, filtered, as a table or JSON", async () => {
    const root = resolve(import.meta.dirname, "..");
    const cli = (...args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((done) =>
        execFile(
          process.execPath,
          [join(root, "bin/nestcloud.js"), "alerts", "--url", t.c.url, ...args],
          { cwd: root, encoding: "utf8", timeout: 120_000 },
          (e, out, err) => done({ code: e ? Number(e.code ?? 1) : 0, out, err }),
        ),
      );
    const table = await cli("--token", t.globex, "--severity", "critical");
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, /finding 1/);
    assert.match(table.out, /finding 3/);
    assert.doesNotMatch(table.out, /finding [24]/, "info and acme's alerts are not listed");
    const json = await cli("--token", t.acme, "-o", "json");
    assert.equal(json.code, 0, json.err);
    assert.deepEqual(
      (JSON.parse(json.out) as { alerts: Array<{ summary: string }> }).alerts.map((a) => a.summary),
      ["finding 4"],
    );
    const bad = await cli("--token", t.acme, "--limit", "0");
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--limit 0: expected an integer from 1 to 1000/);
  });
});

describe("DELETE /api/security-vms/:id", () => {
  test("only its tenant (or an admin) deletes it; a tenant guest is not a security VM", async () => {
    const { globex, acme } = t;
    const target = ((await call("GET", "/api/vms", globex)).body as Vm[])[0].id;
    assert.equal(
      (await call("POST", "/api/security-vms", globex, { id: "sv-gone", targets: [target] })).status,
      201,
    );
    assert.equal((await call("DELETE", "/api/security-vms/sv-gone", acme)).status, 404);
    assert.equal((await call("DELETE", `/api/security-vms/${target}`, globex)).status, 404);
    assert.equal((await call("DELETE", "/api/security-vms/sv-gone", globex)).status, 204);
    assert.equal((await call("GET", "/api/security-vms/sv-gone", globex)).status, 404);
    assert.ok(
      !((await call("GET", "/api/security-vms", globex)).body as Vm[]).some((v) => v.id === "sv-gone"),
    );
  });
});

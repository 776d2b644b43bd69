// The dashboard end to end: a controller in this process (simulated cloud, cloud automation
// "suggest"), the built web/dist, and Debian's Chromium driven by playwright-core. It signs
// in, sees servers -> host VMs -> guests, approves a proposed plan and watches the plan's
// migrations complete. Also: the event stream's ?token= (EventSource cannot send headers).
//
// NESTCLOUD_SCREENSHOTS=<folder> keeps full-page screenshots: a plan waiting, and the end state.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import type { BrowserContext, Page } from "playwright-core";
import { type RunningController, runController } from "../../src/controller/index.ts";
import { ensureDashboardBuilt, launchChromium } from "../support/browser.ts";

const tmp = mkdtempSync(join(tmpdir(), "nestcloud-dashboard-"));
let running: RunningController | undefined;
let context: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${running!.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${running!.adminToken}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

async function screenshot(name: string): Promise<void> {
  const path = join(tmp, name);
  await page.screenshot({ path, fullPage: true });
  const keep = process.env.NESTCLOUD_SCREENSHOTS;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    copyFileSync(path, join(keep, name));
  }
}

before(async () => {
  const webDist = ensureDashboardBuilt();
  running = await runController({
    provider: "sim",
    port: 0,
    dataDir: join(tmp, "data"),
    db: `sqlite:${join(tmp, "nestcloud.db")}`,
    webDir: webDist,
    speed: 120,
    log: pino({ level: "silent" }),
  });
  // Plans wait for approval from now on (the first planning round is a few seconds away).
  await api("PUT", "/api/settings", { automation: "suggest" });
  // A security VM of tenant acme watching two of acme's guests, for the links view.
  await api("POST", "/api/security-vms", { id: "sec-acme", tenant: "acme", targets: ["vm-001", "vm-005"] });

  context = await launchChromium(join(tmp, "chromium-profile"));
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // The wrong-token sign-in below makes Chromium log its 401; that one is expected.
    if (m.type() === "error" && !/status of 401/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await running?.close().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
});

test("event stream: ?token= opens /api/events, and only /api/events", async () => {
  const { url, adminToken } = running!;
  const open = async (path: string) => {
    const ac = new AbortController();
    const res = await fetch(`${url}${path}`, { signal: ac.signal });
    const type = res.headers.get("content-type");
    ac.abort();
    await res.body?.cancel().catch(() => {});
    return { status: res.status, type };
  };
  const ok = await open(`/api/events?token=${encodeURIComponent(adminToken)}`);
  assert.equal(ok.status, 200);
  assert.match(ok.type ?? "", /text\/event-stream/);
  assert.equal((await open("/api/events?token=nc_not-a-real-token")).status, 401);
  assert.equal((await open("/api/events")).status, 401);
  assert.equal((await open(`/api/vms?token=${encodeURIComponent(adminToken)}`)).status, 401);
  assert.equal((await open(`/api/overview?token=${encodeURIComponent(adminToken)}`)).status, 401);
});

test("login box: a wrong token is refused, the admin token signs in", async () => {
  await page.goto(`${running!.url}/`);
  await page.getByTestId("login-form").waitFor();
  await page.getByLabel("Access token").fill("nc_wrong-token-0000000000");
  await page.getByTestId("login-submit").click();
  await page.getByTestId("login-error").waitFor();
  assert.match(await page.getByTestId("login-error").innerText(), /rejected/);
  await page.getByLabel("Access token").fill(running!.adminToken);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("server-card").first().waitFor({ timeout: 15_000 });
});

test("the map shows servers, host VMs and guests, and the security VM's links", async () => {
  const servers = await api<Array<{ id: string }>>("GET", "/api/servers");
  // 48 demo guests and the security VM (strings: this file is typechecked without the DOM).
  await page.waitForFunction(
    `document.querySelectorAll('[data-testid="guest-chip"]').length >= 49`,
    undefined,
    {
      timeout: 15_000,
    },
  );
  assert.equal(await page.getByTestId("server-card").count(), servers.length);
  assert.ok((await page.getByTestId("hostvm-card").count()) >= servers.length);
  const hostVm = page.getByTestId("hostvm-card").first();
  assert.ok((await hostVm.getByRole("meter").count()) === 2, "a CPU and a memory bar per host VM");
  assert.equal(await page.locator('[data-testid="guest-chip"][data-guest-id="vm-001"]').count(), 1);
  assert.equal(await page.locator('[data-testid="guest-chip"][data-role="security"]').count(), 1);
  const link = page.locator('[data-testid="security-link"][data-security-vm="sec-acme"]');
  await link.waitFor();
  assert.equal(await link.getAttribute("data-targets"), "vm-001 vm-005");
  assert.equal(await page.getByTestId("automation-select").inputValue(), "suggest");
});

test("approve a proposed plan and see its migrations complete", async () => {
  const card = page.locator('[data-testid="plan-card"]:not([data-moves="0"])').first();
  await card.waitFor({ timeout: 60_000 });
  const plan = await card.getAttribute("data-plan-id");
  assert.ok(plan);
  await screenshot("dashboard-plan.png");
  await card.getByTestId("approve-button").click();
  await page.locator(`[data-testid="plan-card"][data-plan-id="${plan}"]`).waitFor({ state: "detached" });

  const done = page.locator(`[data-testid="migration-row"][data-plan="${plan}"][data-status="completed"]`);
  await done.first().waitFor({ timeout: 60_000 });
  const mechanism = await done.first().getAttribute("data-mechanism");
  assert.ok(["instant", "precopy", "postcopy"].includes(mechanism ?? ""), `mechanism ${mechanism}`);
  assert.equal(await done.first().getByTestId("migration-status").innerText(), "completed");
  const apiDone = await api<Array<{ plan: number; status: string }>>(
    "GET",
    "/api/migrations?status=completed",
  );
  assert.ok(
    apiDone.some((m) => m.plan === Number(plan)),
    "the API agrees",
  );

  // The series behind the charts has grown, and the event stream is up.
  await page.waitForFunction(
    `Number(document.querySelector('[data-testid="cost-chart"]')?.getAttribute("data-points")) >= 3`,
    undefined,
    { timeout: 15_000 },
  );
  assert.equal(await page.getByTestId("connection-status").getAttribute("data-connection"), "live");

  await screenshot("dashboard-done.png");
});

test("rejuvenate a host VM from its card: a plan of one rejuvenate action runs, every guest of it paused once", async () => {
  const card = page.locator('[data-testid="hostvm-card"][data-state="running"]').first();
  const id = await card.getAttribute("data-hostvm-id");
  assert.ok(id);
  const guests = (await api<Array<{ id: string; guests: string[] }>>("GET", "/api/hostvms")).find(
    (h) => h.id === id,
  )!.guests;
  page.once("dialog", (d) => void d.accept());
  await card.getByTestId("rejuvenate").click();
  type Action = {
    kind: string;
    hostVm?: string;
    mode?: string;
    status: string;
    result?: { guests: { guest: string; pauseMs: number }[] };
  };
  let action: Action | undefined;
  for (let i = 0; i < 120 && action?.status !== "done"; i++) {
    const plans = await api<Array<{ actions: Action[] }>>("GET", "/api/plans");
    action = plans.flatMap((p) => p.actions).find((a) => a.kind === "rejuvenate" && a.hostVm === id);
    assert.notEqual(action?.status, "failed", JSON.stringify(action));
    if (action?.status !== "done") await new Promise((r) => setTimeout(r, 500));
  }
  assert.equal(action?.status, "done", JSON.stringify(action));
  assert.equal(action?.mode, "in-place");
  assert.deepEqual(action?.result?.guests.map((g) => g.guest).sort(), [...guests].sort());
  for (const g of action?.result?.guests ?? []) assert.equal(g.pauseMs, 55);
});

test("a tenant token gets its own guests only, without plans, settings or rejuvenate buttons", async () => {
  const { token } = await api<{ token: string }>("POST", "/api/tokens", { role: "tenant", tenant: "acme" });
  const acme = await api<Array<{ id: string; tenant: string }>>("GET", "/api/vms?tenant=acme&limit=1000");
  const other = await context!.newPage();
  try {
    await other.goto(`${running!.url}/#token=${encodeURIComponent(token)}`);
    await other.getByTestId("guest-chip").first().waitFor({ timeout: 15_000 });
    await other.waitForFunction(
      `document.querySelectorAll('[data-testid="guest-chip"]').length === ${acme.length + 1}`,
      undefined,
      { timeout: 15_000 },
    );
    assert.equal(await other.getByTestId("plans-section").count(), 0);
    assert.equal(await other.getByTestId("automation-select").count(), 0);
    assert.equal(await other.getByTestId("rejuvenate").count(), 0);
    assert.equal(await other.locator('[data-testid="guest-chip"][data-guest-id="vm-002"]').count(), 0);
  } finally {
    await other.close();
  }
});

test("a dashboard opened late shows the cloud's past on first load", async () => {
  const past = await api<{ samples: Array<{ at: number; hostVms: number }> }>(
    "GET",
    "/api/history?points=720",
  );
  assert.ok(past.samples.length >= 3, `the controller kept ${past.samples.length} samples`);
  const counts = new Set(past.samples.map((s) => s.hostVms));
  const other = await context!.newPage();
  try {
    await other.goto(`${running!.url}/#token=${encodeURIComponent(running!.adminToken)}`);
    // Live polls add one point every 2 s: this many at once can only come from the history.
    await other.waitForFunction(
      `Number(document.querySelector('[data-testid="hostvm-chart"]')?.dataset.points ?? 0) >= ${Math.min(past.samples.length, 720)}`,
      undefined,
      { timeout: 3_000 },
    );
    const chart = other.getByTestId("hostvm-chart");
    assert.equal(Number(await chart.getAttribute("data-first")), past.samples[0].hostVms);
    if (counts.size > 1)
      assert.notEqual(await chart.getAttribute("data-first"), await chart.getAttribute("data-last"));
  } finally {
    await other.close();
  }
});

test("a #token= link signs in directly and leaves no token in the address bar", async () => {
  const other = await context!.newPage();
  try {
    await other.goto(`${running!.url}/#token=${encodeURIComponent(running!.adminToken)}`);
    await other.getByTestId("server-card").first().waitFor({ timeout: 15_000 });
    assert.ok(!other.url().includes("token="), other.url());
  } finally {
    await other.close();
  }
  assert.deepEqual(pageErrors, [], "no script errors on the page");
});

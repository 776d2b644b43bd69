// The dashboard's virtual AMT (a guest panel's Power tab) in Chromium driven by playwright-core,
// on a controller in this process on the simulated cloud (its power states modelled: guests
// honour ACPI and boot at once, so the page's wiring is what is under test; the real guest's
// AMT is test/integration/amt.test.ts). A tenant signs in, opens its guest, powers it off
// (confirmed; the buttons follow the state), sees the state and the event with who did it,
// powers it on and sees the boot; an action taken elsewhere arrives over the event stream;
// shutdown's force fallback, rescue and back; the log paged newest first. The tenant's page
// shows no other tenant's guests or events.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import type { BrowserContext, Page } from "playwright-core";
import { type RunningController, runController } from "../../src/controller/index.ts";
import { ensureDashboardBuilt, launchChromium } from "../support/browser.ts";
import { api, until } from "../support/controller-process.ts";

const tmp = mkdtempSync(join(tmpdir(), "nestcloud-dashboard-amt-"));
let running: RunningController | undefined;
let context: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];
let acme = "";
let globex = "";

const as = (token: string) => (method: string, path: string, body?: unknown) =>
  api({ url: running!.url, token }, method, path, body);

before(async () => {
  const webDir = ensureDashboardBuilt();
  running = await runController({
    provider: "sim",
    port: 0,
    dataDir: join(tmp, "data"),
    db: `sqlite:${join(tmp, "nestcloud.db")}`,
    webDir,
    speed: 60,
    log: pino({ level: "silent" }),
  });
  const admin = as(running.adminToken);
  // Nothing moves guests during the test (a migrating guest refuses power actions).
  assert.equal((await admin("PUT", "/api/settings", { automation: "manual" })).status, 200);
  acme = (await admin("POST", "/api/tokens", { role: "tenant", tenant: "acme" })).body.token;
  globex = (await admin("POST", "/api/tokens", { role: "tenant", tenant: "globex" })).body.token;
  context = await launchChromium(join(tmp, "chromium-profile"));
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  // A tenant's dashboard learns its role from GET /api/settings answering 403: that one is
  // expected (Chromium logs it); any other failed request is an error.
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !(r.status() === 403 && path === "/api/settings"))
      pageErrors.push(`response: ${r.status()} ${path}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 403/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await running?.close().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
});

const state = () => page.getByTestId("power-state");
const waitPower = (power: string, boot = "normal") =>
  page
    .locator(`[data-testid="power-state"][data-power="${power}"][data-boot="${boot}"]`)
    .waitFor({ timeout: 15_000 });
/** The enabled power buttons, in the page's order. */
const enabledButtons = () =>
  page.evaluate(
    `[...document.querySelectorAll('[data-testid="guest-power"] fieldset button')].filter((b) => !b.disabled).map((b) => b.dataset.testid.replace("power-", ""))`,
  ) as Promise<string[]>;
/** The event rows shown: id, kind, actor attribute, and the Who and Detail cells' text. */
const rows = () =>
  page.evaluate(
    `[...document.querySelectorAll('[data-testid="guest-event"]')].map((r) => ({ id: Number(r.dataset.eventId), kind: r.dataset.kind, actor: r.dataset.actor, who: r.cells[2].textContent, detail: r.cells[3].textContent }))`,
  ) as Promise<Array<{ id: number; kind: string; actor: string; who: string; detail: string }>>;
const rowShown = (what: string, pred: (r: Awaited<ReturnType<typeof rows>>[number]) => boolean) =>
  until(what, async () => (await rows()).find(pred), 15_000, 100);
/** Clicks an action's button, checks the confirmation asks first, and confirms. */
async function act(action: string, opts: { force?: boolean } = {}): Promise<void> {
  await page.getByTestId(`power-${action}`).click();
  await page.getByTestId("power-confirm").waitFor({ timeout: 5000 });
  if (opts.force) await page.getByTestId("power-force").check();
  await page.getByTestId("power-confirm-yes").click();
  await page.getByTestId("power-confirm").waitFor({ state: "detached", timeout: 5000 });
}

test("a tenant powers its guest off and on from the guest's page: state, buttons and the events with who did it", async () => {
  const acmeGuests = (await as(acme)("GET", "/api/vms?limit=1000")).body as Array<{
    id: string;
    tenant: string;
  }>;
  const all = (await as(running!.adminToken)("GET", "/api/vms?limit=1000")).body as Array<{
    id: string;
    tenant: string;
  }>;
  const mine = acmeGuests[0].id;
  const theirs = all.find((g) => g.tenant === "globex")!.id;
  assert.ok(acmeGuests.every((g) => g.tenant === "acme"));
  // globex acts on its own guest first: none of it may show on acme's page.
  assert.equal((await as(globex)("POST", `/api/vms/${theirs}/power`, { action: "reset" })).status, 200);

  await page.goto(`${running!.url}/`);
  await page.getByLabel("Access token").fill(acme);
  await page.getByTestId("login-submit").click();
  await page.locator(`[data-testid="guest-chip"][data-guest-id="${mine}"]`).waitFor({ timeout: 15_000 });
  const chips = (await page.evaluate(
    `[...document.querySelectorAll('[data-testid="guest-chip"]')].map((c) => c.dataset.guestId)`,
  )) as string[];
  assert.deepEqual(
    [...chips].sort(),
    acmeGuests.map((g) => g.id).sort(),
    "acme's page shows acme's guests and only those",
  );
  assert.equal(chips.includes(theirs), false);

  await page.locator(`[data-testid="guest-chip"][data-guest-id="${mine}"]`).click();
  await page.getByTestId("guest-tab-power").click();
  await waitPower("on");
  assert.deepEqual(await enabledButtons(), ["off", "shutdown", "reset", "rescue"]);
  assert.equal(await page.getByTestId("inventory-cpus").innerText(), "1");
  assert.match(await page.getByTestId("inventory-nics").innerText(), /net0 ([0-9a-f]{2}:){5}[0-9a-f]{2}/);

  // Power off asks first: cancelled, nothing happens.
  await page.getByTestId("power-off").click();
  assert.match(await page.getByTestId("power-confirm").innerText(), new RegExp(`Power ${mine} off hard\\?`));
  assert.deepEqual(await enabledButtons(), [], "no other action while one waits for its confirmation");
  await page.getByTestId("power-confirm-no").click();
  assert.equal(await state().getAttribute("data-power"), "on");
  assert.equal((await as(acme)("GET", `/api/vms/${mine}/events`)).body.length, 0, "nothing was sent");

  // Confirmed: off; the buttons follow; the event names who did it.
  await act("off");
  await waitPower("off");
  assert.deepEqual(await enabledButtons(), ["on", "rescue"]);
  const off = await rowShown("the power.off event", (r) => r.kind === "power.off");
  assert.match(off.actor, /^tenant:acme \(tok_[0-9a-f]{16}\)$/);
  assert.equal(off.who, off.actor, "who did it is shown");
  assert.match(off.detail, /^done: powered off hard/);
  // The guests list follows at the next audit: the Details tab shows it stopped.
  await page.getByTestId("guest-tab-details").click();
  await until(
    "details show stopped",
    async () => ((await page.getByTestId("guest-panel").innerText()).includes("stopped") ? true : undefined),
    30_000,
    200,
  );
  await page.getByTestId("guest-tab-power").click();

  // Power on: on, and the guest's boot arrives (the guest's own event: no actor).
  await act("on");
  await waitPower("on");
  const on = await rowShown("the power.on event", (r) => r.kind === "power.on");
  assert.match(on.actor, /^tenant:acme /);
  const boot = await rowShown("the boot event", (r) => r.kind === "guest.booted" && r.id > on.id);
  assert.equal(boot.actor, "");
  assert.equal(boot.who, "the guest");
  const shown = await rows();
  assert.deepEqual(
    shown.map((r) => r.id),
    [...shown.map((r) => r.id)].sort((a, b) => b - a),
    "newest first",
  );
  assert.deepEqual(pageErrors, []);
});

test("an action taken elsewhere arrives over the event stream (no polling while it is live)", async () => {
  await page
    .locator('[data-testid="connection-status"][data-connection="live"]')
    .waitFor({ timeout: 15_000 });
  const mine = (await page.getByTestId("guest-panel").locator("h2").innerText()).trim();
  const before = Math.max(...(await rows()).map((r) => r.id));
  // While the stream is live the Power tab does not poll: no request for this guest in a
  // quiet window longer than its fallback poll period (3 s).
  const asked: string[] = [];
  const onRequest = (r: { url(): string }) => {
    if (new URL(r.url()).pathname.startsWith(`/api/vms/${mine}/`)) asked.push(r.url());
  };
  page.on("request", onRequest);
  await new Promise((r) => setTimeout(r, 4000));
  page.off("request", onRequest);
  assert.deepEqual(asked, [], "no polling while the stream is live");
  // The admin, through the API: the tenant's page shows it without any click.
  assert.equal(
    (await as(running!.adminToken)("POST", `/api/vms/${mine}/power`, { action: "off" })).status,
    200,
  );
  await waitPower("off");
  const r = await rowShown("the admin's power.off", (x) => x.kind === "power.off" && x.id > before);
  assert.match(r.actor, /^admin \(tok_[0-9a-f]{16}\)$/);
  assert.equal((await as(acme)("POST", `/api/vms/${mine}/power`, { action: "on" })).status, 200);
  await waitPower("on");
  await rowShown("its boot", (x) => x.kind === "guest.booted" && x.id > r.id);
  assert.deepEqual(pageErrors, []);
});

test("shutdown with its force fallback, rescue and back, reset; the log paged newest first", async () => {
  const mine = (await page.getByTestId("guest-panel").locator("h2").innerText()).trim();
  await act("shutdown", { force: true });
  await waitPower("off");
  const sd = await rowShown("the shutdown", (r) => r.kind === "power.shutdown");
  assert.match(sd.detail, /\(force\)$/, "the force fallback was asked");
  assert.match(await page.getByTestId("power-result").innerText(), /powered off/);

  await act("rescue");
  await waitPower("on", "rescue");
  assert.match(await page.getByTestId("inventory-cmdline").innerText(), /nestcloud\.rescue=1/);
  assert.deepEqual(await enabledButtons(), ["off", "shutdown", "reset", "normal"]);
  await act("normal");
  await waitPower("on", "normal");
  assert.doesNotMatch(await page.getByTestId("inventory-cmdline").innerText(), /rescue/);

  // More than a page of events: resets (each one logged with the boot it causes).
  for (let i = 0; i < 6; i++) await act("reset");
  // Settled: the last reset's boot is logged (nothing else happens to the guest after it).
  const total = await until(
    "the last reset's boot logged",
    async () => {
      const log = (await as(acme)("GET", `/api/vms/${mine}/events?limit=1000`)).body as Array<{
        id: number;
        kind: string;
      }>;
      const lastReset = log.find((e) => e.kind === "power.reset");
      return lastReset && log[0].kind === "guest.booted" && log[0].id > lastReset.id ? log.length : undefined;
    },
    15_000,
    200,
  );
  assert.ok(total > 20, `more than a page (${total})`);
  await until(
    "the range shown",
    async () =>
      (await page.getByTestId("events-range").innerText()) === `1–20 of ${total}` ? true : undefined,
    15_000,
    100,
  );
  const first = await rows();
  assert.equal(first.length, 20);
  const api20 = (await as(acme)("GET", `/api/vms/${mine}/events?limit=20`)).body as Array<{ id: number }>;
  assert.deepEqual(
    first.map((r) => r.id),
    api20.map((e) => e.id),
    "the first page is the newest twenty",
  );
  await page.getByTestId("events-older").click();
  await until(
    "the older page",
    async () => ((await page.getByTestId("events-range").innerText()).startsWith("21–") ? true : undefined),
    15_000,
    100,
  );
  const older = await until(
    "older rows",
    async () => {
      const r = await rows();
      return r.length > 0 && r[0].id < first.at(-1)!.id ? r : undefined;
    },
    15_000,
    100,
  );
  assert.equal(older.length, total - 20);
  assert.ok(older.every((r) => r.id < first.at(-1)!.id));
  await page.getByTestId("events-newer").click();
  await until(
    "back to the newest",
    async () => ((await rows())[0]?.id === first[0].id ? true : undefined),
    15_000,
    100,
  );

  // Nothing of globex's on acme's page: no actor of theirs in any row, on either page.
  for (const r of [...first, ...older]) assert.doesNotMatch(`${r.actor} ${r.detail}`, /globex/);
  assert.deepEqual(pageErrors, []);
});

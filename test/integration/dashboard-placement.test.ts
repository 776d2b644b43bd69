// The dashboard's placement badges in Chromium (playwright-core): `nestcloud up --provider
// openstack` against the fake of Keystone v3 and Nova v2.1 (test/support/fake-openstack.ts;
// no OpenStack runs here), whose servers carry hostId = sha224(project_id + host). Placement
// is discovered from the hostIds, so each host VM card carries a badge naming the source and
// its confidence ("provider-hint 90%") and the server in its title, one still being built
// (no hostId) shows "server unknown", and an operator's live migration of a server moves its
// card and badge to the server it is on now. The page agrees with GET /api/placement.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import type { BrowserContext, Page } from "playwright-core";
import { type RunningController, runController } from "../../src/controller/index.ts";
import { OpenStackProvider } from "../../src/providers/index.ts";
import { ensureDashboardBuilt, launchChromium } from "../support/browser.ts";
import { FakeOpenStack } from "../support/fake-openstack.ts";

const tmp = mkdtempSync(join(tmpdir(), "nc-dashboard-placement-"));
const cloud = new FakeOpenStack({
  hosts: ["cmp1", "cmp2"],
  projects: [{ id: "p-alpha", name: "alpha", instances: 8 }],
  users: [{ name: "nest", password: "pw", projects: ["p-alpha"] }],
});
let running: RunningController | undefined;
let context: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

interface PlacementView {
  mode: string;
  hostVms: { hostVm: string; server: string | null; source: string | null; confidence: number }[];
}

async function placement(): Promise<PlacementView> {
  const res = await fetch(`${running!.url}/api/placement`, {
    headers: { authorization: `Bearer ${running!.adminToken}` },
  });
  assert.equal(res.status, 200);
  return (await res.json()) as PlacementView;
}

before(async () => {
  const webDir = ensureDashboardBuilt();
  await cloud.start();
  const provider = await OpenStackProvider.open({
    authUrl: cloud.authUrl,
    username: "nest",
    password: "pw",
    userDomain: "Default",
    projectName: "alpha",
    projectDomain: "Default",
    imageRef: "img-hostvm",
    discoveryIntervalMs: 500,
  });
  // Four host VMs rented through Nova: three placed (cmp1, cmp2, cmp1), one still building.
  for (let i = 0; i < 3; i++) await provider.acquireHostVm("m1.small", undefined);
  cloud.placePending();
  await provider.acquireHostVm("m1.small", undefined);
  running = await runController({
    provider: "openstack",
    providerInstance: provider,
    port: 0,
    host: "127.0.0.1",
    dataDir: join(tmp, "data"),
    db: `sqlite:${join(tmp, "nestcloud.db")}`,
    webDir,
    // Audits every 2 s (a tenth of a round) carry discovery's findings into the store.
    intervalSeconds: 20,
    log: pino({ level: "silent" }),
  });
  // Plans wait for approval: the planner would otherwise release these empty host VMs.
  const res = await fetch(`${running.url}/api/settings`, {
    method: "PUT",
    headers: { authorization: `Bearer ${running.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ automation: "suggest" }),
  });
  assert.equal(res.status, 200, await res.text());
  context = await launchChromium(join(tmp, "chromium-profile"));
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await running?.close().catch(() => {});
  await cloud.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** The badge text of each host VM card, by host-VM id. */
async function badges(): Promise<Map<string, { text: string; title: string | null; server: string | null }>> {
  const out = new Map<string, { text: string; title: string | null; server: string | null }>();
  const cards = page.getByTestId("hostvm-card");
  for (let i = 0; i < (await cards.count()); i++) {
    const card = cards.nth(i);
    const id = (await card.getAttribute("data-hostvm-id"))!;
    const server = await card
      .locator("xpath=ancestor::*[@data-testid='server-card']")
      .getAttribute("data-server-id");
    const badge = card.locator('[data-testid="placement-badge"], [data-testid="placement-unknown"]');
    if ((await badge.count()) === 0) continue;
    out.set(id, { text: await badge.innerText(), title: await badge.getAttribute("title"), server });
  }
  return out;
}

test("each host VM card shows how its server was found; the unplaced one says so; the page agrees with the API", async () => {
  await page.goto(`${running!.url}/#token=${encodeURIComponent(running!.adminToken)}`);
  await page.getByTestId("hostvm-card").nth(3).waitFor({ timeout: 30_000 });
  await page.waitForFunction(
    `document.querySelectorAll('[data-testid="placement-badge"]').length === 3 && document.querySelectorAll('[data-testid="placement-unknown"]').length === 1`,
    undefined,
    { timeout: 30_000 },
  );
  // The cards' columns follow the cloud's state and the badges the placement report: two
  // streams the page receives apart. Read both until the page shows what the API says (or the
  // wait ends), then check that snapshot.
  let api = await placement();
  let shown = await badges();
  for (const end = Date.now() + 30_000; Date.now() < end; ) {
    const apart = api.hostVms.some((e) => e.server !== null && shown.get(e.hostVm)?.server !== e.server);
    if (!apart) break;
    await page.waitForTimeout(250);
    api = await placement();
    shown = await badges();
  }
  assert.equal(api.mode, "discovered");
  assert.equal(shown.size, 4);
  for (const e of api.hostVms) {
    const b = shown.get(e.hostVm);
    assert.ok(b, `a badge on ${e.hostVm}`);
    if (e.server === null) {
      assert.equal(b.text.trim(), "server unknown");
      continue;
    }
    assert.equal(e.source, "provider-hint");
    assert.match(b.text, /^provider-hint 90%( · \d+ s ago)?$/);
    assert.match(
      b.title ?? "",
      new RegExp(`^server ${e.server} discovered by provider-hint \\(confidence 90%\\)$`),
    );
    assert.equal(b.server, e.server, `${e.hostVm}'s card sits in server ${e.server}'s column`);
  }
  // Two of the placed host VMs share a hostId (round robin over two hosts): one column holds both.
  const placed = api.hostVms.filter((e) => e.server !== null);
  assert.equal(new Set(placed.map((e) => e.server)).size, 2);
  assert.deepEqual(pageErrors, []);
});

test("an operator's live migration of a server moves its card and badge to the column of its new neighbour", async () => {
  // Server ids are discovery's labels (only who is with whom is known): so the check is that
  // the moved host VM now shares a column with the one on its new host, not with its old one.
  const ours = cloud.servers.filter((s) => s.project === "p-alpha");
  const onCmp1 = ours.filter((s) => s.host === "cmp1").map((s) => s.id);
  const onCmp2 = ours.filter((s) => s.host === "cmp2").map((s) => s.id);
  assert.equal(onCmp1.length, 2);
  assert.equal(onCmp2.length, 1);
  const [moved, left] = onCmp1 as [string, string];
  const neighbour = onCmp2[0]!;
  cloud.migrate(moved, "cmp2");
  const column = (id: string) =>
    `document.querySelector('[data-hostvm-id="${id}"]')?.closest('[data-testid="server-card"]')?.getAttribute('data-server-id')`;
  await page.waitForFunction(
    `${column(moved)} === ${column(neighbour)} && ${column(moved)} !== ${column(left)}`,
    undefined,
    { timeout: 30_000 },
  );
  const api = new Map((await placement()).hostVms.map((e) => [e.hostVm, e]));
  const shown = await badges();
  assert.equal(api.get(moved)!.server, api.get(neighbour)!.server);
  assert.notEqual(api.get(moved)!.server, api.get(left)!.server);
  for (const id of [moved, left, neighbour]) {
    assert.equal(shown.get(id)?.server, api.get(id)!.server, `${id}'s card is where the API puts it`);
    assert.match(shown.get(id)!.text, /^provider-hint 90%/);
  }
  assert.deepEqual(pageErrors, []);
});

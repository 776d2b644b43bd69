// The dashboard's console tab on a real guest (QEMU under TCG), in Chromium driven by
// playwright-core: `nestcloud up --provider testbed` with two host VMs, a guest made through
// the API; the browser signs in, opens the guest's console (xterm.js; the browser is an end
// of the end-to-end channel, on WebCrypto), types a command and reads what the guest's shell
// computed; the guest prints a numbered sequence while it moves by instant handover; the
// browser types again at the new host VM. The screen shows every number once and in order,
// the session lost no byte, and the controller's log holds none of the markers.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { BrowserContext, Page } from "playwright-core";
import { ensureDashboardBuilt, launchChromium } from "../support/browser.ts";
import { api, stopGently, until } from "../support/controller-process.ts";
import { bringUpConsoleBed, type ConsoleBedParts } from "./console-bed.ts";
import { tearDown } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-dashboard-console-it-"));
const held: ConsoleBedParts = {};
let context: BrowserContext | undefined;

after(async () => {
  await context?.close().catch(() => {});
  if (held.ctl) await stopGently(held.ctl);
  await tearDown(held.bed);
  rmSync(dir, { recursive: true, force: true });
});

/** The terminal's screen as text (xterm.js's DOM renderer: one element per row). */
const screen = (page: Page) =>
  page.evaluate(
    `[...document.querySelectorAll('[data-testid="console-terminal"] .xterm-rows > div')].map((r) => r.textContent.replace(/\\u00a0/g, " ").trimEnd()).join("\\n")`,
  ) as Promise<string>;

async function waitScreen(page: Page, what: string, re: RegExp, timeoutMs = 30_000): Promise<string> {
  return until(
    what,
    async () => {
      const s = await screen(page);
      return re.test(s) ? s : undefined;
    },
    timeoutMs,
    100,
  );
}

test("dashboard console: sign in, open a guest's console, type and read; the guest moves, typing goes on, output continuous", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  ensureDashboardBuilt();
  const { ctl: c, tenant } = await bringUpConsoleBed(dir, held);
  phase("g1 runs at a-h1");

  context = await launchChromium(join(dir, "chromium-profile"));
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));

  // Sign in as the tenant; open g1's panel and its Console tab.
  await page.goto(`${c.url}/`);
  await page.getByLabel("Access token").fill(tenant);
  await page.getByTestId("login-submit").click();
  const chip = page.locator('[data-testid="guest-chip"][data-guest-id="g1"]');
  await chip.waitFor({ timeout: 30_000 });
  await chip.click();
  await page.getByTestId("guest-tab-console").click();
  const status = page.getByTestId("console-status");
  await page.locator('[data-testid="console-status"][data-state="attached"][data-host-vm="a-h1"]').waitFor({
    timeout: 30_000,
  });
  phase("the browser's console attached at a-h1");

  // Type a command; the guest's shell computes the answer (the typed text never shows it).
  await page.getByTestId("console-terminal").click();
  await page.keyboard.type("echo WEBTYPED-$((6*7))-OK");
  await page.keyboard.press("Enter");
  await waitScreen(page, "the shell's answer", /WEBTYPED-42-OK/);
  phase("typed and read");

  // A clean screen, then a numbered sequence printed while the guest moves.
  const N = 14;
  await page.keyboard.type(
    `printf '\\033[H\\033[2J'; i=0; while [ $i -lt ${N} ]; do echo "WSEQ-$i-GUESTMARK"; i=$((i+1)); sleep 0.5; done`,
  );
  await page.keyboard.press("Enter");
  await waitScreen(page, "the sequence running", /WSEQ-2-GUESTMARK/);
  const moved = await api(c, "POST", "/api/vms/g1/migrate", { to: "a-h2", mechanism: "instant" });
  assert.equal(moved.status, 202, JSON.stringify(moved.body));
  await until(
    "the migration done",
    async () => {
      const list = (await api(c, "GET", "/api/migrations")).body as Array<{ guest: string; status: string }>;
      const m = list.find((x) => x.guest === "g1");
      if (m?.status === "failed") throw new Error(`migration failed: ${JSON.stringify(m)}`);
      return m?.status === "completed" ? m : undefined;
    },
    120_000,
    200,
  );
  await page.locator('[data-testid="console-status"][data-state="attached"][data-host-vm="a-h2"]').waitFor({
    timeout: 30_000,
  });
  phase("moved to a-h2; the browser followed");
  await waitScreen(page, "the sequence's end", new RegExp(`WSEQ-${N - 1}-GUESTMARK`), 60_000);

  // Typing goes on at the new host VM.
  await page.keyboard.type("echo WEBAFTER-$((6*8))-MOVE");
  await page.keyboard.press("Enter");
  const end = await waitScreen(page, "the answer at a-h2", /WEBAFTER-48-MOVE/);
  phase("typed and read at a-h2");

  const seq = [...end.matchAll(/WSEQ-(\d+)-GUESTMARK/g)].map((m) => Number(m[1]));
  assert.deepEqual(
    seq,
    Array.from({ length: N }, (_, i) => i),
    `every number once, in order, on the screen:\n${end}`,
  );
  assert.equal(end.split("\nWEBAFTER-48-MOVE").length - 1, 1, "the command after the move ran once");
  assert.equal(await status.getAttribute("data-lost-bytes"), "0", "no output byte lost");
  assert.deepEqual(pageErrors, []);

  // The controller relayed the browser's session and logged none of it.
  const log = c.output();
  assert.match(log, /console: reattached/);
  for (const marker of ["WEBTYPED", "GUESTMARK", "WEBAFTER"])
    assert.equal(log.includes(marker), false, `${marker} is not in the controller's log`);
});

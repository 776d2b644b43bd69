// The dashboard watching a security VM's monitoring, for secvm-follow.test.ts (real guests):
// one Chromium page opened once with a tenant's token, then asked what its alerts panel lists
// and which channel the map draws for a pair. The page records every change of a drawn channel
// as it happens (a MutationObserver), so a switch is seen live, never by reloading.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { ensureDashboardBuilt, launchChromium } from "../support/browser.ts";

export interface ShownAlert {
  id: number;
  secvm: string;
  tenant: string;
  severity: string;
  monitor: string;
  target: string;
  channel: string;
  kind: string;
  summary: string;
}

export interface DrawnSwitch {
  secvm: string;
  target: string;
  channel: string;
  switchedFrom: string | null;
}

/** Strings, not functions: this file is typechecked without the DOM. */
const RECORD_CHANNELS = `(() => {
  const seen = (window.__channels = []);
  const note = (el) => seen.push({
    secvm: el.getAttribute("data-secvm"),
    target: el.getAttribute("data-target"),
    channel: el.getAttribute("data-channel"),
    switchedFrom: el.getAttribute("data-switched-from"),
  });
  document.querySelectorAll('[data-testid="channel-link"]').forEach(note);
  new MutationObserver((ms) => {
    for (const m of ms) {
      if (m.type === "attributes" && m.target.getAttribute("data-testid") === "channel-link") note(m.target);
      for (const n of m.addedNodes ?? [])
        if (n.nodeType === 1) {
          if (n.getAttribute("data-testid") === "channel-link") note(n);
          n.querySelectorAll?.('[data-testid="channel-link"]').forEach(note);
        }
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-channel"] });
})()`;

const SHOWN_ALERTS = `[...document.querySelectorAll('[data-testid="alert-row"]')].map((el) => ({
  id: Number(el.getAttribute("data-alert-id")),
  secvm: el.getAttribute("data-secvm"),
  tenant: el.getAttribute("data-tenant"),
  severity: el.getAttribute("data-severity"),
  monitor: el.getAttribute("data-monitor"),
  target: el.getAttribute("data-target"),
  channel: el.getAttribute("data-channel"),
  kind: el.getAttribute("data-kind"),
  summary: el.querySelector('[data-testid="alert-summary"]')?.textContent ?? "",
}))`;

export class DashboardWatch {
  readonly errors: string[] = [];

  private constructor(
    private readonly context: BrowserContext,
    readonly page: Page,
    private readonly dir: string,
  ) {}

  /** Opens the dashboard signed in with `token`, once its event stream is live. */
  static async open(url: string, token: string): Promise<DashboardWatch> {
    const dir = mkdtempSync(join(tmpdir(), "nc-secvm-dash-"));
    const context = await launchChromium(join(dir, "profile"));
    const page = context.pages()[0] ?? (await context.newPage());
    const w = new DashboardWatch(context, page, dir);
    page.on("pageerror", (e) => w.errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      // A tenant's token is told apart by its 403 on /api/settings (useCloud's role probe).
      if (m.type() === "error" && !/status of 403/.test(m.text())) w.errors.push(`console: ${m.text()}`);
    });
    await page.goto(`${url}/#token=${encodeURIComponent(token)}`);
    await page
      .locator('[data-testid="connection-status"][data-connection="live"]')
      .waitFor({ timeout: 60_000 });
    await page.getByTestId("alerts-panel").waitFor({ timeout: 30_000 });
    await page.evaluate(RECORD_CHANNELS);
    return w;
  }

  /** The alerts the panel lists now, top to bottom. */
  alerts(): Promise<ShownAlert[]> {
    return this.page.evaluate(SHOWN_ALERTS) as Promise<ShownAlert[]>;
  }

  /** Waits until the panel lists an alert that `ok` accepts. */
  async alertShown(what: string, ok: (a: ShownAlert) => boolean, timeoutMs = 60_000): Promise<ShownAlert> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = (await this.alerts()).find(ok);
      if (hit) return hit;
      assert.ok(
        Date.now() < end,
        `the alerts panel never showed ${what}: ${JSON.stringify(await this.alerts())}`,
      );
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Filters the panel and waits until what it lists passes `ok` (once it has loaded). */
  async filterBy(
    f: { monitor?: string; severity?: string },
    ok: (shown: ShownAlert[]) => boolean,
  ): Promise<ShownAlert[]> {
    await this.page.getByTestId("alert-filter-monitor").selectOption(f.monitor ?? "");
    await this.page.getByTestId("alert-filter-severity").selectOption(f.severity ?? "");
    const end = Date.now() + 30_000;
    for (;;) {
      const loaded = (await this.page.getByTestId("alerts-panel").getAttribute("data-loaded")) === "true";
      const shown = await this.alerts();
      if (loaded && ok(shown)) return shown;
      assert.ok(Date.now() < end, `filtered ${JSON.stringify(f)}: ${JSON.stringify(shown)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Opens an alert's evidence and gives its text. */
  async evidence(id: number): Promise<string> {
    const row = this.page.locator(`[data-testid="alert-row"][data-alert-id="${id}"]`);
    await row.locator("summary").click();
    return row.locator("pre").innerText();
  }

  /** The pair's line on the map: its channel and whether both chips were found to draw it. */
  async drawn(
    secvm: string,
    target: string,
  ): Promise<{ channel: string | null; drawn: boolean; label: string }> {
    const g = this.page.locator(
      `[data-testid="channel-link"][data-secvm="${secvm}"][data-target="${target}"]`,
    );
    if ((await g.count()) === 0) return { channel: null, drawn: false, label: "" };
    const label = g.getByTestId("channel-label");
    return {
      channel: await g.getAttribute("data-channel"),
      drawn: (await g.getAttribute("data-drawn")) === "yes",
      label: (await label.count()) > 0 ? ((await label.textContent()) ?? "") : "",
    };
  }

  /** Waits until the map draws the pair over `channel`. */
  async channelDrawn(secvm: string, target: string, channel: string, timeoutMs = 30_000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const d = await this.drawn(secvm, target);
      if (d.channel === channel && d.drawn) return d;
      assert.ok(
        Date.now() < end,
        `the map never drew ${secvm} -> ${target} as ${channel}: ${JSON.stringify(d)}`,
      );
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Every drawn channel of the pair the page went through since it opened, in order. */
  async history(secvm: string, target: string): Promise<DrawnSwitch[]> {
    const all = (await this.page.evaluate("window.__channels")) as DrawnSwitch[];
    return all.filter((s) => s.secvm === secvm && s.target === target);
  }

  /** A full-page screenshot into NESTCLOUD_SCREENSHOTS, when set. */
  async screenshot(name: string): Promise<void> {
    const keep = process.env.NESTCLOUD_SCREENSHOTS;
    if (!keep) return;
    mkdirSync(keep, { recursive: true });
    await this.page.screenshot({ path: join(keep, name), fullPage: true });
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The controller serves web/dist only if it is there when it starts: built before it. */
export function dashboardBuilt(): string {
  return ensureDashboardBuilt();
}

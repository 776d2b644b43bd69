// report.html in a real browser (Debian's Chromium through playwright-core): a small
// comparison of three policies on a synthetic nested cloud, opened at a wide (1440 px) and a
// narrow (800 px) window. The page never scrolls sideways, no number wraps, chart titles and
// legends overlap nothing, and it says what each policy rents and how that is billed.
//
// NESTCLOUD_SCREENSHOTS=<folder> keeps full-page screenshots (report-1440.png, report-800.png).
import assert from "node:assert/strict";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium, type Locator } from "playwright-core";
import { parseScenario, renderReport, runScenario } from "../../src/sim/index.ts";

// The little of the DOM the checks in page.evaluate use (the project compiles without the
// DOM library).
interface El {
  readonly textContent: string | null;
  getBoundingClientRect(): { left: number; top: number; width: number; height: number };
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El>;
}
declare const document: {
  readonly documentElement: { readonly scrollWidth: number };
  querySelectorAll(selector: string): Iterable<El>;
  createRange(): { selectNodeContents(e: El): void; getClientRects(): Iterable<{ top: number }> };
};
declare const window: { readonly innerWidth: number };

const root = resolve(import.meta.dirname, "../..");
const CHROMIUM = "/usr/bin/chromium";
const tmp = mkdtempSync(join(tmpdir(), "nestcloud-report-"));
const reportFile = join(tmp, "report.html");
let browser: Browser | undefined;

before(async () => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: apt-get install chromium (scripts/ensure-deps.sh)`,
  );
  // The default scenario made small: 300 guests on 16 servers for 6 hours, billed per started hour.
  const text = readFileSync(join(root, "scenarios/synthetic-nested.yaml"), "utf8")
    .replace("guests: 2000, seed: 42", "guests: 300, seed: 42")
    .replace("durationSeconds: 86400", "durationSeconds: 21600");
  // Parsed as if it were the shipped file, so its calibration path resolves.
  const scenario = parseScenario(text, join(root, "scenarios/synthetic-nested.yaml"));
  const results = ["nestcloud", "lr-mmt-1.2", "thr-mmt-0.8"].map(
    (policy) => runScenario(scenario, { policy }).result,
  );
  writeFileSync(reportFile, await renderReport(results, `nestcloud: ${scenario.name} — small comparison`));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  rmSync(tmp, { recursive: true, force: true });
});

type Box = { x: number; y: number; w: number; h: number; what: string; text: string };

/** The boxes of the elements a locator finds, on the page. */
function boxesOf(l: Locator, what: string): Promise<Box[]> {
  // Inline arrow functions only: the page runs their source, without tsx's helpers.
  return l.evaluateAll(
    (els: El[], what: string) =>
      els.map((e) => {
        const r = e.getBoundingClientRect();
        const text = e.textContent ?? "";
        return { x: r.left, y: r.top, w: r.width, h: r.height, what: `${what} "${text}"`, text };
      }),
    what,
  );
}

for (const width of [1440, 800]) {
  test(`report.html at ${width} px`, async () => {
    const page = await browser!.newPage({ viewport: { width, height: 900 } });
    try {
      await page.goto(`file://${reportFile}`);

      // The page itself never scrolls sideways (a wide table scrolls inside its own box).
      const { scrollWidth, innerWidth } = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      assert.ok(scrollWidth <= innerWidth, `page is ${scrollWidth} px wide in a ${innerWidth} px window`);

      // Every table cell with a number, and every policy and metric name, is on one line.
      const wrapped = await page.evaluate(() => {
        const out: string[] = [];
        for (const cell of document.querySelectorAll("td:not(.text), table.results th, td.nw")) {
          if (!cell.textContent?.trim()) continue;
          const range = document.createRange();
          range.selectNodeContents(cell);
          const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
          if (lines.size !== 1) out.push(`${cell.textContent} (${lines.size} lines)`);
        }
        return out;
      });
      assert.deepEqual(wrapped, [], "cells that wrap");
      const cells = await page.locator("table.results td").allTextContents();
      assert.ok(cells.length >= 3 * 12, `results for three policies, got ${cells.length} cells`);
      for (const c of cells)
        assert.match(c, /^(\$?[\d,]+(\.\d+)?( %)?|< 0\.01 %|\d\.\d\de-\d+|0)$/, `a number: ${c}`);
      // Each policy's hours as a ratio to the lower bound, which no policy beats.
      const ratios = await page
        .locator("table.results tr", { hasText: "× lower bound" })
        .locator("td")
        .allTextContents();
      assert.equal(ratios.length, 3, "a ratio to the lower bound per policy");
      for (const r of ratios) assert.ok(Number(r) >= 1, `hours ≥ the lower bound: ${r}`);

      // Per chart: the title and legend entries overlap nothing (each other, or any text of
      // the chart: axis names and labels), and the SVG's own texts do not overlap each other.
      const figures = await page.locator("figure").count();
      assert.equal(figures, 4 + 3, "rented host VMs, cost, power, over capacity; migrations per policy");
      for (let i = 0; i < figures; i++) {
        const f = page.locator("figure").nth(i);
        const boxes = {
          caption: [
            ...(await boxesOf(f.locator("figcaption .title"), "title")),
            ...(await boxesOf(f.locator("ul.legend li"), "legend entry")),
          ],
          svg: (await boxesOf(f.locator("svg text"), "svg text")).filter((b) => b.text.trim()),
          svgBox: (await boxesOf(f.locator("svg").first(), "svg"))[0],
          captionBox: (await boxesOf(f.locator("figcaption"), "figcaption"))[0],
        };
        assert.ok(boxes.caption.length >= 3, "a title and a legend entry per series");
        const all = [...boxes.caption, ...boxes.svg];
        for (const a of boxes.caption)
          for (const b of all)
            if (a !== b) assert.ok(!intersects(a, b), `figure ${i}: ${a.what} overlaps ${b.what}`);
        for (const [k, a] of boxes.svg.entries())
          for (const b of boxes.svg.slice(k + 1))
            assert.ok(!intersects(a, b), `figure ${i}: ${a.what} overlaps ${b.what}`);
        assert.ok(boxes.captionBox.y + boxes.captionBox.h <= boxes.svgBox.y + 0.5, "caption above the chart");
        assert.ok(boxes.svgBox.w <= width, "the chart fits the window");
      }
      // Legends name the policies (line charts) and the mechanisms (migration charts).
      const legend = await page.locator("figure").first().locator("ul.legend li").allTextContents();
      assert.deepEqual(legend, ["nestcloud", "lr-mmt-1.2", "thr-mmt-0.8"]);

      // What each policy rents and why: the type, its price, how it is billed, and the policy's rule.
      const rentals = page.locator("table.rentals");
      assert.equal(await rentals.locator("tbody tr").count(), 3);
      for (const row of await rentals.locator("tbody tr").allTextContents())
        assert.match(row, /hvm\.4x128 \(4 vCPU, 128 GiB\)\s+at \$0\.834 \/ h, billed per started hour/);
      const why = await page.locator("ul.why li").allTextContents();
      assert.equal(why.length, 3);
      assert.match(why[0], /^nestcloud .*paid increment/);
      assert.match(why[1], /^lr-mmt-1\.2 .*as soon as it is empty/);

      const shot = join(tmp, `report-${width}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      const keep = process.env.NESTCLOUD_SCREENSHOTS;
      if (keep) {
        mkdirSync(keep, { recursive: true });
        copyFileSync(shot, join(keep, `report-${width}.png`));
      }
    } finally {
      await page.close();
    }
  });
}

function intersects(a: Box, b: Box): boolean {
  // Half a pixel of slack: neighbouring boxes may share an edge.
  const e = 0.5;
  return a.x + e < b.x + b.w && b.x + e < a.x + a.w && a.y + e < b.y + b.h && b.y + e < a.y + a.h;
}

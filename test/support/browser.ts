// The built dashboard and Debian's Chromium for browser tests (playwright-core drives it).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
export const CHROMIUM = "/usr/bin/chromium";

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds web/dist when it is missing or older than web/src or src/console (which it bundles). */
export function ensureDashboardBuilt(): string {
  const dist = join(root, "web/dist");
  const index = join(dist, "index.html");
  const sources = Math.max(newest(join(root, "web/src")), newest(join(root, "src/console")));
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return dist;
  const r = spawnSync("npm", ["run", "build:web"], { cwd: root, encoding: "utf8", timeout: 180_000 });
  assert.equal(r.status, 0, `npm run build:web failed:\n${r.stdout}\n${r.stderr}`);
  return dist;
}

export async function launchChromium(profileDir: string): Promise<BrowserContext> {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: apt-get install chromium (scripts/ensure-deps.sh)`,
  );
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1440, height: 1000 },
  });
}

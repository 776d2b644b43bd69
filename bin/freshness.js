// Whether the built JavaScript in dist/ (`npm run build`, scripts/build.mjs) may run in place
// of the TypeScript sources. Plain JavaScript with no dependencies: bin/nestcloud.js and
// bin/nestcloud-agent.js ask it before anything else is loaded.
//
// The rule: dist/ is fresh when its stamp (written by the build) records the same number of
// build inputs as there are now and none of them changed since the build looked at them.
// The inputs: every file under src/ except tests (*.test.ts), package-lock.json (packages
// are bundled), the build script and this file. "Changed" is the file's ctime, which every
// write, rename or git checkout moves forward and which cannot be set back (touch -d sets
// mtime only); a removed file changes the count. The build records the state *before* it
// bundles, so a file edited during a build leaves dist/ stale.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** The stamp the build writes, relative to the package root. */
export const STAMP = "dist/stamp.json";

/** Build inputs outside src/, relative to the package root. */
export const EXTRA_INPUTS = ["package-lock.json", "scripts/build.mjs", "bin/freshness.js"];

/** The build inputs' count and newest ctime (ms) under a package root. */
export function sourceState(root) {
  let files = 0;
  let newestCtimeMs = 0;
  const add = (path) => {
    const s = statSync(path, { throwIfNoEntry: false });
    if (!s) return;
    files++;
    if (s.ctimeMs > newestCtimeMs) newestCtimeMs = s.ctimeMs;
  };
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (!e.name.endsWith(".test.ts")) add(join(dir, e.name));
    }
  };
  walk(join(root, "src"));
  for (const f of EXTRA_INPUTS) add(join(root, f));
  return { files, newestCtimeMs };
}

/** Why dist/ may not run (a short phrase), or null when it is fresh. */
export function staleReason(root) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(join(root, STAMP), "utf8"));
  } catch {
    return "not built";
  }
  const now = sourceState(root);
  if (now.files !== stamp.files) return `${now.files} build inputs, the build saw ${stamp.files}`;
  if (now.newestCtimeMs > stamp.newestCtimeMs) return "sources changed since the build";
  return null;
}

/**
 * Whether to run dist/: it is fresh, and NESTCLOUD_NO_DIST (which forces the sources through
 * tsx, e.g. for a comparison) is unset or empty.
 */
export function runsDist(root) {
  if (process.env.NESTCLOUD_NO_DIST) return false;
  return staleReason(root) === null;
}

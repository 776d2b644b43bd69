#!/usr/bin/env node
// `npm run build [-- --force]`: bundles the processes nestcloud starts (the CLI, which also
// runs the controller, and the agents) into dist/ with esbuild: ESM for Node 20, the npm
// packages bundled too (one file read per chunk instead of hundreds of module resolutions),
// code splitting so that each command loads only its own chunks. Does nothing when dist/ is
// fresh (bin/freshness.js) unless --force. dist/ is git-ignored: never commit it.
//
// Layout: every output file sits two levels below the package root (dist/cli/main.js,
// dist/agent/main.js, dist/chunks/*.js), as every source file does (src/<module>/x.ts),
// so paths the code resolves from import.meta.url ("../../web/dist", "../../scenarios",
// "../../scripts/guest", "../../bin") name the same place from both. The build checks it.
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { build, version } from "esbuild";
import { STAMP, sourceState, staleReason } from "../bin/freshness.js";

const root = resolve(import.meta.dirname, "..");
const force = process.argv.includes("--force");
const reason = staleReason(root);
if (!force && reason === null) process.exit(0);

const started = performance.now();
// The state before bundling: a source edited while the build runs leaves dist/ stale. File
// times come from a coarse clock (one tick, a few ms): until the newest input is older than
// a tick, an edit right after this scan could get the same ctime, so wait for it to age.
let state = sourceState(root);
while (Date.now() - state.newestCtimeMs < 50) {
  await new Promise((r) => setTimeout(r, 50));
  state = sourceState(root);
}
const dist = join(root, "dist");
const tmp = join(root, `dist.tmp-${process.pid}`);
// Leftovers of builds that were killed (their process is gone).
for (const name of readdirSync(root)) {
  const m = /^dist\.(?:tmp|old)-(\d+)$/.exec(name);
  if (m && !alive(Number(m[1]))) rmSync(join(root, name), { recursive: true, force: true });
}

try {
  await build({
    absWorkingDir: root,
    entryPoints: {
      "cli/main": "src/cli/main.ts",
      "agent/main": "src/agent/main.ts",
      // A security VM's service (bin/nestcloud-agent.js secvm-service): its own modules only.
      "agent/secvm-service": "src/agent/secvm/entry.ts",
      // The report renderer's worker thread (src/sim/report-render.ts looks for it here).
      "sim/report-worker": "src/sim/report-worker.ts",
    },
    outdir: tmp,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Native or large, or tools rather than code nestcloud runs: loaded from node_modules.
    external: ["better-sqlite3", "pg-native", "playwright-core", "typescript", "esbuild", "tsx"],
    // Bundled CommonJS packages require() Node's built-ins: give each chunk a require.
    banner: {
      js: 'import { createRequire as __nestcloudCreateRequire } from "node:module";\nconst require = __nestcloudCreateRequire(import.meta.url);',
    },
    // Error classes and logs show constructor names (VmiError's name is its class's).
    keepNames: true,
    // For a stack trace in the sources: NODE_OPTIONS=--enable-source-maps (off by default: it
    // costs start-up time).
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
  });

  const outputs = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else outputs.push(join(dir, e.name));
    }
  };
  walk(tmp);
  const misplaced = outputs.filter((f) => relative(tmp, f).split(sep).length !== 2);
  if (misplaced.length > 0)
    throw new Error(`outputs not two levels below the package root: ${misplaced.join(", ")}`);
  const bytes = outputs.reduce((a, f) => a + statSync(f).size, 0);

  writeFileSync(
    join(tmp, relative("dist", STAMP)),
    `${JSON.stringify({ ...state, builtAt: new Date().toISOString(), esbuild: version, node: process.version }, null, 2)}\n`,
  );
  // Swap in whole: a process starting meanwhile finds no dist/ and runs the sources.
  const old = join(root, `dist.old-${process.pid}`);
  if (existsSync(dist)) renameSync(dist, old);
  try {
    renameSync(tmp, dist);
  } catch (e) {
    // Another build swapped its dist/ in between: keep that one.
    if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
    rmSync(tmp, { recursive: true, force: true });
  }
  rmSync(old, { recursive: true, force: true });
  const js = outputs.filter((f) => f.endsWith(".js")).length;
  process.stderr.write(
    `nestcloud: built dist/ (${reason ?? "forced"}): ${js} files, ${(bytes / 1e6).toFixed(1)} MB, ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
} catch (e) {
  rmSync(tmp, { recursive: true, force: true });
  // esbuild has printed its errors already.
  process.stderr.write(`nestcloud: build failed: ${e.message.split("\n")[0]}\n`);
  process.exit(1);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

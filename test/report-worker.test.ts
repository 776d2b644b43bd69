// The report renderer of the built CLI (src/sim/report-render.ts): on a worker thread that
// loaded and warmed up ECharts, it draws the same bytes as the calling thread. Built here as
// scripts/build.mjs lays dist/ out (the renderer in one folder, the worker in dist/sim/).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { parseScenario, renderReport, runScenario } from "../src/sim/index.ts";

const root = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-report-worker-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("the built renderer draws report.html on its worker thread, byte for byte the calling thread's", async () => {
  await build({
    absWorkingDir: root,
    entryPoints: {
      "cli/render": "src/sim/report-render.ts",
      "sim/report-worker": "src/sim/report-worker.ts",
    },
    outdir: dir,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    banner: {
      js: 'import { createRequire as __c } from "node:module";\nconst require = __c(import.meta.url);',
    },
    keepNames: true,
    logLevel: "error",
  });
  const built: typeof import("../src/sim/report-render.ts") = await import(
    pathToFileURL(join(dir, "cli/render.js")).href
  );
  const scenario = parseScenario(
    `name: small
seed: 5
durationSeconds: 7200
nesting: nested
servers:
  - { prefix: s, count: 4, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, hypervisorOverheadMiB: 1024, pricePerHour: 0.4, billingIncrementSeconds: 300, minimumBillingSeconds: 3600 }
hostVms: { type: hv, perServer: 2 }
guests:
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
trace: { kind: synthetic, guests: 60 }
policy: { name: nestcloud }
`,
    "small.yaml",
  );
  const results = ["nestcloud", "lr-mmt-1.2"].map((policy) => runScenario(scenario, { policy }).result);
  const renderer = built.startReportRenderer();
  let onWorker: string;
  try {
    onWorker = await renderer.render(results, "t");
  } finally {
    renderer.close();
  }
  assert.equal(renderer.lastRenderedOn, "worker");
  assert.equal(onWorker, await renderReport(results, "t"));
  assert.match(onWorker, /<svg/);
});

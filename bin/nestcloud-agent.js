#!/usr/bin/env node
// Agent process entry, started by src/agent/launcher.ts: `nestcloud-agent.js --config <file>`.
// Runs the built agent (dist/agent/main.js) when dist/ is fresh, else the TypeScript sources
// through tsx's loader: the same rule as bin/nestcloud.js (./freshness.js).
import { join } from "node:path";
import { runsDist } from "./freshness.js";

if (runsDist(join(import.meta.dirname, ".."))) {
  await import("../dist/agent/main.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/agent/main.ts");
}

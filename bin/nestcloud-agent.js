#!/usr/bin/env node
// Agent process entry, started by src/agent/launcher.ts: `nestcloud-agent.js --config <file>`.
// Runs the built agent (dist/agent/main.js) when dist/ is fresh, else the TypeScript sources
// through tsx's loader: the same rule as bin/nestcloud.js (./freshness.js).
import module from "node:module";
import { join } from "node:path";
import { runsDist } from "./freshness.js";

// Node 22.1+: V8 keeps the code it compiled for these modules on disk (the OS's temporary
// folder, node-compile-cache/), so the next start skips compiling them again; Node 20 has
// no such cache and starts as before. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();

// `secvm-service`: a security VM's service (src/agent/secvm/entry.ts), which loads only its own
// modules: its start is on a pre-copy's critical path (attached while the destination waits).
const service = process.argv[2] === "secvm-service";
if (runsDist(join(import.meta.dirname, ".."))) {
  await import(service ? "../dist/agent/secvm-service.js" : "../dist/agent/main.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(service ? "../src/agent/secvm/entry.ts" : "../src/agent/main.ts");
}

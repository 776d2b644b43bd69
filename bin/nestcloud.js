#!/usr/bin/env node
// Entry for `npx nestcloud`: the built CLI (dist/, `npm run build`) when it is fresh, else the
// TypeScript sources through tsx's loader (development; slower to start). The rule is in
// ./freshness.js; NESTCLOUD_NO_DIST=1 forces the sources.
import module from "node:module";
import { join } from "node:path";
import { runsDist } from "./freshness.js";

// Node 22.1+: V8 keeps the code it compiled for these modules on disk (the OS's temporary
// folder, node-compile-cache/), so the next start skips compiling them again; Node 20 has
// no such cache and starts as before. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();

let main;
if (runsDist(join(import.meta.dirname, ".."))) {
  ({ main } = await import("../dist/cli/main.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
}
process.exitCode = await main(process.argv);

#!/usr/bin/env node
// Entry for `npx nestcloud`: the built CLI (dist/, `npm run build`) when it is fresh, else the
// TypeScript sources through tsx's loader (development; slower to start). The rule is in
// ./freshness.js; NESTCLOUD_NO_DIST=1 forces the sources.
import { join } from "node:path";
import { runsDist } from "./freshness.js";

let main;
if (runsDist(join(import.meta.dirname, ".."))) {
  ({ main } = await import("../dist/cli/main.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
}
process.exitCode = await main(process.argv);

import assert from "node:assert/strict";
import { test } from "node:test";
import { unobservedMs } from "./secvms.ts";

test("unobservedMs: an instant handover leaves none, another move from its completion to the new baseline, an unknown move null", () => {
  assert.equal(unobservedMs({ mechanism: "instant", at: 1000 }, 9000), 0, "the old view stayed live");
  assert.equal(unobservedMs({ mechanism: "precopy", at: 1000 }, 3500), 2500);
  assert.equal(unobservedMs({ mechanism: "postcopy", at: 1000 }, 1000), 0);
  assert.equal(unobservedMs({ mechanism: "precopy", at: 5000 }, 4000), 0, "never negative");
  assert.equal(unobservedMs(undefined, 4000), null);
});

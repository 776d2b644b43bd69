// The dashboard's virtual AMT buttons, decided apart from the page (web/src/power.ts): which
// actions apply in which power state and boot mode, and the bodies the buttons send.
import assert from "node:assert/strict";
import { test } from "node:test";
import { applies, POWER_ACTIONS, type PowerAction, powerBody, SHUTDOWN_WAIT_MS } from "../web/src/power.ts";

const enabled = (power: "on" | "off" | "panicked", boot: "normal" | "rescue") =>
  POWER_ACTIONS.filter((a) => applies(a, power, boot));

test("a running guest can be powered off, shut down, reset and booted into rescue, not powered on", () => {
  assert.deepEqual(enabled("on", "normal"), ["off", "shutdown", "reset", "rescue"]);
});

test("a guest that is off can be powered on or restarted into either boot mode, nothing else", () => {
  assert.deepEqual(enabled("off", "normal"), ["on", "rescue"]);
  assert.deepEqual(enabled("off", "rescue"), ["on", "normal"]);
});

test("a panicked guest cannot take an ACPI shutdown, but can be powered on, off or reset", () => {
  assert.deepEqual(enabled("panicked", "normal"), ["on", "off", "reset", "rescue"]);
});

test("in rescue, normal applies and rescue does not", () => {
  assert.deepEqual(enabled("on", "rescue"), ["off", "shutdown", "reset", "normal"]);
});

test("only a shutdown carries a wait, and force only when asked", () => {
  for (const a of POWER_ACTIONS.filter((x): x is PowerAction => x !== "shutdown"))
    assert.deepEqual(powerBody(a, { force: true }), { action: a });
  assert.deepEqual(powerBody("shutdown"), { action: "shutdown", waitMs: SHUTDOWN_WAIT_MS });
  assert.deepEqual(powerBody("shutdown", { force: true }), {
    action: "shutdown",
    waitMs: SHUTDOWN_WAIT_MS,
    force: true,
  });
});

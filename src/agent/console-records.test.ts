import assert from "node:assert/strict";
import { test } from "node:test";
import { ConsoleRecords } from "./console-records.ts";

test("heartbeats, readiness and workload reports are read from console lines", () => {
  const r = new ConsoleRecords();
  r.feed("NESTCLOUD-READY boot-1", 1);
  r.feed("NESTCLOUD-HB 7 12.34", 2);
  r.feed("NESTCLOUD-DIRTY pages=5000 mibs=19.5", 3);
  r.feed("NESTCLOUD-VERIFY ok 40", 4);
  r.feed("some shell output", 5);
  assert.equal(r.readyBootId, "boot-1");
  assert.deepEqual(r.heartbeat, { seq: 7, uptime: 12.34, at: 2 });
  assert.deepEqual(r.dirty, { pages: 5000, mibs: 19.5 });
  assert.equal(r.verify?.sweeps, 40);
  assert.equal(r.verify?.lostLines, 0);
  r.feed("NESTCLOUD-VERIFY LOST page=3 expected=9 found=8 kind=header sweep=41", 6);
  assert.equal(r.verify?.lostLines, 1);
  r.feed("NESTCLOUD-HB 1 0.50", 7);
  assert.equal(r.heartbeatResets, 1, "a restarted sequence is a reboot");
});

test("a new console after a migration inherits the counts", () => {
  const a = new ConsoleRecords();
  a.feed("NESTCLOUD-VERIFY ok 10", 1);
  a.feed("NESTCLOUD-VERIFY ok 11", 2);
  a.feed("NESTCLOUD-HB 30 31.0", 3);
  const b = new ConsoleRecords();
  b.feed("NESTCLOUD-VERIFY ok 12", 4);
  b.inherit(a);
  assert.equal(b.verify?.okLines, 3);
  assert.equal(b.verify?.sweeps, 12);
  assert.equal(b.heartbeat?.seq, 30);
});

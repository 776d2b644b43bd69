import assert from "node:assert/strict";
import { test } from "node:test";
import { alert } from "./alert.ts";
import { AlertLog } from "./alert-log.ts";

const a = (n: number) =>
  alert({ time: n, target: "g", monitor: "memory", channel: "local", severity: "info", summary: `a${n}` });

test("numbered alerts, read after a sequence number, in pages", () => {
  const log = new AlertLog(10);
  for (let i = 1; i <= 5; i++) log.push(a(i));
  const p = log.since(0, 3);
  assert.deepEqual(
    p.alerts.map((x) => [x.seq, x.summary]),
    [
      [1, "a1"],
      [2, "a2"],
      [3, "a3"],
    ],
  );
  assert.equal(p.next, 3);
  assert.equal(p.missed, 0);
  const q = log.since(p.next);
  assert.deepEqual(
    q.alerts.map((x) => x.seq),
    [4, 5],
  );
  assert.deepEqual(log.since(5), { alerts: [], next: 5, missed: 0 });
});

test("bounded: a flood evicts the oldest, counted, and a reader that fell behind learns how many it missed", () => {
  const log = new AlertLog(100);
  for (let i = 1; i <= 10_000; i++) log.push(a(i));
  assert.equal(log.size, 100);
  assert.equal(log.evicted, 9900);
  const p = log.since(0, 1000);
  assert.equal(p.alerts.length, 100);
  assert.equal(p.alerts[0].seq, 9901);
  assert.equal(p.missed, 9900);
  assert.equal(p.next, 10_000);
});

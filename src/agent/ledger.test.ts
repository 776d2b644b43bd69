import assert from "node:assert/strict";
import { test } from "node:test";
import { LedgerError, MemoryLedger } from "./ledger.ts";

const urls = new Map<string, { url: string; pid: number }>();

test("reservations respect each host VM's memory", () => {
  const l = new MemoryLedger([
    { name: "h1", memoryMiB: 1024 },
    { name: "h2", memoryMiB: 512 },
  ]);
  l.reserve("h1", "a", 600);
  assert.throws(
    () => l.reserve("h1", "b", 500),
    (e: unknown) => e instanceof LedgerError && e.code === "capacity",
  );
  assert.throws(
    () => l.reserve("h1", "a", 1),
    (e: unknown) => e instanceof LedgerError && e.code === "duplicate",
  );
  assert.throws(() => l.reserve("h9", "x", 1), /no host VM h9/);
  l.reserve("h1", "b", 424);
  assert.equal(l.used("h1"), 1024);
  assert.equal(l.release("h1", "b"), true);
  assert.equal(l.used("h1"), 600);
});

test("a handover counts on both sides while pending and moves on commit", () => {
  const l = new MemoryLedger([
    { name: "h1", memoryMiB: 1024 },
    { name: "h2", memoryMiB: 1024 },
  ]);
  l.reserve("h1", "g", 768);
  const h = l.beginHandover("g", "h1", "h2", 1000);
  assert.equal(l.used("h1"), 768);
  assert.equal(l.used("h2"), 768);
  assert.equal(l.whereIs("g"), "h1");
  assert.throws(() => l.beginHandover("g", "h1", "h2", 1001), /already being handed over/);
  l.commitHandover(h.handoverId, 1002);
  assert.equal(l.used("h1"), 0);
  assert.equal(l.used("h2"), 768);
  assert.equal(l.whereIs("g"), "h2");
  assert.throws(() => l.commitHandover(h.handoverId, 1003), /already committed/);
  const [v1, v2] = l.view(urls);
  assert.equal(v1.reservedMiB, 0);
  assert.equal(v2.reservedMiB, 768);
});

test("an aborted handover leaves the guest where it was", () => {
  const l = new MemoryLedger([
    { name: "h1", memoryMiB: 1024 },
    { name: "h2", memoryMiB: 512 },
  ]);
  l.reserve("h1", "g", 256);
  const h = l.beginHandover("g", "h1", "h2", 1);
  assert.equal(l.view(urls)[1].pendingMiB, 256);
  l.abortHandover(h.handoverId, 2);
  assert.equal(l.whereIs("g"), "h1");
  assert.equal(l.used("h2"), 0);
  l.reserve("h2", "big", 512);
  assert.throws(
    () => l.beginHandover("g", "h1", "h2", 3),
    (e: unknown) => e instanceof LedgerError && e.code === "capacity",
  );
  assert.throws(() => l.beginHandover("nope", "h1", "h2", 3), /not accounted/);
});

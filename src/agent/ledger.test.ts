import assert from "node:assert/strict";
import { test } from "node:test";
import { LedgerError, MemoryLedger } from "./ledger.ts";

const urls = new Map<string, { url: string; pid: number; alive: boolean }>();

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

const obs = (guests: string[], incoming: string[] = []) => ({
  guests: new Set(guests),
  incoming: new Set(incoming),
});

test("reconcile releases what no host VM runs or expects, and only old entries of observed host VMs", () => {
  const l = new MemoryLedger([
    { name: "h1", memoryMiB: 1024 },
    { name: "h2", memoryMiB: 1024 },
    { name: "h3", memoryMiB: 1024 },
  ]);
  l.reserve("h1", "runs", 128, false, 100); // h1 runs it
  l.reserve("h1", "left", 128, false, 100); // gone from h1 (its departure was never accounted)
  l.reserve("h2", "arriving", 128, false, 100); // h2 has a live incoming for it
  l.reserve("h2", "expired", 128, false, 100); // the reservation of an incoming that expired
  l.reserve("h2", "young", 128, false, 950); // made after the observation began: left alone
  l.reserve("h3", "unknown", 128, false, 100); // h3's agent did not answer: left alone
  const done = l.reconcile(
    new Map([
      ["h1", obs(["runs"])],
      ["h2", obs([], ["arriving"])],
    ]),
    900,
    1000,
  );
  assert.deepEqual(
    done.map((d) => [d.action, d.hostVm, d.guestId]),
    [
      ["released", "h1", "left"],
      ["released", "h2", "expired"],
    ],
  );
  assert.deepEqual(
    l.view(urls).map((h) => h.guests.map((g) => g.guestId)),
    [["runs"], ["arriving", "young"], ["unknown"]],
  );
});

test("reconcile settles a pending handover only when the guest is on one side alone", () => {
  const l = new MemoryLedger([
    { name: "h1", memoryMiB: 1024 },
    { name: "h2", memoryMiB: 1024 },
  ]);
  for (const g of ["moved", "stayed", "deciding"]) l.reserve("h1", g, 128, false, 0);
  const moved = l.beginHandover("moved", "h1", "h2", 10);
  const stayed = l.beginHandover("stayed", "h1", "h2", 10);
  const deciding = l.beginHandover("deciding", "h1", "h2", 10);
  const done = l.reconcile(
    new Map([
      // "deciding": the source still has it (paused, completed) and h2's incoming can run.
      ["h1", obs(["stayed", "deciding"])],
      ["h2", obs(["moved"], ["deciding"])],
    ]),
    500,
    1000,
  );
  assert.deepEqual(done.map((d) => [d.action, d.guestId, d.handoverId]).sort(), [
    ["aborted", "stayed", stayed.handoverId],
    ["committed", "moved", moved.handoverId],
  ]);
  assert.equal(l.whereIs("moved"), "h2");
  assert.equal(l.whereIs("stayed"), "h1");
  assert.equal(l.handoverViews().find((h) => h.handoverId === deciding.handoverId)?.state, "pending");
  assert.equal(l.used("h2"), 256, "moved, plus deciding still counted on both sides");
});

// bench:secvm --follow's reading of a run (test/support/follow-analysis.ts): alerts matched to
// the guest's numbered events of each kind, the events around a move no alert reported, the
// longest unobserved interval across a move, and kinds without a monitor told apart from
// missed ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  eventsOf,
  type FollowAlert,
  followRows,
  gapAround,
  type MoveRecord,
  observe,
  steadyIntervals,
} from "./support/follow-analysis.ts";

const mem = (time: number, ...seqs: number[]): FollowAlert => ({
  time,
  target: "t1",
  monitor: "memory",
  evidence: {
    kind: "processes-changed",
    started: seqs.map((s) => `${100 + s} ev${String(s).padStart(5, "0")} /bin/sh /tmp/ev/x`),
  },
});

test("alerts name their events: processes by name, files by path, packets by their ports", () => {
  assert.deepEqual(eventsOf(mem(1, 7, 8), 9), { kind: "memory", seqs: [7, 8] });
  assert.equal(
    eventsOf({ ...mem(1), evidence: { kind: "baseline" } }, 9),
    null,
    "a baseline reports no event",
  );
  assert.deepEqual(
    eventsOf({ time: 1, target: "t1", monitor: "disk", evidence: { path: "/mnt/ncav/ncav00042.txt" } }, 9),
    { kind: "disk", seqs: [42] },
  );
  const pkt = (srcPort: number, destPort: number, proto = "UDP"): FollowAlert => ({
    time: 1,
    target: "t1",
    monitor: "network",
    evidence: { signatureId: 9000001, srcPort, destPort, proto },
  });
  assert.deepEqual(eventsOf(pkt(20005, 9), 9), { kind: "network", seqs: [5] });
  assert.deepEqual(eventsOf(pkt(20003, 10), 9), { kind: "network", seqs: [40003] }, "past the first span");
  assert.equal(eventsOf(pkt(9, 20005), 9), null, "a reply's reversed ports are not a packet of ours");
  assert.equal(
    eventsOf({ ...pkt(20005, 9), evidence: { signatureId: 1, srcPort: 20005, destPort: 9 } }, 9),
    null,
  );
});

test("the gap across a move runs from the last observation before it to the first after it", () => {
  const times = [0, 1000, 2000, 6500, 7000, 8000];
  assert.equal(gapAround(times, 2500, 6000), 4500);
  assert.equal(gapAround(times, 2000, 7000), 4500, "observations at the window's edges count");
  assert.equal(gapAround(times, 7500, 9000), null, "no observation after the move: never resumed");
  assert.deepEqual(steadyIntervals(times, [{ from: 2500, to: 6000 }]), [1000, 1000, 500, 1000]);
});

test("rows per scenario and channel change: missed events by kind, unmonitored kinds not counted as missed", () => {
  const move = (rep: number, from: number, to: number, seqBefore: number, seqAfter: number): MoveRecord => ({
    scenario: "target instant",
    rep,
    from,
    to,
    channelBefore: "local",
    channelAfter: "direct",
    pauseMs: 120,
    ok: true,
    seqBefore: { memory: seqBefore, disk: seqBefore, network: 0 },
    seqAfter: { memory: seqAfter, disk: seqAfter, network: 0 },
  });
  // Events 1-10, one a second; event 6 never reported; the move covers 4.5 s to 6.5 s.
  const alerts = [1, 2, 3, 4, 5, 7, 8, 9, 10].map((s) => mem(s * 1000 + 300, s));
  const obs = observe(alerts, "t1", 9);
  const rows = followRows([move(1, 4500, 6500, 4, 10)], obs, { memory: true, disk: true, network: false });
  assert.equal(rows.length, 1, "one row for the one (scenario, before, after)");
  const r = rows[0];
  assert.equal(r.moves, 1);
  assert.equal(r.missedEvents, 1, "event 6 missed");
  assert.deepEqual(r.missedSeqs.memory, [6]);
  assert.deepEqual(r.kinds.memory, { status: "monitored", events: 6, missed: 1, gapMs: 2000 });
  assert.deepEqual(
    r.kinds.disk,
    { status: "not monitored", events: 6 },
    "no disk alert at all: not monitored",
  );
  assert.deepEqual(r.kinds.network, { status: "not produced" });
  assert.equal(r.gapMs, 2000);
  assert.equal(r.pauseMs, 120);
  assert.equal(r.excessMs, 1880, "the gap beyond the guest's own pause");
});

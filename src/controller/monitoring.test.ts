import assert from "node:assert/strict";
import { test } from "node:test";
import { alert } from "../monitor/index.ts";
import { type ControllerAlert, pairChannels, SecurityMonitoring, selectAlerts } from "./monitoring.ts";

const servers: Record<string, string | null> = { h1: "s1", h2: "s1", h3: "s2", hx: null };

test("pairChannels: same host VM local, same server direct, else (or unknown server) remote, unplaced none", () => {
  const hostOf: Record<string, string | null> = { a: "h1", b: "h2", c: "h3", d: "hx", e: null };
  const pairs = pairChannels(
    [{ id: "s", tenant: "t", hostVm: "h1", targets: ["a", "b", "c", "d", "e"] }],
    (g) => hostOf[g],
    (h) => servers[h],
  );
  assert.deepEqual(
    pairs.map((p) => [p.target, p.channel]),
    [
      ["a", "local"],
      ["b", "direct"],
      ["c", "remote"],
      ["d", "remote"],
      ["e", null],
    ],
  );
});

function sinks() {
  const events: Array<[string, string, Record<string, unknown>]> = [];
  const switches: string[] = [];
  const counted: string[] = [];
  let counts: Record<string, number> = {};
  return {
    events,
    switches,
    counted,
    counts: () => counts,
    sinks: {
      event: (k: string, t: string, d: Record<string, unknown>) => events.push([k, t, d]),
      alertCounted: (m: string, s: string) => counted.push(`${m}/${s}`),
      switchCounted: (f: string, t: string) => switches.push(`${f}->${t}`),
      pairsByChannel: (c: Record<string, number>) => {
        counts = { ...c };
      },
    },
  };
}

test("a pair's channel change is one switch (event to its tenant, metric); an unchanged one is none", () => {
  const s = sinks();
  const m = new SecurityMonitoring(s.sinks);
  const at = (target: string) => [{ secvm: "sv", target: "g", tenant: "acme", channel: target as never }];
  assert.deepEqual(m.placed(at("local")), [], "the first sight is no switch");
  assert.deepEqual(m.placed(at("local")), []);
  assert.equal(m.placed(at("direct")).length, 1);
  assert.equal(m.placed(at("remote")).length, 1);
  assert.deepEqual(s.switches, ["local->direct", "direct->remote"]);
  assert.deepEqual(
    s.events.map(([k, t, d]) => [k, t, d.from, d.to]),
    [
      ["secvm.channel", "acme", "local", "direct"],
      ["secvm.channel", "acme", "direct", "remote"],
    ],
  );
  assert.deepEqual(s.counts(), { local: 0, direct: 0, remote: 1, none: 0 });
  m.placed([]);
  assert.deepEqual(m.pairs(), [], "a deleted security VM's pairs are forgotten");
});

test("alerts: numbered, counted, each an event of its tenant; the log is bounded", () => {
  const s = sinks();
  const m = new SecurityMonitoring(s.sinks, 3);
  const a = (n: number) =>
    alert({
      time: n,
      target: "g",
      monitor: "memory",
      channel: "local",
      severity: "critical",
      summary: `x${n}`,
    });
  m.ingest("sv", "acme", [a(1), a(2)]);
  m.ingest("sv", "acme", [a(3), a(4)]);
  assert.equal(m.evicted, 1);
  assert.deepEqual(
    m.alerts({ limit: 10 }).alerts.map((x) => x.id),
    [2, 3, 4],
  );
  assert.deepEqual(s.counted, Array(4).fill("memory/critical"));
  assert.deepEqual(
    s.events.map(([k, t]) => `${k}:${t}`),
    Array(4).fill("alert:acme"),
  );
});

test("selectAlerts filters by tenant, security VM, target, monitor, severity and time, and pages by cursor", () => {
  const log: ControllerAlert[] = [];
  let id = 0;
  for (const tenant of ["acme", "globex"])
    for (const monitor of ["memory", "disk"] as const)
      for (const severity of ["info", "critical"] as const)
        log.push({
          ...alert({
            time: 1000 + id,
            target: `${tenant}-g`,
            monitor,
            channel: "local",
            severity,
            summary: "s",
          }),
          id: ++id,
          secvm: `${tenant}-sv`,
          tenant,
        });
  const ids = (p: { alerts: readonly ControllerAlert[] }) => p.alerts.map((a) => a.id);
  assert.deepEqual(ids(selectAlerts(log, { tenant: "acme", limit: 100 })), [1, 2, 3, 4]);
  assert.deepEqual(ids(selectAlerts(log, { secvm: "globex-sv", severity: "critical", limit: 100 })), [6, 8]);
  assert.deepEqual(ids(selectAlerts(log, { target: "acme-g", monitor: "disk", limit: 100 })), [3, 4]);
  assert.deepEqual(ids(selectAlerts(log, { since: 1005, limit: 100 })), [6, 7, 8]);
  const p1 = selectAlerts(log, { tenant: "globex", limit: 3 });
  assert.deepEqual([ids(p1), p1.more], [[5, 6, 7], true]);
  const p2 = selectAlerts(log, { tenant: "globex", limit: 3, after: p1.next });
  assert.deepEqual([ids(p2), p2.more, p2.next], [[8], false, 8]);
  const p3 = selectAlerts(log, { tenant: "globex", limit: 3, after: p2.next });
  assert.deepEqual([ids(p3), p3.next], [[], 8], "an empty page keeps the cursor");
});

test("a monitor's move: its make time and the gap it left counted (an unknown gap is not), an event of its tenant", () => {
  const s = sinks();
  const observed: Array<[number, number | null]> = [];
  const m = new SecurityMonitoring({ ...s.sinks, moveCounted: (make, gap) => observed.push([make, gap]) });
  const sw = { secvm: "sv", target: "g", from: "h1", to: "h2", makeMs: 1500, heldMs: null };
  m.moved({ ...sw, gapMs: 0 }, "acme");
  m.moved({ ...sw, gapMs: 2500 }, "acme");
  m.moved({ ...sw, gapMs: null }, undefined);
  assert.deepEqual(observed, [
    [1.5, 0],
    [1.5, 2.5],
    [1.5, null],
  ]);
  assert.deepEqual(
    s.events.map(([k, t, d]) => [k, t, d.gapMs]),
    [
      ["secvm.monitor.moved", "acme", 0],
      ["secvm.monitor.moved", "acme", 2500],
    ],
    "a move of a security VM no longer known (no tenant) is no event",
  );
});

test("an alert is labelled with its pair's channel as placed; the monitor's own transport stays in the evidence", () => {
  const m = new SecurityMonitoring(sinks().sinks);
  const a = (target: string) =>
    alert({
      time: 1,
      target,
      monitor: "network",
      channel: "local",
      severity: "info",
      summary: "flagged",
      evidence: { signatureId: 7 },
    });
  m.placed([{ secvm: "sv", target: "g", tenant: "acme", channel: "remote" }]);
  const [moved, unplaced] = m.ingest("sv", "acme", [a("g"), a("other")]);
  assert.equal(moved.channel, "remote");
  assert.deepEqual(moved.evidence, { signatureId: 7, transport: "local" });
  // A pair not placed (yet): the monitor's label as it came.
  assert.equal(unplaced.channel, "local");
  assert.deepEqual(unplaced.evidence, { signatureId: 7 });
});

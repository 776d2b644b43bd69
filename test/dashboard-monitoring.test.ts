// The dashboard's security-VM monitoring, decided apart from the page (web/src/monitoring.ts):
// which alerts the panel keeps (newest first, each once, under its filter, bounded), the
// query it pages with, and each pair's channel as the stream switches it.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  alertOfEvent,
  alertsQuery,
  channelSwitched,
  mergeAlerts,
  type PairView,
  pairKey,
  pairsLoaded,
  recentSwitch,
  SWITCH_SHOWN_MS,
} from "../web/src/monitoring.ts";
import type { ControllerAlert } from "../web/src/types.ts";

const a = (
  id: number,
  severity: ControllerAlert["severity"] = "info",
  monitor: ControllerAlert["monitor"] = "memory",
) =>
  ({
    id,
    secvm: "sv1",
    tenant: "acme",
    time: 1_700_000_000_000 + id,
    target: "t1",
    monitor,
    channel: "local",
    severity,
    summary: `finding ${id}`,
    evidence: {},
  }) satisfies ControllerAlert;

test("alerts: newest first, each id once (a replayed event or a repeated page adds nothing), at most the cap", () => {
  let kept = mergeAlerts([], [a(1), a(2), a(3)], {});
  assert.deepEqual(
    kept.map((x) => x.id),
    [3, 2, 1],
  );
  kept = mergeAlerts(kept, [a(2), a(5), a(4)], {});
  assert.deepEqual(
    kept.map((x) => x.id),
    [5, 4, 3, 2, 1],
  );
  assert.deepEqual(
    mergeAlerts(kept, [a(6)], {}, 3).map((x) => x.id),
    [6, 5, 4],
    "the oldest fall off",
  );
});

test("alerts: only those under the filter are kept; the page query carries the filter and the cursor", () => {
  const f = { severity: "critical" as const, monitor: "disk" as const };
  const kept = mergeAlerts(
    [],
    [a(1, "critical", "disk"), a(2, "critical", "memory"), a(3, "info", "disk")],
    f,
  );
  assert.deepEqual(
    kept.map((x) => x.id),
    [1],
  );
  assert.equal(alertsQuery(f, 7), "/api/alerts?after=7&limit=1000&severity=critical&monitor=disk");
  assert.equal(alertsQuery({}, 0, 50), "/api/alerts?after=0&limit=50");
});

test("an alert event's data is an alert; another shape is not", () => {
  assert.equal(alertOfEvent({ ...a(9) })?.id, 9);
  assert.equal(alertOfEvent({ id: "9", secvm: "sv1" }), undefined);
});

test("channels: a switch from the stream replaces the pair's channel and is shown for a while", () => {
  const loaded = new Map([["sv1", [{ target: "t1", channel: "local" as const, monitor: null }]]]);
  let pairs: Map<string, PairView> = pairsLoaded(loaded, new Map(), 1000);
  const key = pairKey("sv1", "t1");
  assert.equal(pairs.get(key)?.channel, "local");
  pairs = channelSwitched(pairs, { secvm: "sv1", target: "t1", from: "local", to: "remote" }, 5000);
  assert.equal(pairs.get(key)?.channel, "remote");
  const p = pairs.get(key) as PairView;
  assert.deepEqual(recentSwitch(p, 6000), { from: "local", at: 5000 });
  assert.equal(recentSwitch(p, 5000 + SWITCH_SHOWN_MS), undefined, "no longer shown");
  // A load begun before the switch answers the old channel: the switch is newer and stays.
  assert.equal(pairsLoaded(loaded, pairs, 4000).get(key)?.channel, "remote");
  // A load begun after it is the truth (and keeps the switch to show).
  const later = pairsLoaded(
    new Map([["sv1", [{ target: "t1", channel: "direct" as const, monitor: null }]]]),
    pairs,
    6000,
  );
  assert.equal(later.get(key)?.channel, "direct");
  assert.equal(later.get(key)?.switched?.from, "local");
  // A security VM no longer listed has no pairs.
  assert.equal(pairsLoaded(new Map(), pairs, 7000).size, 0);
});

// Placement fusion (pure): evidence from each source, how verdicts are chosen, groups, ids.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { correlateFrontEnds } from "./correlation.ts";
import { keyEvidence, pairEvidence } from "./evidence.ts";
import { assignServers, fusePlacement, placementCorrectness } from "./fusion.ts";

const hvs = ["a1", "a2", "a3", "b1", "b2", "b3"];
const truth = new Map(hvs.map((h) => [h, h[0]!]));

describe("placement fusion", () => {
  test("nothing known: every host VM unplaced, none correct", () => {
    const f = fusePlacement(hvs, [], { now: 0 });
    assert.ok(f.hostVms.every((h) => h.group === undefined && h.source === undefined));
    assert.deepEqual(placementCorrectness(truth, new Map()), { correct: 0, total: 6 });
  });

  test("provider hints (hostId-like keys) group host VMs within one scope only", () => {
    const ev = hvs.map((h) => keyEvidence(h, "project-1", `host-${h[0]}`, "provider-hint", 10));
    // Another project's keys for the same servers differ: they must not join or split anything.
    ev.push(keyEvidence("a1", "project-2", "zzz", "provider-hint", 10));
    ev.push(keyEvidence("b1", "project-2", "zzz", "provider-hint", 10));
    const f = fusePlacement(hvs, ev, { now: 12 });
    assert.deepEqual(f.groups, [
      ["a1", "a2", "a3"],
      ["b1", "b2", "b3"],
    ]);
    assert.ok(f.hostVms.every((h) => h.source === "provider-hint" && h.confidence === 0.9 && !h.conflict));
  });

  test("an empty key (unplaced, as Nova's empty hostId) says nothing", () => {
    const f = fusePlacement(
      ["x", "y"],
      [keyEvidence("x", "p", "", "provider-hint", 1), keyEvidence("y", "p", "", "provider-hint", 1)],
      { now: 1 },
    );
    assert.deepEqual(f.groups, []);
  });

  test("a newer measurement beats an older conclusive one (the host VM moved)", () => {
    const ev = [
      pairEvidence("a1", "a2", true, "trial-handover", 100),
      pairEvidence("a1", "a2", false, "shared-memory", 200),
    ];
    const v = fusePlacement(["a1", "a2"], ev, { now: 200 }).verdicts[0]!;
    assert.equal(v.together, false);
    assert.equal(v.source, "shared-memory");
  });

  test("a newer probe that agrees with a conclusive trial confirms it: the trial stands until contradicted", () => {
    const trial = pairEvidence("a1", "a2", true, "trial-handover", 10);
    const agree = fusePlacement(["a1", "a2"], [trial, pairEvidence("a1", "a2", true, "shared-memory", 20)], {
      now: 30,
    });
    assert.deepEqual(
      agree.verdicts.map((v) => [v.source, v.confidence, v.at]),
      [["trial-handover", 1, 10]],
    );
    // Contradicted since (apart at 25), then together again (35): the newest probe stands.
    const moved = fusePlacement(
      ["a1", "a2"],
      [
        trial,
        pairEvidence("a1", "a2", false, "shared-memory", 25),
        pairEvidence("a1", "a2", true, "shared-memory", 35),
      ],
      { now: 40 },
    );
    assert.deepEqual(
      moved.verdicts.map((v) => [v.source, v.together, v.at]),
      [["shared-memory", true, 35]],
    );
  });

  test("a hint never overrides a measurement, however new", () => {
    const ev = [
      pairEvidence("a1", "b1", false, "shared-memory", 100),
      pairEvidence("a1", "b1", true, "correlation", 300),
    ];
    const v = fusePlacement(["a1", "b1"], ev, { now: 300 }).verdicts[0]!;
    assert.equal(v.together, false);
    assert.equal(v.source, "shared-memory");
  });

  test("among hints the most trusted wins; expired evidence is dropped", () => {
    const ev = [
      pairEvidence("a1", "b1", true, "correlation", 290),
      pairEvidence("a1", "b1", false, "provider-hint", 100),
    ];
    assert.equal(fusePlacement(["a1", "b1"], ev, { now: 300 }).verdicts[0]!.together, false);
    const f = fusePlacement(["a1", "b1"], ev, { now: 300, maxAgeSeconds: { "provider-hint": 60 } });
    assert.equal(f.verdicts[0]!.together, true);
  });

  test("a newer conclusive apart splits a host VM from a chain of older together-evidence", () => {
    // a1, a2, a3 probed together; then a3 moved and a trial handover a1 -> a3 failed.
    const ev = [
      pairEvidence("a1", "a2", true, "shared-memory", 10),
      pairEvidence("a2", "a3", true, "shared-memory", 10),
      pairEvidence("a1", "a3", true, "shared-memory", 10),
      pairEvidence("a1", "a3", false, "trial-handover", 20),
    ];
    const f = fusePlacement(["a1", "a2", "a3"], ev, { now: 20 });
    assert.deepEqual(f.groups, [["a1", "a2"], ["a3"]]);
    assert.equal(f.hostVms.find((h) => h.hostVm === "a3")!.conflict, true);
  });

  test("an apart-verdict inside a together-chain is reported as a conflict", () => {
    const ev = [
      pairEvidence("a1", "a2", true, "shared-memory", 1),
      pairEvidence("a2", "a3", true, "shared-memory", 1),
      pairEvidence("a1", "a3", false, "provider-hint", 1),
    ];
    const f = fusePlacement(["a1", "a2", "a3"], ev, { now: 1 });
    assert.deepEqual(
      f.hostVms.map((h) => [h.hostVm, h.group, h.conflict]),
      [
        ["a1", "a1", true],
        ["a2", "a1", false],
        ["a3", "a1", true],
      ],
    );
  });

  test("full pairwise measurement places every host VM right; ids stay with their groups", () => {
    const ev = [];
    for (const x of hvs)
      for (const y of hvs) if (x < y) ev.push(pairEvidence(x, y, x[0] === y[0], "shared-memory", 5));
    const f = fusePlacement(hvs, ev, { now: 5 });
    const ids = assignServers(f.groups, ["s1", "s2"], new Map());
    assert.deepEqual(placementCorrectness(truth, ids), { correct: 6, total: 6 });
    // a3 moves to b's server: a fresh round of probes; the big groups keep their ids.
    const moved = new Map([...truth, ["a3", "b"]]);
    const ev2 = [];
    for (const x of hvs)
      for (const y of hvs)
        if (x < y) ev2.push(pairEvidence(x, y, moved.get(x) === moved.get(y), "shared-memory", 9));
    const f2 = fusePlacement(hvs, [...ev, ...ev2], { now: 9 });
    const ids2 = assignServers(f2.groups, ["s1", "s2"], ids);
    assert.deepEqual(placementCorrectness(moved, ids2), { correct: 6, total: 6 });
    assert.equal(ids2.get("a1"), ids.get("a1"));
    assert.equal(ids2.get("a3"), ids.get("b1"));
  });

  test("more groups than servers: the extra group stays unplaced", () => {
    const ids = assignServers([["x"], ["y"], ["z"]], ["s1", "s2"], new Map());
    assert.deepEqual([...ids.values()].filter((s) => s === undefined).length, 1);
  });
});

describe("correlating the two front ends", () => {
  const rented = [
    { id: "h1", acquiredAt: 0 },
    { id: "h2", acquiredAt: 0 },
    { id: "h3", acquiredAt: 500 },
  ];
  test("completed instant moves say together, refused ones apart; other moves nothing", () => {
    const ev = correlateFrontEnds(
      rented,
      [
        { from: "h1", to: "h2", mechanism: "instant", status: "completed", finishedAt: 100 },
        {
          from: "h2",
          to: "h3",
          mechanism: "instant",
          status: "failed",
          finishedAt: 600,
          notCoResident: true,
        },
        { from: "h1", to: "h3", mechanism: "precopy", status: "completed", finishedAt: 700 },
        { from: "h1", to: "h2", mechanism: "instant", status: "failed", finishedAt: 120 },
      ],
      700,
    );
    assert.deepEqual(
      ev.map((e) => [e.a, e.b, e.together, e.source]),
      [
        ["h1", "h2", true, "correlation"],
        ["h2", "h3", false, "correlation"],
      ],
    );
    // Older evidence is trusted less (the host VM may have moved since).
    assert.ok(ev[0]!.confidence < ev[1]!.confidence);
    assert.ok(ev[1]!.confidence <= 0.7);
  });
  test("a move from before a host VM was acquired is of another placement", () => {
    const ev = correlateFrontEnds(
      rented,
      [{ from: "h1", to: "h3", mechanism: "instant", status: "completed", finishedAt: 400 }],
      700,
    );
    assert.deepEqual(ev, []);
  });
});

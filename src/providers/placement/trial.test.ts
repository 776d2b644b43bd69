// Which pairs deserve a trial handover (pure): disagreements between the probe and the
// correlation first, then pairs nothing measured; a newer trial settles a pair.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pairEvidence } from "./evidence.ts";
import { PROBE_GUEST_RE, trialCandidates } from "./trial.ts";

const probe = (a: string, b: string, together: boolean, at: number) =>
  pairEvidence(a, b, together, "shared-memory", at);

describe("trial handover candidates", () => {
  test("every pair measured and no correlation: none", () => {
    const ev = [probe("a1", "a2", true, 10), probe("a1", "b1", false, 10), probe("a2", "b1", false, 10)];
    assert.deepEqual(trialCandidates(["a1", "a2", "b1"], ev), []);
  });

  test("the probe and the correlation disagree: that pair first, until a newer trial settles it", () => {
    const ev = [
      probe("a1", "a2", false, 20),
      pairEvidence("a2", "a1", true, "correlation", 5, 0.7),
      probe("a1", "b1", false, 20),
    ];
    // a2-b1: nothing measured (the probe raced a move), so unsure, after the disagreement.
    assert.deepEqual(trialCandidates(["b1", "a2", "a1"], ev), [
      { a: "a1", b: "a2", reason: "disagree" },
      { a: "a2", b: "b1", reason: "unsure" },
    ]);
    const settled = [
      ...ev,
      pairEvidence("a1", "a2", false, "trial-handover", 25),
      pairEvidence("a2", "b1", true, "trial-handover", 26),
    ];
    assert.deepEqual(trialCandidates(["a1", "a2", "b1"], settled), []);
    // Later probes that agree with the trial do not ask again.
    assert.deepEqual(trialCandidates(["a1", "a2", "b1"], [...settled, probe("a1", "a2", false, 40)]), []);
    // A trial older than the correlation, or one the probe now contradicts, does not settle it.
    const stale = [...ev, pairEvidence("a1", "a2", false, "trial-handover", 4)];
    assert.equal(trialCandidates(["a1", "a2", "b1"], stale)[0]?.reason, "disagree");
    const moved = [...ev, pairEvidence("a1", "a2", true, "trial-handover", 10)];
    assert.equal(trialCandidates(["a1", "a2", "b1"], moved)[0]?.reason, "disagree");
  });

  test("correlation agreeing with the probe, or hints alone, are no disagreement", () => {
    const ev = [probe("a1", "a2", true, 20), pairEvidence("a1", "a2", true, "correlation", 5, 0.7)];
    assert.deepEqual(trialCandidates(["a1", "a2"], ev), []);
    const hintOnly = [pairEvidence("a1", "a2", true, "provider-hint", 5)];
    assert.deepEqual(trialCandidates(["a1", "a2"], hintOnly), [{ a: "a1", b: "a2", reason: "unsure" }]);
  });

  test("probe guests have ids of their own that no tenant id matches by chance", () => {
    assert.ok(PROBE_GUEST_RE.test("ncprobe-0a1b2c3d"));
    assert.ok(!PROBE_GUEST_RE.test("ncprobe-web"));
    assert.ok(!PROBE_GUEST_RE.test("web1"));
  });
});

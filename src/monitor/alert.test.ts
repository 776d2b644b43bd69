import assert from "node:assert/strict";
import { test } from "node:test";
import { alert, EVIDENCE_LIMITS } from "./alert.ts";

test("alerts bound guest-controlled evidence: keys, string bytes, list items, control characters", () => {
  const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]));
  const a = alert({
    time: 1,
    target: "g1",
    monitor: "disk",
    channel: "remote",
    severity: "critical",
    summary: "bad\nline\u001b[31m",
    evidence: { ...many, long: "x".repeat(10_000), list: Array.from({ length: 500 }, () => "é\r") },
  });
  assert.equal(a.summary, "bad?line?[31m");
  assert.equal(Object.keys(a.evidence).length, EVIDENCE_LIMITS.keys);
  const b = alert({
    time: 1,
    target: "g1",
    monitor: "disk",
    channel: "local",
    severity: "info",
    summary: "s",
    evidence: { long: "é".repeat(5000), list: Array.from({ length: 500 }, () => "a\r") },
  });
  const long = b.evidence.long as string;
  assert.ok(Buffer.byteLength(long) <= EVIDENCE_LIMITS.stringBytes, `${Buffer.byteLength(long)} bytes`);
  assert.ok(long.endsWith("…"));
  assert.deepEqual(
    b.evidence.list,
    Array.from({ length: EVIDENCE_LIMITS.listItems }, () => "a?"),
  );
});

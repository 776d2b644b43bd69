import assert from "node:assert/strict";
import { test } from "node:test";
import { EVIDENCE_LIMITS } from "../../monitor/index.ts";
import {
  MAX_BASELINE_RECORDS,
  parseServiceMessage,
  type ServiceTarget,
  targetFitsChannel,
} from "./protocol.ts";

const mine = new Set(["ga"]);
const alertOf = (over: Record<string, unknown> = {}) => ({
  type: "alert",
  alert: {
    time: 1,
    target: "ga",
    monitor: "memory",
    channel: "local",
    severity: "critical",
    summary: "hidden task",
    evidence: { pid: 7, seenIn: ["pid-idr"] },
    ...over,
  },
});

test("a service's alert about its own target is taken, bounded again", () => {
  const m = parseServiceMessage(alertOf({ summary: `x\u001b[2J${"y".repeat(5000)}` }), mine);
  assert.equal(m?.type, "alert");
  if (m?.type !== "alert") return;
  assert.ok(!m.alert.summary.includes("\u001b"), "control characters replaced");
  assert.ok(Buffer.byteLength(m.alert.summary) <= EVIDENCE_LIMITS.stringBytes + 3);
  assert.deepEqual(m.alert.evidence.seenIn, ["pid-idr"]);
});

test("nothing about another guest, no unknown monitor or severity, no nested evidence", () => {
  for (const bad of [
    alertOf({ target: "gb" }),
    alertOf({ monitor: "kernel" }),
    alertOf({ severity: "fatal" }),
    alertOf({ evidence: { deep: { x: 1 } } }),
    alertOf({ evidence: { n: Number.NaN } }),
    alertOf({ time: "now" }),
    { type: "disk-view-open", reqId: 1, guestId: "gb" },
    { type: "disk-view-open", reqId: -1, guestId: "ga" },
    {
      type: "heartbeat",
      rssKiB: 1,
      monitors: [{ guestId: "gb", monitor: "memory", state: "running", rounds: 1, lastRoundMs: null }],
    },
    {
      type: "heartbeat",
      rssKiB: 1,
      monitors: new Array(10).fill({
        guestId: "ga",
        monitor: "memory",
        state: "running",
        rounds: 1,
        lastRoundMs: null,
      }),
    },
    { type: "config" },
    null,
    "ready",
  ])
    assert.equal(parseServiceMessage(bad, mine), null, JSON.stringify(bad));
});

test("disk views and heartbeats for its own target", () => {
  assert.deepEqual(parseServiceMessage({ type: "disk-view-open", reqId: 3, guestId: "ga" }, mine), {
    type: "disk-view-open",
    reqId: 3,
    guestId: "ga",
  });
  const hb = parseServiceMessage(
    {
      type: "heartbeat",
      rssKiB: 90_000,
      monitors: [{ guestId: "ga", monitor: "disk", state: "lost", rounds: 2, lastRoundMs: 10 }],
    },
    mine,
  );
  assert.equal(hb?.type, "heartbeat");
});

test("a target's accesses fit its channel: remote only over TLS endpoints, local and direct only local paths", () => {
  const local: ServiceTarget = {
    guestId: "ga",
    memory: { fd: 4 },
    disk: { socket: "/run/ncsv/x/nbd-ga.sock" },
    nic: { mirrorSocket: "/run/ncsv/x/mirror-ga.sock", monitorId: "s0" },
  };
  const remote: ServiceTarget = {
    guestId: "ga",
    memory: { pageServer: { host: "10.0.0.2", port: 7000, size: 256 << 20 } },
    disk: { relay: { host: "10.0.0.2", port: 7001 } },
    nic: { listen: { host: "10.0.0.1", port: 7002 }, monitorId: "s0" },
  };
  for (const c of ["local", "direct"] as const) {
    assert.equal(targetFitsChannel(local, c), true, c);
    assert.equal(targetFitsChannel(remote, c), false, c);
  }
  assert.equal(targetFitsChannel(remote, "remote"), true);
  assert.equal(targetFitsChannel(local, "remote"), false);
  // One plain access is enough to refuse a remote target: no monitor goes over the network unencrypted.
  assert.equal(targetFitsChannel({ ...remote, disk: local.disk }, "remote"), false);
  assert.equal(targetFitsChannel({ ...remote, memory: null, disk: null, nic: null }, "remote"), true);
});

test("a disk baseline handed over is its own target's, checked record by record and bounded", () => {
  const rec = {
    path: "/bin/sshd",
    ino: 12,
    type: "file",
    mode: 0o100755,
    uid: 0,
    gid: 0,
    size: 4096,
    mtime: "1700000000.000000000",
    sha256: "a".repeat(64),
  };
  const msg = (over: Record<string, unknown> = {}) => ({
    type: "disk-baseline",
    reqId: 3,
    guestId: "ga",
    rounds: 2,
    files: [rec],
    ...over,
  });
  const ok = parseServiceMessage(msg(), mine);
  assert.deepEqual(ok, { type: "disk-baseline", reqId: 3, guestId: "ga", rounds: 2, files: [rec] });
  assert.deepEqual(parseServiceMessage(msg({ files: null }), mine), {
    type: "disk-baseline",
    reqId: 3,
    guestId: "ga",
    rounds: 2,
    files: null,
  });
  for (const bad of [
    msg({ guestId: "gb" }),
    msg({ files: [{ ...rec, path: "bin/sshd" }] }),
    msg({ files: [{ ...rec, sha256: "zz" }] }),
    msg({ files: [{ ...rec, type: "door" }] }),
    msg({ files: [{ ...rec, size: -1 }] }),
    msg({ files: [{ ...rec, path: `/${"x".repeat(5000)}` }] }),
    msg({ files: Array.from({ length: MAX_BASELINE_RECORDS + 1 }, () => rec) }),
    msg({ rounds: "2" }),
  ])
    assert.equal(parseServiceMessage(bad, mine), null, JSON.stringify(bad).slice(0, 120));
});

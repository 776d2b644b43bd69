// Real QEMU 10 (TCG; scripts/ensure-qemu10.sh's private copy from bookworm-backports) on a
// namespaced testbed: in-place rejuvenation by cpr-transfer. The host VM's agent runs QEMU 10,
// so its guests start with aux-ram-share and a live update hands the new process the RAM
// as file descriptors. Twice in a row (the new processes must be cpr-ready themselves);
// after each, every guest runs exactly once, in a new QEMU 10 process, heart-beating on with
// no lost write of the verify workload, and nothing but device state went through the
// migration channel. Then the host VM's agent is killed after g1's new QEMU is listening but
// before it received the cpr state: its successor reaps that process (it has no QMP yet) and
// g1 runs on in its old one. Runs in test.sh's backports section (which installs QEMU 10 first).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { type RejuvenationReport, Rejuvenator, testbedToken } from "../../src/agent/index.ts";
import { alive, sleep } from "../support/waiting.ts";
import { assertOneIntactCopy, heartbeatOf, qemuPidsOf, testbedFixture } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
const GUESTS = ["g1", "g2"];
const QEMU10 =
  process.env.NESTCLOUD_QEMU10_BINARY ??
  resolve(import.meta.dirname, "../../.cache/qemu10/bin/qemu-system-x86_64");
const missing = existsSync(QEMU10) ? null : `no QEMU 10 at ${QEMU10}: run scripts/ensure-qemu10.sh`;
const bed = missing ? null : testbedFixture({ a: ["h1"] }, GUESTS, { qemuBinary: QEMU10 });

function describe(r: RejuvenationReport): string {
  const moves = r.out.moves
    .map(
      (m) =>
        `${m.guestId} ${m.outcome} via ${m.mechanism} pause ${m.pauseMs?.toFixed(1)} ms, ${m.transferredBytes} B`,
    )
    .join("; ");
  return (
    `${r.mode} via ${r.mechanism} (${r.qemu}): prepare ${r.out.prepareMs.toFixed(0)} ms, switch ` +
    `${r.out.switchMs.toFixed(0)} ms, agent ${r.agent ? `${r.agent.oldPid}->${r.agent.newPid}` : "kept"}; ${moves}`
  );
}

/** The executable a QEMU process runs (the wrapper execs the private binary). */
function exeOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "";
}

for (const round of [1, 2]) {
  test(`in place by cpr-transfer (round ${round}): every guest in a fresh QEMU 10, RAM handed over as fds, no write lost`, {
    skip: missing ?? false,
  }, async (t) => {
    const b = bed!;
    const st = await b.client("a", "h1").status();
    assert.equal(st.qemu?.liveUpdate, "cpr-transfer", "the agent runs QEMU >= 10");
    assert.match(st.qemu?.version ?? "", /QEMU emulator version 1\d\./);
    const hb = new Map(
      await Promise.all(GUESTS.map(async (g) => [g, await heartbeatOf(b, g, "a", "h1")] as const)),
    );
    const before = new Map(GUESTS.map((g) => [g, qemuPidsOf(b, g)]));
    const agentBefore = st.pid;
    const r = await new Rejuvenator(testbedToken(b.state), {
      log: (m) => b.logs.push(m),
      leaseMs: 8000,
      agentRecoveryMs: 30_000,
    }).rejuvenate({ hostVm: b.ep("a", "h1"), mode: "in-place" });
    t.diagnostic(describe(r));
    assert.equal(r.ok, true);
    assert.equal(r.mechanism, "cpr-transfer");
    assert.equal(r.cprTransferAvailable, true);
    assert.deepEqual(r.out.moves.map((m) => [m.guestId, m.outcome, m.mechanism]).sort(), [
      ["g1", "moved", "cpr-transfer"],
      ["g2", "moved", "cpr-transfer"],
    ]);
    for (const m of r.out.moves) {
      assert.ok(m.pauseMs !== null && m.pauseMs >= 0, `${m.guestId} pause measured`);
      // Device state only: the 256 MiB of RAM went over as a file descriptor.
      assert.ok(
        m.transferredBytes < 4 * MiB,
        `${m.guestId}: ${m.transferredBytes} bytes through the channel`,
      );
    }
    assert.ok(r.agent && r.agent.oldPid === agentBefore && alive(agentBefore) === false, "agent renewed");
    assert.deepEqual([...r.agent.adopted].sort(), GUESTS, "the new agent adopted both new QEMUs");
    for (const g of GUESTS) {
      const now = qemuPidsOf(b, g);
      assert.equal(now.length, 1, `${g}: one QEMU`);
      assert.notDeepEqual(now, before.get(g), `${g} runs in a new QEMU process`);
      assert.match(exeOf(now[0]), /qemu10\/usr\/bin\/qemu-system-x86_64$/, `${g} runs under QEMU 10`);
      await assertOneIntactCopy(b, g, "a", "h1", hb.get(g));
    }
  });
}

test("in place by cpr-transfer, the agent killed before g1's new QEMU received its state: that QEMU is reaped, g1 stays in its old one; every guest runs once, intact", {
  skip: missing ?? false,
}, async (t) => {
  const b = bed!;
  const hb = new Map(
    await Promise.all(GUESTS.map(async (g) => [g, await heartbeatOf(b, g, "a", "h1")] as const)),
  );
  const g1Before = qemuPidsOf(b, "g1");
  const agentBefore = (await b.client("a", "h1").status()).pid;
  let victim: number | null = null;
  const r = await new Rejuvenator(testbedToken(b.state), {
    log: (m) => b.logs.push(m),
    leaseMs: 8000,
    agentRecoveryMs: 30_000,
  }).rejuvenate({
    hostVm: b.ep("a", "h1"),
    mode: "in-place",
    restartAgent: false,
    switchParallel: 1,
    hooks: (g) =>
      g === "g1"
        ? {
            // g1's destination listens on its cpr channel; the source has not sent a thing.
            afterPrepare: async (inc) => {
              victim = inc.pid;
              process.kill(agentBefore, "SIGKILL");
              while (alive(agentBefore)) await sleep(20);
            },
          }
        : undefined,
  });
  t.diagnostic(describe(r));
  const g1 = r.out.moves.find((m) => m.guestId === "g1")!;
  assert.equal(g1.outcome, "stayed", `g1 kept by its old QEMU: ${g1.error}`);
  for (const m of r.out.moves) assert.notEqual(m.outcome, "unknown", `${m.guestId}: ${m.error}`);
  // The supervisor starts its successor (the run may end before it answers).
  let after: Awaited<ReturnType<ReturnType<typeof b.client>["status"]>> | undefined;
  for (let i = 0; i < 120 && !after; i++)
    after = await b
      .client("a", "h1")
      .status()
      .catch(() => sleep(500).then(() => undefined));
  assert.ok(after, "the agent answers again");
  assert.notEqual(after.pid, agentBefore, "the supervisor restarted the agent");
  for (let i = 0; i < 120 && (alive(victim) || GUESTS.some((g) => qemuPidsOf(b, g).length !== 1)); i++)
    await sleep(500);
  assert.equal(alive(victim), false, "g1's new QEMU, which never got the state, is gone");
  assert.deepEqual(qemuPidsOf(b, "g1"), g1Before, "g1 runs in its old QEMU");
  for (const g of GUESTS) await assertOneIntactCopy(b, g, "a", "h1", hb.get(g));
});

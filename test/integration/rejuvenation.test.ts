// Real QEMU (TCG) on a namespaced testbed: rejuvenation of a host VM under running guests.
// In place: every guest live-updated into a fresh QEMU on the same host VM, then the agent
// restarted (it adopts the new QEMUs). Evacuate: every guest handed over to the spare host
// VM of the same server, the agent renewed, the guests back. Faults: the new QEMU dies
// before or during the update, the agent is killed in the middle. After each, every guest
// runs exactly once (one QEMU), with its heartbeats going on (no reboot) and no lost write
// of the verify workload; no guest memory crossed the network.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { type RejuvenationReport, Rejuvenator, serverClient, testbedToken } from "../../src/agent/index.ts";
import { currentHostVmAgent } from "../../src/testbed/index.ts";
import { alive, sleep } from "../support/waiting.ts";
import { assertOneIntactCopy, heartbeatOf, qemuPidsOf, testbedFixture } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
const GUESTS = ["g1", "g2"];
const bed = testbedFixture({ a: ["h1", "h2"] }, GUESTS);

function rejuvenator(): Rejuvenator {
  return new Rejuvenator(testbedToken(bed.state), {
    log: (m) => bed.logs.push(m),
    leaseMs: 8000,
    agentRecoveryMs: 30_000,
  });
}

async function ifaceBytes(): Promise<number | null> {
  const i = (await serverClient(bed.state, "a").status()).iface;
  return i ? i.rxBytes + i.txBytes : null;
}

/** Heartbeats of every guest, where each runs now. */
async function heartbeats(at: string): Promise<Map<string, number>> {
  return new Map(
    await Promise.all(GUESTS.map(async (g) => [g, await heartbeatOf(bed, g, "a", at)] as const)),
  );
}

async function assertAllIntact(at: string, hb: Map<string, number>): Promise<void> {
  for (const g of GUESTS) await assertOneIntactCopy(bed, g, "a", at, hb.get(g));
}

function describe(r: RejuvenationReport): string {
  const moves = [...r.out.moves, ...(r.back?.moves ?? [])]
    .map((m) => `${m.guestId} ${m.from}->${m.to} ${m.outcome} pause ${m.pauseMs?.toFixed(1)} ms`)
    .join("; ");
  return (
    `${r.mode} via ${r.mechanism} (${r.qemu}): prepare ${r.out.prepareMs.toFixed(0)} ms, switch ` +
    `${r.out.switchMs.toFixed(0)} ms, agent ${r.agent ? `${r.agent.oldPid}->${r.agent.newPid} in ${r.agent.restartMs.toFixed(0)} ms` : "kept"}; ` +
    `${moves}; ${r.bytesMoved} bytes moved`
  );
}

test("in place: every guest live-updated into a fresh QEMU, the agent restarted, no guest rebooted", async (t) => {
  const hb = await heartbeats("h1");
  const before = new Map(GUESTS.map((g) => [g, qemuPidsOf(bed, g)]));
  const agentBefore = (await bed.client("a", "h1").status()).pid;
  const netBefore = await ifaceBytes();
  const steps: string[] = [];
  const r = await rejuvenator().rejuvenate({
    hostVm: bed.ep("a", "h1"),
    mode: "in-place",
    onProgress: (p) => steps.push(p.step),
  });
  t.diagnostic(describe(r));
  assert.equal(r.ok, true);
  assert.equal(r.mechanism, "x-ignore-shared");
  assert.match(r.qemu, /QEMU emulator version/);
  assert.deepEqual(r.out.moves.map((m) => [m.guestId, m.outcome, m.from, m.to]).sort(), [
    ["g1", "moved", "a/h1", "a/h1"],
    ["g2", "moved", "a/h1", "a/h1"],
  ]);
  for (const m of r.out.moves) {
    assert.ok(m.pauseMs !== null && m.pauseMs >= 0, `${m.guestId} pause measured`);
    // Device state only: the RAM (256 MiB) stays in the shared file.
    assert.ok(m.transferredBytes < 4 * MiB, `${m.guestId}: ${m.transferredBytes} bytes through the channel`);
  }
  assert.ok(r.agent, "the agent was restarted");
  assert.equal(r.agent.oldPid, agentBefore);
  assert.notEqual(r.agent.newPid, agentBefore);
  assert.equal(alive(agentBefore), false, "the old agent process is gone");
  assert.deepEqual([...r.agent.adopted].sort(), GUESTS, "the new agent adopted both new QEMUs");
  for (const step of ["preparing", "switching", "guest-moved", "restarting-agent", "agent-restarted", "done"])
    assert.ok(steps.includes(step), `progress reported ${step}`);
  for (const g of GUESTS) {
    const now = qemuPidsOf(bed, g);
    assert.equal(now.length, 1);
    assert.notDeepEqual(now, before.get(g), `${g} runs in a new QEMU process`);
  }
  await assertAllIntact("h1", hb);
  const netAfter = await ifaceBytes();
  if (netBefore !== null && netAfter !== null) {
    // Only the orchestrator's HTTP calls cross the server's interface, not 2 x 256 MiB of RAM.
    assert.ok(netAfter - netBefore < 2 * MiB, `server interface moved ${netAfter - netBefore} bytes`);
  }
});

test("evacuate: every guest handed over to the spare host VM, the agent renewed, the guests back", async (t) => {
  const hb = await heartbeats("h1");
  const agentBefore = (await bed.client("a", "h1").status()).pid;
  const netBefore = await ifaceBytes();
  const r = await rejuvenator().rejuvenate({
    hostVm: bed.ep("a", "h1"),
    spare: bed.ep("a", "h2"),
    mode: "evacuate",
  });
  t.diagnostic(describe(r));
  assert.equal(r.ok, true);
  assert.deepEqual(r.out.moves.map((m) => [m.guestId, m.outcome, m.to]).sort(), [
    ["g1", "moved", "a/h2"],
    ["g2", "moved", "a/h2"],
  ]);
  assert.deepEqual(r.back?.moves.map((m) => [m.guestId, m.outcome, m.to]).sort(), [
    ["g1", "moved", "a/h1"],
    ["g2", "moved", "a/h1"],
  ]);
  assert.ok(r.agent && r.agent.oldPid === agentBefore && r.agent.newPid !== agentBefore);
  assert.deepEqual(r.agent.adopted, [], "the renewed agent started empty (its guests were on the spare)");
  await assertAllIntact("h1", hb);
  assert.equal((await bed.client("a", "h2").status()).guests.length, 0, "the spare is empty again");
  const ledger = (await serverClient(bed.state, "a").status()).hostVms;
  assert.deepEqual(
    ledger.map((h) => [h.name, h.reservedMiB, h.pendingMiB]),
    [
      ["h1", 512, 0],
      ["h2", 0, 0],
    ],
    "the memory counts on h1 again",
  );
  const netAfter = await ifaceBytes();
  if (netBefore !== null && netAfter !== null)
    assert.ok(netAfter - netBefore < 2 * MiB, `server interface moved ${netAfter - netBefore} bytes`);
});

for (const when of ["before its switchover", "after the source completed"] as const) {
  test(`in place, g1's new QEMU dies ${when}: g1 stays in its old QEMU, g2 is updated`, async (t) => {
    const hb = await heartbeats("h1");
    const g1Before = qemuPidsOf(bed, "g1");
    const kill = (pid: number | null) => {
      process.kill(pid!, "SIGKILL");
    };
    let victim: number | null = null;
    const r = await rejuvenator().rejuvenate({
      hostVm: bed.ep("a", "h1"),
      mode: "in-place",
      restartAgent: false,
      hooks: (g) =>
        g !== "g1"
          ? undefined
          : when === "before its switchover"
            ? { afterPrepare: (inc) => kill((victim = inc.pid)) }
            : { afterPrepare: (inc) => void (victim = inc.pid), beforeFinish: () => kill(victim) },
    });
    t.diagnostic(describe(r));
    assert.equal(r.ok, false);
    const g1 = r.out.moves.find((m) => m.guestId === "g1")!;
    const g2 = r.out.moves.find((m) => m.guestId === "g2")!;
    assert.equal(g1.outcome, "stayed", g1.error ?? "");
    assert.equal(g2.outcome, "moved", g2.error ?? "");
    assert.equal(alive(victim), false);
    assert.deepEqual(qemuPidsOf(bed, "g1"), g1Before, "g1 runs in its old QEMU");
    await assertAllIntact("h1", hb);
    assert.ok(existsSync(join(bed.state.servers[0].poolDir, "g1.ram")), "g1's RAM file stayed");
  });
}

test("in place, the host VM's agent killed mid-update: every guest runs once, updated or rolled back", async (t) => {
  const hb = await heartbeats("h1");
  const hv = bed.state.hostVms.find((h) => h.server === "a" && h.name === "h1")!;
  const agentBefore = currentHostVmAgent(hv)!.pid;
  const r = await rejuvenator().rejuvenate({
    hostVm: bed.ep("a", "h1"),
    mode: "in-place",
    restartAgent: false,
    switchParallel: 1,
    hooks: (g) =>
      g === "g1"
        ? {
            beforeFinish: async () => {
              process.kill(agentBefore, "SIGKILL");
              while (alive(agentBefore)) await sleep(20);
            },
          }
        : undefined,
  });
  t.diagnostic(describe(r));
  const g1 = r.out.moves.find((m) => m.guestId === "g1")!;
  assert.equal(g1.outcome, "stayed", `g1 rolled back to its old QEMU: ${g1.error}`);
  for (const m of r.out.moves) assert.notEqual(m.outcome, "unknown", `${m.guestId}: ${m.error}`);
  const after = await bed.client("a", "h1").status();
  assert.notEqual(after.pid, agentBefore, "the supervisor restarted the agent");
  t.diagnostic(
    `adopted at start: ${JSON.stringify(after.adoptedAtStart.map((a) => [a.guestId, a.as, a.qemuStatus]))}`,
  );
  for (const g of GUESTS) {
    // A copy paused by the kill is settled by the orchestrator or, at the latest, by its agent.
    for (let i = 0; i < 120 && qemuPidsOf(bed, g).length !== 1; i++) await sleep(500);
  }
  await assertAllIntact("h1", hb);
});

// Real QEMU (TCG) on a namespaced testbed: pre-copy faults between two servers. The
// destination QEMU is killed mid-copy, the migration is cancelled during setup and during
// the copy, and the link between the servers is cut mid-copy. After each, exactly one copy
// of the guest runs (at the source) with its memory intact, and nothing is left over at
// the destination: no QEMU, no pool file, no memory reservation. Then the processes that
// drive a migration are killed: the orchestrator right after the source completed (the
// source agent settles the migration itself, the ledger is reconciled), and the source's
// host-VM agent mid-copy (its supervisor restarts it, the new agent adopts the migrating
// QEMU and the move completes). A guest never ends up running nowhere, nor twice.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { type MigrateRequest, MigrationFailedError, serverClient } from "../../src/agent/index.ts";
import { currentHostVmAgent, cutLink } from "../../src/testbed/index.ts";
import { alive, sleep, waitFor } from "../support/waiting.ts";
import { assertOneIntactCopy, heartbeatOf, qemuPidsOf, testbedFixture } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
// A failed test may leave the link down: teardown removes the namespaces anyway.
const bed = testbedFixture({ a: ["h1"], b: ["h1"] }, ["g1"]);

/** A pre-copy a/h1 -> b/h1 slow enough (bandwidth cap) to be caught mid-way. */
function slowPrecopy(extra: Partial<MigrateRequest> = {}): MigrateRequest {
  return {
    guestId: "g1",
    from: bed.ep("a", "h1"),
    to: bed.ep("b", "h1"),
    options: { maxBandwidth: 8 * MiB },
    ...extra,
  };
}

/** Nothing of the failed migration is left at the destination server (b unless told). */
async function assertDestinationClean(migrationId: string, server = "b"): Promise<void> {
  const inc = await waitFor(
    "the destination to be dropped",
    async () => {
      const s = await bed.client(server, "h1").incoming(migrationId);
      return ["failed", "aborted", "expired"].includes(s.state) && s;
    },
    30_000,
  );
  assert.equal(alive(inc.pid), false, `destination QEMU pid ${inc.pid} is gone`);
  const poolDir = bed.state.servers.find((x) => x.name === server)!.poolDir;
  assert.equal(existsSync(join(poolDir, "g1.ram")), false, `no pool file at ${server}`);
  await waitFor(
    `${server}'s reservation of g1 to be dropped`,
    async () => (await serverClient(bed.state, server).status()).hostVms[0].reservedMiB === 0,
    60_000,
  );
}

test("destination QEMU killed mid pre-copy: the guest runs on at the source", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  let destPid = 0;
  let killedAt = -1;
  const err = await bed.orch
    .migrate(
      slowPrecopy({
        hooks: { afterPrepare: (inc) => void (destPid = inc.pid!) },
        onProgress: (p) => {
          if (killedAt < 0 && p.transferredBytes > 4 * MiB) {
            killedAt = p.transferredBytes;
            process.kill(destPid, "SIGKILL");
          }
        },
      }),
    )
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(err instanceof MigrationFailedError, `failed as expected: ${err}`);
  t.diagnostic(`killed the destination at ${(killedAt / MiB).toFixed(1)} MiB: ${err.message}`);
  assert.equal(err.guestAt, "source");
  assert.equal(err.outcome, "failed");
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
  await assertDestinationClean(err.migrationId);
});

test("cancel during setup: the guest runs on at the source", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  let statusAtCancel = "";
  let cancelled: Promise<void> = Promise.resolve();
  // QEMU's setup phase lasts until the migration channel is connected; with b's link down
  // after its QEMU started listening, the source stays in setup until we cancel.
  const h = bed.orch.start(
    slowPrecopy({
      hooks: {
        afterPrepare: () => cutLink(bed.state, "b", false),
        afterStart: (out) => {
          void (async () => {
            const src = bed.client("a", "h1");
            for (let i = 0; i < 2000; i++) {
              const o = await src.outgoing(out.migrationId);
              if (o.timing.migrateAt !== null) {
                await sleep(200);
                const q = (await src.qmp("g1", { execute: "query-migrate" })).return as {
                  status?: string;
                  ram?: { transferred: number };
                };
                statusAtCancel = `${q.status} (${q.ram?.transferred ?? 0} bytes sent)`;
                cancelled = h.cancel("test: cancel during setup");
                await cutLink(bed.state, "b", true);
                return;
              }
              await sleep(5);
            }
          })();
        },
      },
    }),
  );
  const err = await h.done.then(
    () => null,
    (e: unknown) => e,
  );
  await cancelled;
  assert.ok(err instanceof MigrationFailedError, `cancelled as expected: ${err}`);
  t.diagnostic(`QEMU status when cancelled: ${statusAtCancel}; ${err.message}`);
  assert.match(statusAtCancel, /^setup \(0 bytes/, "cancelled during setup");
  assert.equal(err.outcome, "cancelled");
  assert.equal(err.guestAt, "source");
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
  await assertDestinationClean(err.migrationId);
});

test("cancel during active pre-copy: the guest runs on at the source", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  let at = -1;
  const h = bed.orch.start(
    slowPrecopy({
      options: { maxBandwidth: 4 * MiB },
      onProgress: (p) => {
        if (at < 0 && p.status === "active" && p.transferredBytes > 2 * MiB) {
          at = p.transferredBytes;
          void h.cancel("test: cancel while active");
        }
      },
    }),
  );
  const err = await h.done.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof MigrationFailedError, `cancelled as expected: ${err}`);
  t.diagnostic(`cancelled at ${(at / MiB).toFixed(1)} MiB sent: ${err.message}`);
  assert.equal(err.outcome, "cancelled");
  assert.equal(err.guestAt, "source");
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
  await assertDestinationClean(err.migrationId);
});

test("the link between the servers cut mid pre-copy: detected, cancelled, the guest runs on", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  let cut = false;
  let cutting: Promise<void> = Promise.resolve();
  const t0 = Date.now();
  const err = await bed.orch
    .migrate(
      slowPrecopy({
        onProgress: (p) => {
          if (!cut && p.transferredBytes > 4 * MiB) {
            cut = true;
            cutting = cutLink(bed.state, "b", false);
          }
        },
      }),
    )
    .then(
      () => null,
      (e: unknown) => e,
    );
  await cutting;
  assert.ok(cut, "the link was cut mid-copy");
  assert.ok(err instanceof MigrationFailedError, `failed as expected: ${err}`);
  t.diagnostic(`detected and rolled back in ${Date.now() - t0} ms: ${err.message}`);
  assert.equal(err.guestAt, "source");
  // While b is cut off, the guest already runs again at a; b's QEMU (if its lease has not
  // expired yet) waits paused behind the cut link and never ran the guest.
  const pidsWhileCut = qemuPidsOf(bed, "g1");
  t.diagnostic(`QEMUs of g1 while the link is down: ${pidsWhileCut.length}`);
  assert.ok(pidsWhileCut.length >= 1 && pidsWhileCut.length <= 2);
  await cutLink(bed.state, "b", true);
  // Nobody renews the destination's lease any more: b's agent kills its own QEMU.
  await waitFor(
    "the destination's lease to expire",
    async () => {
      const s = await bed.client("b", "h1").incoming(err.migrationId);
      return s.state === "expired" || s.state === "aborted" || s.state === "failed";
    },
    30_000,
  );
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
  await assertDestinationClean(err.migrationId);
});

/** What each server agent's ledger says: [server/hostVm, reserved MiB, pending MiB]. */
async function ledgers(): Promise<Array<[string, number, number]>> {
  const out: Array<[string, number, number]> = [];
  for (const sv of ["a", "b"]) {
    for (const h of (await serverClient(bed.state, sv).status()).hostVms)
      out.push([`${sv}/${h.name}`, h.reservedMiB, h.pendingMiB]);
  }
  return out;
}

test("the orchestrator killed right after the source completed: the source agent settles it, the ledger is reconciled", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  // A real orchestrator in its own process, SIGKILLed at the decision point: the source
  // completed (paused, postmigrate), the destination is loaded and paused (-S), nobody
  // finishes, confirms or renews anything any more.
  const agentIndex = resolve(import.meta.dirname, "../../src/agent/index.ts");
  const testbedIndex = resolve(import.meta.dirname, "../../src/testbed/index.ts");
  const script = `
    import { MigrationOrchestrator, endpointOf, testbedToken } from ${JSON.stringify(agentIndex)};
    import { readTestbedState } from ${JSON.stringify(testbedIndex)};
    const state = readTestbedState(${JSON.stringify(bed.state.stateDir)});
    const orch = new MigrationOrchestrator(testbedToken(state), { leaseMs: 4000 });
    await orch.migrate({
      guestId: "g1", from: endpointOf(state, "a", "h1"), to: endpointOf(state, "b", "h1"),
      hooks: {
        beforeFinish: (out) => {
          console.log(JSON.stringify({ migrationId: out.migrationId, phase: out.phase }));
          process.kill(process.pid, "SIGKILL");
        },
      },
    });
  `;
  const orch = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let line = "";
  orch.stdout.on("data", (d) => (line += d));
  const t0 = Date.now();
  const exit = await new Promise<NodeJS.Signals | null>((r) => orch.once("exit", (_c, sig) => r(sig)));
  assert.equal(exit, "SIGKILL", "the orchestrator died at the decision point");
  const { migrationId, phase } = JSON.parse(line.split("\n")[0]) as { migrationId: string; phase: string };
  assert.equal(phase, "completed");
  const [src, dst] = [bed.client("a", "h1"), bed.client("b", "h1")];
  assert.equal((await src.guest("g1")).qemuStatus, "postmigrate", "the source waits, paused");

  // The destination's lease runs out (4 s); the source agent, unconfirmed for 2 leases,
  // aborts the incoming (which fences it) and resumes the guest.
  const settled = await waitFor(
    "the source agent to settle the migration",
    async () => {
      const o = await src.outgoing(migrationId);
      return o.phase !== "completed" && o;
    },
    60_000,
  );
  t.diagnostic(
    `settled by the source agent ${Date.now() - t0} ms after the orchestrator died: ${settled.phase}`,
  );
  assert.equal(settled.phase, "rolled-back");
  const inc = await dst.incoming(migrationId);
  assert.ok(["expired", "aborted"].includes(inc.state), `destination ${inc.state}`);
  assert.equal(alive(inc.pid), false, "the destination QEMU is gone");
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);

  // The reservation the dead orchestrator made at b is undone by b's server agent.
  const rec = await waitFor(
    "b's ledger to drop the reservation nothing stands behind",
    async () => {
      const st = await serverClient(bed.state, "b").status();
      return st.hostVms[0].reservedMiB === 0 && st.reconciled;
    },
    60_000,
  );
  t.diagnostic(
    `b reconciled after ${Date.now() - t0} ms: ${rec.map((r) => `${r.action} ${r.guestId}: ${r.why}`)}`,
  );
  assert.deepEqual(
    rec.map((r) => [r.action, r.hostVm, r.guestId]),
    [["released", "h1", "g1"]],
  );
  assert.deepEqual(await ledgers(), [
    ["a/h1", 256, 0],
    ["b/h1", 0, 0],
  ]);
});

test("the source's host-VM agent killed mid pre-copy: restarted, it adopts the migrating QEMU, the move completes", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  const hv = bed.state.hostVms.find((h) => h.server === "a" && h.name === "h1")!;
  const old = currentHostVmAgent(hv)!;
  const srcQemu = qemuPidsOf(bed, "g1");
  let killedAt = -1;
  let holdMs = -1;
  let holding: Promise<void> = Promise.resolve();
  // The copy must outlast the successor's start, which on a loaded machine can take longer
  // than the whole copy at 8 MiB/s (CI saw the successor adopt the QEMU in postmigrate).
  // So the bandwidth is throttled (QMP, through the agent, as an operator would) just
  // before the kill, and given back through the successor once it adopted the QEMU.
  const killHoldingTheCopy = async () => {
    const src = bed.client("a", "h1");
    await src.qmp("g1", { execute: "migrate-set-parameters", arguments: { "max-bandwidth": 128 * 1024 } });
    const held = Date.now();
    process.kill(old.pid, "SIGKILL");
    await waitFor(
      "the successor agent to adopt g1",
      async () => {
        const s = await src.status().catch(() => null);
        return s !== null && s.pid !== old.pid && s.adoptedAtStart.some((x) => x.guestId === "g1");
      },
      90_000,
    );
    await src.qmp("g1", { execute: "migrate-set-parameters", arguments: { "max-bandwidth": 8 * MiB } });
    holdMs = Date.now() - held;
  };
  const t0 = Date.now();
  const r = await bed.orch.migrate(
    slowPrecopy({
      // Slow, yet converging: the verify workload keeps rewriting its 16 MiB, which fit in
      // the final pause at this bandwidth and downtime limit.
      options: { maxBandwidth: 8 * MiB, downtimeLimitMs: 4000 },
      onProgress: (p) => {
        if (killedAt < 0 && p.transferredBytes > MiB) {
          killedAt = p.transferredBytes;
          holding = killHoldingTheCopy();
        }
      },
    }),
  );
  const ms = Date.now() - t0;
  await holding;
  assert.ok(killedAt > 0, "the source agent was killed mid-copy");
  assert.ok(holdMs >= 0, "the copy was given its bandwidth back by the successor");
  const st = await bed.client("a", "h1").status();
  const adopted = st.adoptedAtStart.find((x) => x.guestId === "g1");
  t.diagnostic(
    `source agent ${old.pid} killed at ${(killedAt / MiB).toFixed(1)} MiB; its successor ${st.pid} adopted ` +
      `QEMU ${adopted?.pid} (run state ${adopted?.qemuStatus}); moved in ${ms} ms, ${r.transferredBytes} bytes, ` +
      `QEMU downtime ${r.qemu?.downtimeMs} ms; the copy was throttled for ${holdMs} ms until the successor adopted it`,
  );
  assert.notEqual(st.pid, old.pid, "a new agent runs the source host VM");
  assert.deepEqual(
    [adopted?.pid, adopted?.as, adopted?.migrationId, adopted?.qemuStatus],
    [srcQemu[0], "guest", r.migrationId, "running"],
    "it adopted the source QEMU with its migration still under way",
  );
  assert.equal(st.outgoing.find((o) => o.migrationId === r.migrationId)?.phase, "confirmed");
  assert.ok(ms < 120_000, `bounded: ${ms} ms`);
  await assertOneIntactCopy(bed, "g1", "b", "h1", hb);
  assert.equal(alive(srcQemu[0]), false, "the source QEMU was stopped after the move");
  assert.deepEqual(await ledgers(), [
    ["a/h1", 0, 0],
    ["b/h1", 256, 0],
  ]);
});

test("the source's host-VM agent killed once its QEMU completed: the successor adopts it paused, the confirm reaches it", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "b", "h1");
  const hv = bed.state.hostVms.find((h) => h.server === "b" && h.name === "h1")!;
  const old = currentHostVmAgent(hv)!;
  const srcQemu = qemuPidsOf(bed, "g1");
  const t0 = Date.now();
  const r = await bed.orch.migrate({
    guestId: "g1",
    from: bed.ep("b", "h1"),
    to: bed.ep("a", "h1"),
    // The source is paused in postmigrate, the destination about to be started.
    hooks: { beforeFinish: () => void process.kill(old.pid, "SIGKILL") },
  });
  const ms = Date.now() - t0;
  const st = await bed.client("b", "h1").status();
  const adopted = st.adoptedAtStart.find((x) => x.guestId === "g1");
  t.diagnostic(
    `successor ${st.pid} adopted QEMU ${adopted?.pid} (${adopted?.qemuStatus}); moved in ${ms} ms`,
  );
  assert.notEqual(st.pid, old.pid);
  assert.deepEqual(
    [adopted?.pid, adopted?.migrationId, adopted?.qemuStatus],
    [srcQemu[0], r.migrationId, "postmigrate"],
  );
  assert.equal(st.outgoing.find((o) => o.migrationId === r.migrationId)?.phase, "confirmed");
  assert.ok(ms < 120_000, `bounded: ${ms} ms`);
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
  assert.equal(alive(srcQemu[0]), false, "the paused source QEMU was stopped by the confirm");
  assert.deepEqual(await ledgers(), [
    ["a/h1", 256, 0],
    ["b/h1", 0, 0],
  ]);
});

test("RAM check before finish: the frozen RAM files of both sides are compared and found equal", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  const r = await bed.orch.migrate({
    guestId: "g1",
    from: bed.ep("a", "h1"),
    to: bed.ep("b", "h1"),
    verifyRam: true,
  });
  t.diagnostic(`RAM check: ${JSON.stringify(r.ramCheck)}; guest downtime ${r.downtimeMs} ms`);
  // 256 MiB and the 8 KiB of the TCG workaround: 257 chunks of 1 MiB.
  assert.deepEqual([r.ramCheck?.result, r.ramCheck?.result === "equal" && r.ramCheck.chunks], ["equal", 257]);
  await assertOneIntactCopy(bed, "g1", "b", "h1", hb);
});

test("RAM check before finish: a page that differs at the destination is rolled back, the guest runs intact at the source", async (t) => {
  const hb = await heartbeatOf(bed, "g1", "b", "h1");
  const destRam = join(bed.state.servers.find((x) => x.name === "a")!.poolDir, "g1.ram");
  // What a lost dirty page leaves behind: one page at the destination that is not the
  // source's (written while both are frozen, the source completed and the destination -S).
  const err = await bed.orch
    .migrate({
      guestId: "g1",
      from: bed.ep("b", "h1"),
      to: bed.ep("a", "h1"),
      verifyRam: true,
      hooks: {
        beforeFinish: async () => {
          const fh = await open(destRam, "r+");
          try {
            const at = 100 * MiB + 4096 * 3 + 17;
            const b = Buffer.alloc(1);
            await fh.read(b, 0, 1, at);
            b[0] ^= 0xff;
            await fh.write(b, 0, 1, at);
          } finally {
            await fh.close();
          }
        },
      },
    })
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(err instanceof MigrationFailedError, `rolled back as expected: ${err}`);
  t.diagnostic(err.message);
  assert.equal(err.outcome, "rolled-back");
  assert.equal(err.guestAt, "source");
  assert.match(err.message, /differs from the source's in 1 of 257 MiB \(100\)/);
  await assertOneIntactCopy(bed, "g1", "b", "h1", hb);
  await assertDestinationClean(err.migrationId, "a");
});

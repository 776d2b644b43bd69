// Real QEMU (TCG) on a namespaced testbed: the destination host-VM agent killed during an
// instant handover (before the move, and after the device state arrived but before the
// destination was started), and co-migration of two guests: one side failing (both stay),
// then both moving together. After each, exactly one copy of each guest runs with its
// memory intact, and no stray QEMU or pool file is left: the killed agent's supervisor
// restarts it (in the same namespace and slice), the new agent adopts the orphaned
// destination QEMU, and the orchestrator aborts it there.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { MigrationFailedError, serverClient } from "../../src/agent/index.ts";
import { currentHostVmAgent } from "../../src/testbed/index.ts";
import { alive, sleep, waitFor } from "../support/waiting.ts";
import { assertOneIntactCopy, heartbeatOf, qemuPidsOf, testbedFixture } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
const bed = testbedFixture({ a: ["h1", "h2"], b: ["h1", "h2"] }, ["g1", "g2"]);

function killAgent(server: string, hostVm: string): { pid: number; url: string } {
  const rec = currentHostVmAgent(bed.state.hostVms.find((h) => h.server === server && h.name === hostVm)!)!;
  process.kill(rec.pid, "SIGKILL");
  return { pid: rec.pid, url: rec.url! };
}

/**
 * Until the killed agent's port refuses connections. Its pid turning zombie is not enough:
 * Node's other threads may still hold the listening socket for a moment, and a connection
 * accepted by the kernel then is reset, not refused (the orchestrator would rightly treat
 * that finish as "fate unknown").
 */
async function waitDead(pid: number, url: string): Promise<void> {
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
  assert.equal(alive(pid), false, `pid ${pid} died`);
  const { hostname, port } = new URL(url);
  for (let i = 0; i < 100; i++) {
    const refused = await new Promise<boolean>((res) => {
      const s = connect(Number(port), hostname);
      s.once("connect", () => {
        s.destroy();
        res(false);
      });
      s.once("error", (e: NodeJS.ErrnoException) => res(e.code === "ECONNREFUSED"));
    });
    if (refused) return;
    await sleep(50);
  }
  assert.fail(`${url} still accepts connections after its agent died`);
}

/** The server agent must not present a dead host-VM agent as registered and alive. */
async function assertNotShownAlive(server: string, hostVm: string, deadPid: number): Promise<void> {
  const h = (await serverClient(bed.state, server).status()).hostVms.find((x) => x.name === hostVm)!;
  assert.ok(
    h.pid !== deadPid || h.agentAlive === false,
    `server agent ${server} shows dead agent pid ${deadPid} as ${h.agentAlive ? "alive" : h.agentAlive}`,
  );
}

/**
 * Nobody restarts anything by hand: the supervisor restarts the killed agent in the same
 * namespace and cgroup slice, the new agent adopts the orphaned destination QEMU (paused,
 * -S: it never ran) as an incoming, and the orchestrator's abort (or the lease) kills it.
 */
async function expectRestartedAndOrphanGone(
  server: string,
  hostVm: string,
  deadPid: number,
  orphanPid: number,
  migrationId: string,
): Promise<string> {
  const t0 = Date.now();
  const reg = await waitFor(
    "the supervisor to restart the agent",
    async () => {
      const h = (await serverClient(bed.state, server).status()).hostVms.find((x) => x.name === hostVm)!;
      return h.pid !== deadPid && h.agentAlive === true && h;
    },
    60_000,
  );
  const restartMs = Date.now() - t0;
  const st = await bed.client(server, hostVm).status();
  assert.equal(st.pid, reg.pid, "the agent at the old URL is the one that registered");
  const ns = (pid: number) => readlinkSync(`/proc/${pid}/ns/net`);
  const serverPid = bed.state.servers.find((x) => x.name === server)!.agent!.pid;
  assert.equal(ns(st.pid), ns(serverPid), "restarted in the server's network namespace");
  const hv = bed.state.hostVms.find((h) => h.server === server && h.name === hostVm)!;
  const cg = readFileSync(`/proc/${st.pid}/cgroup`, "utf8");
  for (const d of hv.cgroupDirs) {
    const rel = d.split("/").slice(-2).join("/");
    assert.ok(cg.includes(rel), `restarted in the slice's cgroup ${rel}: ${cg}`);
  }
  assert.deepEqual(
    st.adoptedAtStart.map((a) => [a.pid, a.as, a.migrationId]),
    [[orphanPid, "incoming", migrationId]],
    "the new agent adopted the orphaned destination QEMU",
  );
  await waitFor("the orphaned destination QEMU to be gone", async () => !alive(orphanPid), 60_000);
  const inc = await bed.client(server, hostVm).incoming(migrationId);
  assert.ok(["aborted", "expired"].includes(inc.state), `the adopted incoming ended ${inc.state}`);
  return `agent restarted in ${restartMs} ms, orphan gone after ${Date.now() - t0} ms (${inc.state})`;
}

for (const when of ["after the destination was prepared", "after the device state arrived"] as const) {
  test(`destination agent killed during an instant handover (${when}): rolled back`, async (t) => {
    const hb = await heartbeatOf(bed, "g1", "a", "h1");
    const poolFile = (await bed.client("a", "h1").guest("g1")).poolFile!;
    let orphan = 0;
    let dead = 0;
    const kill = async () => {
      const k = killAgent("a", "h2");
      dead = k.pid;
      await waitDead(k.pid, k.url);
      await assertNotShownAlive("a", "h2", k.pid);
    };
    const err = await bed.orch
      .migrate({
        guestId: "g1",
        from: bed.ep("a", "h1"),
        to: bed.ep("a", "h2"),
        hooks:
          when === "after the destination was prepared"
            ? { afterPrepare: async (inc) => ((orphan = inc.pid!), await kill()) }
            : {
                afterPrepare: (inc) => void (orphan = inc.pid!),
                beforeFinish: kill,
              },
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err instanceof MigrationFailedError, `failed as expected: ${err}`);
    t.diagnostic(err.message);
    assert.equal(err.guestAt, "source");
    // Either way the source completed the handover into the orphan (paused, -S), whose
    // agent was gone at finish time: a rollback.
    assert.equal(err.outcome, "rolled-back");
    t.diagnostic(await expectRestartedAndOrphanGone("a", "h2", dead, orphan, err.migrationId));
    await assertOneIntactCopy(bed, "g1", "a", "h1", hb);
    assert.ok(existsSync(poolFile), "the guest's RAM file stayed (the source owns it)");
    const ledger = (await serverClient(bed.state, "a").status()).hostVms;
    assert.deepEqual(
      ledger.map((h) => [h.name, h.reservedMiB, h.pendingMiB]),
      [
        ["h1", 512, 0],
        ["h2", 0, 0],
      ],
      "the handover was aborted: g1 still counts on h1",
    );
  });
}

test("co-migration where one side fails: neither guest moves", async (t) => {
  const hb1 = await heartbeatOf(bed, "g1", "a", "h1");
  const hb2 = await heartbeatOf(bed, "g2", "a", "h1");
  let g2Dest = 0;
  let killed = false;
  const err = await bed.orch
    .coMigrate([
      { guestId: "g1", from: bed.ep("a", "h1"), to: bed.ep("b", "h1"), options: { maxBandwidth: 16 * MiB } },
      {
        guestId: "g2",
        from: bed.ep("a", "h1"),
        to: bed.ep("b", "h2"),
        options: { maxBandwidth: 8 * MiB },
        hooks: { afterPrepare: (inc) => void (g2Dest = inc.pid!) },
        onProgress: (p) => {
          if (!killed && p.transferredBytes > 4 * MiB) {
            killed = true;
            process.kill(g2Dest, "SIGKILL");
          }
        },
      },
    ])
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(err instanceof MigrationFailedError, `failed as expected: ${err}`);
  t.diagnostic(err.message);
  assert.equal(err.guestAt, "source");
  assert.match(err.message, /destination QEMU of g2 exited|g2/);
  await assertOneIntactCopy(bed, "g1", "a", "h1", hb1);
  await assertOneIntactCopy(bed, "g2", "a", "h1", hb2);
  for (const hv of ["h1", "h2"]) {
    const st = await bed.client("b", hv).status();
    assert.equal(st.guests.length, 0, `no guest arrived at b/${hv}`);
    for (const inc of st.incoming) assert.equal(alive(inc.pid), false, `b/${hv}: destination QEMU gone`);
  }
  assert.equal(existsSync(join(bed.state.servers[1].poolDir, "g1.ram")), false);
  assert.equal(existsSync(join(bed.state.servers[1].poolDir, "g2.ram")), false);
});

test("co-migration: both sources pause before switchover, neither resumes before both are ready", async (t) => {
  const hb1 = await heartbeatOf(bed, "g1", "a", "h1");
  const hb2 = await heartbeatOf(bed, "g2", "a", "h1");
  const [r1, r2] = await bed.orch.coMigrate([
    { guestId: "g1", from: bed.ep("a", "h1"), to: bed.ep("b", "h1") },
    { guestId: "g2", from: bed.ep("a", "h1"), to: bed.ep("b", "h2") },
  ]);
  const lastStop = Math.max(r1.source.timing.stoppedAt!, r2.source.timing.stoppedAt!);
  const firstResume = Math.min(r1.destination.resumedAt!, r2.destination.resumedAt!);
  t.diagnostic(
    `g1 paused ${r1.downtimeMs?.toFixed(0)} ms, g2 paused ${r2.downtimeMs?.toFixed(0)} ms; ` +
      `first destination resumed ${(firstResume - lastStop).toFixed(1)} ms after the last source stopped`,
  );
  assert.ok(
    firstResume > lastStop,
    "no guest ran at its destination before both sources were paused and ready",
  );
  await assertOneIntactCopy(bed, "g1", "b", "h1", hb1);
  await assertOneIntactCopy(bed, "g2", "b", "h2", hb2);
  assert.deepEqual(qemuPidsOf(bed, "g1").length + qemuPidsOf(bed, "g2").length, 2);
});

// Real QEMU (TCG) on a namespaced testbed: pre-copy faults between two servers. The
// destination QEMU is killed mid-copy, the migration is cancelled during setup and during
// the copy, and the link between the servers is cut mid-copy. After each, exactly one copy
// of the guest runs (at the source) with its memory intact, and nothing is left over at
// the destination: no QEMU, no pool file, no memory reservation.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type MigrateRequest, MigrationFailedError, serverClient } from "../../src/agent/index.ts";
import { cutLink } from "../../src/testbed/index.ts";
import {
  alive,
  assertOneIntactCopy,
  type Bed,
  bringUp,
  heartbeatOf,
  qemuPidsOf,
  sleep,
  tearDown,
  waitFor,
} from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
let bed: Bed;

before(async () => {
  bed = await bringUp({
    servers: [
      { name: "a", hostVms: [{ name: "h1", memoryMiB: 1024 }] },
      { name: "b", hostVms: [{ name: "h1", memoryMiB: 1024 }] },
    ],
  });
  await bed
    .client("a", "h1")
    .createGuest({ guestId: "g1", memoryMiB: 256, workloads: [{ kind: "verify", mib: 16 }] });
});

after(async () => {
  // A failed test may have left the link down: teardown removes the namespaces anyway.
  await tearDown(bed);
});

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

/** Nothing of the failed migration is left at server b. */
async function assertDestinationClean(migrationId: string): Promise<void> {
  const inc = await waitFor(
    "the destination to be dropped",
    async () => {
      const s = await bed.client("b", "h1").incoming(migrationId);
      return ["failed", "aborted", "expired"].includes(s.state) && s;
    },
    30_000,
  );
  assert.equal(alive(inc.pid), false, `destination QEMU pid ${inc.pid} is gone`);
  assert.equal(existsSync(join(bed.state.servers[1].poolDir, "g1.ram")), false, "no pool file at b");
  await waitFor(
    "b's reservation of g1 to be dropped",
    async () => (await serverClient(bed.state, "b").status()).hostVms[0].reservedMiB === 0,
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

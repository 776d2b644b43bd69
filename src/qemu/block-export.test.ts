// The block export helpers against a recording fake of QMP: the commands and transactions
// QEMU 7.2 gets (the recipes in block-export.ts), the order of teardown, and the undo of a
// fleece whose transaction failed. Real QEMU runs them in test/integration/disk-nbd.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  addReadOnlyExport,
  type BlockQmp,
  openDiskView,
  rotateDirtyBitmap,
  startFleece,
  startNbdServer,
  stopFleece,
} from "./block-export.ts";
import { buildDeviceArgs, diskNodeName } from "./devices.ts";
import { QmpError } from "./qmp.ts";
import type { QmpEvent } from "./qmp-types.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-blockexp-"));
after(() => rmSync(dir, { recursive: true, force: true }));

type Call = [string, Record<string, unknown> | undefined];

/** Answers commands from `answers` (default {}), records them, emits events they schedule. */
function fakeQmp(
  answers: Record<string, (args: Record<string, unknown>, emit: (e: QmpEvent) => void) => unknown> = {},
) {
  const calls: Call[] = [];
  const bus = new EventEmitter();
  const emit = (e: QmpEvent) => setImmediate(() => bus.emit("event", e));
  const qmp: BlockQmp = {
    execute: (async (command: string, args?: Record<string, unknown>) => {
      calls.push([command, args]);
      const f = answers[command];
      return f ? f(args ?? {}, emit) : {};
    }) as BlockQmp["execute"],
    waitForEvent: (name, predicate = () => true, timeoutMs = 1000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${name}`)), timeoutMs);
        const on = (e: QmpEvent) => {
          if (e.event !== name || !predicate(e)) return;
          clearTimeout(timer);
          bus.off("event", on);
          resolve(e);
        };
        bus.on("event", on);
      }),
  };
  return { qmp, calls, names: () => calls.map((c) => c[0]) };
}

const nodes =
  (extra: object[] = []) =>
  () => [{ "node-name": "disk-d0", image: { "virtual-size": 8 << 20 }, "dirty-bitmaps": [] }, ...extra];

test("disks started from a device list have the node name the helpers address", () => {
  const args = buildDeviceArgs("/run/x", [{ kind: "disk", id: "d0", path: "/img/d0.raw", format: "raw" }]);
  assert.ok(args.some((a) => a.includes(`node-name=${diskNodeName("d0")},`)));
  assert.equal(diskNodeName("d0"), "disk-d0");
});

test("NBD server on a unix socket or TCP; a running one tolerated only when asked", async () => {
  const f = fakeQmp({
    "nbd-server-start": () => {
      throw new QmpError("nbd-server-start", "GenericError", "NBD server already running");
    },
  });
  await startNbdServer(f.qmp, { type: "unix", path: "/run/n.sock" }, { alreadyRunningOk: true });
  await assert.rejects(startNbdServer(f.qmp, { type: "inet", host: "127.0.0.1", port: 10809 }), QmpError);
  assert.deepEqual(f.calls, [
    ["nbd-server-start", { addr: { type: "unix", data: { path: "/run/n.sock" } } }],
    ["nbd-server-start", { addr: { type: "inet", data: { host: "127.0.0.1", port: "10809" } } }],
  ]);
});

test("exports are read-only; bitmaps rotate in one transaction (freeze, then start)", async () => {
  const f = fakeQmp();
  await addReadOnlyExport(f.qmp, { id: "e0", node: "disk-d0", bitmaps: ["b1"] });
  await rotateDirtyBitmap(f.qmp, "disk-d0", { freeze: "b1", start: "b2" }, { granularity: 4096 });
  assert.deepEqual(f.calls, [
    [
      "block-export-add",
      { type: "nbd", id: "e0", "node-name": "disk-d0", name: "e0", writable: false, bitmaps: ["b1"] },
    ],
    [
      "transaction",
      {
        actions: [
          { type: "block-dirty-bitmap-disable", data: { node: "disk-d0", name: "b1" } },
          { type: "block-dirty-bitmap-add", data: { node: "disk-d0", name: "b2", granularity: 4096 } },
        ],
      },
    ],
  ]);
});

test("fleece: overlay of the node's size, backing = the drive, rotation and backup in one transaction; teardown in order", async () => {
  let jobRunning = true;
  const f = fakeQmp({
    "query-named-block-nodes": nodes([{ "node-name": "fleece-disk-d0" }]),
    "query-block-exports": () => [
      { id: "v1", "node-name": "fleece-disk-d0", type: "nbd", "shutting-down": false },
    ],
    "block-export-del": (a, emit) => emit({ event: "BLOCK_EXPORT_DELETED", data: { id: a.id } }),
    "query-block-jobs": () => (jobRunning ? [{ device: "fleece-disk-d0" }] : []),
    "block-job-cancel": (a, emit) => {
      jobRunning = false;
      emit({ event: "JOB_STATUS_CHANGE", data: { id: a.device, status: "concluded" } });
      emit({ event: "JOB_STATUS_CHANGE", data: { id: a.device, status: "null" } });
    },
  });
  const file = join(dir, "f.qcow2");
  const fl = await startFleece(f.qmp, { node: "disk-d0", file, rotate: { freeze: "b1", start: "b2" } });
  assert.ok(existsSync(file), "qemu-img made the overlay");
  assert.deepEqual(fl, { source: "disk-d0", node: "fleece-disk-d0", jobId: "fleece-disk-d0", file });
  assert.deepEqual(f.calls.slice(1), [
    [
      "blockdev-add",
      {
        driver: "qcow2",
        "node-name": "fleece-disk-d0",
        file: { driver: "file", filename: file },
        backing: "disk-d0",
      },
    ],
    [
      "transaction",
      {
        actions: [
          { type: "block-dirty-bitmap-disable", data: { node: "disk-d0", name: "b1" } },
          { type: "block-dirty-bitmap-add", data: { node: "disk-d0", name: "b2" } },
          {
            type: "blockdev-backup",
            data: { device: "disk-d0", target: "fleece-disk-d0", sync: "none", "job-id": "fleece-disk-d0" },
          },
        ],
      },
    ],
  ]);
  f.calls.length = 0;
  await stopFleece(f.qmp, fl);
  assert.deepEqual(f.names(), [
    "query-block-exports",
    "block-export-del",
    "query-block-jobs",
    "block-job-cancel",
    "query-named-block-nodes",
    "blockdev-del",
  ]);
  assert.equal(existsSync(file), false, "overlay removed");
});

test("a fleece whose transaction fails is undone: node deleted, overlay removed", async () => {
  const f = fakeQmp({
    "query-named-block-nodes": nodes(),
    transaction: () => {
      throw new QmpError("transaction", "GenericError", "Bitmap 'b1' not found");
    },
  });
  const file = join(dir, "bad.qcow2");
  await assert.rejects(
    startFleece(f.qmp, { node: "disk-d0", file, rotate: { freeze: "b1", start: "b2" } }),
    /b1/,
  );
  assert.deepEqual(f.names(), ["query-named-block-nodes", "blockdev-add", "transaction", "blockdev-del"]);
  assert.equal(existsSync(file), false);
});

test("a disk view without fleece exports the live node with the frozen bitmap, and removes both on close", async () => {
  let exported = false;
  const f = fakeQmp({
    "block-export-add": () => {
      exported = true;
    },
    "query-block-exports": () => (exported ? [{ id: "v2", "node-name": "disk-d0" }] : []),
    "block-export-del": (a, emit) => {
      exported = false;
      emit({ event: "BLOCK_EXPORT_DELETED", data: { id: a.id } });
    },
  });
  const v = await openDiskView(f.qmp, {
    node: "disk-d0",
    exportId: "v2",
    rotate: { freeze: "b1", start: "b2" },
  });
  assert.equal(v.node, "disk-d0");
  assert.equal(v.frozenBitmap, "b1");
  assert.equal(v.fleece, null);
  await Promise.all([v.close(), v.close()]);
  assert.deepEqual(f.names(), [
    "transaction",
    "block-export-add",
    "query-block-exports",
    "block-export-del",
    "block-dirty-bitmap-remove",
  ]);
  assert.deepEqual(f.calls[1][1]?.bitmaps, ["b1"]);
});

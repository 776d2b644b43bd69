// A monitored disk's owner clears only its own bitmaps, and QEMU's anonymous ones (a migration's
// or a block job's: `name` is optional in QAPI's BlockDirtyInfo) do not make it throw — one such
// bitmap once crashed the host-VM agent in a security VM's restart during a co-migration.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { QemuProcess } from "../../qemu/index.ts";
import { DiskRounds } from "./disk-rounds.ts";

test("clear() removes this owner's bitmaps only, and an anonymous bitmap of QEMU's is passed over", async () => {
  const calls: Array<[string, Record<string, unknown> | undefined]> = [];
  const bitmap = { recording: true, persistent: false, busy: false, granularity: 65536, count: 0 };
  const qmp = {
    execute: async (command: string, args?: Record<string, unknown>) => {
      calls.push([command, args]);
      if (command === "query-named-block-nodes")
        return [
          {
            "node-name": "disk-d0",
            image: { "virtual-size": 8 << 20 },
            "dirty-bitmaps": [
              { ...bitmap, busy: true }, // QEMU's own, unnamed
              { ...bitmap, name: "svxb1" },
              { ...bitmap, name: "svxb2" },
              { ...bitmap, name: "otherb1" },
            ],
          },
        ];
      return {};
    },
  };
  const qemu = { isRunning: true, qmp } as unknown as QemuProcess;
  await new DiskRounds(qemu, "disk-d0", "svx", "/tmp/nc-no-fleece").clear();
  assert.deepEqual(
    calls.filter(([c]) => c === "block-dirty-bitmap-remove").map(([, a]) => a?.name),
    ["svxb1", "svxb2"],
    "only the owner's named bitmaps are removed",
  );
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { cprIncomingArgs, cprMigrateArgs, cprPaths, unixPath } from "./cpr.ts";
import { buildQemuArgs } from "./process.ts";
import type { QemuLaunchSpec } from "./spec.ts";

const base: QemuLaunchSpec = {
  guestId: "g1",
  instanceId: "g1.abc",
  memoryMiB: 64,
  poolDir: "/dev/shm/pool",
  runDir: "/run/q/g1.abc",
  image: { kernel: "/img/vmlinuz", initrd: "/img/initrd.gz" },
};

test("cpr: the new process listens on its cpr channel (JSON) and its main one, both in its run folder", () => {
  assert.deepEqual(cprPaths("/run/q/x"), { main: "/run/q/x/migrate.sock", cpr: "/run/q/x/cpr.sock" });
  const args = cprIncomingArgs("/run/q/x");
  assert.equal(args.length, 4);
  assert.deepEqual([args[0], args[2], args[3]], ["-incoming", "-incoming", "unix:/run/q/x/migrate.sock"]);
  assert.deepEqual(JSON.parse(args[1]), {
    "channel-type": "cpr",
    addr: { transport: "socket", type: "unix", path: "/run/q/x/cpr.sock" },
  });
});

test("cpr: the source's migrate names both channels as unix sockets; a non-unix URI is refused", () => {
  assert.deepEqual(cprMigrateArgs("unix:/a/migrate.sock", "unix:/a/cpr.sock"), {
    channels: [
      { "channel-type": "main", addr: { transport: "socket", type: "unix", path: "/a/migrate.sock" } },
      { "channel-type": "cpr", addr: { transport: "socket", type: "unix", path: "/a/cpr.sock" } },
    ],
  });
  assert.equal(unixPath("unix:/x"), "/x");
  assert.throws(() => unixPath("tcp:127.0.0.1:4444"), /not a unix: URI/);
  assert.throws(() => unixPath("unix:"), /not a unix: URI/);
});

test("buildQemuArgs: aux-ram-share only when asked (QEMU >= 10); a cpr incoming instead of -incoming defer", () => {
  const machine = (a: string[]) => a[a.indexOf("-machine") + 1];
  assert.equal(machine(buildQemuArgs(base)), "q35,memory-backend=mem");
  assert.equal(
    machine(buildQemuArgs({ ...base, auxRamShare: true })),
    "q35,memory-backend=mem,aux-ram-share=on",
  );
  const deferred = buildQemuArgs({ ...base, incoming: "defer" });
  assert.deepEqual(deferred.slice(deferred.indexOf("-incoming"), deferred.indexOf("-incoming") + 2), [
    "-incoming",
    "defer",
  ]);
  const cpr = buildQemuArgs({ ...base, auxRamShare: true, incoming: "cpr" });
  assert.equal(cpr.filter((a) => a === "-incoming").length, 2);
  assert.ok(!cpr.includes("defer"));
  assert.ok(cpr.includes("unix:/run/q/g1.abc/migrate.sock"));
});

// The mirror helpers against a recording fake of QMP: the commands QEMU 7.2 gets to add a
// filter-mirror at run time (chardev first, filter second; unix or TCP, client or server),
// the chardev undone when the filter cannot be added, and an idempotent teardown (filter
// before chardev; what is gone is skipped, anything else still fails). Real QEMU runs them in
// test/integration/network-monitor.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { addNetMirror, listNetMirrors, type MirrorQmp, removeNetMirror } from "./net-mirror.ts";
import { QmpError } from "./qmp.ts";

type Call = [string, Record<string, unknown> | undefined];

function fakeQmp(answers: Record<string, (args: Record<string, unknown>) => unknown> = {}) {
  const calls: Call[] = [];
  const qmp: MirrorQmp = {
    execute: (async (command: string, args?: Record<string, unknown>) => {
      calls.push([command, args]);
      const f = answers[command];
      return f ? f(args ?? {}) : {};
    }) as MirrorQmp["execute"],
  };
  return { qmp, calls };
}

test("a mirror to a unix listener: chardev (QEMU the client, reconnecting), then filter-mirror, queue=all", async () => {
  const f = fakeQmp();
  await addNetMirror(f.qmp, {
    id: "fm0",
    netdev: "nic-n0",
    to: { type: "unix", path: "/run/m.sock", reconnectSeconds: 1 },
  });
  assert.deepEqual(f.calls, [
    [
      "chardev-add",
      {
        id: "fm0-out",
        backend: {
          type: "socket",
          data: { addr: { type: "unix", data: { path: "/run/m.sock" } }, server: false, reconnect: 1 },
        },
      },
    ],
    [
      "object-add",
      { "qom-type": "filter-mirror", id: "fm0", netdev: "nic-n0", queue: "all", outdev: "fm0-out" },
    ],
  ]);
});

test("a mirror over TCP with QEMU listening: server without waiting for a client, Nagle off", async () => {
  const f = fakeQmp();
  await addNetMirror(f.qmp, {
    id: "fm1",
    netdev: "nic-n1",
    to: { type: "inet", host: "127.0.0.1", port: 7001, server: true },
  });
  assert.deepEqual(f.calls[0], [
    "chardev-add",
    {
      id: "fm1-out",
      backend: {
        type: "socket",
        data: {
          addr: { type: "inet", data: { host: "127.0.0.1", port: "7001" } },
          server: true,
          nodelay: true,
          wait: false,
        },
      },
    },
  ]);
});

test("a filter QEMU refuses (no such netdev) takes its chardev away with it; bad ids never reach QEMU", async () => {
  const f = fakeQmp({
    "object-add": () => {
      throw new QmpError("object-add", "GenericError", "Device 'nic-x' not found");
    },
  });
  await assert.rejects(
    addNetMirror(f.qmp, { id: "fm0", netdev: "nic-x", to: { type: "unix", path: "/run/m.sock" } }),
    QmpError,
  );
  assert.deepEqual(
    f.calls.map((c) => c[0]),
    ["chardev-add", "object-add", "chardev-remove"],
  );
  assert.deepEqual(f.calls[2][1], { id: "fm0-out" });
  await assert.rejects(
    addNetMirror(f.qmp, { id: "fm0,x=y", netdev: "nic-n0", to: { type: "unix", path: "/run/m.sock" } }),
    /must match/,
  );
  assert.equal(f.calls.length, 3);
});

test("teardown: filter, then chardev; again is a no-op; other failures still fail", async () => {
  const live = new Set(["fm0", "fm0-out"]);
  const gone = (kind: string, id: string) =>
    kind === "object-del"
      ? new QmpError(kind, "GenericError", `object '${id}' not found`)
      : new QmpError(kind, "DeviceNotFound", `Chardev '${id}' not found`);
  const f = fakeQmp({
    "object-del": (a) => {
      if (!live.delete(a.id as string)) throw gone("object-del", a.id as string);
      return {};
    },
    "chardev-remove": (a) => {
      if (live.has("fm0")) throw new QmpError("chardev-remove", "GenericError", "Chardev 'fm0-out' is busy");
      if (!live.delete(a.id as string)) throw gone("chardev-remove", a.id as string);
      return {};
    },
  });
  assert.deepEqual(await removeNetMirror(f.qmp, "fm0"), { filter: true, chardev: true });
  assert.deepEqual(await removeNetMirror(f.qmp, "fm0"), { filter: false, chardev: false });
  assert.deepEqual(
    f.calls.map((c) => `${c[0]} ${(c[1] as { id: string }).id}`),
    ["object-del fm0", "chardev-remove fm0-out", "object-del fm0", "chardev-remove fm0-out"],
  );
  live.add("fm0");
  live.add("fm0-out");
  const busy = fakeQmp({
    "chardev-remove": () => {
      throw new QmpError("chardev-remove", "GenericError", "Chardev 'fm0-out' is busy");
    },
  });
  await assert.rejects(removeNetMirror(busy.qmp, "fm0"), /busy/);
});

test("listNetMirrors names the filter-mirror objects only", async () => {
  const f = fakeQmp({
    "qom-list": () => [
      { name: "fm0", type: "child<filter-mirror>" },
      { name: "pc.ram", type: "child<memory-backend-file>" },
      { name: "tapf-t0", type: "child<filter-mirror>" },
    ],
  });
  assert.deepEqual(await listNetMirrors(f.qmp), ["fm0", "tapf-t0"]);
  assert.deepEqual(f.calls, [["qom-list", { path: "/objects" }]]);
});

test("a mirror over TLS names QEMU's credentials object", async () => {
  const f = fakeQmp();
  await addNetMirror(f.qmp, {
    id: "fm2",
    netdev: "nic-n1",
    to: { type: "inet", host: "127.0.0.1", port: 7002, tlsCreds: "tls0" },
  });
  assert.deepEqual(f.calls[0], [
    "chardev-add",
    {
      id: "fm2-out",
      backend: {
        type: "socket",
        data: {
          addr: { type: "inet", data: { host: "127.0.0.1", port: "7002" } },
          server: false,
          nodelay: true,
          "tls-creds": "tls0",
        },
      },
    },
  ]);
});

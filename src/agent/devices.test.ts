// A guest's devices on a host-VM agent without QEMU: a requested list is checked (400
// naming the field) and completed, image files stay inside the host VM's image folder, the
// guest's folder is made and removed, and the QEMU devices and endpoints follow the list.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import pino from "pino";
import type { Device } from "./api-types.ts";
import type { HostVmAgentConfig } from "./config.ts";
import {
  completeDevices,
  createGuestStore,
  deviceEndpoints,
  guestDir,
  qemuDevices,
  removeGuestStore,
} from "./hostvm/devices.ts";
import { buildHostVmAgent } from "./hostvm-agent.ts";
import { AgentError } from "./http.ts";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "nc-devices-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const cfg: HostVmAgentConfig = {
  role: "hostvm",
  testbedId: "t",
  server: "s1",
  hostVm: "h1",
  address: "127.0.0.1",
  poolDir: join(dir, "pool"),
  qemuDir: join(dir, "h1", "q"),
  storeDir: join(dir, "store"),
  imageDir: join(dir, "h1", "images"),
  tokenFile: join(dir, "token"),
  readyFile: join(dir, "h1.ready"),
  serverAgentUrl: "http://127.0.0.1:9",
  memoryMiB: 1024,
  cpus: 1,
  image: { kernel: "/nonexistent/vmlinuz", initrd: "/nonexistent/initrd" },
};
mkdirSync(cfg.imageDir!, { recursive: true });
mkdirSync(cfg.poolDir, { recursive: true });
writeFileSync(
  join(cfg.imageDir!, "base.raw"),
  Buffer.concat([Buffer.from("NESTCLOUD-BASE"), Buffer.alloc(MiB + 100)]),
);
execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", join(cfg.imageDir!, "base.qcow2"), "3M"]);
execFileSync("qemu-img", [
  "create",
  "-q",
  "-f",
  "qcow2",
  "-F",
  "raw",
  "-b",
  "/etc/hostname",
  join(cfg.imageDir!, "backed.qcow2"),
  "3M",
]);
writeFileSync(join(dir, "outside.raw"), "secret");
symlinkSync(join(dir, "outside.raw"), join(cfg.imageDir!, "escape.raw"));

async function refused(devices: unknown[], re: RegExp): Promise<void> {
  await assert.rejects(completeDevices(cfg, "g1", devices as Device[]), (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.statusCode, 400);
    assert.match(e.message, re);
    return true;
  });
}

test("a device list QEMU would refuse is a 400 naming the field", async () => {
  const nic = { kind: "nic", id: "n0" };
  await refused(
    [nic, { kind: "serial", id: "n0" }],
    /^body\/devices\/1\/id must be unique \(n0 is also body\/devices\/0\)/,
  );
  await refused(
    [nic, { kind: "tap", id: "t0", of: "n9" }],
    /^body\/devices\/1\/of must name a NIC or a disk/,
  );
  await refused(
    [
      { kind: "serial", id: "s0" },
      { kind: "tap", id: "t0", of: "s0" },
    ],
    /devices\/1\/of .*s0 is serial/,
  );
  await refused([{ kind: "nic", id: "n0", mac: "53:54:00:00:00:01" }], /devices\/0\/mac must be a unicast/);
  await refused([{ kind: "disk", id: "d0" }], /^body\/devices\/0 needs sizeMiB .* or file/);
  await refused(
    ["a", "b", "c", "d"].map((id) => ({ kind: "serial", id })),
    /^body\/devices has 4 serial ports \(at most 3/,
  );
  await refused([{ kind: "disk", id: "d0", file: "nosuch.raw" }], /devices\/0\/file names no image/);
  await refused([{ kind: "disk", id: "d0", file: "escape.raw" }], /devices\/0\/file must stay inside/);
  await refused(
    [{ kind: "disk", id: "d0", file: "base.raw", format: "qcow2" }],
    /devices\/0\/file is not a qcow2 image/,
  );
  await refused(
    [{ kind: "disk", id: "d0", file: "backed.qcow2", format: "qcow2" }],
    /must not have a backing file/,
  );
  await refused(
    [{ kind: "disk", id: "d0", file: "base.qcow2", format: "qcow2", sizeMiB: 2 }],
    /devices\/0\/sizeMiB is smaller than the image \(3 MiB\)/,
  );
});

test("a device list is completed: backends, formats, stable MACs, sizes of images", async () => {
  const list = await completeDevices(cfg, "g1", [
    { kind: "disk", id: "d0", sizeMiB: 8 },
    { kind: "disk", id: "d1", file: "base.raw", readOnly: true },
    { kind: "disk", id: "d2", file: "base.qcow2", format: "qcow2", sizeMiB: 4 },
    { kind: "nic", id: "n0" },
    { kind: "nic", id: "n1", backend: "socket", mac: "52:54:00:aa:bb:cc" },
    { kind: "serial", id: "s1", log: true },
    { kind: "tap", id: "t0", of: "n0" },
    { kind: "tap", id: "t1", of: "d0" },
  ]);
  const again = await completeDevices(cfg, "g1", [{ kind: "nic", id: "n0" }]);
  const mac = (list[3] as { mac: string }).mac;
  assert.match(mac, /^52:54(:[0-9a-f]{2}){4}$/);
  assert.equal((again[0] as { mac: string }).mac, mac, "the same MAC for the same guest and NIC");
  const other = await completeDevices(cfg, "g2", [{ kind: "nic", id: "n0" }]);
  assert.notEqual((other[0] as { mac: string }).mac, mac, "another guest, another MAC");
  assert.deepEqual(list, [
    { kind: "disk", id: "d0", format: "raw", sizeMiB: 8 },
    { kind: "disk", id: "d1", format: "raw", readOnly: true, sizeMiB: 2, file: "base.raw" },
    { kind: "disk", id: "d2", format: "qcow2", sizeMiB: 4, file: "base.qcow2" },
    { kind: "nic", id: "n0", backend: "user", mac },
    { kind: "nic", id: "n1", backend: "socket", mac: "52:54:00:aa:bb:cc" },
    { kind: "serial", id: "s1", log: true },
    { kind: "tap", id: "t0", of: "n0" },
    { kind: "tap", id: "t1", of: "d0" },
  ]);

  const g = { guestId: "g1", memoryMiB: 128, devices: list };
  await createGuestStore(cfg, g);
  const gd = guestDir(cfg, "g1");
  assert.equal(statSync(join(gd, "d0.raw")).size, 8 * MiB);
  assert.equal(statSync(join(gd, "d1.raw")).size, 2 * MiB, "a copy grown to whole MiB");
  assert.equal(readFileSync(join(gd, "d1.raw")).subarray(0, 14).toString(), "NESTCLOUD-BASE");
  const info = JSON.parse(
    execFileSync("qemu-img", ["info", "--output=json", join(gd, "d2.qcow2")], { encoding: "utf8" }),
  );
  assert.equal(info["virtual-size"], 4 * MiB);

  const qd = qemuDevices(cfg, g);
  assert.deepEqual(
    qd.map((d) => `${d.kind}:${d.id}`),
    ["disk:d0", "disk:d1", "disk:d2", "nic:n0", "nic:n1", "serial:s1", "nic-tap:t0"],
    "a disk tap is no QEMU argument (an NBD export over QMP)",
  );
  assert.deepEqual(qd[5], { kind: "serial", id: "s1", logFile: join(gd, "s1.serial.log") });
  const ends = deviceEndpoints(cfg, g, null);
  assert.deepEqual(
    ends.find((e) => e.id === "d0"),
    {
      id: "d0",
      kind: "disk",
      socket: null,
      log: null,
      image: join(gd, "d0.raw"),
      nbd: null,
      qemuId: "disk-d0",
    },
  );
  assert.equal(ends.find((e) => e.id === "s1")?.log, join(gd, "s1.serial.log"));

  // A guest whose RAM is in this server's pool runs here already: its folder is not replaced.
  writeFileSync(join(cfg.poolDir, "g1.ram"), "");
  await assert.rejects(createGuestStore(cfg, g), /runs on this server already/);
  assert.equal(statSync(join(gd, "d0.raw")).size, 8 * MiB);
  rmSync(join(cfg.poolDir, "g1.ram"));
  removeGuestStore(cfg, "g1");
  assert.throws(() => statSync(gd), /ENOENT/);
});

test("POST /v1/guests: bad devices are refused before anything is made", async () => {
  const { app } = buildHostVmAgent(cfg, "t".repeat(43), pino({ level: "silent" }));
  try {
    const post = (devices: unknown) =>
      app.inject({
        method: "POST",
        url: "/v1/guests",
        headers: { authorization: `Bearer ${"t".repeat(43)}` },
        payload: { guestId: "g7", memoryMiB: 128, devices },
      });
    let r = await post([{ kind: "disk", id: "D0", sizeMiB: 1 }]);
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /body\/devices\/0\/id must match pattern/);
    r = await post([{ kind: "disk", id: "d0", file: "../outside.raw" }]);
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /body\/devices\/0\/file must match pattern/);
    r = await post([{ kind: "printer", id: "p0" }]);
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /body\/devices\/0/);
    r = await post([
      { kind: "nic", id: "n0" },
      { kind: "nic", id: "n0" },
    ]);
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /body\/devices\/1\/id must be unique/);
    assert.throws(() => statSync(guestDir(cfg, "g7")), /ENOENT/, "no folder made");
  } finally {
    await app.close();
  }
});

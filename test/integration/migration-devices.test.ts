// Real QEMU (TCG) on a namespaced testbed: a guest with its own devices (a disk seeded from
// an image, a new writable disk, a read-only disk, a user-mode NIC, a socket NIC, a logged
// serial port, a tap of the NIC and a tap of the writable disk) moves by instant handover
// and then by pre-copy to another server. Before and after each move: the disks are in
// QEMU (query-block) and readable in the guest with what was written before, the disk tap
// exports the disk over NBD, the NIC gets a DHCP lease and its tap mirrors the frames, the
// socket NIC carries the guest's frames, the serial socket is connectable and its log
// continues at the destination. After the guest is deleted its folder is gone.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { test } from "node:test";
import type { DeviceEndpoint, GuestStatus } from "../../src/agent/index.ts";
import { waitFor } from "../support/waiting.ts";
import { assertOneIntactCopy, heartbeatOf, testbedFixture } from "./testbed-helpers.ts";

const MiB = 1024 * 1024;
const SEED = "NESTCLOUD-SEED-0123456789";
const RO = "NESTCLOUD-READONLY-IMAGE";
const bed = testbedFixture({ a: ["h1", "h2"], b: ["h1"] }, async (bed) => {
  // Images a disk may start from: in the creating host VM's own image folder.
  const images = join(bed.state.hostVms.find((h) => h.server === "a" && h.name === "h1")!.stateDir, "images");
  mkdirSync(images, { recursive: true });
  const image = (name: string, text: string, size: number) => {
    const b = Buffer.alloc(size);
    b.write(text);
    writeFileSync(join(images, name), b);
  };
  image("seed.raw", SEED, 16 * MiB);
  image("ro.raw", RO, 4 * MiB);
  await bed.client("a", "h1").createGuest({
    guestId: "g1",
    memoryMiB: 192,
    workloads: [{ kind: "verify", mib: 8 }],
    devices: [
      { kind: "disk", id: "d0", file: "seed.raw" },
      { kind: "disk", id: "d1", sizeMiB: 8 },
      { kind: "disk", id: "ro", file: "ro.raw", readOnly: true },
      { kind: "nic", id: "n0" },
      { kind: "nic", id: "n1", backend: "socket" },
      { kind: "serial", id: "s1", log: true },
      { kind: "tap", id: "t0", of: "n0" },
      { kind: "tap", id: "t1", of: "d1" },
    ],
  });
});

const ep = (st: GuestStatus, id: string): DeviceEndpoint => {
  const e = st.endpoints.find((x) => x.id === id);
  assert.ok(e, `endpoint of ${id}`);
  return e;
};

async function sh(server: string, hostVm: string, command: string, timeoutMs = 30_000): Promise<string> {
  const r = await bed.client(server, hostVm).exec("g1", { command, timeoutMs });
  assert.equal(r.exitCode, 0, `${command}: ${r.output}`);
  return r.output;
}

/** The guest's names of its disks (by size in 512-byte sectors) and NICs (by MAC). */
async function guestNames(server: string, hostVm: string, st: GuestStatus) {
  const blocks = await sh(
    server,
    hostVm,
    'for b in /sys/block/vd*; do echo "$(basename $b) $(cat $b/size) $(cat $b/ro)"; done',
  );
  const bySize = (mib: number) => {
    const m = blocks.split("\n").find((l) => l.trim().split(" ")[1] === String(mib * 2048));
    assert.ok(m, `a ${mib} MiB disk in the guest: ${blocks}`);
    return m.trim().split(" ");
  };
  const [d0] = bySize(16);
  const [d1] = bySize(8);
  const [ro, , roFlag] = bySize(4);
  assert.equal(roFlag, "1", "the read-only disk is read-only in the guest");
  const nets = await sh(
    server,
    hostVm,
    'for n in /sys/class/net/eth*; do echo "$(basename $n) $(cat $n/address)"; done',
  );
  const byMac = (id: string) => {
    const mac = (st.devices.find((d) => d.id === id) as { mac: string }).mac;
    const l = nets.split("\n").find((x) => x.includes(mac));
    assert.ok(l, `NIC ${id} (${mac}) in the guest: ${nets}`);
    return l.trim().split(" ")[0];
  };
  return { d0, d1, ro, n0: byMac("n0"), n1: byMac("n1") };
}

/** A client of a unix socket, collecting what arrives. */
function listen(path: string): Promise<{ sock: Socket; data: () => Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(path, () => resolve({ sock, data: () => Buffer.concat(chunks) }));
    sock.on("data", (b) => chunks.push(b));
    sock.once("error", reject);
  });
}

/** Frames of a length-prefixed stream (4-byte big-endian length, then the Ethernet frame). */
function frames(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o + 4 <= buf.length; ) {
    const n = buf.readUInt32BE(o);
    if (o + 4 + n > buf.length) break;
    out.push(buf.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  return out;
}
const macOf = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");

/** The first bytes of an NBD export, read through QEMU's own client (qemu-io). */
function nbdRead(uri: string, bytes: number): string {
  const out = execFileSync("qemu-io", ["-r", "-f", "raw", uri, "-c", `read -v 0 ${bytes}`], {
    encoding: "utf8",
  });
  // "00000000:  4d 41 52 4b 2d 30 00 ...  MARK.0..": the hex bytes (the text column shows
  // only letters and digits).
  const hex = out
    .split("\n")
    .filter((l) => /^[0-9a-f]{8}:/.test(l))
    .flatMap((l) =>
      l
        .slice(10, 10 + 16 * 3)
        .trim()
        .split(/\s+/),
    );
  return Buffer.from(hex.join(""), "hex").toString("latin1").replace(/\0+$/, "");
}

/**
 * Every device works where the guest runs now; `step` names this round's marks (written
 * here, and checked for the rounds before). Returns the guest's status.
 */
async function checkDevices(
  t: { diagnostic: (m: string) => void },
  server: string,
  hostVm: string,
  step: number,
): Promise<GuestStatus> {
  const c = bed.client(server, hostVm);
  const st = await c.guest("g1");
  assert.deepEqual(
    st.devices.map((d) => d.id),
    ["d0", "d1", "ro", "n0", "n1", "s1", "t0", "t1"],
  );
  const names = await guestNames(server, hostVm, st);

  // Disks: in QEMU, and what was written before is there.
  const blocks = (await c.qmp("g1", { execute: "query-block" })).return as Array<{
    inserted?: { "node-name": string; ro: boolean };
  }>;
  const nodes = blocks.flatMap((b) => (b.inserted ? [[b.inserted["node-name"], b.inserted.ro]] : []));
  assert.deepEqual(nodes, [
    ["disk-d0", false],
    ["disk-d1", false],
    ["disk-ro", true],
  ]);
  // Read from the disks themselves, not the guest's page cache (which moves with its RAM).
  await sh(server, hostVm, "sync; echo 3 > /proc/sys/vm/drop_caches");
  assert.equal(
    (await sh(server, hostVm, `head -c ${SEED.length} /dev/${names.d0}`)).trim(),
    SEED,
    "seeded disk",
  );
  const roText = (await sh(server, hostVm, `head -c ${RO.length} /dev/${names.ro}`)).trim();
  assert.equal(roText, RO, "the read-only disk's content");
  const before = (await sh(server, hostVm, `head -c 64 /dev/${names.d1} | tr -d '\\000'`)).trim();
  const expected = Array.from({ length: step }, (_, i) => `MARK-${i}`).join(" ");
  assert.equal(before, expected, `the writable disk kept what was written before (step ${step})`);
  await sh(
    server,
    hostVm,
    `printf '%s' '${[expected, `MARK-${step}`].filter(Boolean).join(" ")}' > /dev/${names.d1}; sync`,
  );

  // The disk tap: a read-only NBD export of d1, showing what the guest wrote.
  const nbd = ep(st, "t1").nbd;
  assert.ok(nbd, "the disk tap has an NBD URI");
  const seen = await waitFor(
    "the disk tap to show the guest's write",
    async () => {
      const s = nbdRead(nbd, 64);
      return s.includes(`MARK-${step}`) && s;
    },
    20_000,
  );
  t.diagnostic(`step ${step}: NBD ${nbd} reads "${seen}"`);
  // Read-only: a write through it does not reach the disk.
  try {
    execFileSync("qemu-io", ["-f", "raw", nbd, "-c", "write -P 0x41 0 512"], { stdio: "pipe" });
  } catch {
    // refused at open: fine
  }
  assert.ok(nbdRead(nbd, 64).includes(`MARK-${step}`), "the disk tap is read-only");

  // The serial port: its socket takes a client, its log continues.
  const s1 = ep(st, "s1");
  const serial = await listen(s1.socket!);
  await sh(server, hostVm, `echo SERIAL-LINE-${step} > /dev/ttyS1`);
  await waitFor(
    "the line on the serial socket",
    async () => serial.data().includes(`SERIAL-LINE-${step}`),
    10_000,
  );
  serial.sock.destroy();
  const log = readFileSync(s1.log!, "latin1");
  const lines = log.match(/SERIAL-LINE-\d+/g) ?? [];
  assert.deepEqual(
    lines,
    Array.from({ length: step + 1 }, (_, i) => `SERIAL-LINE-${i}`),
    `the serial log continues (${s1.log})`,
  );

  // The user-mode NIC: a DHCP lease; its tap mirrors the frames (the guest's DHCP requests).
  const tap = await listen(ep(st, "t0").socket!);
  const dhcp = await sh(
    server,
    hostVm,
    `ip link set ${names.n0} up; timeout 40 udhcpc -i ${names.n0} -n -q -t 5 -T 2 -A 1 -s /bin/true 2>&1`,
    60_000,
  );
  assert.match(dhcp, /lease of 10\.0\.2\.15 obtained/, `DHCP on n0: ${dhcp}`);
  const n0mac = (st.devices.find((d) => d.id === "n0") as { mac: string }).mac;
  const mirrored = await waitFor(
    "the NIC tap to mirror the guest's frames, both ways",
    async () => {
      // The guest's DHCP requests, and QEMU's answers (broadcast, from its gateway's MAC).
      const f = frames(tap.data());
      const from = f.filter((x) => macOf(x.subarray(6, 12)) === n0mac).length;
      const to = f.length - from;
      return from > 0 && to > 0 && { from, to };
    },
    10_000,
  );
  tap.sock.destroy();
  t.diagnostic(`step ${step}: NIC tap mirrored ${mirrored.from} frames from the guest, ${mirrored.to} to it`);

  // The socket NIC: the guest's ARP requests come out of its socket.
  const peer = await listen(ep(st, "n1").socket!);
  await sh(
    server,
    hostVm,
    `ip link set ${names.n1} up; ip addr add 10.9.${step}.2/24 dev ${names.n1}; arping -c 2 -w 3 -I ${names.n1} 10.9.${step}.1 >/dev/null 2>&1; true`,
  );
  const n1mac = (st.devices.find((d) => d.id === "n1") as { mac: string }).mac;
  await waitFor(
    "the guest's ARP on the socket NIC",
    async () =>
      frames(peer.data()).some((f) => macOf(f.subarray(6, 12)) === n1mac && f.readUInt16BE(12) === 0x0806),
    10_000,
  );
  peer.sock.destroy();
  await sh(server, hostVm, `ip addr flush dev ${names.n1}`);
  return st;
}

test("devices before any move: disks, NICs, serial log and taps all work", async (t) => {
  await checkDevices(t, "a", "h1", 0);
});

test("instant handover: the same devices at the destination, files shared, taps re-established", async (t) => {
  const before = await bed.client("a", "h1").guest("g1");
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  const r = await bed.orch.migrate({ guestId: "g1", from: bed.ep("a", "h1"), to: bed.ep("a", "h2") });
  t.diagnostic(
    `instant: ${r.totalMs?.toFixed(0)} ms, paused ${r.downtimeMs?.toFixed(1)} ms, ${r.transferredBytes} bytes`,
  );
  assert.equal(r.mechanism, "instant");
  await assertOneIntactCopy(bed, "g1", "a", "h2", hb);
  const st = await checkDevices(t, "a", "h2", 1);
  assert.equal(ep(st, "d1").image, ep(before, "d1").image, "the same disk file (same server)");
  assert.equal(ep(st, "s1").log, ep(before, "s1").log, "the same serial log");
  assert.notEqual(ep(st, "s1").socket, ep(before, "s1").socket, "a new QEMU, a new socket");
});

test("pre-copy to another server: disks copied with the RAM, logs continued, taps re-established", async (t) => {
  const before = await bed.client("a", "h2").guest("g1");
  const hb = await heartbeatOf(bed, "g1", "a", "h2");
  const r = await bed.orch.migrate({ guestId: "g1", from: bed.ep("a", "h2"), to: bed.ep("b", "h1") });
  t.diagnostic(
    `pre-copy: ${r.totalMs?.toFixed(0)} ms, paused ${r.downtimeMs?.toFixed(1)} ms, ${r.transferredBytes} RAM bytes, ${r.qemu?.passes} passes`,
  );
  assert.equal(r.mechanism, "precopy");
  await assertOneIntactCopy(bed, "g1", "b", "h1", hb);
  const st = await checkDevices(t, "b", "h1", 2);
  assert.notEqual(dirname(ep(st, "d1").image!), dirname(ep(before, "d1").image!), "server b's own copy");
  await waitFor(
    "server a's copy of the guest's folder to go",
    async () => !existsSync(dirname(ep(before, "d1").image!)),
    10_000,
  );
  // The log route gives the same bytes as the file.
  const got = join(bed.root, "s1.log");
  await bed.client("b", "h1").downloadSerialLog("g1", "s1", got);
  assert.equal(readFileSync(got, "latin1"), readFileSync(ep(st, "s1").log!, "latin1"));
});

test("delete: the guest's folder goes with it", async () => {
  const st = await bed.client("b", "h1").guest("g1");
  const folder = dirname(ep(st, "d0").image!);
  assert.ok(existsSync(folder));
  await bed.client("b", "h1").deleteGuest("g1");
  assert.equal(existsSync(folder), false);
});

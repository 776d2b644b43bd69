// A guest's own devices on the QEMU command line (pure: no I/O): disks, NICs, extra serial
// ports, and monitoring taps of a NIC (filter-mirror to a socket). Both sides of a migration
// build them from the same list, so they match (explicit PCI slots, ids from the device id).
//
// QEMU ids, from a device id "x": disk: drive "drive-x", block node "disk-x" (what QMP
// addresses, e.g. an NBD export), device "dev-x"; NIC: netdev "nic-x", device "dev-x";
// serial: chardev "serial-x", device "dev-x"; NIC tap: chardev "tap-x", filter "tapf-x".
// Sockets live in the QEMU's runtime folder (deviceSockets).
import { join } from "node:path";

export type QemuDevice =
  | {
      kind: "disk";
      id: string;
      /** The image file (absolute). */
      path: string;
      format: "raw" | "qcow2";
      readOnly?: boolean;
    }
  | {
      kind: "nic";
      id: string;
      mac: string;
      /**
       * user: QEMU's user-mode network, restricted (the guest reaches nothing outside QEMU:
       * DHCP, DNS and the gateway only); socket: a unix stream socket QEMU listens on (a
       * peer connects and exchanges frames, each a 4-byte big-endian length and the frame).
       */
      backend: "user" | "socket";
    }
  | {
      kind: "serial";
      id: string;
      /** Everything the guest writes to this port is also appended here (absolute path). */
      logFile?: string;
    }
  | {
      /** Mirrors every frame of NIC `nic` (both directions) to a socket (length-prefixed). */
      kind: "nic-tap";
      id: string;
      nic: string;
    };

/** Device ids: short (they name sockets, whose paths are bounded) and safe in QEMU options. */
export const DEVICE_ID_RE = /^[a-z][a-z0-9]{0,11}$/;

/** The block node of disk `id`: what QMP addresses (NBD exports, dirty bitmaps, fleecing). */
export const diskNodeName = (id: string) => `disk-${id}`;

/** PCI slots of disks and NICs on q35's root bus, in list order (0x1f is the ICH9 chipset). */
const FIRST_PCI_SLOT = 0x08;
const LAST_PCI_SLOT = 0x1e;
/** q35 has four ISA serial ports; the first (ttyS0) is the agent's console. */
export const MAX_EXTRA_SERIALS = 3;

export interface DeviceSockets {
  /** Serial ports (by device id): a client connects here to talk to the port. */
  serial: Record<string, string>;
  /** NICs with the socket backend. */
  nic: Record<string, string>;
  /** NIC taps: the mirrored frames come out here. */
  tap: Record<string, string>;
  /** The NBD server of disk taps (started over QMP when there are any). */
  nbd: string;
}

export function deviceSockets(runDir: string, devices: readonly QemuDevice[]): DeviceSockets {
  const out: DeviceSockets = { serial: {}, nic: {}, tap: {}, nbd: join(runDir, "nbd.sock") };
  for (const d of devices) {
    if (d.kind === "serial") out.serial[d.id] = join(runDir, `s-${d.id}.sock`);
    else if (d.kind === "nic" && d.backend === "socket") out.nic[d.id] = join(runDir, `n-${d.id}.sock`);
    else if (d.kind === "nic-tap") out.tap[d.id] = join(runDir, `t-${d.id}.sock`);
  }
  return out;
}

/** Why a device list cannot be started (ids, references, limits); null when it can. */
export function deviceProblem(devices: readonly QemuDevice[]): string | null {
  const ids = new Set<string>();
  let pci = 0;
  let serials = 0;
  for (const d of devices) {
    if (!DEVICE_ID_RE.test(d.id)) return `device id ${JSON.stringify(d.id)} must match ${DEVICE_ID_RE}`;
    if (ids.has(d.id)) return `device id ${d.id} is used twice`;
    ids.add(d.id);
    if (d.kind === "disk" || d.kind === "nic") pci++;
    if (d.kind === "serial") serials++;
    if (d.kind === "nic" && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(d.mac))
      return `device ${d.id}: bad MAC address ${d.mac}`;
    if (d.kind === "nic-tap" && !devices.some((n) => n.kind === "nic" && n.id === d.nic))
      return `device ${d.id}: no NIC ${d.nic} to mirror`;
    if (
      (d.kind === "disk" && /[,\n\r\0]/.test(d.path)) ||
      (d.kind === "serial" && /[,\n\r\0]/.test(d.logFile ?? ""))
    )
      return `device ${d.id}: paths must have no commas or newlines`;
  }
  if (pci > LAST_PCI_SLOT - FIRST_PCI_SLOT + 1) return `too many disks and NICs (${pci})`;
  if (serials > MAX_EXTRA_SERIALS) return `at most ${MAX_EXTRA_SERIALS} extra serial ports (q35 has 4)`;
  return null;
}

/** The QEMU arguments of a device list (call deviceProblem first). */
export function buildDeviceArgs(runDir: string, devices: readonly QemuDevice[]): string[] {
  const sockets = deviceSockets(runDir, devices);
  const args: string[] = [];
  let slot = FIRST_PCI_SLOT;
  const pciAddr = () => `bus=pcie.0,addr=0x${(slot++).toString(16)}`;
  for (const d of devices) {
    switch (d.kind) {
      case "disk":
        args.push(
          "-drive",
          `file=${d.path},if=none,id=drive-${d.id},node-name=${diskNodeName(d.id)},format=${d.format}` +
            (d.readOnly ? ",readonly=on" : ""),
          "-device",
          `virtio-blk-pci,drive=drive-${d.id},id=dev-${d.id},${pciAddr()}`,
        );
        break;
      case "nic":
        args.push(
          "-netdev",
          d.backend === "user"
            ? `user,id=nic-${d.id},restrict=on`
            : `stream,id=nic-${d.id},server=on,addr.type=unix,addr.path=${sockets.nic[d.id]}`,
          "-device",
          `virtio-net-pci,netdev=nic-${d.id},id=dev-${d.id},mac=${d.mac},${pciAddr()}`,
        );
        break;
      case "serial":
        args.push(
          "-chardev",
          `socket,id=serial-${d.id},path=${sockets.serial[d.id]},server=on,wait=off` +
            (d.logFile ? `,logfile=${d.logFile},logappend=on` : ""),
          "-device",
          `isa-serial,chardev=serial-${d.id},id=dev-${d.id}`,
        );
        break;
      case "nic-tap":
        args.push(
          "-chardev",
          `socket,id=tap-${d.id},path=${sockets.tap[d.id]},server=on,wait=off`,
          "-object",
          `filter-mirror,id=tapf-${d.id},netdev=nic-${d.nic},queue=all,outdev=tap-${d.id}`,
        );
        break;
    }
  }
  return args;
}

/**
 * A guest's own devices, part of its configuration (what createGuest takes, what the agent
 * records for adoption and what a migration carries to the destination, which starts QEMU
 * with the same list): disks, NICs, serial ports, and monitoring taps of a NIC or a disk.
 *
 * Where things are: a guest's disk images and serial logs live in its folder of the
 * server's guest store (shared by the host VMs of one server, like the memory pool, so an
 * instant handover uses the same files); its sockets in its QEMU's runtime folder (they
 * change with every QEMU: the guest's status names them, see GuestStatus.endpoints).
 */
import { type Static, Type } from "typebox";
import { StringOrNull } from "./common.ts";

/** Short (device ids name sockets, whose paths are bounded) and safe in QEMU options. */
export const DeviceId = Type.String({ pattern: "^[a-z][a-z0-9]{0,11}$" });

/**
 * An image file in the host VM's own image folder, as a path relative to it: segments of
 * letters, digits, "_", "-" and ".", none starting with "." (no "..", nothing absolute).
 */
export const ImageFile = Type.String({
  pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$",
  maxLength: 200,
});

export const DiskDeviceSchema = Type.Object(
  {
    kind: Type.Literal("disk"),
    id: DeviceId,
    /**
     * Size in MiB. Without `file`: a new, empty image of this size. With `file`: the copy
     * grows to this size (default: the image's own size, rounded up to a MiB).
     */
    sizeMiB: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_048_576 })),
    /** Initial content: an image in the host VM's image folder, copied into the guest's own disk. */
    file: Type.Optional(ImageFile),
    /** Default raw. */
    format: Type.Optional(Type.Enum(["raw", "qcow2"])),
    /** The guest sees a read-only disk. */
    readOnly: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const NicDeviceSchema = Type.Object(
  {
    kind: Type.Literal("nic"),
    id: DeviceId,
    /**
     * user (default): QEMU's user-mode network, restricted: the guest gets DHCP and talks to
     * the gateway, nothing beyond QEMU. socket: QEMU listens on a unix socket; a peer that
     * connects exchanges frames with the guest (4-byte big-endian length, then the frame).
     */
    backend: Type.Optional(Type.Enum(["user", "socket"])),
    /** Unicast MAC; default: derived from the guest and device ids (kept across migrations). */
    mac: Type.Optional(Type.String({ pattern: "^([0-9a-f]{2}:){5}[0-9a-f]{2}$" })),
  },
  { additionalProperties: false },
);

export const SerialDeviceSchema = Type.Object(
  {
    kind: Type.Literal("serial"),
    id: DeviceId,
    /** Append everything the guest writes to this port to a log in the guest's folder (default false). */
    log: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const TapDeviceSchema = Type.Object(
  {
    kind: Type.Literal("tap"),
    id: DeviceId,
    /**
     * What it monitors. A NIC: every frame, both directions, mirrored to a socket (QEMU
     * filter-mirror; length-prefixed frames). A disk: a read-only NBD export of it (QEMU's
     * NBD server on a unix socket, export name = the tap's id).
     */
    of: DeviceId,
  },
  { additionalProperties: false },
);

export const DeviceSchema = Type.Union([
  DiskDeviceSchema,
  NicDeviceSchema,
  SerialDeviceSchema,
  TapDeviceSchema,
]);
export type Device = Static<typeof DeviceSchema>;
export type DiskDevice = Static<typeof DiskDeviceSchema>;
export type NicDevice = Static<typeof NicDeviceSchema>;

export const DeviceList = Type.Array(DeviceSchema, { maxItems: 16 });

/** Where to reach a device of a running guest (null: not applicable, or no QEMU now). */
export const DeviceEndpointSchema = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  /** Serial port, NIC (socket backend) or NIC tap: the unix socket to connect to. */
  socket: StringOrNull,
  /** Serial port with a log: the log file (it continues across migrations). */
  log: StringOrNull,
  /** Disk: its image file. */
  image: StringOrNull,
  /** Disk tap: the NBD URI of the export (nbd+unix:///<name>?socket=<path>). */
  nbd: StringOrNull,
  /** Disk: QEMU's block node name (for QMP); NIC: its netdev id. */
  qemuId: StringOrNull,
});
export type DeviceEndpoint = Static<typeof DeviceEndpointSchema>;

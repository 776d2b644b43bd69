// Public entry of the monitor module: what security VMs run against their targets from
// outside. The disk monitor's NBD client (disk/nbd/), which reads a guest's drive as its QEMU
// exports it (read-only; point-in-time through fleecing; dirty-bitmap maps), and its ext4
// reader (disk/ext4/: the guest's file system read without mounting, journal applied).
export * from "./alert.ts";
export * from "./disk/ext4/index.ts";
export * from "./disk/nbd/index.ts";

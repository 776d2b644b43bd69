// Public entry of the monitor module: what security VMs run against their targets from
// outside. So far the disk monitor's NBD client (disk/nbd/), which reads a guest's drive as
// its QEMU exports it (read-only; point-in-time through fleecing; dirty-bitmap maps).
export * from "./alert.ts";
export * from "./disk/nbd/index.ts";

// Public entry of the monitor module: what security VMs run against their targets from
// outside. The disk monitor's NBD client (disk/nbd/), which reads a guest's drive as its QEMU
// exports it (read-only; point-in-time through fleecing; dirty-bitmap maps), and the network
// monitor (network/): the guest's mirrored frames inspected by Suricata live.
export * from "./alert.ts";
export { DEFAULT_NETWORK_RULES } from "./assets.ts";
export * from "./disk/nbd/index.ts";
export * from "./network/index.ts";

// Public entry of the monitor module: what security VMs run against their targets from
// outside. The disk monitor (disk/monitor.ts: check rounds, full then incremental, integrity
// and malware alerts), its NBD client (disk/nbd/: a guest's drive as its QEMU exports it,
// read-only, point in time, dirty-bitmap maps), its ext4 reader (disk/ext4/: the guest's file
// system read without mounting, journal applied), the integrity records and path policy
// (disk/integrity.ts) and the ClamAV scan (disk/clamav.ts); the network monitor (network/):
// the guest's mirrored frames inspected by Suricata live.
export * from "./alert.ts";
export * from "./alert-log.ts";
export { DEFAULT_NETWORK_RULES } from "./assets.ts";
export * from "./channel/index.ts";
export * from "./disk/clamav.ts";
export * from "./disk/ext4/index.ts";
export * from "./disk/integrity.ts";
export * from "./disk/monitor.ts";
export * from "./disk/nbd/index.ts";
export * from "./memory/index.ts";
export * from "./network/index.ts";

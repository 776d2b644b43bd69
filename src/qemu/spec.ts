// What a guest's QEMU is started with (plain data). Its own module so that process.ts (which
// starts QEMU) and state.ts (which records the launch spec in the instance's state file) both
// depend on it and not on each other.

import type { QemuDevice } from "./devices.ts";

export type NetSpec =
  | {
      mode: "user";
      mac?: string;
      /** Host port forwards, e.g. { hostPort: 2222, guestPort: 22 } (bound to 127.0.0.1). */
      hostfwd?: Array<{ proto?: "tcp" | "udp"; hostAddr?: string; hostPort: number; guestPort: number }>;
    }
  | { mode: "tap"; ifname: string; mac?: string };

export interface DiskSpec {
  path: string;
  format: "raw" | "qcow2";
  readOnly?: boolean;
}

export interface GuestBootImage {
  kernel: string;
  initrd: string;
  /** Base kernel command line of the image (console=ttyS0 ...). */
  append?: string;
}

/** What a guest looks like; identical on both sides of a migration (except `incoming`). */
export interface QemuSpec {
  /** Stable guest name: [A-Za-z0-9][A-Za-z0-9_-]{0,31}. Names the pool file. */
  guestId: string;
  memoryMiB: number;
  cpus?: number;
  /** Folder for guest RAM files, e.g. a /dev/shm subfolder (tmpfs). */
  poolDir: string;
  image: GuestBootImage;
  /** Extra kernel arguments after the image's own. */
  append?: string;
  /** Passed to the guest as nestcloud.bootid= (its init prints it in NESTCLOUD-READY). */
  bootId?: string;
  net?: NetSpec;
  disk?: DiskSpec;
  /** The guest's own devices (disks, NICs, serial ports, NIC taps): see devices.ts. */
  devices?: readonly QemuDevice[];
  /** Exit instead of rebooting when the guest resets (useful in tests). */
  noReboot?: boolean;
  qemuBinary?: string;
  /**
   * Works around lost dirty pages in QEMU 7.2 pre-copy under TCG (default on): 7.2's fast
   * path for syncing the migration dirty bitmap clears dirty bits without resetting TCG's
   * TLB "not dirty" flags, so guest writes through cached TLB entries go untracked and the
   * destination gets stale pages (seen here with the verify workload; newer QEMU resets the
   * TLB there). The fast path only runs for RAM blocks sized in whole 256 KiB units, so the
   * RAM is made 8 KiB larger than memoryMiB, which sends QEMU down its per-page path that
   * does reset the TLB. Costs some CPU per dirty-bitmap sync; irrelevant with KVM.
   */
  tcgDirtyTrackingWorkaround?: boolean;
  /** TCG translation cache size in MiB (QEMU's default is large; each guest pays it). */
  tcgTbSizeMiB?: number;
  extraArgs?: readonly string[];
  /**
   * QEMU >= 10 only: `-machine aux-ram-share=on`, the small RAM blocks (ROMs, ACPI tables)
   * in shared memory too, which cpr-transfer requires of the process it replaces (cpr.ts).
   */
  auxRamShare?: boolean;
}

/** A spec bound to one process instance: adds where its runtime files go. */
export interface QemuLaunchSpec extends QemuSpec {
  instanceId: string;
  runDir: string;
  /**
   * "defer": start paused, waiting for `migrate-incoming` (destination of a migration).
   * "cpr": the new process of a cpr-transfer live update (cpr.ts): it listens on its cpr
   * and main channels and has no QMP until the source has sent its cpr state.
   */
  incoming?: "defer" | "cpr";
}

// Types of the QMP messages and of the command results nestcloud uses (QEMU 7.2 schema,
// qapi/*.json). Field names keep QEMU's spelling so that they match the wire exactly.

export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export interface QmpGreeting {
  QMP: { version: QmpVersion; capabilities: string[] };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** RunState from qapi/run-state.json. */
export type RunState =
  | "debug"
  | "inmigrate"
  | "internal-error"
  | "io-error"
  | "paused"
  | "postmigrate"
  | "prelaunch"
  | "finish-migrate"
  | "restore-vm"
  | "running"
  | "save-vm"
  | "shutdown"
  | "suspended"
  | "watchdog"
  | "guest-panicked"
  | "colo";

export interface StatusInfo {
  running: boolean;
  singlestep?: boolean;
  status: RunState;
}

export type MigrationStatus =
  | "none"
  | "setup"
  | "cancelling"
  | "cancelled"
  | "active"
  | "postcopy-active"
  | "postcopy-paused"
  | "postcopy-recover"
  | "completed"
  | "failed"
  | "colo"
  | "pre-switchover"
  | "device"
  | "wait-unplug";

export interface MigrationRamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  "normal-bytes": number;
  "dirty-pages-rate": number;
  mbps: number;
  "dirty-sync-count": number;
  "postcopy-requests": number;
  "page-size": number;
  "multifd-bytes"?: number;
  "pages-per-second"?: number;
  "precopy-bytes"?: number;
  "downtime-bytes"?: number;
  "postcopy-bytes"?: number;
}

export interface SocketAddressInet {
  type: "inet";
  host: string;
  port: string;
}

export interface MigrationInfo {
  status?: MigrationStatus;
  ram?: MigrationRamStats;
  /** Block migration (the `block` capability): the disks' bytes, apart from RAM's. */
  disk?: { transferred: number; remaining: number; total: number };
  "total-time"?: number;
  "expected-downtime"?: number;
  downtime?: number;
  "setup-time"?: number;
  "cpu-throttle-percentage"?: number;
  "error-desc"?: string;
  "blocked-reasons"?: string[];
  "socket-address"?: Array<SocketAddressInet | { type: string; [k: string]: unknown }>;
}

export type MigrationCapabilityName =
  | "xbzrle"
  | "rdma-pin-all"
  | "auto-converge"
  | "zero-blocks"
  | "compress"
  | "events"
  | "postcopy-ram"
  | "x-colo"
  | "release-ram"
  | "block"
  | "return-path"
  | "pause-before-switchover"
  | "multifd"
  | "dirty-bitmaps"
  | "postcopy-blocktime"
  | "late-block-activate"
  | "x-ignore-shared"
  | "validate-uuid"
  | "background-snapshot"
  | "zero-copy-send"
  | "postcopy-preempt";

export type MigrationCapabilities = Partial<Record<MigrationCapabilityName, boolean>>;

/** The subset of MigrateSetParameters nestcloud sets. */
export interface MigrationParameters {
  "downtime-limit"?: number;
  "max-bandwidth"?: number;
  "cpu-throttle-initial"?: number;
  "cpu-throttle-increment"?: number;
  "cpu-throttle-tailslow"?: boolean;
  "max-cpu-throttle"?: number;
  "multifd-channels"?: number;
  "max-postcopy-bandwidth"?: number;
  "announce-initial"?: number;
  /** QEMU >= 8.2 ("cpr-transfer" from 10.0): never sent to an older QEMU. */
  mode?: "normal" | "cpr-reboot" | "cpr-transfer";
}

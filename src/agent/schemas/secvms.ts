/**
 * Security VMs (issue 12): isolated monitoring services a host-VM agent runs beside its
 * guests, each with its targets (guests of this host VM) and the monitors it runs against
 * each one (memory from the guest's RAM, disk from an NBD export of one of its disks, network
 * from a mirror of one of its NICs). Alerts come back in the one alert shape
 * (src/monitor/alert.ts), numbered in the security VM's bounded log.
 */
import { type Static, Type } from "typebox";
import { MONITOR_KINDS, SEVERITIES } from "../../monitor/index.ts";
import { AgentUrl, GuestId, NodeName, Nullable, NumberOrNull, StringOrNull } from "./common.ts";
import { DeviceId } from "./devices.ts";

/**
 * The most paths of a disk baseline handed from one monitor to the next (a request to an agent
 * is at most 1 MiB): a larger one is not handed over, and the next monitor makes its own.
 */
export const MAX_BASELINE_RECORDS = 2500;

const Address = Type.String({ pattern: "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" });

export const SecVmId = Type.String({
  pattern: "^[a-z][a-z0-9]{0,6}$",
  description: "names its namespace, cgroup and TAP devices",
});
export const SecVmParams = Type.Object({ secvmId: SecVmId });

export const SecVmTargetSchema = Type.Object(
  {
    guestId: GuestId,
    /** Introspect the guest's memory (default true). */
    memory: Type.Optional(Type.Boolean()),
    /** Check this disk of the guest (ext4 integrity + ClamAV); absent: no disk monitor. */
    disk: Type.Optional(DeviceId),
    /** Inspect the traffic of this NIC of the guest (Suricata); absent: no network monitor. */
    nic: Type.Optional(DeviceId),
    /**
     * A guest of another host VM: the agent asks that host VM's agent (at `agentUrl`; same
     * server: channel direct, another server: channel remote, over TCP with TLS) to export
     * what the monitors need to this security VM only (POST /v1/secvm-exports). Absent: a
     * guest of this host VM (channel local).
     */
    via: Type.Optional(
      Type.Object(
        { agentUrl: AgentUrl, channel: Type.Union([Type.Literal("direct"), Type.Literal("remote")]) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type SecVmTarget = Static<typeof SecVmTargetSchema>;

/**
 * A host-VM agent asks the agent of its security VM's target (same server) for the target's
 * memory, disk and traffic, granted to that security VM alone: its uid owns the export's
 * folder (the NBD socket in it), the mirror goes to the socket it names in its own folder, and
 * the RAM file's path is given to its agent (root, same server), which hands the service a
 * read-only descriptor as for a local target.
 */
export const CreateSecVmExportBody = Type.Object(
  {
    guestId: GuestId,
    memory: Type.Boolean(),
    disk: Type.Optional(DeviceId),
    nic: Type.Optional(DeviceId),
    channel: Type.Union([Type.Literal("direct"), Type.Literal("remote")]),
    grantee: Type.Object(
      {
        secvmId: SecVmId,
        server: NodeName,
        hostVm: NodeName,
        uid: Type.Integer({ minimum: 0x40000000, maximum: 0x4fffffff }),
        /** The service's mirror listener (a unix socket in its own private folder). */
        mirrorSocket: Type.Optional(
          Type.String({ pattern: "^/run/ncsv/[a-z0-9-]+/mirror-[a-z0-9-]+\\.sock$" }),
        ),
        /** Remote: the service's TLS mirror listener, on its own address. */
        mirror: Type.Optional(
          Type.Object(
            { host: Address, port: Type.Integer({ minimum: 1, maximum: 65535 }) },
            { additionalProperties: false },
          ),
        ),
        /**
         * Remote: the SHA-256 fingerprint of the security VM's certificate. The page server and
         * the relay admit that certificate alone, and only while the export lasts.
         */
        certFingerprint: Type.Optional(Type.String({ pattern: "^([0-9A-F]{2}:){31}[0-9A-F]{2}$" })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type CreateSecVmExportRequest = Static<typeof CreateSecVmExportBody>;

export const SecVmExportId = Type.String({ pattern: "^x[0-9a-f]{12}$" });
export const SecVmExportParams = Type.Object({ exportId: SecVmExportId });

export const SecVmExportSchema = Type.Object({
  exportId: Type.String(),
  guestId: Type.String(),
  channel: Type.String(),
  grantee: Type.Object({
    secvmId: Type.String(),
    server: Type.String(),
    hostVm: Type.String(),
    uid: Type.Integer(),
  }),
  /** The target's RAM file in the server's pool (the grantee's agent opens it read-only). */
  ramFile: StringOrNull,
  /** QEMU's NBD server for the grantee: a unix socket in a folder only its uid may enter. */
  nbdSocket: StringOrNull,
  /** The filter-mirror's id on the target's QEMU, feeding the grantee's socket (or TLS listener). */
  mirror: StringOrNull,
  /** Remote: the page server of the target's host VM (TLS) serving the guest, and its RAM size. */
  pageServer: Nullable(Type.Object({ host: Type.String(), port: Type.Integer(), size: Type.Integer() })),
  /** Remote: the NBD TLS relay in front of the guest's NBD server. */
  relay: Nullable(Type.Object({ host: Type.String(), port: Type.Integer() })),
  /** The target's QEMU pid when the export was made (a new pid: the target was replaced). */
  qemuPid: Type.Integer(),
  /** Whether that QEMU still runs. */
  running: Type.Boolean(),
});
export type SecVmExport = Static<typeof SecVmExportSchema>;
export const SecVmExportListSchema = Type.Array(SecVmExportSchema);

export const DiskViewBody = Type.Object({ open: Type.Boolean() }, { additionalProperties: false });
export const DiskViewSchema = Type.Object({ exportName: Type.String(), dirtyBitmap: StringOrNull });
export type DiskViewAnswerBody = Static<typeof DiskViewSchema>;

/** A ClamAV body signature (hex pattern, anywhere in a file): the operator's own database. */
/** One path of a disk monitor's baseline (monitor/disk/integrity.ts FileRecord). */
export const FileRecordSchema = Type.Object(
  {
    path: Type.String({ maxLength: 4096, pattern: "^/" }),
    ino: Type.Integer({ minimum: 0 }),
    type: Type.Enum(["file", "dir", "symlink", "chr", "blk", "fifo", "sock", "unknown"]),
    mode: Type.Integer({ minimum: 0 }),
    uid: Type.Integer({ minimum: 0 }),
    gid: Type.Integer({ minimum: 0 }),
    size: Type.Integer({ minimum: 0 }),
    mtime: Type.String({ maxLength: 40 }),
    sha256: Type.Union([Type.String({ pattern: "^[0-9a-f]{64}$" }), Type.Null()]),
    unread: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);

export const DiskBaselineQuery = Type.Object({ guestId: GuestId }, { additionalProperties: false });
export const DiskBaselineSchema = Type.Object({
  secvmId: Type.String(),
  guestId: Type.String(),
  /** Its disk rounds so far. */
  rounds: Type.Integer(),
  /** null: no baseline yet, or more than MAX_BASELINE_RECORDS paths (not handed over). */
  files: Type.Union([Type.Array(FileRecordSchema), Type.Null()]),
});
export type DiskBaselineAnswer = Static<typeof DiskBaselineSchema>;

export const SignatureSchema = Type.Object(
  {
    name: Type.String({ pattern: "^[A-Za-z0-9_.-]{1,64}$" }),
    hex: Type.String({ pattern: "^([0-9a-f]{2}){4,256}$" }),
  },
  { additionalProperties: false },
);

export const CreateSecVmBody = Type.Object(
  {
    secvmId: SecVmId,
    /** At most one security VM watches a guest. */
    targets: Type.Array(SecVmTargetSchema, { minItems: 1, maxItems: 8 }),
    /** Its cgroup's limits (default 1 CPU, 512 MiB: Suricata's and ClamAV's share included). */
    cpus: Type.Optional(Type.Number({ minimum: 0.1, maximum: 64 })),
    memoryMiB: Type.Optional(Type.Integer({ minimum: 128, maximum: 65_536 })),
    /** Period between memory rounds and between disk rounds (defaults 2 s and 10 s). */
    memoryPeriodMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000 })),
    diskPeriodMs: Type.Optional(Type.Integer({ minimum: 500, maximum: 86_400_000 })),
    /** ClamAV body signatures (the malware scan runs when there is at least one). */
    signatures: Type.Optional(Type.Array(SignatureSchema, { maxItems: 256 })),
    /** A tenant's Suricata rules (one text, loaded next to nestcloud's defaults). */
    rules: Type.Optional(Type.String({ maxLength: 256 * 1024 })),
    /** Bounded alert log (default 2000). */
    alertLogSize: Type.Optional(Type.Integer({ minimum: 10, maximum: 100_000 })),
    /**
     * The targets may be arriving here: a target that is not a guest of this host VM yet is
     * read from the QEMU of its incoming pre-copy or instant handover, once that has loaded and
     * waits paused (-S) for its finish, so that the monitor's baseline is the guest's state at
     * the switchover (issue 13: no event between the switchover and the baseline). Its NIC's
     * mirror is added to that QEMU before it resumes (no frame of it goes uninspected); its
     * disk is read from the first round after it runs here.
     */
    arriving: Type.Optional(Type.Boolean()),
    /**
     * Disk baselines another monitor of these targets took (GET .../disk-baseline), taken over
     * by this one's first start: its first round reports every change since that monitor's
     * last round instead of taking them into a new baseline (issue 13: a monitor that follows
     * its target).
     */
    diskBaselines: Type.Optional(
      Type.Array(
        Type.Object(
          { guestId: GuestId, files: Type.Array(FileRecordSchema, { maxItems: MAX_BASELINE_RECORDS }) },
          { additionalProperties: false },
        ),
        { maxItems: 8 },
      ),
    ),
  },
  { additionalProperties: false },
);
export type CreateSecVmRequest = Static<typeof CreateSecVmBody>;

export const MonitorStatusSchema = Type.Object({
  guestId: Type.String(),
  monitor: Type.Enum([...MONITOR_KINDS]),
  /** starting, running, lost (its target or source is gone; being reopened), stopped. */
  state: Type.String(),
  rounds: Type.Integer(),
  lastRoundMs: NumberOrNull,
});

export const SecVmStatusSchema = Type.Object({
  secvmId: Type.String(),
  /** starting, running, restarting (its service died or wedged), failed, stopping. */
  state: Type.String(),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  uid: Type.Integer(),
  netns: Type.String(),
  cgroup: Type.Array(Type.String()),
  /** How the cgroup was made, or why there is none. */
  cgroupNote: Type.String(),
  targets: Type.Array(SecVmTargetSchema),
  monitors: Type.Array(MonitorStatusSchema),
  restarts: Type.Integer(),
  alerts: Type.Object({ last: Type.Integer(), kept: Type.Integer(), evicted: Type.Integer() }),
  /** Peak resident memory of the service process (kB), from its own reports. */
  maxRssKiB: NumberOrNull,
  error: StringOrNull,
});
export type SecVmStatus = Static<typeof SecVmStatusSchema>;
export const SecVmListSchema = Type.Array(SecVmStatusSchema);

export const AlertSchema = Type.Object({
  seq: Type.Integer(),
  time: Type.Number(),
  target: Type.String(),
  monitor: Type.Enum([...MONITOR_KINDS]),
  channel: Type.String(),
  severity: Type.Enum([...SEVERITIES]),
  summary: Type.String(),
  evidence: Type.Record(Type.String(), Type.Unknown()),
});

export const AlertsQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  /** Wait up to this long for an alert after `after` (long poll; default 0). */
  waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })),
});

export const AlertPageSchema = Type.Object({
  secvmId: Type.String(),
  alerts: Type.Array(AlertSchema),
  next: Type.Integer(),
  missed: Type.Integer(),
});
export type AlertPageAnswer = Static<typeof AlertPageSchema>;

/**
 * The guests resource of the host-VM agent: what defines a guest, what creating one takes,
 * its workloads and console commands, the QMP passthrough, and what a guest's status says.
 */
import { type Static, Type } from "typebox";
import { GuestId, GuestParams, NumberOrNull, StringOrNull } from "./common.ts";
import { DeviceEndpointSchema, DeviceList } from "./devices.ts";
import { POWER_STATES, RescueAppend } from "./power.ts";

export const WorkloadSchema = Type.Union([
  Type.Object(
    { kind: Type.Literal("verify"), mib: Type.Integer({ minimum: 1, maximum: 4096 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal("dirty"),
      rateMiBps: Type.Number({ minimum: 0, maximum: 100_000 }),
      workingSetMiB: Type.Integer({ minimum: 1, maximum: 65536 }),
    },
    { additionalProperties: false },
  ),
]);
export type Workload = Static<typeof WorkloadSchema>;

export const WorkloadParams = Type.Object({
  guestId: GuestParams.properties.guestId,
  kind: Type.Enum(["verify", "dirty"]),
});

/** Which command line a guest boots (rescue: with nestcloud.rescue=1 and its extra arguments). */
export const BootSchema = Type.Object(
  { mode: Type.Enum(["normal", "rescue"]), append: Type.Optional(RescueAppend) },
  { additionalProperties: false },
);

/** What defines a guest; identical on both sides of a migration. */
export const GuestConfigSchema = Type.Object(
  {
    guestId: GuestId,
    memoryMiB: Type.Integer({ minimum: 64, maximum: 262144 }),
    cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 8 })),
    bootId: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9_.-]{1,64}$" })),
    /** Its own devices, as the agent completed them at creation (MACs, sizes, formats filled in). */
    devices: Type.Optional(DeviceList),
    /** The boot it is configured for (virtual AMT; default normal). */
    boot: Type.Optional(BootSchema),
  },
  { additionalProperties: false },
);
export type GuestConfig = Static<typeof GuestConfigSchema>;

export const CreateGuestBody = Type.Object(
  {
    guestId: GuestId,
    memoryMiB: Type.Integer({ minimum: 64, maximum: 262144 }),
    cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 8 })),
    /**
     * Its own devices: disks, NICs, serial ports, monitoring taps (see schemas/devices.ts).
     * A list QEMU would refuse is a 400 naming the field (ids unique, taps of an existing
     * NIC or disk, image files inside the host VM's image folder).
     */
    devices: Type.Optional(DeviceList),
    workloads: Type.Optional(Type.Array(WorkloadSchema, { maxItems: 4 })),
    /** Answer once the guest printed NESTCLOUD-READY (default true). */
    waitReady: Type.Optional(Type.Boolean()),
    bootTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 600_000 })),
  },
  { additionalProperties: false },
);
export type CreateGuestRequest = Static<typeof CreateGuestBody>;

export const ExecBody = Type.Object(
  {
    command: Type.String({ minLength: 1, maxLength: 2000 }),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000 })),
  },
  { additionalProperties: false },
);
export type ExecRequest = Static<typeof ExecBody>;
export const ExecResultSchema = Type.Object({ output: Type.String(), exitCode: Type.Integer() });

export const QmpBody = Type.Object(
  {
    execute: Type.String({ pattern: "^[a-z][a-z0-9_-]{0,63}$" }),
    arguments: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type QmpRequest = Static<typeof QmpBody>;
/** QEMU's own answer, passed through as it came. */
export const QmpResultSchema = Type.Object({ return: Type.Unknown() });

export const HeartbeatSchema = Type.Object({
  seq: Type.Number(),
  uptime: Type.Number(),
  /** Epoch ms when the agent saw it. */
  at: Type.Number(),
});
export type Heartbeat = Static<typeof HeartbeatSchema>;

export const VerifyStateSchema = Type.Object({
  /** Sweeps reported by the last "NESTCLOUD-VERIFY ok" line. */
  sweeps: Type.Number(),
  okLines: Type.Number(),
  /** LOST lines seen: any is a lost write. */
  lostLines: Type.Number(),
  last: StringOrNull,
});
export type VerifyState = Static<typeof VerifyStateSchema>;

export const GuestStateSchema = Type.Enum(["booting", "running", "stopped", "failed", "migrating", "paused"]);

export const GuestStatusSchema = Type.Object({
  guestId: Type.String(),
  state: GuestStateSchema,
  memoryMiB: Type.Number(),
  cpus: Type.Number(),
  bootId: Type.String(),
  pid: NumberOrNull,
  instanceId: StringOrNull,
  poolFile: StringOrNull,
  ownsPoolFile: Type.Boolean(),
  qemuStatus: StringOrNull,
  heartbeat: Type.Union([HeartbeatSchema, Type.Null()]),
  verify: Type.Union([VerifyStateSchema, Type.Null()]),
  dirty: Type.Union([Type.Object({ pages: Type.Number(), mibs: Type.Number() }), Type.Null()]),
  workloads: Type.Array(WorkloadSchema),
  /** Its devices, as configured (what a migration carries). */
  devices: DeviceList,
  /** Where to reach them in its current QEMU (sockets, logs, images, NBD exports). */
  endpoints: Type.Array(DeviceEndpointSchema),
  cpuSeconds: NumberOrNull,
  error: StringOrNull,
  /** Virtual AMT: the boot it is configured for (absent: normal). */
  boot: Type.Optional(BootSchema),
  /** Virtual AMT: off = powered off by the guest or hard (QEMU kept), panicked = pvpanic (absent: on). */
  power: Type.Optional(Type.Enum([...POWER_STATES])),
});
export type GuestStatus = Static<typeof GuestStatusSchema>;

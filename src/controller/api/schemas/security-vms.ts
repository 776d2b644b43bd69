/** Security VMs (guests that watch other guests of their tenant): /api/security-vms. */
import { Type } from "typebox";
import { ALERT_SEVERITIES, MONITOR_CHANNELS, MONITOR_KINDS } from "./choices.ts";
import { Id, Nullable } from "./common.ts";

export const CreateSecurityVm = Type.Object(
  {
    id: Id,
    tenant: Type.Optional(Id),
    targets: Type.Array(Id, { minItems: 1, maxItems: 64 }),
    memoryMiB: Type.Optional(Type.Number({ minimum: 64, maximum: 65536 })),
    /**
     * Its monitors (default all three): memory on each target, disk on a target's data disk,
     * network on its NIC (each where the target has one).
     */
    monitors: Type.Optional(
      Type.Array(Type.Enum(MONITOR_KINDS), { minItems: 1, maxItems: 3, uniqueItems: true }),
    ),
    /** ClamAV body signatures for the disk monitor's malware scan (none: no scan). */
    signatures: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ pattern: "^[A-Za-z0-9_.-]{1,64}$" }),
            hex: Type.String({ pattern: "^([0-9a-f]{2}){4,256}$" }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 256 },
      ),
    ),
    /** The tenant's Suricata rules, loaded beside nestcloud's defaults. */
    rules: Type.Optional(Type.String({ maxLength: 256 * 1024 })),
  },
  { additionalProperties: false },
);

/** One (security VM, target) pair: its channel as placement stands, and where its monitor runs. */
export const SecurityVmPair = Type.Object({
  target: Type.String(),
  /** null: the security VM or the target is not placed. */
  channel: Nullable(Type.Enum(MONITOR_CHANNELS)),
  /** The data plane's monitor (null on a plane that models security VMs by placement only). */
  monitor: Nullable(
    Type.Object({
      hostVm: Nullable(Type.String()),
      state: Type.String(),
      rounds: Type.Integer(),
      /** Its last move to where its target runs (made before the old one was removed). */
      lastMove: Type.Optional(
        Type.Object({
          from: Type.String(),
          to: Type.String(),
          /** From asking the destination's agent until the new monitor had its baseline. */
          makeMs: Type.Number(),
          /** The target held paused at its destination for the attach (null: made after it ran). */
          heldMs: Nullable(Type.Number()),
          /** The longest the target ran unobserved across the move (0: none; null: not known). */
          gapMs: Nullable(Type.Number()),
        }),
      ),
    }),
  ),
});
export const SecurityVmPairs = Type.Array(SecurityVmPair);

/** POST /api/security-vms/:id/co-migrate: the security VM with its targets to one host VM. */
export const CoMigrateSecurityVm = Type.Object(
  {
    to: Id,
    /** Which of its targets go with it (default: all; each must be one of its targets). */
    targets: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 64 })),
  },
  { additionalProperties: false },
);

/** A co-migration accepted as a plan of one co-migrate action. */
export const CoMigrationAccepted = Type.Object({
  plan: Type.Integer(),
  to: Type.String(),
  members: Type.Array(Type.Object({ guest: Type.String(), from: Type.String(), mechanism: Type.String() })),
});

export const AlertsQuery = Type.Object(
  {
    secvm: Type.Optional(Id),
    target: Type.Optional(Id),
    monitor: Type.Optional(Type.Enum(MONITOR_KINDS)),
    severity: Type.Optional(Type.Enum(ALERT_SEVERITIES)),
    /** Alerts after this id (the previous page's `next`). */
    after: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Alerts the monitor saw at or after this Unix time, ms. */
    since: Type.Optional(Type.Number({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    /** An admin's filter; a tenant sees its own only. */
    tenant: Type.Optional(Id),
  },
  { additionalProperties: false },
);

export const ControllerAlert = Type.Object({
  id: Type.Integer(),
  secvm: Type.String(),
  tenant: Type.String(),
  time: Type.Number(),
  target: Type.String(),
  monitor: Type.Enum(MONITOR_KINDS),
  channel: Type.Enum(MONITOR_CHANNELS),
  severity: Type.Enum(ALERT_SEVERITIES),
  summary: Type.String(),
  evidence: Type.Record(Type.String(), Type.Unknown()),
});

export const AlertPage = Type.Object({
  alerts: Type.Array(ControllerAlert),
  /** Pass as `after` for the next page. */
  next: Type.Integer(),
  more: Type.Boolean(),
});

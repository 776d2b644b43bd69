/**
 * The migration resources of the host-VM agent: outgoing (source side: start, follow,
 * cancel, continue, post-copy, confirm) and incoming (destination side: prepare, follow
 * with lease renewal, finish, abort).
 */
import { type Static, Type } from "typebox";
import type { MigrationFigures, MigrationProgressReport } from "../../qemu/index.ts";
import { AgentUrl, MigrationId, NumberOrNull, StringOrNull, schemaOf } from "./common.ts";
import { GuestConfigSchema, WorkloadSchema } from "./guests.ts";

export const MigrationOptionsSchema = Type.Object(
  {
    downtimeLimitMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
    /** Bytes per second. */
    maxBandwidth: Type.Optional(Type.Integer({ minimum: 1024 })),
    autoConverge: Type.Optional(Type.Boolean()),
    /** Enable post-copy (the orchestrator decides when to switch). */
    postcopy: Type.Optional(Type.Boolean()),
    pauseBeforeSwitchover: Type.Optional(Type.Boolean()),
    stallTimeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
    /** Let the source agent ignore convergence stalls (the orchestrator switches to post-copy). */
    ignoreStall: Type.Optional(Type.Boolean()),
    noProgressTimeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
  },
  { additionalProperties: false },
);
export type MigrationOptions = Static<typeof MigrationOptionsSchema>;

export const MigrationMode = Type.Enum(["handover", "precopy"]);
export type MigrationModeName = Static<typeof MigrationMode>;

// ---- outgoing (source side) ------------------------------------------------------------

export const StartOutgoingBody = Type.Object(
  {
    migrationId: MigrationId,
    mode: MigrationMode,
    /** Where the destination listens (from its prepare answer). */
    uri: Type.String({ pattern: "^(unix:/[^,\\s]+|tcp:[0-9.]+:[0-9]{1,5})$" }),
    /**
     * A cpr-transfer live update (the destination's prepare answer has it): its cpr channel.
     * The source then hands its RAM over as fds (QEMU >= 10).
     */
    cprUri: Type.Optional(Type.String({ pattern: "^unix:/[^,\\s]+$", maxLength: 200 })),
    options: Type.Optional(MigrationOptionsSchema),
    /** Answer once the migration left "running" or after this long, whichever first. */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
    /**
     * The destination's host-VM agent. If the migration completes and no orchestrator
     * confirms it within `resolveAfterMs` (default 30 s), the source agent settles it
     * itself: it aborts the incoming at the destination (which fences it: it can never run
     * after that) and resumes the guest here, or stops it here if the destination already
     * runs it. Without it, a completed source waits for a confirm forever.
     */
    destination: Type.Optional(
      Type.Object(
        {
          url: AgentUrl,
          resolveAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type StartOutgoingRequest = Static<typeof StartOutgoingBody>;

export const OutgoingPhase = Type.Enum([
  "running",
  "pre-switchover",
  "postcopy",
  "completed",
  "failed",
  "cancelled",
  "confirmed",
  "rolled-back",
]);
export type OutgoingPhaseName = Static<typeof OutgoingPhase>;

export const WaitQuery = Type.Object(
  {
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
    /** Long-poll: answer as soon as the phase differs from this one. */
    unless: Type.Optional(OutgoingPhase),
  },
  { additionalProperties: false },
);

export const CancelBody = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: 200 })) },
  { additionalProperties: false },
);

export const ConfirmBody = Type.Object(
  { outcome: Type.Enum(["success", "rollback"]) },
  { additionalProperties: false },
);
export type ConfirmOutcome = Static<typeof ConfirmBody>["outcome"];

export const MigrationProgressSchema = schemaOf<MigrationProgressReport>()(
  Type.Object({
    status: Type.String(),
    elapsedMs: Type.Number(),
    totalBytes: Type.Number(),
    transferredBytes: Type.Number(),
    remainingBytes: Type.Number(),
    pass: Type.Number(),
    dirtyRateBytesPerSec: Type.Number(),
    throughputBytesPerSec: Type.Number(),
    expectedDowntimeMs: NumberOrNull,
    percent: Type.Number(),
    etaMs: NumberOrNull,
    stalled: Type.Boolean(),
  }),
);
/** A progress report as a client receives it: the status is whatever QEMU said. */
export type MigrationProgressView = Static<typeof MigrationProgressSchema>;

export const OutgoingResultSchema = schemaOf<MigrationFigures>()(
  Type.Object({
    totalTimeMs: Type.Number(),
    downtimeMs: Type.Number(),
    setupTimeMs: Type.Number(),
    wallMs: Type.Number(),
    transferredBytes: Type.Number(),
    totalBytes: Type.Number(),
    passes: Type.Number(),
    switchedToPostcopy: Type.Boolean(),
  }),
);

// A migration's progress and figures are qemu's types; the schemas above answer them.
export type { MigrationFigures, MigrationProgressReport };

const CpuSpan = Type.Object({ start: NumberOrNull, end: NumberOrNull });

export const OutgoingStatusSchema = Type.Object({
  migrationId: Type.String(),
  guestId: Type.String(),
  mode: MigrationMode,
  phase: OutgoingPhase,
  progress: Type.Union([MigrationProgressSchema, Type.Null()]),
  result: Type.Union([OutgoingResultSchema, Type.Null()]),
  error: Type.Union([Type.Object({ name: Type.String(), message: Type.String() }), Type.Null()]),
  /** Epoch ms (fractional): migrate issued, source vCPUs stopped (QMP STOP), completion seen. */
  timing: Type.Object({ migrateAt: NumberOrNull, stoppedAt: NumberOrNull, completedAt: NumberOrNull }),
  /** Source QEMU CPU seconds (utime+stime) at the start and at completion. */
  cpu: CpuSpan,
  pid: NumberOrNull,
});
export type OutgoingStatus = Static<typeof OutgoingStatusSchema>;

// ---- incoming (destination side) -------------------------------------------------------

export const PrepareIncomingBody = Type.Object(
  {
    migrationId: MigrationId,
    guest: GuestConfigSchema,
    mode: MigrationMode,
    /** Address the destination listens on for pre-copy (its server's address). */
    listenHost: Type.Optional(Type.String({ pattern: "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" })),
    postcopy: Type.Optional(Type.Boolean()),
    /** The guest's workloads (they run inside it and travel with it; recorded for status). */
    workloads: Type.Optional(Type.Array(WorkloadSchema, { maxItems: 4 })),
    /** Without a renewal (any GET of this migration) for this long, an unfinished incoming is killed. */
    leaseMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000 })),
    /**
     * The source's host-VM agent. Across servers the destination fetches from it what the
     * migration stream does not carry: read-only disk images (at prepare) and serial logs
     * (at finish, so that they continue here).
     */
    source: Type.Optional(Type.Object({ url: AgentUrl }, { additionalProperties: false })),
    /**
     * A live update (rejuvenation): the source is this same host VM's running copy of the
     * guest, which a fresh QEMU replaces (handover mode only: the RAM file stays).
     */
    inPlace: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PrepareIncomingRequest = Static<typeof PrepareIncomingBody>;

export const IncomingQuery = Type.Object({ renew: Type.Optional(Type.Boolean()) });

export const FinishIncomingBody = Type.Object(
  {
    /** Only arm the destination to start on its own when the load completes (post-copy). */
    arm: Type.Optional(Type.Boolean()),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

/**
 * What a post-copy destination appended to its serial logs while the source waited before
 * the switch (the source's lines since arming), per logged port; a port whose log was not
 * continued at arming is left out (its log started here).
 */
export const ContinuedLogsSchema = Type.Object({
  bytes: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
  ms: Type.Number(),
});
export type ContinuedLogs = Static<typeof ContinuedLogsSchema>;

/** A guest's RAM file digested chunk by chunk (qemu/ram-digest.ts), read while it is frozen. */
export const RamDigestSchema = Type.Object({
  chunkBytes: Type.Integer(),
  sizeBytes: Type.Integer(),
  chunks: Type.Array(Type.String()),
  ms: Type.Number(),
});

export const IncomingStatusSchema = Type.Object({
  migrationId: Type.String(),
  guestId: Type.String(),
  mode: MigrationMode,
  state: Type.Enum(["listening", "armed", "running", "failed", "aborted", "expired"]),
  uri: StringOrNull,
  /**
   * A live update by cpr-transfer (QEMU >= 10, an in-place incoming on an agent whose QEMU
   * was started for it): the new process's cpr channel, which the source must be given.
   */
  cprUri: Type.Optional(StringOrNull),
  pid: NumberOrNull,
  instanceId: StringOrNull,
  qemuStatus: StringOrNull,
  /** Epoch ms of QEMU's RESUME event at the destination. */
  resumedAt: NumberOrNull,
  error: StringOrNull,
  cpu: CpuSpan,
  leaseExpiresAt: NumberOrNull,
});
export type IncomingStatus = Static<typeof IncomingStatusSchema>;
export type RamDigest = Static<typeof RamDigestSchema>;

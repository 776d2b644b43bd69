/**
 * The server agent's resources: the registry of host-VM agents, the memory pool, the ledger
 * (reservations), handovers, and its status.
 */
import { type Static, Type } from "typebox";
import { AgentUrl, GuestId, NodeName, NumberOrNull, StringOrNull } from "./common.ts";

export const RegisterBody = Type.Object(
  { url: AgentUrl, pid: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);
export const HostVmParams = Type.Object({ hostVm: NodeName });

export const ReservationBody = Type.Object(
  { hostVm: NodeName, guestId: GuestId, memoryMiB: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);
export type ReservationRequest = Static<typeof ReservationBody>;
export const ReservationSchema = Type.Object({
  hostVm: Type.String(),
  guestId: Type.String(),
  memoryMiB: Type.Number(),
});
export const ReservationParams = Type.Object({ hostVm: NodeName, guestId: GuestId });

export const HandoverBody = Type.Object(
  { guestId: GuestId, fromHostVm: NodeName, toHostVm: NodeName },
  { additionalProperties: false },
);
export type HandoverRequest = Static<typeof HandoverBody>;
export const HandoverParams = Type.Object({ handoverId: Type.String({ pattern: "^h-[a-z0-9]{1,32}$" }) });

export const PoolFileSchema = Type.Object({
  name: Type.String(),
  sizeBytes: Type.Number(),
  /** Bytes actually backed by RAM (tmpfs blocks). */
  allocatedBytes: Type.Number(),
});
export type PoolFileView = Static<typeof PoolFileSchema>;

export const PoolSchema = Type.Object({ poolDir: Type.String(), files: Type.Array(PoolFileSchema) });

export const HandoverViewSchema = Type.Object({
  handoverId: Type.String(),
  guestId: Type.String(),
  fromHostVm: Type.String(),
  toHostVm: Type.String(),
  memoryMiB: Type.Number(),
  state: Type.Enum(["pending", "committed", "aborted"]),
  startedAt: Type.Number(),
  endedAt: NumberOrNull,
});
export type HandoverView = Static<typeof HandoverViewSchema>;

const PartySchema = Type.Object({ hostVm: Type.String(), url: Type.String() });
export const BeginHandoverAnswerSchema = Type.Object({
  handover: HandoverViewSchema,
  from: PartySchema,
  to: PartySchema,
  poolFile: Type.String(),
});
export type BeginHandoverAnswer = Static<typeof BeginHandoverAnswerSchema>;

export const HostVmLedgerSchema = Type.Object({
  name: Type.String(),
  memoryMiB: Type.Number(),
  reservedMiB: Type.Number(),
  pendingMiB: Type.Number(),
  guests: Type.Array(
    Type.Object({ guestId: Type.String(), memoryMiB: Type.Number(), pending: Type.Boolean() }),
  ),
  /** The host-VM agent that registered last (null: none yet). */
  url: StringOrNull,
  pid: NumberOrNull,
  /** Whether that agent process still lives (checked by pid and start time); null: none registered. */
  agentAlive: Type.Union([Type.Boolean(), Type.Null()]),
});
export type HostVmLedgerView = Static<typeof HostVmLedgerSchema>;

export const ReconciledSchema = Type.Object({
  at: Type.Number(),
  action: Type.Enum(["released", "committed", "aborted"]),
  hostVm: Type.String(),
  guestId: Type.String(),
  handoverId: StringOrNull,
  why: Type.String(),
});

export const ServerStatusSchema = Type.Object({
  role: Type.Literal("server"),
  testbedId: Type.String(),
  server: Type.String(),
  address: Type.String(),
  pid: Type.Number(),
  poolDir: Type.String(),
  hostVms: Type.Array(HostVmLedgerSchema),
  poolFiles: Type.Array(PoolFileSchema),
  handovers: Type.Array(HandoverViewSchema),
  /** What reconciliation undid (latest last): entries nothing stood behind any more. */
  reconciled: Type.Array(ReconciledSchema),
  /** Counters of the server's interface (/sys/class/net/<if>/statistics in its namespace). */
  iface: Type.Union([
    Type.Object({ name: Type.String(), rxBytes: Type.Number(), txBytes: Type.Number() }),
    Type.Null(),
  ]),
});
export type ServerStatus = Static<typeof ServerStatusSchema>;

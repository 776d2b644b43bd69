/** The host-VM agent's status: its guests, its migrations, what it found at start-up. */
import { type Static, Type } from "typebox";
import { StringOrNull } from "./common.ts";
import { GuestStatusSchema } from "./guests.ts";
import { IncomingStatusSchema, OutgoingStatusSchema } from "./migrations.ts";

export const HostVmStatusSchema = Type.Object({
  role: Type.Literal("hostvm"),
  testbedId: Type.String(),
  server: Type.String(),
  hostVm: Type.String(),
  pid: Type.Number(),
  memoryMiB: Type.Number(),
  cpus: Type.Number(),
  guests: Type.Array(GuestStatusSchema),
  incoming: Type.Array(IncomingStatusSchema),
  outgoing: Type.Array(OutgoingStatusSchema),
  /** Its QEMU (--version's first line) and how it live-updates guests (rejuvenation). */
  qemu: Type.Optional(
    Type.Object({ version: StringOrNull, liveUpdate: Type.Enum(["x-ignore-shared", "cpr-transfer"]) }),
  ),
  /** QEMUs of a previous (dead) agent killed at start-up (those it could not adopt). */
  reapedAtStart: Type.Array(
    Type.Object({ instanceId: Type.String(), guestId: Type.String(), pid: Type.Number() }),
  ),
  /** QEMUs of a previous (dead) agent this one took over at start-up, and as what. */
  adoptedAtStart: Type.Array(
    Type.Object({
      instanceId: Type.String(),
      guestId: Type.String(),
      pid: Type.Number(),
      as: Type.Enum(["guest", "incoming"]),
      /** The migration it was part of (an outgoing guest, or an incoming). */
      migrationId: StringOrNull,
      /** QEMU's run state when adopted. */
      qemuStatus: Type.String(),
    }),
  ),
});
export type HostVmStatus = Static<typeof HostVmStatusSchema>;

/**
 * The virtual AMT: a guest's power and boot actions, its inventory and its event log
 * (routes/power.ts). The same shapes as the host-VM agent's (agent/schemas/power.ts).
 */
import { type Static, Type } from "typebox";
import { BOOT_MODES, POWER_ACTIONS, POWER_OUTCOMES, POWER_STATES } from "./choices.ts";
import { Nullable } from "./common.ts";

export const PowerAction = Type.Enum(POWER_ACTIONS);

export const PowerBody = Type.Object(
  {
    action: PowerAction,
    /** shutdown: power off hard if the guest did not within the wait. */
    force: Type.Optional(Type.Boolean()),
    /** shutdown: how long to wait for the guest to power off (ms, default 30,000). */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000 })),
    /** rescue: extra kernel arguments (after nestcloud.rescue=1): plain words, no quotes. */
    append: Type.Optional(
      Type.String({ pattern: "^[A-Za-z0-9_.,:=/+-]+( [A-Za-z0-9_.,:=/+-]+)*$", maxLength: 256 }),
    ),
  },
  { additionalProperties: false },
);
export type PowerBody = Static<typeof PowerBody>;

export const PowerResult = Type.Object({
  guestId: Type.String(),
  power: Type.Enum(POWER_STATES),
  boot: Type.Enum(BOOT_MODES),
  /** ignored: a shutdown the guest did not act on within the wait; forced: then powered off hard. */
  outcome: Type.Enum(POWER_OUTCOMES),
  detail: Type.String(),
});
export type PowerResult = Static<typeof PowerResult>;

export const Inventory = Type.Object({
  guestId: Type.String(),
  hostVm: Type.String(),
  server: Type.String(),
  cpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  disks: Type.Array(
    Type.Object({
      id: Type.String(),
      sizeMiB: Nullable(Type.Integer()),
      format: Type.String(),
      readOnly: Type.Boolean(),
    }),
  ),
  nics: Type.Array(Type.Object({ id: Type.String(), mac: Type.String(), backend: Type.String() })),
  serials: Type.Array(Type.Object({ id: Type.String(), logged: Type.Boolean() })),
  firmware: Type.String(),
  kernel: Type.String(),
  initrd: Type.String(),
  commandLine: Type.String(),
  boot: Type.Enum(BOOT_MODES),
  power: Type.Enum(POWER_STATES),
  qemuStatus: Nullable(Type.String()),
  pvpanic: Type.Boolean(),
});
export type Inventory = Static<typeof Inventory>;

export const GuestEvent = Type.Object({
  id: Type.Integer(),
  /** Wall-clock seconds. */
  at: Type.Number(),
  /**
   * power.<action> (asked through the API), guest.powered-off / guest.reset / guest.panicked /
   * guest.booted (the guest did it), migration.*, console.attached.
   */
  kind: Type.String(),
  /** Who did it: "admin" or "tenant:<name>", and the token's id; null: the guest or the cloud. */
  actor: Nullable(Type.String()),
  detail: Type.String(),
});
export type GuestEvent = Static<typeof GuestEvent>;
export const GuestEventList = Type.Array(GuestEvent);

export const GuestEventsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    offset: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

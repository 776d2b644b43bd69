/**
 * The virtual AMT of a guest at its host-VM agent: power and boot control (working when the
 * guest's OS is hung or has powered itself off: its QEMU stays alive with -no-shutdown), the
 * guest's inventory, and the power events its QEMU reported (powered off, reset or panicked
 * by the guest, booted).
 */
import { type Static, Type } from "typebox";
import { NodeName } from "./common.ts";
import { DeviceId } from "./devices.ts";

/**
 * on: power on (a guest that is off or panicked boots afresh); off: hard power off (QEMU
 * stopped, kept); shutdown: ACPI power button, waited for (bounded), hard off with `force`;
 * reset: hard reset (works on a hung guest); rescue: boot into the rescue command line;
 * normal: boot back into the normal one.
 */
export const POWER_ACTIONS = ["on", "off", "shutdown", "reset", "rescue", "normal"] as const;
export type PowerAction = (typeof POWER_ACTIONS)[number];
export const PowerActionSchema = Type.Enum([...POWER_ACTIONS]);

/** Extra kernel arguments for a rescue boot: one line of plain words (no quotes, no shell). */
export const RescueAppend = Type.String({
  pattern: "^[A-Za-z0-9_.,:=/+-]+( [A-Za-z0-9_.,:=/+-]+)*$",
  maxLength: 256,
});

/** How long a graceful shutdown waits for the guest to power off (ms). */
export const SHUTDOWN_WAIT_DEFAULT_MS = 30_000;
export const SHUTDOWN_WAIT_MAX_MS = 300_000;

export const PowerBody = Type.Object(
  {
    action: PowerActionSchema,
    /** shutdown: power off hard if the guest did not within the wait. */
    force: Type.Optional(Type.Boolean()),
    /** shutdown: how long to wait for the guest (default 30 s). */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: SHUTDOWN_WAIT_MAX_MS })),
    /** rescue: extra kernel arguments after nestcloud.rescue=1. */
    append: Type.Optional(RescueAppend),
  },
  { additionalProperties: false },
);
export type PowerRequest = Static<typeof PowerBody>;

/** on: running; off: powered off (by the guest or hard); panicked: the guest kernel panicked (pvpanic). */
export const POWER_STATES = ["on", "off", "panicked"] as const;
export type PowerState = (typeof POWER_STATES)[number];
export const BOOT_MODES = ["normal", "rescue"] as const;
export type BootMode = (typeof BOOT_MODES)[number];

export const PowerAnswerSchema = Type.Object({
  guestId: Type.String(),
  power: Type.Enum([...POWER_STATES]),
  boot: Type.Enum([...BOOT_MODES]),
  /**
   * done: carried out; ignored: a shutdown the guest did not act on within the wait (still on);
   * forced: a shutdown the guest ignored, then powered off hard (force).
   */
  outcome: Type.Enum(["done", "ignored", "forced"]),
  detail: Type.String(),
});
export type PowerAnswer = Static<typeof PowerAnswerSchema>;

export const InventorySchema = Type.Object({
  guestId: Type.String(),
  hostVm: NodeName,
  server: NodeName,
  cpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  disks: Type.Array(
    Type.Object({
      id: DeviceId,
      sizeMiB: Type.Union([Type.Integer(), Type.Null()]),
      format: Type.String(),
      readOnly: Type.Boolean(),
    }),
  ),
  nics: Type.Array(Type.Object({ id: DeviceId, mac: Type.String(), backend: Type.String() })),
  serials: Type.Array(Type.Object({ id: DeviceId, logged: Type.Boolean() })),
  /** What the guest boots: kernel and initrd file names and the full command line. */
  firmware: Type.String(),
  kernel: Type.String(),
  initrd: Type.String(),
  commandLine: Type.String(),
  boot: Type.Enum([...BOOT_MODES]),
  power: Type.Enum([...POWER_STATES]),
  /** QEMU's run state (running, shutdown, paused, guest-panicked, ...). */
  qemuStatus: Type.Union([Type.String(), Type.Null()]),
  pvpanic: Type.Boolean(),
});
export type Inventory = Static<typeof InventorySchema>;

/** What the guest did, as its QEMU (or its serial console) told the agent. */
export const GUEST_POWER_EVENT_KINDS = [
  "guest-powered-off",
  "guest-reset",
  "guest-panicked",
  "booted",
] as const;
export type GuestPowerEventKind = (typeof GUEST_POWER_EVENT_KINDS)[number];

export const GuestPowerEventSchema = Type.Object({
  /** Increasing per agent process (not across agents or restarts: the controller keys by guest and time). */
  seq: Type.Integer(),
  guestId: Type.String(),
  /** Unix seconds. */
  at: Type.Number(),
  kind: Type.Enum([...GUEST_POWER_EVENT_KINDS]),
  detail: Type.String(),
});
export type GuestPowerEvent = Static<typeof GuestPowerEventSchema>;

export const PowerEventsQuery = Type.Object(
  { after: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);
export const PowerEventsAnswer = Type.Object({
  events: Type.Array(GuestPowerEventSchema),
  /** Pass as `after` next time. */
  last: Type.Integer(),
});
export type PowerEventsPage = Static<typeof PowerEventsAnswer>;

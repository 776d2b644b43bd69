/** Guest VMs: /api/vms. */
import { type Static, Type } from "typebox";
import { MIGRATION_MECHANISMS } from "./choices.ts";
import { Automation, Id, Nullable } from "./common.ts";

export const CreateVm = Type.Object(
  {
    id: Id,
    tenant: Type.Optional(Id),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    mipsPerVcpu: Type.Number({ exclusiveMinimum: 0, maximum: 100000 }),
    memoryMiB: Type.Number({ minimum: 64, maximum: 1048576 }),
    dirtyRateMiBps: Type.Optional(Type.Number({ minimum: 0, maximum: 100000 })),
    antiAffinityGroup: Type.Optional(Id),
    automation: Type.Optional(Automation),
    hostVm: Type.Optional(Id),
    /**
     * A data disk (d0), a copy of an image in the host VM's image folder, and a NIC (n0,
     * user-mode): what security VMs' disk and network monitors watch. A simulated provider
     * ignores them.
     */
    disk: Type.Optional(
      Type.Object(
        {
          image: Type.String({
            pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$",
            maxLength: 200,
          }),
        },
        { additionalProperties: false },
      ),
    ),
    nic: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const MigrateVm = Type.Object(
  {
    to: Type.Optional(Id),
    mechanism: Type.Optional(Type.Enum(MIGRATION_MECHANISMS)),
  },
  { additionalProperties: false },
);

export const PatchVm = Type.Object(
  { automation: Type.Union([Automation, Type.Null()]) },
  { additionalProperties: false },
);

/** A guest VM as the API shows it (security VMs too). */
export const Guest = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  vcpus: Type.Integer(),
  mipsPerVcpu: Type.Number(),
  memoryMiB: Type.Number(),
  hostVm: Nullable(Type.String()),
  server: Nullable(Type.String()),
  powerState: Type.String({ description: "running or stopped" }),
  automation: Nullable(Automation),
  role: Type.Union([Type.Literal("tenant"), Type.Literal("security")]),
  targets: Type.Array(Type.String(), { description: "the guests a security VM watches" }),
  cpu: Nullable(Type.Number({ description: "load at the last audit, 0..1" })),
});
export type Guest = Static<typeof Guest>;

export const GuestList = Type.Array(Guest);

/** A move accepted as a plan of one migration. */
export const MigrationAccepted = Type.Object({
  plan: Type.Integer(),
  guest: Type.String(),
  from: Type.Optional(Type.String()),
  to: Type.Optional(Type.String()),
});

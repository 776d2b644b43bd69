/**
 * Request and response shapes of the API, as TypeBox schemas: fastify validates requests
 * with them (an invalid field gets a 400 naming it), documents them in OpenAPI, and the CLI
 * and dashboard share the types.
 *
 * A field with fixed values is an enum (`Type.Enum`), not a union of literals: a bad value
 * gets one error listing the allowed values (`body/mechanism must be one of auto, instant,
 * precopy, postcopy`), and the CLI checks its flags against the same lists.
 */
import { Type } from "@fastify/type-provider-typebox";

export const Id = Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" });
export const IdParams = Type.Object({ id: Id }, { additionalProperties: false });

export const AUTOMATION_LEVELS = ["manual", "suggest", "automatic"] as const;
export const MIGRATION_MECHANISMS = ["auto", "instant", "precopy", "postcopy"] as const;
export const TOKEN_ROLES = ["admin", "tenant", "metrics"] as const;
export const PLAN_STATUSES = [
  "proposed",
  "approved",
  "applying",
  "applied",
  "failed",
  "cancelled",
  "superseded",
] as const;
export const MIGRATION_STATUSES = ["running", "completed", "failed", "cancelled"] as const;

export const Automation = Type.Enum(AUTOMATION_LEVELS);

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
  },
  { additionalProperties: false },
);

export const CreateSecurityVm = Type.Object(
  {
    id: Id,
    tenant: Type.Optional(Id),
    targets: Type.Array(Id, { minItems: 1, maxItems: 64 }),
    memoryMiB: Type.Optional(Type.Number({ minimum: 64, maximum: 65536 })),
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

export const AcquireHostVm = Type.Object(
  { type: Id, server: Type.Optional(Id) },
  { additionalProperties: false },
);

export const Settings = Type.Object({ automation: Automation }, { additionalProperties: false });

export const CreateToken = Type.Object(
  {
    role: Type.Enum(TOKEN_ROLES, {
      description: "admin: everything; tenant: its tenant's guests; metrics: GET /metrics only",
    }),
    tenant: Type.Optional(Id),
    label: Type.Optional(Type.String({ maxLength: 200 })),
    expiresInSeconds: Type.Optional(
      Type.Integer({
        minimum: 60,
        maximum: 10 * 365 * 86400,
        description: "the token stops working after this",
      }),
    ),
  },
  { additionalProperties: false },
);

export const TokenIdParams = Type.Object(
  { id: Type.String({ pattern: "^tok_[0-9a-f]{16}$" }) },
  { additionalProperties: false },
);

export const HistoryQuery = Type.Object(
  {
    points: Type.Optional(
      Type.Integer({ minimum: 2, maximum: 2000, description: "samples at most (default 720)" }),
    ),
    since: Type.Optional(Type.Number({ description: "provider time from which on (s)" })),
  },
  { additionalProperties: false },
);

const listFields = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  tenant: Type.Optional(Id),
};

export const ListQuery = Type.Object(listFields, { additionalProperties: false });

export const PlanListQuery = Type.Object(
  { ...listFields, status: Type.Optional(Type.Enum(PLAN_STATUSES)) },
  { additionalProperties: false },
);

export const MigrationListQuery = Type.Object(
  { ...listFields, status: Type.Optional(Type.Enum(MIGRATION_STATUSES)) },
  { additionalProperties: false },
);

/** A guest VM as the API shows it (also the serializer's schema: fast, and documented). */
export const GuestView = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  vcpus: Type.Integer(),
  mipsPerVcpu: Type.Number(),
  memoryMiB: Type.Number(),
  hostVm: Type.Union([Type.String(), Type.Null()]),
  server: Type.Union([Type.String(), Type.Null()]),
  powerState: Type.String(),
  automation: Type.Union([Type.String(), Type.Null()]),
  role: Type.String(),
  targets: Type.Array(Type.String()),
  cpu: Type.Union([Type.Number(), Type.Null()]),
});

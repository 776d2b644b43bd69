/** Migrations of guest VMs: /api/migrations. */
import { Type } from "typebox";
import { MIGRATION_STATUSES } from "./choices.ts";
import { listFields, Nullable } from "./common.ts";

export const MigrationListQuery = Type.Object(
  { ...listFields, status: Type.Optional(Type.Enum(MIGRATION_STATUSES)) },
  { additionalProperties: false },
);

export const Migration = Type.Object({
  id: Type.String(),
  guest: Type.String(),
  tenant: Type.String(),
  from: Type.String(),
  to: Type.String(),
  mechanism: Type.String({ description: "instant, precopy or postcopy" }),
  status: Type.String({ description: "running, completed, failed or cancelled" }),
  progress: Type.Number(),
  detail: Type.Record(Type.String(), Nullable(Type.Number()), {
    description:
      "remainingBytes and etaSeconds as last seen (null: unknown); pauseMs: the guest's pause at the switchover, once completed, where the provider measured it",
  }),
  plan: Nullable(Type.Integer()),
  startedAt: Type.Number(),
  finishedAt: Nullable(Type.Number()),
  error: Nullable(Type.String()),
});

export const MigrationList = Type.Array(Migration);

/** Plans (the journal of what the controller does) and their actions: /api/plans. */
import { type Static, Type } from "typebox";
import { PLAN_STATUSES, REJUVENATION_MODES } from "./choices.ts";
import { listFields, Mechanism, Nullable } from "./common.ts";

export const PlanIdParams = Type.Object(
  { id: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);

export const PlanListQuery = Type.Object(
  { ...listFields, status: Type.Optional(Type.Enum(PLAN_STATUSES)) },
  { additionalProperties: false },
);

// Each kind of action's fields: stored as its payload (ids, not indices, so it survives restarts).
const migrate = {
  kind: Type.Literal("migrate"),
  guest: Type.String(),
  from: Type.String(),
  to: Type.Union([
    Type.Object({ hostVm: Type.String() }),
    Type.Object({ acquire: Type.Integer({ description: "index of the acquisition in the plan" }) }),
  ]),
  mechanism: Mechanism,
  seconds: Type.Number(),
  reason: Type.String(),
  migration: Type.Optional(Type.String({ description: "the provider's id, once started" })),
};
// A security VM and its target(s) moved together in lock-step (planner/plan.ts CoMigrateAction).
const coMigrate = {
  kind: Type.Literal("co-migrate"),
  members: Type.Array(
    Type.Object({
      guest: Type.String(),
      from: Type.String(),
      mechanism: Mechanism,
      seconds: Type.Number(),
      migration: Type.Optional(Type.String({ description: "the provider's id, once started" })),
    }),
    { minItems: 2 },
  ),
  to: migrate.to,
  reason: Type.String(),
};
const acquire = {
  kind: Type.Literal("acquire-host-vm"),
  type: Type.String(),
  server: Type.Optional(Type.String()),
  hostVm: Type.Optional(Type.String({ description: "the provider's id, once acquired" })),
  keep: Type.Optional(Type.Boolean({ description: "an operator's explicit acquisition: kept" })),
};
const release = { kind: Type.Literal("release-host-vm"), hostVm: Type.String() };
// The planner's kind (planner/plan.ts RejuvenateAction), or an operator's request: the
// provider renews the host VM's hypervisor layer under its guests (a provider that cannot
// fails it with the reason); progress while it runs, the measured result once done.
export const RejuvenationResult = Type.Object({
  mechanism: Type.String({ description: "x-ignore-shared (QEMU 7.2) or cpr-transfer (QEMU >= 10)" }),
  qemu: Type.String(),
  spare: Nullable(Type.String({ description: "evacuate: the host VM the guests passed through" })),
  guests: Type.Array(
    Type.Object({
      guest: Type.String(),
      outcome: Type.Union([Type.Literal("moved"), Type.Literal("stayed"), Type.Literal("unknown")]),
      pauseMs: Nullable(Type.Number()),
      error: Nullable(Type.String()),
    }),
  ),
  maxPauseMs: Nullable(Type.Number()),
  medianPauseMs: Nullable(Type.Number()),
  prepareMs: Type.Number(),
  switchMs: Type.Number(),
  totalMs: Type.Number(),
  bytesMoved: Type.Number(),
  agentRestartMs: Nullable(Type.Number()),
  replacement: Type.Optional(
    Nullable(Type.String({ description: "evacuate: the host VM rented in the renewed one's place" })),
  ),
  spareAcquired: Type.Optional(Type.Boolean({ description: "evacuate: the spare was rented for it" })),
  spareReleased: Type.Optional(Type.Boolean({ description: "evacuate: that spare was released after" })),
});
const rejuvenate = {
  kind: Type.Literal("rejuvenate"),
  hostVm: Type.String(),
  mode: Type.Optional(Type.Enum(REJUVENATION_MODES)),
  moveBack: Type.Optional(
    Type.Boolean({ description: "evacuate: the guests move back to the renewed host VM (default true)" }),
  ),
  rejuvenation: Type.Optional(Type.String({ description: "the provider's id, once started" })),
  progress: Type.Optional(Type.Object({ step: Type.String(), settled: Type.Integer(), of: Type.Integer() })),
  result: Type.Optional(RejuvenationResult),
};

/**
 * What an action does: one object per kind of the planner's actions (planner/plan.ts
 * ACTION_KINDS; test/architecture.test.ts checks that the two lists agree).
 */
export const ActionPayload = Type.Union([
  Type.Object(migrate),
  Type.Object(acquire),
  Type.Object(release),
  Type.Object(rejuvenate),
  Type.Object(coMigrate),
]);
export type ActionPayload = Static<typeof ActionPayload>;

/** Where an action stands in the journal. */
const journal = {
  idx: Type.Integer(),
  status: Type.String({ description: "pending, running, done, failed or cancelled" }),
  dependsOn: Type.Array(Type.Integer()),
  error: Nullable(Type.String()),
};

export const PlanAction = Type.Union([
  Type.Object({ ...migrate, ...journal }),
  Type.Object({ ...acquire, ...journal }),
  Type.Object({ ...release, ...journal }),
  Type.Object({ ...rejuvenate, ...journal }),
  Type.Object({ ...coMigrate, ...journal }),
]);

export const Plan = Type.Object({
  id: Type.Integer(),
  createdAt: Type.Number(),
  status: Type.String({
    description: "proposed, approved, applying, applied, failed, cancelled or superseded",
  }),
  source: Type.String(),
  actions: Type.Array(PlanAction),
});

export type Plan = Static<typeof Plan>;

export const PlanList = Type.Array(Plan);

/** What the planner would do now, split by automation level (nothing stored). */
export const Preview = Type.Object({
  at: Type.Number(),
  automatic: Type.Array(ActionPayload),
  suggested: Type.Array(ActionPayload),
});

/** The cloud as a whole: physical servers, the overview, size and cost over time. */
import { type Static, Type } from "typebox";
import { PROVIDER_CLOCKS } from "./choices.ts";

export const Server = Type.Object({
  id: Type.String(),
  cores: Type.Integer(),
  mipsPerCore: Type.Number(),
  memoryMiB: Type.Number(),
  hostVmSlots: Type.Integer(),
  hostVms: Type.Array(Type.String()),
});

export const ServerList = Type.Array(Server);

/** Where each host VM is and how that is known (told by the provider, or discovered). */
export const Placement = Type.Object({
  mode: Type.Union([Type.Literal("told"), Type.Literal("discovered")], {
    description: "told: the provider names servers; discovered: it hides them and discovery found these",
  }),
  now: Type.Number({ description: "provider clock, s" }),
  refreshedAt: Type.Union([Type.Number(), Type.Null()], {
    description: "last discovery round, provider clock",
  }),
  hostVms: Type.Array(
    Type.Object({
      hostVm: Type.String(),
      server: Type.Union([Type.String(), Type.Null()], { description: "null: not known" }),
      source: Type.Union([
        Type.Literal("provider"),
        Type.Literal("provider-hint"),
        Type.Literal("correlation"),
        Type.Literal("shared-memory"),
        Type.Literal("trial-handover"),
        Type.Null(),
      ]),
      confidence: Type.Number({ minimum: 0, maximum: 1 }),
      ageSeconds: Type.Union([Type.Number(), Type.Null()], {
        description: "age of the evidence that placed it",
      }),
      conflict: Type.Boolean({ description: "some evidence contradicts its group" }),
    }),
  ),
});
export type PlacementView = Static<typeof Placement>;

/** A trial handover of an empty probe guest between two host VMs (the conclusive measurement). */
export const PlacementTrialBody = Type.Object(
  {
    from: Type.String({ pattern: "^[A-Za-z0-9_.-]{1,64}$" }),
    to: Type.String({ pattern: "^[A-Za-z0-9_.-]{1,64}$" }),
  },
  { additionalProperties: false },
);
export const PlacementTrial = Type.Object({
  from: Type.String(),
  to: Type.String(),
  together: Type.Union([Type.Boolean(), Type.Null()], {
    description: "null: the trial could not decide (an agent down, no room)",
  }),
  ms: Type.Number(),
  detail: Type.String(),
});

/** Counts of the caller's guests; the cloud's size and cost for admins only. */
export const Overview = Type.Object({
  now: Type.Number({ description: "provider clock, s" }),
  provider: Type.String(),
  clock: Type.Enum(PROVIDER_CLOCKS, {
    description:
      "how to read the provider's times (now, plans' createdAt, migrations' startedAt, ...): wall is Unix seconds, simulated is seconds since the simulated world's first day",
  }),
  speed: Type.Number(),
  leader: Type.Boolean(),
  guests: Type.Integer(),
  runningGuests: Type.Integer(),
  hostVms: Type.Optional(Type.Integer()),
  costPerHour: Type.Optional(Type.Number()),
  activeMigrations: Type.Optional(Type.Integer()),
  proposedPlans: Type.Optional(Type.Integer()),
});

export const HistoryQuery = Type.Object(
  {
    points: Type.Optional(
      Type.Integer({ minimum: 2, maximum: 2000, description: "samples at most (default 720)" }),
    ),
    since: Type.Optional(Type.Number({ description: "provider time from which on (s)" })),
  },
  { additionalProperties: false },
);

/** The cloud's size and cost at one time (provider clock). */
export const HistorySample = Type.Object({
  at: Type.Number(),
  hostVms: Type.Integer(),
  costPerHour: Type.Number(),
  guests: Type.Integer(),
});
export type HistorySample = Static<typeof HistorySample>;

export const History = Type.Object({ samples: Type.Array(HistorySample) });

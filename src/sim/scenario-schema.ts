/**
 * The YAML scenario format, as a TypeBox schema: it validates (unknown fields are errors),
 * documents, and types the parsed document in one place. Fields with fixed values are enums:
 * a bad value gets one error listing the allowed ones.
 */
import Type from "typebox";

const PowerSpec = Type.Union([
  Type.Enum(["hp-ml110-g4", "hp-ml110-g5"]),
  Type.Array(Type.Number({ minimum: 0 }), { minItems: 11, maxItems: 11 }),
]);

const ServerGroup = Type.Object(
  {
    prefix: Type.String({ minLength: 1, pattern: "^[A-Za-z0-9._-]+$" }),
    count: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    cores: Type.Integer({ minimum: 1 }),
    mipsPerCore: Type.Number({ exclusiveMinimum: 0 }),
    memoryMiB: Type.Number({ exclusiveMinimum: 0 }),
    networkMbps: Type.Number({ exclusiveMinimum: 0 }),
    power: PowerSpec,
    hostVmSlots: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  },
  { additionalProperties: false },
);

const HostVmTypeSpec = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    vcpus: Type.Integer({ minimum: 1 }),
    mipsPerVcpu: Type.Number({ exclusiveMinimum: 0 }),
    memoryMiB: Type.Number({ exclusiveMinimum: 0 }),
    hypervisorOverheadMiB: Type.Optional(Type.Number({ minimum: 0 })),
    pricePerHour: Type.Number({ minimum: 0 }),
    provisionSeconds: Type.Optional(Type.Number({ minimum: 0 })),
    /** Rented time is rounded up to this many seconds (1: per second; 3600: per started hour). */
    billingIncrementSeconds: Type.Optional(Type.Number({ minimum: 1 })),
    minimumBillingSeconds: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

const GuestTypeSpec = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    vcpus: Type.Optional(Type.Integer({ minimum: 1 })),
    mipsPerVcpu: Type.Number({ exclusiveMinimum: 0 }),
    memoryMiB: Type.Number({ exclusiveMinimum: 0 }),
    dirtyRateMiBps: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

const PolicyParamsSpec = Type.Record(
  Type.String(),
  Type.Union([Type.Number(), Type.Boolean(), Type.String()]),
);

const TraceSpec = Type.Union([
  Type.Object(
    {
      kind: Type.Literal("planetlab"),
      day: Type.String({ minLength: 1 }),
      guests: Type.Optional(Type.Integer({ minimum: 1 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal("synthetic"),
      guests: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
      seed: Type.Optional(Type.Integer()),
      medianPercent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
      burstsPerDay: Type.Optional(Type.Number({ minimum: 0 })),
    },
    { additionalProperties: false },
  ),
]);

/**
 * Rolling rejuvenation of the whole cloud (planner/rolling-rejuvenation.ts) and what it costs
 * in the simulated cloud: each guest's pause, the time a renewal holds its host VM.
 * Defaults: bench:rejuvenation's figures at low load (docs/benchmarks.md).
 */
const RejuvenationSpec = Type.Object(
  {
    /** Renew hypervisors older than this, hours; or roll a version out (one of the two). */
    maxAgeHours: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e6 })),
    version: Type.Optional(
      Type.Object(
        {
          name: Type.String({ pattern: "^[\\w.+~-]{1,64}$" }),
          /** When it was installed: hypervisors started before are renewed. */
          installedAtHours: Type.Number({ minimum: 0, maximum: 1e6 }),
        },
        { additionalProperties: false },
      ),
    ),
    mode: Type.Optional(Type.Enum(["in-place", "evacuate"])),
    /** The initial host VMs' hypervisors started this long before the run (default 0). */
    initialAgeHours: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6 })),
    /** Each guest's pause per switchover, ms (default 55: in place at low load). */
    pausePerGuestMs: Type.Optional(Type.Number({ minimum: 0, maximum: 600_000 })),
    /** Starting one wave of destination QEMUs, s (default 1.4: two at a time under TCG). */
    startSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 3600 })),
    prepareParallel: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    switchParallel: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    /** Restarting the host VM's agent (in place) or the host VM (evacuate), s (default 10). */
    restartSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 86400 })),
  },
  { additionalProperties: false },
);

/**
 * Security VMs among the guests (issue 13): in every `every`-th row of tenants (guests
 * i..i+tenants-1, one per tenant) each guest is a security VM of its tenant monitoring the
 * same tenant's guests of the next `targets` rows. They keep their trace series (monitoring
 * uses CPU) and may take a smaller guest type.
 */
const SecurityVmsSpec = Type.Object(
  {
    every: Type.Integer({ minimum: 2, maximum: 1_000_000 }),
    targets: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** The worst channel a pair accepts (default remote: any). */
    requires: Type.Optional(Type.Enum(["local", "direct", "remote"])),
    /** A guest type of guests.types for the security VMs (default: the row's own type). */
    type: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export const ScenarioSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.String()),
    intervalSeconds: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    durationSeconds: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    seed: Type.Optional(Type.Integer()),
    /** Reproduce CloudSim 3.0.3's accounting, timing and capacity rules (reference experiment only). */
    compat: Type.Optional(Type.Literal("cloudsim-3.0.3")),
    servers: Type.Array(ServerGroup, { minItems: 1 }),
    /** interleave: g4-0, g5-0, g4-1, ... (CloudSim's alternation); sequential: group after group. */
    serverOrder: Type.Optional(Type.Enum(["interleave", "sequential"])),
    /** none: each server is one bare-metal "host VM" (no nesting); nested: rented host VMs on servers. */
    nesting: Type.Enum(["none", "nested"]),
    hostVmTypes: Type.Optional(Type.Array(HostVmTypeSpec, { minItems: 1 })),
    hostVms: Type.Optional(
      Type.Object(
        {
          type: Type.String({ minLength: 1 }),
          /** Host VMs running on each server at the start (the policy releases those it leaves empty). */
          perServer: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
    ),
    guests: Type.Object(
      {
        /** Types by contiguous equal shares of the guest list, in this order (CloudSim's rule). */
        types: Type.Array(GuestTypeSpec, { minItems: 1 }),
        tenants: Type.Optional(Type.Integer({ minimum: 1 })),
        /** Every n-th pair of guests forms an anti-affinity group (0: none). */
        antiAffinityPairsEvery: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      { additionalProperties: false },
    ),
    trace: TraceSpec,
    migration: Type.Optional(
      Type.Object(
        {
          model: Type.Enum(["cloudsim", "qemu"]),
          calibration: Type.Optional(Type.String()),
          maxConcurrent: Type.Optional(Type.Integer({ minimum: 1 })),
          maxPerHostVm: Type.Optional(Type.Integer({ minimum: 1 })),
          postcopyFallback: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    policy: Type.Object(
      {
        name: Type.String({ minLength: 1 }),
        params: Type.Optional(PolicyParamsSpec),
      },
      { additionalProperties: false },
    ),
    /**
     * Parameters of policies other than the scenario's own, by policy name as run
     * (e.g. "lr-mmt-1.2+billing": { spareHostVms: 1 }), for compare and --policy.
     */
    policyParams: Type.Optional(Type.Record(Type.String({ minLength: 1 }), PolicyParamsSpec)),
    rejuvenation: Type.Optional(RejuvenationSpec),
    securityVms: Type.Optional(SecurityVmsSpec),
  },
  { additionalProperties: false },
);

export type ScenarioDoc = Type.Static<typeof ScenarioSchema>;
export type TraceDoc = Type.Static<typeof TraceSpec>;

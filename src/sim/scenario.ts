/**
 * Loads and checks a scenario file. Every problem becomes one ScenarioError line that names the
 * file and the field, e.g. `scenarios/x.yaml: servers[0].cores: must be >= 1`.
 */
import Value from "typebox/value";
import {
  type GuestShape,
  type HostVmType,
  HP_ML110_G4,
  HP_ML110_G5,
  hostVmGuestMemory,
  type PhysicalServer,
  type PowerTable,
} from "../model/index.ts";
import type { RolloutPolicy } from "../planner/index.ts";
import { DocumentError, firstSchemaProblem, parseYaml, readBoundedText } from "../schema/index.ts";
import { ScenarioError } from "./errors.ts";
import { DEFAULT_REJUVENATION_COST, type RejuvenationCost } from "./rejuvenation-cost.ts";
import { type ScenarioDoc, ScenarioSchema } from "./scenario-schema.ts";

/** A scenario's kind of guest: a named guest shape. */
export interface GuestTypeSpec extends GuestShape {
  readonly name: string;
}

export interface Scenario {
  readonly file: string;
  readonly doc: ScenarioDoc;
  readonly name: string;
  readonly intervalSeconds: number;
  readonly durationSeconds: number;
  readonly seed: number;
  /** The simulator whose rules the run reproduces (rules/index.ts); undefined: nestcloud's own. */
  readonly compat: ScenarioDoc["compat"];
  readonly servers: readonly PhysicalServer[];
  readonly nested: boolean;
  readonly hostVmTypes: readonly HostVmType[];
  /** Host VMs per server at the start and their type (nested only). */
  readonly initialHostVms: { readonly type: HostVmType; readonly perServer: number } | undefined;
  readonly guestTypes: readonly GuestTypeSpec[];
  readonly tenants: number;
  readonly antiAffinityPairsEvery: number;
  readonly migration: {
    readonly model: "cloudsim" | "qemu";
    readonly calibration: string | undefined;
    readonly maxConcurrent: number;
    readonly maxPerHostVm: number;
    readonly postcopyFallback: boolean;
  };
  readonly policy: {
    readonly name: string;
    readonly params: Readonly<Record<string, number | boolean | string>>;
  };
  /** Parameters of other policies (compare, --policy), by policy name as given to them. */
  readonly policyParams: Readonly<Record<string, Readonly<Record<string, number | boolean | string>>>>;
  /** A rolling rejuvenation during the run, and its cost model; undefined: none. */
  readonly rejuvenation: RejuvenationModel | undefined;
  /** Security VMs among the guests (build.ts); undefined: none. */
  readonly securityVms: SecurityVmModel | undefined;
}

/** Which guests are security VMs and what they require (scenario key securityVms). */
export interface SecurityVmModel {
  readonly every: number;
  readonly targets: number;
  readonly requires: "local" | "direct" | "remote";
  /** Index into guestTypes, or undefined: each keeps its row's type. */
  readonly type: number | undefined;
}

/** What a scenario's rollout renews, and what a renewal costs in the simulated cloud. */
export interface RejuvenationModel extends RejuvenationCost {
  readonly rollout: RolloutPolicy;
  /** The initial host VMs' hypervisors started this long before t = 0, s. */
  readonly initialAgeSeconds: number;
}

export function loadScenario(file: string): Scenario {
  return parseScenario(
    userDocument(() => readBoundedText(file, "scenario")),
    file,
  );
}

/** A document problem (unreadable, too large, malformed YAML) as a user error: one line, exit 2. */
function userDocument<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DocumentError) throw new ScenarioError(e.message);
    throw e;
  }
}

export function parseScenario(text: string, file = "<scenario>"): Scenario {
  const raw: unknown = userDocument(() => parseYaml(text, file));
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ScenarioError(
      `${file}: a scenario is a YAML mapping (name, servers, guests, trace, policy, ...)`,
    );
  }
  precheckTrace(raw as Record<string, unknown>, file);
  if (!Value.Check(ScenarioSchema, raw))
    throw new ScenarioError(`${file}: ${firstSchemaProblem(ScenarioSchema, raw)}`);
  return resolve(raw, file);
}

function precheckTrace(raw: Record<string, unknown>, file: string): void {
  const t = raw.trace;
  if (t === undefined) return;
  if (typeof t !== "object" || t === null || Array.isArray(t))
    throw new ScenarioError(`${file}: trace: expected a mapping with kind`);
  const kind = (t as Record<string, unknown>).kind;
  if (kind !== "planetlab" && kind !== "synthetic") {
    throw new ScenarioError(
      `${file}: trace.kind: expected planetlab or synthetic, got ${JSON.stringify(kind)}`,
    );
  }
}

const POWER: Record<string, PowerTable> = { "hp-ml110-g4": HP_ML110_G4, "hp-ml110-g5": HP_ML110_G5 };

function resolve(doc: ScenarioDoc, file: string): Scenario {
  const fail = (field: string, msg: string): never => {
    throw new ScenarioError(`${file}: ${field}: ${msg}`);
  };
  const nested = doc.nesting === "nested";

  const groups = doc.servers.map((g, gi) => {
    const power = typeof g.power === "string" ? POWER[g.power] : { watts: g.power };
    for (let i = 1; i < power.watts.length; i++) {
      if (power.watts[i] < power.watts[i - 1]) fail(`servers[${gi}].power`, "readings must not decrease");
    }
    return Array.from(
      { length: g.count },
      (_, i): PhysicalServer => ({
        id: `${g.prefix}-${i}`,
        cores: g.cores,
        mipsPerCore: g.mipsPerCore,
        memoryMiB: g.memoryMiB,
        networkMbps: g.networkMbps,
        power,
        hostVmSlots: nested ? (g.hostVmSlots ?? 1) : 1,
      }),
    );
  });
  const servers: PhysicalServer[] = [];
  if ((doc.serverOrder ?? "interleave") === "interleave") {
    const longest = Math.max(...groups.map((g) => g.length));
    for (let i = 0; i < longest; i++) for (const g of groups) if (i < g.length) servers.push(g[i]);
  } else for (const g of groups) servers.push(...g);
  const ids = new Set<string>();
  for (const s of servers) {
    if (ids.has(s.id)) fail("servers", `two server groups produce id ${s.id}: use distinct prefixes`);
    ids.add(s.id);
  }

  let hostVmTypes: HostVmType[];
  let initialHostVms: Scenario["initialHostVms"];
  if (nested) {
    if (!doc.hostVmTypes) fail("hostVmTypes", "required when nesting is nested");
    if (!doc.hostVms) fail("hostVms", "required when nesting is nested");
    hostVmTypes = doc.hostVmTypes!.map((t) => ({
      name: t.name,
      vcpus: t.vcpus,
      mipsPerVcpu: t.mipsPerVcpu,
      memoryMiB: t.memoryMiB,
      hypervisorOverheadMiB: t.hypervisorOverheadMiB ?? 0,
      pricePerHour: t.pricePerHour,
      provisionSeconds: t.provisionSeconds ?? 90,
      billingIncrementSeconds: t.billingIncrementSeconds ?? 1,
      minimumBillingSeconds: t.minimumBillingSeconds ?? 60,
      bareMetal: false,
    }));
    hostVmTypes.forEach((t, i) => {
      if (t.hypervisorOverheadMiB >= t.memoryMiB)
        fail(`hostVmTypes[${i}].hypervisorOverheadMiB`, "must be below memoryMiB");
      for (const [si, s] of servers.entries()) {
        if (t.vcpus > s.cores || t.memoryMiB > s.memoryMiB || t.mipsPerVcpu > s.mipsPerCore) {
          fail(`hostVmTypes[${i}]`, `type ${t.name} does not fit on physical server ${servers[si].id}`);
        }
      }
    });
    const type = hostVmTypes.find((t) => t.name === doc.hostVms!.type);
    if (!type)
      fail(
        "hostVms.type",
        `no host VM type named ${doc.hostVms!.type} (have ${hostVmTypes.map((t) => t.name).join(", ")})`,
      );
    initialHostVms = { type: type!, perServer: doc.hostVms!.perServer };
    for (const s of servers) {
      if (doc.hostVms!.perServer > s.hostVmSlots) {
        fail(
          "hostVms.perServer",
          `${doc.hostVms!.perServer} host VMs per server exceed the ${s.hostVmSlots} slots of ${s.id}`,
        );
      }
    }
  } else {
    if (doc.hostVmTypes || doc.hostVms)
      fail(doc.hostVmTypes ? "hostVmTypes" : "hostVms", "only meaningful with nesting: nested");
    // Without nesting each physical server is the single bin: a bare-metal "host VM" type per server shape.
    hostVmTypes = [];
    initialHostVms = undefined;
  }

  const guestTypes = doc.guests.types.map(
    (t): GuestTypeSpec => ({
      name: t.name,
      vcpus: t.vcpus ?? 1,
      mipsPerVcpu: t.mipsPerVcpu,
      memoryMiB: t.memoryMiB,
      dirtyRateMiBps: t.dirtyRateMiBps ?? 0,
    }),
  );
  guestTypes.forEach((g, i) => {
    const fits = nested
      ? hostVmTypes.some(
          (t) => g.vcpus <= t.vcpus && g.mipsPerVcpu <= t.mipsPerVcpu && g.memoryMiB <= hostVmGuestMemory(t),
        )
      : servers.some((s) => g.vcpus <= s.cores && g.memoryMiB <= s.memoryMiB);
    if (!fits) {
      fail(
        `guests.types[${i}]`,
        `guest type ${g.name} (${g.vcpus} vCPU x ${g.mipsPerVcpu} MIPS, ${g.memoryMiB} MiB) fits in no ${nested ? "host VM type" : "physical server"}`,
      );
    }
  });

  const migration = doc.migration ?? { model: "qemu" as const };
  return {
    file,
    doc,
    name: doc.name,
    intervalSeconds: doc.intervalSeconds ?? 300,
    durationSeconds: doc.durationSeconds ?? 86400,
    seed: doc.seed ?? 1,
    compat: doc.compat,
    servers,
    nested,
    hostVmTypes,
    initialHostVms,
    guestTypes,
    tenants: doc.guests.tenants ?? 1,
    antiAffinityPairsEvery: doc.guests.antiAffinityPairsEvery ?? 0,
    migration: {
      model: migration.model,
      calibration: migration.calibration,
      maxConcurrent: migration.maxConcurrent ?? Number.POSITIVE_INFINITY,
      maxPerHostVm: migration.maxPerHostVm ?? Number.POSITIVE_INFINITY,
      postcopyFallback: migration.postcopyFallback ?? true,
    },
    policy: { name: doc.policy.name, params: doc.policy.params ?? {} },
    policyParams: doc.policyParams ?? {},
    rejuvenation: rejuvenationModel(doc, nested, fail),
    securityVms: securityVmModel(doc, guestTypes, fail),
  };
}

function securityVmModel(
  doc: ScenarioDoc,
  guestTypes: readonly GuestTypeSpec[],
  fail: (field: string, message: string) => never,
): SecurityVmModel | undefined {
  const s = doc.securityVms;
  if (!s) return undefined;
  const targets = s.targets ?? 1;
  if (targets >= s.every) fail("securityVms.targets", `must be below securityVms.every (${s.every})`);
  let type: number | undefined;
  if (s.type !== undefined) {
    type = guestTypes.findIndex((t) => t.name === s.type);
    if (type < 0)
      fail("securityVms.type", `no guest type ${s.type} (have: ${guestTypes.map((t) => t.name).join(", ")})`);
  }
  return { every: s.every, targets, requires: s.requires ?? "remote", type };
}

function rejuvenationModel(
  doc: ScenarioDoc,
  nested: boolean,
  fail: (field: string, why: string) => never,
): RejuvenationModel | undefined {
  const r = doc.rejuvenation;
  if (r === undefined) return undefined;
  if (!nested) fail("rejuvenation", "only meaningful with nesting: nested (a hypervisor in a host VM)");
  if ((r.maxAgeHours === undefined) === (r.version === undefined))
    fail("rejuvenation", "give one of maxAgeHours or version");
  const mode = r.mode ?? "in-place";
  const rollout: RolloutPolicy =
    r.version !== undefined
      ? { kind: "version", version: r.version.name, installedAt: r.version.installedAtHours * 3600, mode }
      : { kind: "max-age", maxAgeSeconds: (r.maxAgeHours ?? 0) * 3600, mode };
  return {
    rollout,
    initialAgeSeconds: (r.initialAgeHours ?? 0) * 3600,
    pauseSeconds:
      r.pausePerGuestMs !== undefined ? r.pausePerGuestMs / 1000 : DEFAULT_REJUVENATION_COST.pauseSeconds,
    startSeconds: r.startSeconds ?? DEFAULT_REJUVENATION_COST.startSeconds,
    prepareParallel: r.prepareParallel ?? DEFAULT_REJUVENATION_COST.prepareParallel,
    switchParallel: r.switchParallel ?? DEFAULT_REJUVENATION_COST.switchParallel,
    restartSeconds: r.restartSeconds ?? DEFAULT_REJUVENATION_COST.restartSeconds,
  };
}

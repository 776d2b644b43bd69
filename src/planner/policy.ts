/**
 * A placement policy: where new guests go, and what to change each round. Named policies
 * are built from strings like "lr-mmt-1.2" (detector-selection-parameter) or "nestcloud".
 */
import type { HostVmType } from "../model/index.ts";
import {
  InterQuartileRange,
  LocalRegression,
  MedianAbsoluteDeviation,
  type OverloadDetector,
  StaticThreshold,
} from "./detectors.ts";
import { hostVmBestFit } from "./hostvm-fit.ts";
import type { PlannerInput } from "./input.ts";
import { NESTCLOUD_DEFAULTS, nestcloudParams, nestcloudPolicy } from "./nestcloud.ts";
import { findBinForGuest, fits } from "./pabfd.ts";
import type { HostVmRef } from "./plan.ts";
import { type Placement, type Policy, PolicyError, resolvePotential } from "./policy-base.ts";
import { offerSlots, type ReferenceOptions, referencePlan, refillSlot } from "./reference.ts";
import { reflexPlan } from "./reflex.ts";
import type { BillingParams } from "./rental.ts";
import {
  maximumCorrelation,
  minimumMigrationTime,
  minimumUtilization,
  randomSelection,
  type VmSelection,
} from "./selection.ts";
import { Workspace } from "./workspace.ts";

export interface PolicyContext {
  /** Host VM type to acquire (nested clouds); undefined: the bins are fixed (bare metal). */
  readonly acquireType?: HostVmType;
}

const DETECTORS: Record<string, (p: number) => OverloadDetector> = {
  thr: (p) => new StaticThreshold(p),
  iqr: (p) => new InterQuartileRange(p),
  mad: (p) => new MedianAbsoluteDeviation(p),
  lr: (p) => new LocalRegression(p),
  lrr: (p) => new LocalRegression(p, true),
};
const SELECTIONS: Record<string, VmSelection> = {
  mmt: minimumMigrationTime,
  rs: randomSelection,
  mc: maximumCorrelation,
  mu: minimumUtilization,
};

export const REFERENCE_POLICY_PATTERN = /^(thr|iqr|mad|lr|lrr)-(mmt|rs|mc|mu)-(\d+(?:\.\d+)?)$/;

/**
 * What a reference policy's modifiers change, each a rule of nestcloud's given to the
 * baseline so that a comparison is fair:
 * - billing: rents and gives back host VMs by nestcloud's billing rules (rental.ts);
 * - hostvm: places by best fit over host VMs and their cost, not by server power (hostvm-fit.ts);
 * - react: relieves overloaded host VMs between rounds with nestcloud's reflex, as often.
 */
export const REFERENCE_MODIFIERS = ["billing", "hostvm", "react"] as const;
export type ReferenceModifier = (typeof REFERENCE_MODIFIERS)[number];

/** Each modifier's parameters and their defaults (nestcloud's, so the rules are the same). */
export const MODIFIER_PARAMS: Readonly<Record<ReferenceModifier, Readonly<Record<string, number>>>> = {
  billing: {
    drainBeforeBillingSeconds: NESTCLOUD_DEFAULTS.drainBeforeBillingSeconds,
    spareHostVms: NESTCLOUD_DEFAULTS.spareHostVms,
  },
  // memoryBalance is offered but off: at nestcloud's weight it costs this fit 2-5 % more host-VM hours (docs/benchmarks.md).
  hostvm: { memoryBalance: 0 },
  react: {
    reactIntervalSeconds: NESTCLOUD_DEFAULTS.reactIntervalSeconds,
    reactOverloadUtilization: NESTCLOUD_DEFAULTS.overloadUtilization,
    reactTargetUtilization: NESTCLOUD_DEFAULTS.targetUtilization,
    reactAcrossServers: NESTCLOUD_DEFAULTS.reflexAcrossServers,
  },
};

/** A policy name split into its base and its `+modifiers`, e.g. "lr-mmt-1.2+billing+react". */
export function splitPolicyName(name: string): { base: string; modifiers: string[] } {
  const [base, ...modifiers] = name.split("+");
  return { base, modifiers };
}

type Params = Readonly<Record<string, number | boolean | string>>;

/** The modifiers of a reference policy's name, checked: known, each at most once. */
function referenceModifiers(name: string, modifiers: readonly string[]): Set<ReferenceModifier> {
  const out = new Set<ReferenceModifier>();
  for (const m of modifiers) {
    if (!(REFERENCE_MODIFIERS as readonly string[]).includes(m))
      throw new PolicyError(
        `${name}: unknown modifier ${m === "" ? "(empty)" : `+${m}`} (known: ${REFERENCE_MODIFIERS.map((x) => `+${x}`).join(", ")})`,
      );
    if (out.has(m as ReferenceModifier)) throw new PolicyError(`${name}: modifier +${m} given twice`);
    out.add(m as ReferenceModifier);
  }
  return out;
}

/** A reference policy's parameters: those of its modifiers, with nestcloud's defaults. */
function referenceParams(name: string, modifiers: ReadonlySet<ReferenceModifier>, raw: Params) {
  const known: Record<string, number> = {};
  for (const m of modifiers) Object.assign(known, MODIFIER_PARAMS[m]);
  const out = { ...known };
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in known)) {
      const names = Object.keys(known);
      const others = REFERENCE_MODIFIERS.filter(
        (m) => !modifiers.has(m) && Object.keys(MODIFIER_PARAMS[m]).length,
      )
        .map((m) => `+${m} adds ${Object.keys(MODIFIER_PARAMS[m]).join(", ")}`)
        .join("; ");
      throw new PolicyError(
        `policy.params.${k}: unknown parameter of ${name} (known: ${names.length ? names.join(", ") : "none"}${others ? `; ${others}` : ""}; the detector's parameter is part of the name)`,
      );
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
      throw new PolicyError(`policy.params.${k}: expected a non-negative number`);
    out[k] = v;
  }
  if (modifiers.has("react")) {
    if (!(out.reactIntervalSeconds > 0))
      throw new PolicyError("policy.params.reactIntervalSeconds: must be > 0 with +react");
    if (
      !(
        out.reactTargetUtilization > 0 &&
        out.reactTargetUtilization <= out.reactOverloadUtilization &&
        out.reactOverloadUtilization <= 1.5
      )
    )
      throw new PolicyError(
        "policy.params: need 0 < reactTargetUtilization <= reactOverloadUtilization <= 1.5",
      );
  }
  return out;
}

/**
 * The Beloglazov & Buyya policies: detector x selection x parameter, placing with PABFD,
 * optionally with modifiers ("lr-mmt-1.2+billing+hostvm+react") and their parameters.
 */
export function referencePolicy(name: string, ctx: PolicyContext, params: Params = {}): Policy {
  const { base, modifiers: given } = splitPolicyName(name);
  const m = REFERENCE_POLICY_PATTERN.exec(base);
  if (!m) throw new PolicyError(`not a reference policy name: ${name}`);
  const modifiers = referenceModifiers(name, given);
  const p = referenceParams(name, modifiers, params);
  const detector = DETECTORS[m[1]](Number(m[3]));
  const selection = SELECTIONS[m[2]];
  const findBin = modifiers.has("hostvm") ? hostVmBestFit(p.memoryBalance) : undefined;
  const billing: BillingParams | undefined = modifiers.has("billing")
    ? { drainBeforeBillingSeconds: p.drainBeforeBillingSeconds, spareHostVms: p.spareHostVms }
    : undefined;
  const opts: ReferenceOptions = { detector, selection, acquireType: ctx.acquireType, findBin, billing };
  const policy: Policy = {
    name,
    rentalRule: referenceRentalRule(modifiers, p),
    plan: (input) => referencePlan(input, opts),
    placeNew: (input, guests) => pabfdPlacement(input, guests, detector, ctx.acquireType, opts),
  };
  if (!modifiers.has("react")) return policy;
  const reflex = {
    overloadUtilization: p.reactOverloadUtilization,
    targetUtilization: p.reactTargetUtilization,
    acrossServers: p.reactAcrossServers > 0,
  };
  return {
    ...policy,
    reactIntervalSeconds: p.reactIntervalSeconds,
    reactWhenAbove: reflex.overloadUtilization,
    react: (input) => reflexPlan(input, reflex),
  };
}

function referenceRentalRule(modifiers: ReadonlySet<ReferenceModifier>, p: Record<string, number>): string {
  const placement = modifiers.has("hostvm") ? "best fit over host VMs" : "PABFD placement";
  const rule = modifiers.has("billing")
    ? `rents a host VM when a guest fits in none (${placement}), on the server carrying most of its host VMs; empties one only near the end of its paid increment and keeps an empty one until its paid time runs out${p.spareHostVms > 0 ? `, plus ${p.spareHostVms} spare(s)` : ""}`
    : `rents a host VM when a guest fits in none (${placement}) and gives one back as soon as it is empty, whatever is left of its paid increment`;
  return modifiers.has("react")
    ? `${rule}; between rounds, every ${p.reactIntervalSeconds} s, moves guests off overloaded host VMs within their server`
    : rule;
}

/**
 * PABFD placement of new guests (CloudSim's initial placement: full requests, creation rules);
 * `opts` may change the choice of bin and where host VMs are acquired (the modifiers).
 */
export function pabfdPlacement(
  input: PlannerInput,
  guests: readonly number[],
  detector: OverloadDetector,
  acquireType: HostVmType | undefined,
  opts: Pick<ReferenceOptions, "findBin" | "billing"> = {},
): Placement {
  const ws = new Workspace(input, true);
  const rental = { acquireType, billing: opts.billing };
  offerSlots(ws, rental);
  const findBin = opts.findBin ?? findBinForGuest;
  const assignments: { guest: number; to: HostVmRef }[] = [];
  const unplaced: number[] = [];
  let excluded = new Uint8Array(ws.binCount + 64);
  for (const g of guests) {
    if (excluded.length < ws.binCount) excluded = new Uint8Array(ws.binCount * 2);
    const b = findBin(ws, g, excluded, detector, { atCreation: true });
    if (b < 0) {
      unplaced.push(g);
      continue;
    }
    ws.moveGuest(g, b);
    // CloudSim quirk: a VM just created asks for nothing until its cloudlet starts, so later
    // placements' overload checks do not see it (its MIPS stay allocated).
    if (input.rules.memory === "at-creation") ws.requestSum[b] -= ws.request[g];
    refillSlot(ws, b, rental);
    assignments.push({ guest: g, to: { kind: "existing", hostVm: b } });
  }
  return resolvePotential(ws, assignments, unplaced);
}

/**
 * CloudSim's "dvfs" baseline: no migrations at all; new guests go to the first bin that
 * can take them (PowerVmAllocationPolicySimple). Hosts still idle down and draw less.
 */
export function dvfsPolicy(): Policy {
  return {
    name: "dvfs",
    rentalRule: "keeps the host VMs it starts with and never moves a guest",
    plan: (input) => ({ actions: [], caps: input.caps, notes: [] }),
    placeNew(input, guests) {
      const ws = new Workspace(input, false);
      const assignments: { guest: number; to: HostVmRef }[] = [];
      const unplaced: number[] = [];
      for (const g of guests) {
        let placed = false;
        for (let b = 0; b < ws.binCount && !placed; b++) {
          if (!fits(ws, g, b, { atCreation: true })) continue;
          ws.moveGuest(g, b);
          assignments.push({ guest: g, to: { kind: "existing", hostVm: b } });
          placed = true;
        }
        if (!placed) unplaced.push(g);
      }
      return { assignments, acquisitions: [], unplaced };
    },
  };
}

/**
 * Policy names -> policies: "nestcloud" (with its parameters), "dvfs", or a reference
 * policy "<thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>" with any of the modifiers
 * "+billing", "+hostvm", "+react" (and their parameters).
 */
export function createPolicy(
  name: string,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: PolicyContext,
): Policy {
  const { base, modifiers } = splitPolicyName(name);
  if (REFERENCE_POLICY_PATTERN.test(base)) return referencePolicy(name, ctx, params);
  if (base === "dvfs" || base === "nestcloud") {
    if (modifiers.length > 0)
      throw new PolicyError(
        `${name}: ${base} takes no modifiers (${REFERENCE_MODIFIERS.map((m) => `+${m}`).join(", ")} apply to the reference policies <thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>)`,
      );
    if (base === "nestcloud") return nestcloudPolicy(nestcloudParams(params), ctx.acquireType);
    const unknown = Object.keys(params);
    if (unknown.length > 0)
      throw new PolicyError(`policy.params.${unknown[0]}: unknown parameter of dvfs (known: none)`);
    return dvfsPolicy();
  }
  throw new PolicyError(
    `unknown policy ${name} (known: ${POLICY_NAMES.join(", ")}, or <thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>, with modifiers ${REFERENCE_MODIFIERS.map((m) => `+${m}`).join(", ")})`,
  );
}

export const POLICY_NAMES = [
  "thr-mmt-0.8",
  "thr-mmt-1.0",
  "iqr-mmt-1.5",
  "mad-mmt-2.5",
  "lr-mmt-1.2",
  "lrr-mmt-1.2",
  "dvfs",
  "nestcloud",
];

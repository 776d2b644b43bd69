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
import type { PlannerInput } from "./input.ts";
import { nestcloudParams, nestcloudPolicy } from "./nestcloud.ts";
import { findBinForGuest, fits } from "./pabfd.ts";
import type { HostVmRef } from "./plan.ts";
import { type Placement, type Policy, PolicyError, resolvePotential } from "./policy-base.ts";
import { referencePlan } from "./reference.ts";
import {
  maximumCorrelation,
  minimumMigrationTime,
  minimumUtilization,
  randomSelection,
  type VmSelection,
} from "./selection.ts";
import { addFreeSlotBins, Workspace } from "./workspace.ts";

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

/** The Beloglazov & Buyya policies: detector x selection x parameter, placing with PABFD. */
export function referencePolicy(name: string, ctx: PolicyContext): Policy {
  const m = REFERENCE_POLICY_PATTERN.exec(name);
  if (!m) throw new PolicyError(`not a reference policy name: ${name}`);
  const detector = DETECTORS[m[1]](Number(m[3]));
  const selection = SELECTIONS[m[2]];
  return {
    name,
    rentalRule:
      "rents a host VM when a guest fits in none (PABFD placement) and gives one back as soon as it is empty, whatever is left of its paid increment",
    plan: (input) => referencePlan(input, { detector, selection, acquireType: ctx.acquireType }),
    placeNew: (input, guests) => pabfdPlacement(input, guests, detector, ctx.acquireType),
  };
}

/** PABFD placement of new guests (CloudSim's initial placement: full requests, creation rules). */
export function pabfdPlacement(
  input: PlannerInput,
  guests: readonly number[],
  detector: OverloadDetector,
  acquireType: HostVmType | undefined,
): Placement {
  const ws = new Workspace(input, true);
  if (acquireType) addFreeSlotBins(ws, acquireType);
  const assignments: { guest: number; to: HostVmRef }[] = [];
  const unplaced: number[] = [];
  let excluded = new Uint8Array(ws.binCount + 64);
  for (const g of guests) {
    if (excluded.length < ws.binCount) excluded = new Uint8Array(ws.binCount * 2);
    const b = findBinForGuest(ws, g, excluded, detector, { atCreation: true });
    if (b < 0) {
      unplaced.push(g);
      continue;
    }
    ws.moveGuest(g, b);
    // CloudSim quirk: a VM just created asks for nothing until its cloudlet starts, so later
    // placements' overload checks do not see it (its MIPS stay allocated).
    if (input.rules.memory === "at-creation") ws.requestSum[b] -= ws.request[g];
    if (acquireType && ws.isPotential(b) && ws.lists[b].length === 1) {
      const s = ws.server[b];
      if (ws.cloud.servers[s].hostVmSlots - ws.slotsUsed[s] > 0) ws.addPotentialBin(acquireType, s);
    }
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
 * policy "<thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>".
 */
export function createPolicy(
  name: string,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: PolicyContext,
): Policy {
  if (REFERENCE_POLICY_PATTERN.test(name)) return referencePolicy(name, ctx);
  if (name === "dvfs") return dvfsPolicy();
  if (name === "nestcloud") return nestcloudPolicy(nestcloudParams(params), ctx.acquireType);
  throw new PolicyError(
    `unknown policy ${name} (known: ${POLICY_NAMES.join(", ")}, or <thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>)`,
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

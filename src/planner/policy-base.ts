/**
 * What every placement policy shares: the Policy interface, a Placement of new guests, the
 * error for bad policy names or parameters, and the rewrite of potential bins into acquisitions.
 * Its own module so that policy.ts (the registry of named policies) and the policies it
 * names (nestcloud.ts) both depend on it and not on each other.
 */
import type { PlannerInput } from "./input.ts";
import type { ActionPlan, HostVmRef } from "./plan.ts";
import type { Workspace } from "./workspace.ts";

export interface Placement {
  readonly assignments: readonly { readonly guest: number; readonly to: HostVmRef }[];
  readonly acquisitions: readonly { readonly type: string; readonly server: number }[];
  /** Guests no bin could take. */
  readonly unplaced: readonly number[];
}

export interface Policy {
  readonly name: string;
  /** Places guests that have no host VM yet, in the given order. */
  placeNew(input: PlannerInput, guests: readonly number[]): Placement;
  /** One planning round. */
  plan(input: PlannerInput): ActionPlan;
  /**
   * Optional quick check between rounds on current load (overload relief only); the
   * controller calls it every reactIntervalSeconds.
   */
  react?(input: PlannerInput): ActionPlan;
  readonly reactIntervalSeconds?: number;
  /** The reflex is worth asking only when some host VM's demand exceeds this share of it. */
  readonly reactWhenAbove?: number;
  /** How the policy decides to rent and give back host VMs (reports say it; nested clouds). */
  readonly rentalRule?: string;
}

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyError";
  }
}

/** Rewrites assignments to potential bins as acquisitions. */
export function resolvePotential(
  ws: Workspace,
  assignments: { guest: number; to: HostVmRef }[],
  unplaced: number[],
): Placement {
  const acquisitions: { type: string; server: number }[] = [];
  const index = new Map<number, number>();
  const out = assignments.map((a) => {
    if (a.to.kind !== "existing" || !ws.isPotential(a.to.hostVm)) return a;
    const b = a.to.hostVm;
    let i = index.get(b);
    if (i === undefined) {
      i = acquisitions.length;
      acquisitions.push({ type: ws.potentialType[b - ws.existing].name, server: ws.server[b] });
      index.set(b, i);
    }
    return { guest: a.guest, to: { kind: "acquired", action: i } as HostVmRef };
  });
  return { assignments: out, acquisitions, unplaced };
}

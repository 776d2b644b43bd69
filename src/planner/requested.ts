/**
 * A move asked for through the API, planned by the planner's pure code like every other
 * decision: the target (the one named, or the best the rules allow) and the mechanism (the
 * one named, or what the cost models choose). Either a one-action plan or a typed refusal that
 * says why; the API maps each reason to its status (409: the cloud's state refuses it; 422:
 * the request itself cannot be met).
 */
import { estimateMove, routeBetween } from "../migration/index.ts";
import { guestMips } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import type { ActionPlan } from "./plan.ts";
import type { Placement, Policy } from "./policy-base.ts";

/**
 * Where a guest asked for through the API goes: the policy's own placement of new guests (the
 * one the simulator runs), with the guest's load taken as its full guarantee — nothing has
 * been measured of it yet. `g` is a guest of the input's cloud with no host VM.
 */
export function placeRequested(policy: Policy, input: PlannerInput, g: number): Placement {
  const requestMips = Float64Array.from(input.requestMips);
  requestMips[g] = guestMips(input.cloud.guests[g]);
  return policy.placeNew({ ...input, requestMips }, [g]);
}

export type RequestedMechanism = "auto" | "instant" | "precopy" | "postcopy";

export interface MoveRequest {
  /** Host VM to move to; undefined: the planner chooses. */
  readonly to?: number;
  readonly mechanism: RequestedMechanism;
}

export type MoveRefusalReason =
  /** The guest runs nowhere. */
  | "not-placed"
  /** A migration of the guest runs already. */
  | "migrating"
  /** The named host VM is the guest's own. */
  | "same-host-vm"
  /** The named host VM cannot take the guest (not running, too small, full). */
  | "cannot-take"
  /** No host VM can take the guest. */
  | "no-room"
  /** An instant handover was asked for across physical servers. */
  | "instant-across-servers";

export interface MoveRefusal {
  readonly reason: MoveRefusalReason;
  /** The request's field at fault, if any. */
  readonly field?: "to" | "mechanism";
  readonly message: string;
}

export type MoveDecision =
  | { readonly ok: true; readonly plan: ActionPlan }
  | { readonly ok: false; readonly refusal: MoveRefusal };

const refuse = (reason: MoveRefusalReason, message: string, field?: "to" | "mechanism"): MoveDecision => ({
  ok: false,
  refusal: { reason, message, ...(field ? { field } : {}) },
});

/**
 * Plans one requested move of guest g. Without a target: a host VM on the guest's physical
 * server first (instant handover), then the one with the most free memory; ties go to the
 * lower index. The estimate comes from the input's resident memory and dirty rate, like every
 * planned move's.
 */
export function planMove(input: PlannerInput, g: number, req: MoveRequest): MoveDecision {
  const cloud = input.cloud;
  const guest = cloud.guests[g];
  const from = cloud.guestHost[g];
  if (from < 0) return refuse("not-placed", `guest VM ${guest.id} is not placed`);
  if (input.inMigration[g]) return refuse("migrating", `guest VM ${guest.id} is migrating already`);
  let target = -1;
  if (req.to !== undefined) {
    target = req.to;
    if (target === from)
      return refuse("same-host-vm", `guest VM ${guest.id} runs on ${cloud.hostVms[target].id} already`, "to");
    const problem = cloud.placementProblem(g, target);
    if (problem) return refuse("cannot-take", problem);
  } else {
    let bestKey = -1;
    const home = cloud.hostVms[from].server;
    for (let h = 0; h < cloud.hostVms.length; h++) {
      if (h === from || cloud.placementProblem(g, h)) continue;
      const server = cloud.hostVms[h].server;
      const same = server !== undefined && server === home ? 1 : 0;
      const key = same * 1e9 + cloud.freeMemory(h);
      if (key > bestKey) {
        bestKey = key;
        target = h;
      }
    }
    if (target < 0) return refuse("no-room", `no host VM has room for guest VM ${guest.id}`);
  }
  const src = cloud.hostVms[from].server;
  const route = routeBetween(
    { hostVm: from, server: src },
    { hostVm: target, server: cloud.hostVms[target].server },
  );
  const m = req.mechanism;
  if (m === "instant" && route !== "same-server")
    return refuse(
      "instant-across-servers",
      "instant handover needs a host VM on the same physical server",
      "mechanism",
    );
  const policy =
    m === "auto"
      ? input.mechanism
      : { ...input.mechanism, instant: m === "instant", postcopyFallback: m === "postcopy" };
  const estimate = estimateMove(
    m === "precopy" || m === "postcopy" ? "cross-server" : route,
    {
      memoryMiB: guest.memoryMiB,
      residentMiB: input.residentMiB[g],
      dirtyRateMiBps: input.dirtyRateMiBps[g],
    },
    src !== undefined ? cloud.servers[src].networkMbps : 1000,
    input.calibration,
    policy,
  );
  // Never undefined: the route is between two host VMs. A named mechanism is the one used.
  const chosen = estimate!;
  return {
    ok: true,
    plan: {
      actions: [
        {
          kind: "migrate",
          id: 0,
          guest: g,
          from,
          to: { kind: "existing", hostVm: target },
          route,
          estimate: m === "auto" ? chosen : { ...chosen, mechanism: m },
          dependsOn: [],
          reason: "requested",
        },
      ],
      caps: input.caps,
      notes: [],
    },
  };
}

/**
 * A co-migration asked for through the API (issue 13 item 3): a security VM with its targets
 * to one host VM in lock-step. Each member planned as a requested move would be (planMove:
 * placed, not migrating, not there already, the host VM can take it, the mechanism its cost
 * model picks), then the host VM checked for room for all of them at once. Either a one-action
 * plan (a co-migrate action) or the first member's refusal.
 */
import type { PlannerInput } from "./input.ts";
import type { CoMigrationMember } from "./plan.ts";
import { type MoveDecision, planMove } from "./requested.ts";

export function planCoMove(input: PlannerInput, guests: readonly number[], target: number): MoveDecision {
  const cloud = input.cloud;
  const members: CoMigrationMember[] = [];
  for (const g of guests) {
    const d = planMove(input, g, { to: target, mechanism: "auto" });
    if (!d.ok) return d;
    const a = d.plan.actions[0];
    if (a.kind !== "migrate") throw new Error("planMove gave no move");
    members.push({ guest: g, from: a.from, route: a.route, estimate: a.estimate });
  }
  const need = guests.reduce((s, g) => s + cloud.guests[g].memoryMiB, 0);
  if (need > cloud.freeMemory(target) + 1e-9)
    return {
      ok: false,
      refusal: {
        reason: "cannot-take",
        field: "to",
        message: `host VM ${cloud.hostVms[target].id} has ${Math.floor(cloud.freeMemory(target))} MiB free, the co-migration needs ${need} MiB`,
      },
    };
  return {
    ok: true,
    plan: {
      actions: [
        {
          kind: "co-migrate",
          id: 0,
          members,
          to: { kind: "existing", hostVm: target },
          dependsOn: [],
          reason: "requested",
        },
      ],
      caps: input.caps,
      notes: [],
    },
  };
}

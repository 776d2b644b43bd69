/**
 * nestcloud's reflex between planning rounds: when a host VM's current demand passes the
 * overload level, move guests to other host VMs on the same physical server (instant
 * handover, milliseconds) until it is back under the target. Looks only at the hot host
 * VMs' servers, so it costs next to nothing when nothing is hot — it can run every few
 * seconds on load reports from the agents.
 */
import { estimateInstant } from "../migration/index.ts";
import { hostVmGuestMemory, hostVmMips } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import type { Action, ActionPlan } from "./plan.ts";

export interface ReflexParams {
  readonly overloadUtilization: number;
  readonly targetUtilization: number;
}

/** Current demand (MIPS) per host VM: from the input when the caller has it, else summed. */
export function hostDemand(input: PlannerInput): Float64Array {
  if (input.hostDemandMips) return input.hostDemandMips;
  const cloud = input.cloud;
  const out = new Float64Array(cloud.hostVms.length);
  for (let h = 0; h < out.length; h++) for (const g of cloud.hostGuests[h]) out[h] += input.requestMips[g];
  return out;
}

export function reflexPlan(input: PlannerInput, p: ReflexParams): ActionPlan {
  const cloud = input.cloud;
  const demand = hostDemand(input);
  const hot: number[] = [];
  for (let h = 0; h < demand.length; h++) {
    const host = cloud.hostVms[h];
    if (host.state !== "running" || host.server === undefined || cloud.hostGuests[h].length === 0) continue;
    if (demand[h] > p.overloadUtilization * hostVmMips(host.type)) hot.push(h);
  }
  if (hot.length === 0) return { actions: [], caps: input.caps, notes: [] };

  // Working copies for the host VMs on the hot servers only.
  const servers = new Set(hot.map((h) => cloud.hostVms[h].server!));
  const load = new Map<number, number>();
  const memory = new Map<number, number>();
  const peers = new Map<number, number[]>();
  for (let h = 0; h < cloud.hostVms.length; h++) {
    const host = cloud.hostVms[h];
    if (host.server === undefined || !servers.has(host.server) || host.state !== "running") continue;
    load.set(h, demand[h]);
    memory.set(h, cloud.hostMemoryUsed[h]);
    const list = peers.get(host.server) ?? [];
    list.push(h);
    peers.set(host.server, list);
  }
  for (const g of input.inFlightGuests ?? Array.from({ length: input.inboundTarget.length }, (_, i) => i)) {
    const t = input.inboundTarget[g];
    if (t >= 0 && memory.has(t)) memory.set(t, memory.get(t)! + cloud.guests[g].memoryMiB);
  }

  const actions: Action[] = [];
  hot.sort(
    (a, b) =>
      demand[b] / hostVmMips(cloud.hostVms[b].type) - demand[a] / hostVmMips(cloud.hostVms[a].type) || a - b,
  );
  for (const h of hot) {
    const host = cloud.hostVms[h];
    const cap = hostVmMips(host.type);
    const candidates = cloud.hostGuests[h].filter(
      (g) => !input.inMigration[g] && input.requestMips[g] > 0 && cloud.guests[g].affinityGroup === undefined,
    );
    // Free the most CPU per byte handed over.
    candidates.sort(
      (x, y) =>
        input.requestMips[y] / cloud.guests[y].memoryMiB - input.requestMips[x] / cloud.guests[x].memoryMiB ||
        x - y,
    );
    for (const g of candidates) {
      if (load.get(h)! <= p.targetUtilization * cap) break;
      const guest = cloud.guests[g];
      const r = input.requestMips[g];
      let best = -1;
      let bestFill = -1;
      for (const x of peers.get(host.server!)!) {
        if (x === h) continue;
        const t = cloud.hostVms[x].type;
        if (guest.vcpus > t.vcpus || guest.mipsPerVcpu > t.mipsPerVcpu) continue;
        if (memory.get(x)! + guest.memoryMiB > hostVmGuestMemory(t) + 1e-9) continue;
        const fill = (load.get(x)! + r) / hostVmMips(t);
        if (fill > p.targetUtilization) continue;
        if (fill > bestFill) {
          bestFill = fill;
          best = x;
        }
      }
      if (best < 0) continue;
      load.set(h, load.get(h)! - r);
      load.set(best, load.get(best)! + r);
      memory.set(h, memory.get(h)! - guest.memoryMiB);
      memory.set(best, memory.get(best)! + guest.memoryMiB);
      const estimate = estimateInstant(
        {
          memoryMiB: guest.memoryMiB,
          residentMiB: input.residentMiB[g],
          dirtyRateMiBps: input.dirtyRateMiBps[g],
        },
        input.calibration,
      );
      actions.push({
        kind: "migrate",
        id: actions.length,
        guest: g,
        from: h,
        to: { kind: "existing", hostVm: best },
        route: "same-server",
        estimate,
        dependsOn: [],
        reason: "reactive",
      });
    }
  }
  return { actions, caps: input.caps, notes: [] };
}

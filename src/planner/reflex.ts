/**
 * nestcloud's reflex between planning rounds: when a host VM's current demand passes the
 * overload level, move guests to other host VMs on the same physical server (instant
 * handover, milliseconds) until it is back under the target. Looks only at the hot host
 * VMs' servers, so it costs next to nothing when nothing is hot — it can run every few
 * seconds on load reports from the agents. With `acrossServers`, a guest that finds no room on
 * its server goes to the fullest host VM elsewhere that can take it (a network move).
 */
import { estimateInstant, estimateMove, type Route } from "../migration/index.ts";
import { hostVmGuestMemory, hostVmMips } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import type { Action, ActionPlan } from "./plan.ts";

export interface ReflexParams {
  readonly overloadUtilization: number;
  readonly targetUtilization: number;
  /** When no host VM on the server has room, move across the network (precopy). */
  readonly acrossServers?: boolean;
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

  // Working copies for the running host VMs (the hot servers' first, then the others as
  // receivers of last resort across the network).
  const load = new Map<number, number>();
  const memory = new Map<number, number>();
  const peers = new Map<number, number[]>();
  for (let h = 0; h < cloud.hostVms.length; h++) {
    const host = cloud.hostVms[h];
    if (host.server === undefined || host.state !== "running") continue;
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
      const consider = (x: number) => {
        if (x === h) return;
        const t = cloud.hostVms[x].type;
        if (guest.vcpus > t.vcpus || guest.mipsPerVcpu > t.mipsPerVcpu) return;
        if (memory.get(x)! + guest.memoryMiB > hostVmGuestMemory(t) + 1e-9) return;
        const fill = (load.get(x)! + r) / hostVmMips(t);
        if (fill > p.targetUtilization) return;
        if (fill > bestFill) {
          bestFill = fill;
          best = x;
        }
      };
      for (const x of peers.get(host.server!)!) consider(x);
      let route: Route = "same-server";
      if (best < 0 && p.acrossServers) {
        for (const [s, list] of peers) if (s !== host.server) for (const x of list) consider(x);
        route = "cross-server";
      }
      if (best < 0) continue;
      const subject = {
        memoryMiB: guest.memoryMiB,
        residentMiB: input.residentMiB[g],
        dirtyRateMiBps: input.dirtyRateMiBps[g],
      };
      const estimate =
        route === "same-server"
          ? estimateInstant(subject, input.calibration)
          : estimateMove(
              route,
              subject,
              cloud.servers[host.server!].networkMbps,
              input.calibration,
              input.mechanism,
            );
      if (!estimate) continue;
      load.set(h, load.get(h)! - r);
      load.set(best, load.get(best)! + r);
      memory.set(h, memory.get(h)! - guest.memoryMiB);
      memory.set(best, memory.get(best)! + guest.memoryMiB);
      actions.push({
        kind: "migrate",
        id: actions.length,
        guest: g,
        from: h,
        to: { kind: "existing", hostVm: best },
        route,
        estimate,
        dependsOn: [],
        reason: "reactive",
      });
    }
  }
  return { actions, caps: input.caps, notes: [] };
}

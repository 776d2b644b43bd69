/**
 * CloudSim 3.0.3's rules (`compat: cloudsim-3.0.3`), for the reference experiment of
 * Beloglazov & Buyya: they reproduce CloudSim's figures; they are not nestcloud's semantics.
 * Its timeline (rounds at 300 k + 0.1 s, nothing in between), its scheduler (floor after
 * scaling, 90 %/10 % migration shares), accounting of every host at each migration
 * completion, its energy rule, RAM that binds only at VM creation, and its removal of VMs
 * whose demand reaches exactly zero.
 */
import { CLOUDSIM_RULES } from "../../planner/index.ts";
import { cappedPerPe, cappedRequest, INCOMING, OUTGOING, type Share, type ShareInput } from "../sharing.ts";
import type { CompletedMigration, SimulationKernel, SimulationRules } from "./rules.ts";

/** CloudSim's first scheduling event: rounds fall at 0.1 + k x interval. */
const FIRST_EVENT = 0.1;
/** VmSchedulerTimeSharedOverSubscription's migration shares: source grants, destination reserves. */
const SOURCE_SHARE = 0.9;
const DESTINATION_SHARE = 0.1;

export const cloudsimRules: SimulationRules = {
  name: "cloudsim",
  capacity: CLOUDSIM_RULES,
  // Memory binds at VM creation only: moves may overcommit it afterwards, as in CloudSim.
  toleratedViolations: new Set(["memory-overcommitted"]),

  roundTimes(interval: number, duration: number): number[] {
    const rounds = Math.floor((duration - FIRST_EVENT) / interval - 1e-9);
    const out: number[] = [];
    // CloudSim accumulates clock + 300 from 0.1; do the same so (t - 0.1) % 300 stays exact.
    let t = FIRST_EVENT;
    for (let k = 1; k <= rounds; k++) {
      t += interval;
      out.push(t);
    }
    return out;
  },
  planAtStart: false,
  runEnd: "at-last-update",
  // CloudSim creates its VMs asking for their full MIPS.
  initialDemandMips: (mips: number) => mips,
  hostLoadReports: false,

  migrationLoss: "cpu-shares",
  shareCpu: shareOverSubscription,
  // CloudSim treats a VM whose demand is exactly 0 as finished.
  removesGuestsAtZeroDemand: true,

  // A segment between updates violates the SLA if it started under-allocated.
  slaViolationSeconds: (used, requested, _requestedAtEnd, _capacity, dt) => (used < requested ? dt : 0),
  // A host idle at the start of an interval is off for all of it.
  drawsPower: (utilization) => utilization > 0,

  migrationStarted(k: SimulationKernel, from: number, to: number, t: number): void {
    // The planner's requests were read at t; CloudSim re-evaluates both hosts now.
    k.updateHostVms(t, [to, from], false);
  },
  migrationCompleted(k: SimulationKernel, m: CompletedMigration, t: number): void {
    // CloudSim processes every host at each completion: bring all up to t first (the move
    // lands in a fresh segment), move, then process again, once for completions that share
    // an instant.
    if (t > k.lastFullUpdate()) {
      k.readDemand(t);
      k.updateAllHostVms(t);
    }
    k.applyMove(m, t);
    if (!k.anotherMigrationCompletesAt(t)) k.updateAllHostVms(t);
  },
};

/**
 * CloudSim 3.0.3's VmSchedulerTimeSharedOverSubscription, with its rounding (floor after
 * scaling) and its migration rule: the source grants 90 % and the destination reserves 10 %
 * of the guest's request for the whole migration.
 */
function shareOverSubscription(x: ShareInput, granted: Float64Array): Share {
  let weight = 0;
  let requested = 0;
  for (let i = 0; i < x.n; i++) {
    const c = cappedRequest(x, i);
    weight += x.migration[i] === INCOMING ? DESTINATION_SHARE * c : c;
    requested += x.request[i];
  }
  if (weight <= x.capacity) {
    for (let i = 0; i < x.n; i++) {
      const c = cappedRequest(x, i);
      const m = x.migration[i];
      granted[i] = m === OUTGOING ? c * SOURCE_SHARE : m === INCOMING ? c * DESTINATION_SHARE : c;
    }
  } else {
    const sf = x.capacity / weight;
    for (let i = 0; i < x.n; i++) {
      const perPe = cappedPerPe(x, i);
      const m = x.migration[i];
      const one =
        m === OUTGOING
          ? Math.floor(perPe * sf * SOURCE_SHARE)
          : m === INCOMING
            ? Math.floor(perPe * DESTINATION_SHARE * sf)
            : Math.floor(perPe * sf);
      granted[i] = one * x.vcpus[i];
    }
  }
  let used = 0;
  for (let i = 0; i < x.n; i++) {
    // CloudSim counts a departing guest's 90 % grant back up to its full request.
    used += x.migration[i] === OUTGOING ? granted[i] / SOURCE_SHARE : granted[i];
  }
  return { granted, usedMips: used, requestedMips: requested };
}

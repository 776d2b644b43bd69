/**
 * A lower bound on the host-VM hours any policy needs for a nested scenario's day: for each
 * trace interval, the fewest host VMs of the scenario's type that could hold the interval's
 * total CPU demand and all the guests' memory (the ceiling of the larger of the two ratios,
 * as if load could be split freely between host VMs), summed over the day. No placement
 * reaches it (guests are whole, load moves within an interval, moves take time), so a
 * policy's hours over it say how much room is left.
 */
import { type Cloud, hostVmGuestMemory, hostVmMips } from "../model/index.ts";
import { buildCloud } from "./build.ts";
import type { Scenario } from "./scenario.ts";
import type { Trace } from "./trace.ts";

/** The bound's hours, with the host VMs it needs per interval; undefined for bare metal. */
export interface LowerBound {
  readonly hostVmHours: number;
  /** Host VMs needed in each interval (index k covers [k, k + 1) intervals from the start). */
  readonly hostVms: Int32Array;
}

/** `cloud`: the scenario's cloud built on this trace, if at hand (only its guests are read). */
export function lowerBound(scenario: Scenario, trace: Trace, cloud?: Cloud): LowerBound | undefined {
  const type = scenario.initialHostVms?.type;
  if (!scenario.nested || !type) return undefined;
  cloud ??= buildCloud(scenario, trace).cloud;
  const G = cloud.guests.length;
  let memory = 0;
  const mips = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    const guest = cloud.guests[g];
    memory += guest.memoryMiB;
    mips[g] = guest.vcpus * guest.mipsPerVcpu;
  }
  const cpuCap = hostVmMips(type);
  const memCap = hostVmGuestMemory(type);
  const interval = scenario.intervalSeconds;
  const n = Math.ceil(scenario.durationSeconds / interval - 1e-9);
  const hostVms = new Int32Array(n);
  let seconds = 0;
  const last = trace.samples - 1;
  for (let k = 0; k < n; k++) {
    const i = Math.min(k, last);
    let demand = 0;
    for (let g = 0; g < G; g++) demand += (trace.data[g * trace.samples + i] / 100) * mips[g];
    // A hair under an integer (float sums) does not need one more host VM.
    hostVms[k] = Math.ceil(Math.max(demand / cpuCap, memory / memCap) - 1e-9);
    seconds += hostVms[k] * Math.min(interval, scenario.durationSeconds - k * interval);
  }
  return { hostVmHours: seconds / 3600, hostVms };
}

/** The bound in host-VM hours (undefined for bare metal): `nestcloud compare --json`'s figure. */
export function lowerBoundHostVmHours(scenario: Scenario, trace: Trace): number | undefined {
  return lowerBound(scenario, trace)?.hostVmHours;
}

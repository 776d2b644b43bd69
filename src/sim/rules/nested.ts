/**
 * nestcloud's own rules. Rounds at k x interval, with a first one at t = 0 (a nested cloud's
 * day starts with guests already running); demand linear between trace samples; a host VM's
 * CPU time-shared; a migrating guest runs at its source until switchover and loses its
 * demand for the downtime; SLA time exact under linear demand; energy of every server that
 * carries a billed host VM.
 */
import { NESTED_RULES } from "../../planner/index.ts";
import { cappedRequest, type Share, type ShareInput } from "../sharing.ts";
import type { CompletedMigration, SimulationKernel, SimulationRules } from "./rules.ts";

export const nestedRules: SimulationRules = {
  name: "nested",
  capacity: NESTED_RULES,
  toleratedViolations: new Set(),

  roundTimes(interval: number, duration: number): number[] {
    const rounds = Math.floor(duration / interval - 1e-9);
    const out: number[] = [];
    for (let k = 1; k <= rounds; k++) out.push(k * interval);
    return out;
  },
  planAtStart: true,
  runEnd: "update-at-duration",
  // Guests already run at time 0: they are placed by what they use then.
  initialDemandMips: (mips: number, utilizationAtStart: number) => utilizationAtStart * mips,
  hostLoadReports: true,

  migrationLoss: "downtime",
  shareCpu: shareTimeShared,
  removesGuestsAtZeroDemand: false,

  // Demand moves linearly between updates (interpolated traces), so the violating part of a
  // segment is the time the requested MIPS spend above capacity: exact, not sampled.
  slaViolationSeconds: (_used, requested, requestedAtEnd, capacity, dt) =>
    dt * fractionAbove(requested, requestedAtEnd, capacity),
  // A server draws power while it carries a billed host VM, busy or not.
  drawsPower: (_utilization, carriesBilledHostVm) => carriesBilledHostVm,

  migrationStarted(): void {},
  migrationCompleted(k: SimulationKernel, m: CompletedMigration, t: number): void {
    // Only the two host VMs change: account them up to the switchover, move, account the
    // downtime, and start their next segment with the guest at its destination.
    k.updateHostVms(t, [m.from, m.to], true);
    k.applyMove(m, t);
    k.loseDemand(m.guest, m.downtimeSeconds);
    k.updateHostVms(t, [m.from, m.to], false);
  },
};

/**
 * Time-shared: each guest's per-vCPU demand is capped at the host VM's per-vCPU MIPS, and
 * everything scales down proportionally when the sum exceeds capacity. Guests are listed at
 * their source only (migration loss is downtime), so none carries a migration mark.
 */
function shareTimeShared(x: ShareInput, granted: Float64Array): Share {
  let weight = 0;
  let requested = 0;
  for (let i = 0; i < x.n; i++) {
    weight += cappedRequest(x, i);
    requested += x.request[i];
  }
  const scale = weight > x.capacity ? x.capacity / weight : 1;
  let used = 0;
  for (let i = 0; i < x.n; i++) {
    granted[i] = cappedRequest(x, i) * scale;
    used += granted[i];
  }
  return { granted, usedMips: used, requestedMips: requested };
}

/** Share of a segment where a linear quantity going from a to b exceeds c. */
export function fractionAbove(a: number, b: number, c: number): number {
  const eps = 1e-9 * Math.max(1, c);
  const above = (x: number) => x > c + eps;
  if (above(a) && above(b)) return 1;
  if (!above(a) && !above(b)) return 0;
  const cross = (c - a) / (b - a);
  return above(a) ? cross : 1 - cross;
}

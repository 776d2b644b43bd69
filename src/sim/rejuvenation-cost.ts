/**
 * What renewing a host VM's hypervisor layer costs in a simulated cloud, after the agents'
 * Rejuvenator: destination QEMUs start in waves of prepareParallel, switchovers run
 * switchParallel at a time (each guest pauses for its own), then the agent (in place) or the
 * host VM (evacuate) restarts; evacuated guests come back in a second pass. One model for the
 * simulator's executor and the simulated provider's data plane.
 */
export interface RejuvenationCost {
  /** Each guest's pause per switchover, s. */
  readonly pauseSeconds: number;
  /** One wave of destination QEMU starts, s. */
  readonly startSeconds: number;
  readonly prepareParallel: number;
  readonly switchParallel: number;
  /** The agent's restart (in place) or the host VM's (evacuate), s. */
  readonly restartSeconds: number;
}

/** bench:rejuvenation at low load: 55 ms pauses in place, QEMU starts 1.4 s a wave of two under TCG. */
export const DEFAULT_REJUVENATION_COST: RejuvenationCost = {
  pauseSeconds: 0.055,
  startSeconds: 1.4,
  prepareParallel: 2,
  switchParallel: 4,
  restartSeconds: 10,
};

export interface RenewalTimes {
  /** 1 in place, 2 evacuated (out to the spare, back). */
  readonly passes: number;
  readonly prepareSeconds: number;
  readonly switchSeconds: number;
  readonly totalSeconds: number;
  /** Each guest's pause in all. */
  readonly pausePerGuestSeconds: number;
}

export function renewalTimes(
  c: RejuvenationCost,
  guests: number,
  mode: "in-place" | "evacuate",
): RenewalTimes {
  const passes = mode === "evacuate" ? 2 : 1;
  const prepare = Math.ceil(guests / c.prepareParallel) * c.startSeconds;
  const sw = Math.ceil(guests / c.switchParallel) * c.pauseSeconds;
  return {
    passes,
    prepareSeconds: passes * prepare,
    switchSeconds: passes * sw,
    totalSeconds: passes * (prepare + sw) + c.restartSeconds,
    pausePerGuestSeconds: passes * c.pauseSeconds,
  };
}

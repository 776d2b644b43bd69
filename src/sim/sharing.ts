/**
 * How a host VM's CPU is shared among its guests at one instant: what each guest is granted,
 * what the host VM counts as used, and what was requested (for SLA accounting). The shapes
 * and the per-vCPU cap common to every rule set; each set's scheduler is its `shareCpu`
 * (rules/nested.ts: time-shared; rules/cloudsim.ts: CloudSim 3.0.3's).
 */

export interface Share {
  /** Per listed guest: MIPS granted. */
  readonly granted: Float64Array;
  /** MIPS the host VM counts as used (CloudSim's utilizationMips). */
  readonly usedMips: number;
  /** Sum of full requests of all listed guests (incl. arriving ones under cpu-shares rules). */
  readonly requestedMips: number;
}

export interface ShareInput {
  readonly capacity: number;
  readonly perVcpu: number;
  readonly request: ArrayLike<number>;
  readonly vcpus: ArrayLike<number>;
  /**
   * 0 normal, 1 migrating out of this host VM, 2 migrating into it. Only rules whose
   * migrations cost CPU shares mark them; others list every guest as normal.
   */
  readonly migration: ArrayLike<number>;
  readonly n: number;
}

export const NORMAL = 0;
export const OUTGOING = 1;
export const INCOMING = 2;

/** Guest i's per-vCPU demand, capped at the host VM's per-vCPU MIPS. */
export function cappedPerPe(x: ShareInput, i: number): number {
  const perPe = x.request[i] / x.vcpus[i];
  return perPe > x.perVcpu ? x.perVcpu : perPe;
}

/** Guest i's demand with each vCPU capped at the host VM's per-vCPU MIPS. */
export function cappedRequest(x: ShareInput, i: number): number {
  return cappedPerPe(x, i) * x.vcpus[i];
}

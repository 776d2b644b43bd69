/**
 * How a host VM's CPU is shared among its guests at one instant: what each guest is granted,
 * what the host VM counts as used, and what was requested (for SLA accounting).
 *
 * - nested: time-shared; a guest's per-vCPU demand is capped at the host VM's per-vCPU
 *   MIPS, everything scales down proportionally when the sum exceeds capacity. A guest in
 *   migration runs at its source until switchover.
 * - cloudsim: CloudSim 3.0.3's VmSchedulerTimeSharedOverSubscription, reproduced with its
 *   rounding (floor after scaling) and its migration rule: the source grants 90 % and the
 *   destination reserves 10 % of the guest's request for the whole migration.
 */
export type SharingRule = "nested" | "cloudsim";

export interface Share {
  /** Per listed guest: MIPS granted. */
  readonly granted: Float64Array;
  /** MIPS the host VM counts as used (CloudSim's utilizationMips). */
  readonly usedMips: number;
  /** Sum of full requests of all listed guests (incl. arriving ones under cloudsim). */
  readonly requestedMips: number;
}

export interface ShareInput {
  readonly capacity: number;
  readonly perVcpu: number;
  readonly request: ArrayLike<number>;
  readonly vcpus: ArrayLike<number>;
  /** 0 normal, 1 migrating out of this host VM, 2 migrating into it (cloudsim only lists those). */
  readonly migration: ArrayLike<number>;
  readonly n: number;
}

export const NORMAL = 0;
export const OUTGOING = 1;
export const INCOMING = 2;

export function shareCpu(rule: SharingRule, x: ShareInput, granted: Float64Array): Share {
  let weight = 0;
  let requested = 0;
  for (let i = 0; i < x.n; i++) {
    const c = cappedRequest(x, i);
    weight += x.migration[i] === INCOMING ? 0.1 * c : c;
    requested += x.request[i];
  }
  let used = 0;
  if (rule === "nested") {
    const scale = weight > x.capacity ? x.capacity / weight : 1;
    for (let i = 0; i < x.n; i++) {
      granted[i] = x.migration[i] === INCOMING ? 0 : cappedRequest(x, i) * scale;
      used += granted[i];
    }
    return { granted, usedMips: used, requestedMips: requested };
  }
  if (weight <= x.capacity) {
    for (let i = 0; i < x.n; i++) {
      const c = cappedRequest(x, i);
      const m = x.migration[i];
      granted[i] = m === OUTGOING ? c * 0.9 : m === INCOMING ? c * 0.1 : c;
    }
  } else {
    const sf = x.capacity / weight;
    for (let i = 0; i < x.n; i++) {
      const perPe = cappedPerPe(x, i);
      const m = x.migration[i];
      const one =
        m === OUTGOING
          ? Math.floor(perPe * sf * 0.9)
          : m === INCOMING
            ? Math.floor(perPe * 0.1 * sf)
            : Math.floor(perPe * sf);
      granted[i] = one * x.vcpus[i];
    }
  }
  for (let i = 0; i < x.n; i++) {
    const m = x.migration[i];
    // CloudSim counts a departing guest's 90 % grant back up to its full request.
    used += m === OUTGOING ? granted[i] / 0.9 : granted[i];
  }
  return { granted, usedMips: used, requestedMips: requested };
}

function cappedPerPe(x: ShareInput, i: number): number {
  const perPe = x.request[i] / x.vcpus[i];
  return perPe > x.perVcpu ? x.perVcpu : perPe;
}

function cappedRequest(x: ShareInput, i: number): number {
  return cappedPerPe(x, i) * x.vcpus[i];
}

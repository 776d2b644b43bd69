/**
 * Which mechanism moves a guest, decided by where source and destination host VMs sit:
 * same host VM -> nothing to do; same physical server -> instant handover of the RAM file;
 * different (or unknown) servers -> pre-copy, or post-copy when pre-copy would not converge.
 */
import type { MigrationCalibration } from "./calibration.ts";
import {
  estimateCloudSim,
  estimateInstant,
  estimatePostcopy,
  estimatePrecopy,
  type MigrationEstimate,
  type MigrationModelKind,
  type MigrationSubject,
} from "./models.ts";

export type Route = "same-host-vm" | "same-server" | "cross-server";

export interface Endpoint {
  readonly hostVm: number;
  /** Physical server index; undefined when the placement is not known. */
  readonly server: number | undefined;
}

export function routeBetween(src: Endpoint, dst: Endpoint): Route {
  if (src.hostVm === dst.hostVm) return "same-host-vm";
  // An unknown placement cannot be proven to share a memory pool: treat it as remote.
  if (src.server !== undefined && src.server === dst.server) return "same-server";
  return "cross-server";
}

export interface MechanismPolicy {
  readonly model: MigrationModelKind;
  /** Use post-copy when pre-copy would not converge (else pre-copy with auto-converge). */
  readonly postcopyFallback: boolean;
  /** Allow zero-copy handover between host VMs of one server. */
  readonly instant: boolean;
}

export const DEFAULT_MECHANISM_POLICY: MechanismPolicy = {
  model: "qemu",
  postcopyFallback: true,
  instant: true,
};

/** Estimate for moving a guest along a route; undefined for a same-host-VM "move". */
export function estimateMove(
  route: Route,
  s: MigrationSubject,
  linkMbps: number,
  cal: MigrationCalibration,
  policy: MechanismPolicy = DEFAULT_MECHANISM_POLICY,
): MigrationEstimate | undefined {
  if (route === "same-host-vm") return undefined;
  if (policy.model === "cloudsim") return estimateCloudSim(s, linkMbps);
  if (route === "same-server" && policy.instant) return estimateInstant(s, cal);
  const pre = estimatePrecopy(s, linkMbps, cal, { autoConverge: false });
  if (pre.converged) return pre;
  return policy.postcopyFallback
    ? estimatePostcopy(s, linkMbps, cal)
    : estimatePrecopy(s, linkMbps, cal, { autoConverge: true });
}

/**
 * Best fit over host VMs and their cost: the placement of the reference policies' `+hostvm`
 * modifier (policy.ts), in place of PABFD's "least growth of the physical server's power".
 * A rented cloud pays per host VM, not per watt: a guest goes to a host VM already running
 * (no extra cost) before a new one, and among those to the one it leaves fullest (CPU or
 * memory, whichever binds), so load gathers in few host VMs and the rest empty out. The
 * capacity checks and the policy's overload detector are PABFD's own (pabfd.ts).
 */
import type { OverloadDetector } from "./detectors.ts";
import { type FitOptions, fits } from "./pabfd.ts";
import type { Workspace } from "./workspace.ts";

/** Extra cost per hour of putting a guest in bin b: nothing for a running host VM, the price of a new one. */
export function binCostPerHour(ws: Workspace, b: number): number {
  return ws.isPotential(b) ? ws.potentialType[b - ws.existing].pricePerHour : 0;
}

/** How full bin b would be with guest g: the larger of its CPU and memory shares. */
export function fillWith(ws: Workspace, g: number, b: number): number {
  const cpu = (ws.requestSum[b] + ws.request[g]) / ws.cap[b];
  const mem = (ws.memUsed[b] + ws.memory[g]) / ws.memCap[b];
  return Math.max(cpu, mem);
}

/**
 * The bin for guest g by host-VM best fit, or -1: same arguments and the same feasibility
 * (capacity, then the detector) as findBinForGuest, ranked by (extra cost, fullest after,
 * lowest index). Bins on idle servers of one shape rank alike, so the search order's one
 * idle bin per shape (the lowest index: running host VMs before potential ones) loses nothing.
 */
export function findBinByHostVm(
  ws: Workspace,
  g: number,
  excluded: Uint8Array,
  detector: OverloadDetector,
  opts: FitOptions = { atCreation: false },
  candidates?: ArrayLike<number>,
): number {
  let best = -1;
  let bestCost = Number.POSITIVE_INFINITY;
  let bestFill = Number.NEGATIVE_INFINITY;
  const r = ws.request[g];
  const perVcpu = r / ws.vcpus[g];
  const order = candidates ?? ws.searchOrder();
  for (let i = 0; i < order.length; i++) {
    const b = order[i];
    if (excluded[b] || !ws.usable[b] || ws.pe[b] < perVcpu || ws.available(b) < r) continue;
    const cost = binCostPerHour(ws, b);
    if (cost > bestCost) continue;
    const fill = fillWith(ws, g, b);
    if (cost === bestCost && !(fill > bestFill)) continue;
    if (!fits(ws, g, b, opts)) continue;
    if (ws.allocated(b) !== 0 && detector.overloaded(ws, b, g)) continue;
    best = b;
    bestCost = cost;
    bestFill = fill;
  }
  return best;
}

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
import type { BinFinder } from "./reference.ts";
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
  memoryBalance = 0,
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
    const fill = memoryBalance > 0 ? balancedFill(ws, g, b, memoryBalance) : fillWith(ws, g, b);
    if (cost === bestCost && !(fill > bestFill)) continue;
    if (!fits(ws, g, b, opts)) continue;
    if (ws.allocated(b) !== 0 && detector.overloaded(ws, b, g)) continue;
    best = b;
    bestCost = cost;
    bestFill = fill;
  }
  return best;
}

/**
 * Host-VM best fit that also keeps each host VM's memory in step with its CPU (the
 * `+hostvm` modifier's memoryBalance, the same rule as nestcloud's): fullest after, less
 * `balance` x how far its memory share would stray from the cloud's memory per CPU.
 */
export function hostVmBestFit(balance: number): BinFinder {
  if (!(balance > 0)) return findBinByHostVm;
  return (ws, g, excluded, detector, opts, candidates) =>
    findBinByHostVm(ws, g, excluded, detector, opts, candidates, balance);
}

const mixOf = new WeakMap<Workspace, number>();

/**
 * The cloud's memory per unit of CPU, as shares of a host VM: all guests' memory over all
 * their current demand, each over the usable host VMs' mean capacity. A host VM whose memory
 * share runs ahead of this times its CPU share fills up on memory before CPU.
 */
export function memoryPerCpu(ws: Workspace): number {
  let mem = 0;
  let cpu = 0;
  for (let g = 0; g < ws.guests; g++) {
    mem += ws.memory[g];
    cpu += ws.request[g];
  }
  let memCap = 0;
  let cap = 0;
  let n = 0;
  for (let b = 0; b < ws.existing; b++) {
    if (!ws.usable[b]) continue;
    memCap += ws.memCap[b];
    cap += ws.cap[b];
    n++;
  }
  if (n === 0 || cpu <= 0 || memCap <= 0) return 0;
  return mem / memCap / (cpu / cap);
}

/** CPU share of bin b with g, less `balance` x the stray of its memory share from the mix. */
export function balancedScore(cpu: number, mem: number, mix: number, balance: number): number {
  const stray = mem - mix * cpu;
  return cpu - balance * Math.abs(stray);
}

function balancedFill(ws: Workspace, g: number, b: number, balance: number): number {
  let mix = mixOf.get(ws);
  if (mix === undefined) {
    mix = memoryPerCpu(ws);
    mixOf.set(ws, mix);
  }
  const cpu = (ws.requestSum[b] + ws.request[g]) / ws.cap[b];
  const mem = (ws.memUsed[b] + ws.memory[g]) / ws.memCap[b];
  return balancedScore(cpu, mem, mix, balance);
}

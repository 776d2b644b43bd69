/**
 * The reference consolidation algorithm of Beloglazov & Buyya (CCPE 2012) as CloudSim 3.0.3
 * runs it: find overloaded bins; pick guests off each until it is not overloaded; place them
 * with PABFD; then try to empty every other active bin, least utilized first, all or
 * nothing. Kept faithful (including CloudSim's quirks, noted inline) so that its figures can
 * be checked against CloudSim's.
 *
 * Two options change it for a rented cloud (the `+hostvm` and `+billing` modifiers of
 * policy.ts); without them it is CloudSim's algorithm unchanged: `findBin` replaces PABFD's
 * choice of bin, and `billing` rents and gives back host VMs by nestcloud's rules (rental.ts).
 */
import { type HostVmType, UNPLACED } from "../model/index.ts";
import { buildPlan, type Move } from "./builder.ts";
import type { OverloadDetector } from "./detectors.ts";
import type { PlannerInput } from "./input.ts";
import { findBinForGuest } from "./pabfd.ts";
import type { ActionPlan } from "./plan.ts";
import { acquisitionServer, type BillingParams, billingKeep, drainDue, occupiedPerServer } from "./rental.ts";
import type { VmSelection } from "./selection.ts";
import { addFreeSlotBins, Workspace } from "./workspace.ts";

/** Chooses the bin for a guest (findBinForGuest's signature): PABFD, or host-VM best fit. */
export type BinFinder = typeof findBinForGuest;

export interface ReferenceOptions {
  readonly detector: OverloadDetector;
  readonly selection: VmSelection;
  /** Nested clouds: host VM type to acquire in free slots; undefined: fixed set of bins. */
  readonly acquireType?: HostVmType;
  /** How a guest's bin is chosen (default: PABFD, by the physical server's power). */
  readonly findBin?: BinFinder;
  /**
   * nestcloud's billing rules (nested clouds): acquire on the server carrying most of our host
   * VMs, empty a host VM only near its next billing boundary, keep paid-for empty ones and
   * spares. Undefined: CloudSim's (a host VM wherever PABFD likes, released once empty).
   */
  readonly billing?: BillingParams;
}

export function referencePlan(input: PlannerInput, opts: ReferenceOptions): ActionPlan {
  const ws = new Workspace(input, true);
  const { detector, selection } = opts;
  const existing = ws.existing;

  const overloaded: number[] = [];
  for (let b = 0; b < existing; b++) if (ws.usable[b] && detector.overloaded(ws, b)) overloaded.push(b);

  const toPlace: number[] = [];
  for (const b of overloaded) {
    for (;;) {
      const g = selection.select(ws, b);
      if (g < 0) break;
      toPlace.push(g);
      ws.moveGuest(g, UNPLACED);
      if (!detector.overloaded(ws, b)) break;
    }
  }
  const origin = new Map<number, number>();
  for (const g of toPlace) origin.set(g, input.cloud.guestHost[g]);

  offerSlots(ws, opts);
  const findBin = opts.findBin ?? findBinForGuest;
  let excluded = new Uint8Array(ws.binCount + 64);
  const grow = () => {
    if (excluded.length < ws.binCount) {
      const next = new Uint8Array(ws.binCount * 2);
      next.set(excluded);
      excluded = next;
    }
  };
  for (const b of overloaded) excluded[b] = 1;

  const moves: Move[] = [];
  sortByRequestDescending(ws, toPlace);
  for (const g of toPlace) {
    const b = findBin(ws, g, excluded, detector);
    if (b >= 0) {
      ws.moveGuest(g, b);
      moves.push({ guest: g, to: b, reason: "overload" });
      refillSlot(ws, b, opts);
      grow();
    } else ws.moveGuest(g, origin.get(g)!); // stays where it was
  }

  // Under-utilized bins. Switched off = nothing measured at the last update.
  const excludedCandidate = new Uint8Array(ws.binCount + 64);
  grow();
  for (const b of overloaded) excludedCandidate[b] = 1;
  for (let b = 0; b < ws.binCount; b++) {
    if (ws.measured[b] === 0) {
      excludedCandidate[b] = 1;
      excluded[b] = 1;
    }
  }
  // Targets of this phase never include switched-off bins: look only at the rest.
  const eligible: number[] = [];
  for (let b = 0; b < ws.binCount; b++) if (!excluded[b] && ws.usable[b]) eligible.push(b);
  // Measured utilization does not change during a round, so one sort gives CloudSim's
  // repeated "least utilized remaining bin" order (ties: lowest index).
  const candidates: number[] = [];
  for (let b = 0; b < existing; b++) {
    const u = ws.measuredUtilization(b);
    if (ws.usable[b] && u > 0 && u < 1) candidates.push(b);
  }
  // Billing rules: emptying a host VM long before its paid time ends saves nothing.
  const drainable = (b: number) =>
    opts.billing === undefined || drainDue(input, b, opts.billing.drainBeforeBillingSeconds);
  candidates.sort((a, b) => ws.measuredUtilization(a) - ws.measuredUtilization(b) || a - b);
  for (const b of candidates) {
    if (excludedCandidate[b] || !drainable(b)) continue;
    const guests = ws.lists[b].filter((g) => !ws.fixed[g]);
    // CloudSim passes over (without excluding) a bin whose guests are all in migration or
    // that has one arriving.
    if (guests.length === 0 || ws.inbound[b] > 0) continue;
    excludedCandidate[b] = 1;
    excluded[b] = 1;
    sortByRequestDescending(ws, guests);
    const placed: Move[] = [];
    for (const g of guests) {
      grow();
      const t = findBin(ws, g, excluded, detector, undefined, eligible);
      if (t < 0) {
        for (const m of placed) ws.moveGuest(m.guest, b);
        placed.length = 0;
        break;
      }
      ws.moveGuest(g, t);
      placed.push({ guest: g, to: t, reason: "underload" });
      refillSlot(ws, t, opts);
    }
    grow();
    for (const m of placed) {
      // CloudSim excludes the targets from being emptied later in this round (but, by a bug
      // it has, not the targets of the overload phase: kept, for fidelity).
      if (m.to < excludedCandidate.length) excludedCandidate[m.to] = 1;
      moves.push(m);
    }
  }
  const keep = opts.billing && billingKeep(ws, opts.billing.spareHostVms, () => occupiedPerServer(ws));
  return buildPlan(ws, moves, { releaseEmpty: opts.acquireType !== undefined, keep });
}

/**
 * Offers host VMs to acquire as potential bins: one in every server's free slot (CloudSim's
 * rule: PABFD picks among them), or under the billing rules one only, on the server with a
 * free slot that carries most of our host VMs.
 */
export function offerSlots(ws: Workspace, opts: Pick<ReferenceOptions, "acquireType" | "billing">): void {
  if (!opts.acquireType) return;
  if (!opts.billing) {
    addFreeSlotBins(ws, opts.acquireType);
    return;
  }
  const s = acquisitionServer(ws, -1, () => occupiedPerServer(ws));
  if (s >= 0) ws.addPotentialBin(opts.acquireType, s);
}

/**
 * After a potential bin is taken, offer the next host VM: in the same server's next free slot
 * (if any); under the billing rules, failing that, where most of our host VMs are.
 */
export function refillSlot(
  ws: Workspace,
  b: number,
  opts: Pick<ReferenceOptions, "acquireType" | "billing">,
): void {
  if (!opts.acquireType || !ws.isPotential(b) || ws.lists[b].length !== 1) return;
  const s = ws.server[b];
  if (opts.billing) {
    const next = acquisitionServer(ws, s, () => occupiedPerServer(ws));
    if (next >= 0) ws.addPotentialBin(opts.acquireType, next);
    return;
  }
  if (ws.cloud.servers[s].hostVmSlots - ws.slotsUsed[s] > 0) ws.addPotentialBin(opts.acquireType, s);
}

/** Stable sort by current request, largest first (CloudSim's PowerVmList.sortByCpuUtilization). */
export function sortByRequestDescending(ws: Workspace, guests: number[]): void {
  guests.sort((a, b) => ws.request[b] - ws.request[a]);
}

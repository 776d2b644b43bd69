/**
 * Billing-aware renting rules, shared by nestcloud's policy and the reference policies'
 * `+billing` modifier (policy.ts) so that both rent and give back host VMs by the same code:
 *
 * - drain a host VM only when its next billing increment starts within a few minutes
 *   (emptying it earlier saves nothing: its time is paid);
 * - keep an empty host VM while its paid time runs past the next round (instant headroom
 *   at no extra cost), plus a number of spares on the busiest servers;
 * - acquire on a server that already carries our host VMs (later moves stay instant).
 */
import { secondsToNextBillingBoundary } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import type { Workspace } from "./workspace.ts";

/** The billing rules' parameters (nestcloud's names and defaults). */
export interface BillingParams {
  /** Drain a host VM only when its next billing increment starts within this many seconds. */
  readonly drainBeforeBillingSeconds: number;
  /** Empty running host VMs kept as spares (cloud-wide), on the busiest servers. */
  readonly spareHostVms: number;
}

/** Is existing host VM b close enough to its next billing boundary to be worth draining? */
export function drainDue(input: PlannerInput, b: number, drainBeforeBillingSeconds: number): boolean {
  return secondsToNextBillingBoundary(input.cloud.hostVms[b], input.now) <= drainBeforeBillingSeconds;
}

/**
 * Host VMs holding guests (or about to be acquired), per physical server: where moves can
 * stay instant. `skip` leaves bins out (nestcloud: those being drained).
 */
export function occupiedPerServer(ws: Workspace, skip?: (b: number) => boolean): Int32Array {
  const count = new Int32Array(ws.cloud.servers.length);
  for (let b = 0; b < ws.binCount; b++) {
    if (ws.usable[b] !== 1 || ws.server[b] < 0 || skip?.(b)) continue;
    if (ws.lists[b].length > 0 || ws.isPotential(b)) count[ws.server[b]]++;
  }
  return count;
}

/**
 * The server to acquire a host VM on: `preferServer` if it has a free slot, else the one
 * with a free slot that carries most of our host VMs (ties: lower index); -1 if none has a
 * free slot. `occupied` is asked only when the preferred server cannot take it.
 */
export function acquisitionServer(ws: Workspace, preferServer: number, occupied: () => Int32Array): number {
  const servers = ws.cloud.servers;
  const free = (s: number) => servers[s].hostVmSlots - ws.slotsUsed[s];
  if (preferServer >= 0 && free(preferServer) > 0) return preferServer;
  let server = -1;
  const perServer = occupied();
  for (let s = 0; s < servers.length; s++) {
    if (free(s) > 0 && (server < 0 || perServer[s] > perServer[server])) server = s;
  }
  return server;
}

/**
 * Empty running host VMs not to release this round: those whose paid time runs past the
 * next round (keeping them costs nothing more until then), and `spareHostVms` of the empty
 * ones on the servers carrying most of our host VMs.
 */
export function billingKeep(ws: Workspace, spareHostVms: number, occupied: () => Int32Array): Set<number> {
  const input = ws.input;
  const cloud = input.cloud;
  const keep = new Set<number>();
  for (let b = 0; b < ws.existing; b++) {
    if (!ws.usable[b] || ws.lists[b].length > 0) continue;
    if (secondsToNextBillingBoundary(cloud.hostVms[b], input.now) > input.intervalSeconds) keep.add(b);
  }
  if (spareHostVms > 0) {
    const perServer = occupied();
    const empty: number[] = [];
    for (let b = 0; b < ws.existing; b++)
      if (ws.usable[b] && ws.lists[b].length === 0 && ws.inbound[b] === 0) empty.push(b);
    empty.sort((a, b) => perServer[ws.server[b]] - perServer[ws.server[a]] || a - b);
    for (const b of empty.slice(0, spareHostVms)) keep.add(b);
  }
  return keep;
}

/**
 * The controller's picture of the cloud for one planning round: the stored topology turned
 * into the model's Cloud, plus the load seen from the provider — the same PlannerInput the
 * simulator builds, so live decisions are the simulator's decisions.
 */
import { DEFAULT_CALIBRATION, DEFAULT_MECHANISM_POLICY } from "../migration/index.ts";
import type { Rng } from "../model/index.ts";
import { Cloud, guestSpec, type HostVmType, LoadHistory, type PhysicalServer } from "../model/index.ts";
import { NESTED_RULES, type ParallelismCaps, type PlannerInput } from "../planner/index.ts";
import type { ProviderSnapshot } from "../providers/index.ts";
import type { StoredGuest, StoredHostVm, StoredMigration } from "./store/repositories/index.ts";

/** The cloud as the store has it (each list in id order). */
export interface StoredTopology {
  servers: PhysicalServer[];
  types: HostVmType[];
  hostVms: StoredHostVm[];
  guests: StoredGuest[];
  running: StoredMigration[];
}

export interface CloudView {
  readonly cloud: Cloud;
  readonly hostVmIds: string[];
  readonly guestIds: string[];
  readonly serverIds: string[];
  readonly types: Map<string, HostVmType>;
}

/**
 * Builds the model Cloud from stored rows: servers and guests indexed in row (id) order, host
 * VMs in the order they were acquired (ties: id order), as the simulator appends them — the
 * planner breaks ties by index, so both see the same order.
 */
export function buildView(t: StoredTopology): CloudView {
  const cloud = new Cloud();
  const types = new Map(t.types.map((x) => [x.name, x]));
  const serverIndex = new Map<string, number>();
  for (const s of t.servers) serverIndex.set(s.id, cloud.addServer(s));
  const hostIndex = new Map<string, number>();
  const hostVms = t.hostVms
    .filter((h) => types.has(h.type))
    .sort((a, b) => a.acquiredAt - b.acquiredAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const h of hostVms) {
    const type = types.get(h.type);
    if (!type) continue;
    const server = h.server ? serverIndex.get(h.server) : undefined;
    const i = cloud.addHostVm(h.id, type, server, h.state, h.stateSince, h.acquiredAt);
    hostIndex.set(h.id, i);
  }
  for (const g of t.guests) {
    const i = cloud.addGuest({
      ...guestSpec(g),
      ...(g.affinityGroup ? { affinityGroup: g.affinityGroup } : {}),
      ...(g.antiAffinityGroup ? { antiAffinityGroup: g.antiAffinityGroup } : {}),
      role: g.role === "security" ? { kind: "security", targets: g.targets } : { kind: "tenant" },
    });
    const h = g.hostVm ? hostIndex.get(g.hostVm) : undefined;
    if (h !== undefined) cloud.assign(i, h);
  }
  return {
    cloud,
    hostVmIds: hostVms.map((h) => h.id),
    guestIds: t.guests.map((g) => g.id),
    serverIds: t.servers.map((s) => s.id),
    types,
  };
}

/** Per-guest CPU history kept across rounds (guest id -> samples, newest last). */
export class LoadBook {
  private readonly samples = new Map<string, number[]>();

  record(snapshot: ProviderSnapshot): void {
    const seen = new Set<string>();
    for (const g of snapshot.guests) {
      seen.add(g.id);
      const list = this.samples.get(g.id) ?? [];
      list.push(g.cpu);
      if (list.length > 30) list.shift();
      this.samples.set(g.id, list);
    }
    for (const id of [...this.samples.keys()]) if (!seen.has(id)) this.samples.delete(id);
  }

  history(guestIds: readonly string[]): LoadHistory {
    const load = new LoadHistory(30, guestIds.length);
    guestIds.forEach((id, g) => {
      for (const u of this.samples.get(id) ?? []) load.push(g, u);
    });
    return load;
  }
}

export interface InputOptions {
  readonly view: CloudView;
  readonly load: LoadHistory;
  readonly snapshot: ProviderSnapshot;
  readonly running: StoredTopology["running"];
  /** Guests the planner must leave alone (manual automation, pending proposals). */
  readonly fixed: ReadonlySet<string>;
  readonly lastMovedAt: ReadonlyMap<string, number>;
  readonly intervalSeconds: number;
  readonly caps: ParallelismCaps;
  readonly random: Rng;
  /** The journal's rejuvenations by host VM id (plans repository): the rollout's input. */
  readonly rejuvenations?: ReadonlyMap<string, { readonly renewedAt?: number; readonly underway: boolean }>;
}

export function plannerInput(o: InputOptions): PlannerInput {
  const { view, snapshot } = o;
  const G = view.guestIds.length;
  const guestIndex = new Map(view.guestIds.map((id, i) => [id, i]));
  const hostIndex = new Map(view.hostVmIds.map((id, i) => [id, i]));
  const request = new Float64Array(G);
  const resident = new Float64Array(G);
  const dirty = new Float64Array(G);
  for (const g of snapshot.guests) {
    const i = guestIndex.get(g.id);
    if (i === undefined) continue;
    const guest = view.cloud.guests[i];
    request[i] = g.cpu * guest.vcpus * guest.mipsPerVcpu;
    resident[i] = g.residentMiB;
    dirty[i] = g.dirtyRateMiBps;
  }
  const measured = new Float64Array(view.hostVmIds.length);
  for (let g = 0; g < G; g++) {
    const h = view.cloud.guestHost[g];
    if (h >= 0) measured[h] += request[g];
  }
  const inMigration = new Uint8Array(G);
  const inbound = new Int32Array(G).fill(-1);
  const inFlight: number[] = [];
  for (const m of o.running) {
    const g = guestIndex.get(m.guest);
    if (g === undefined) continue;
    inMigration[g] = 1;
    inbound[g] = hostIndex.get(m.to) ?? -1;
    inFlight.push(g);
  }
  for (const id of o.fixed) {
    const g = guestIndex.get(id);
    if (g !== undefined) inMigration[g] = 1;
  }
  const lastMoved = new Float64Array(G).fill(Number.NEGATIVE_INFINITY);
  for (const [id, t] of o.lastMovedAt) {
    const g = guestIndex.get(id);
    if (g !== undefined) lastMoved[g] = t;
  }
  return {
    cloud: view.cloud,
    now: snapshot.now,
    intervalSeconds: o.intervalSeconds,
    load: o.load,
    requestMips: request,
    measuredMips: measured,
    inMigration,
    inboundTarget: inbound,
    inFlightGuests: inFlight,
    residentMiB: resident,
    dirtyRateMiBps: dirty,
    lastMovedAt: lastMoved,
    pendingAcquisitions: new Int32Array(view.serverIds.length),
    rules: NESTED_RULES,
    calibration: DEFAULT_CALIBRATION,
    mechanism: DEFAULT_MECHANISM_POLICY,
    caps: o.caps,
    random: o.random,
    ...rejuvenationInput(view, o.rejuvenations),
  };
}

/**
 * Each host VM's hypervisor start (its last completed rejuvenation, else its acquisition) and
 * whether a rejuvenation of it is under way, as the rollout reads them (rolling-rejuvenation.ts).
 */
function rejuvenationInput(
  view: CloudView,
  journal: InputOptions["rejuvenations"],
): Pick<PlannerInput, "hypervisorSince" | "rejuvenating"> {
  if (!journal) return {};
  const H = view.hostVmIds.length;
  const since = new Float64Array(H);
  const underway = new Uint8Array(H);
  view.hostVmIds.forEach((id, h) => {
    const e = journal.get(id);
    const acquired = view.cloud.hostVms[h].acquiredAt;
    since[h] = e?.renewedAt !== undefined ? Math.max(acquired, e.renewedAt) : acquired;
    underway[h] = e?.underway ? 1 : 0;
  });
  return { hypervisorSince: since, rejuvenating: underway };
}

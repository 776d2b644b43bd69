/**
 * A planning round's what-if copy of the placement. Policies move guests here freely; the
 * moves that survive become the action plan. Keeps per-bin sums (requests, memory, history)
 * up to date incrementally so each check is O(1) or O(history).
 *
 * A "bin" is a host VM that exists, or (nested clouds) a host VM the plan would acquire in
 * a free slot of a physical server.
 */

import { estimateMove } from "../migration/index.ts";
import {
  type Cloud,
  guestMips,
  type HostVmType,
  hostVmGuestMemory,
  hostVmMips,
  type PhysicalServer,
  powerAt,
  UNPLACED,
} from "../model/index.ts";
import type { PlannerInput } from "./input.ts";

export const HISTORY_LENGTH = 30;

export class Workspace {
  readonly cloud: Cloud;
  readonly guests: number;
  /** Existing host VMs; bins >= this index are potential acquisitions. */
  readonly existing: number;
  binCount: number;

  // per guest
  readonly hostOf: Int32Array;
  readonly request: Float64Array;
  readonly mips: Float64Array;
  readonly vcpus: Int32Array;
  readonly memory: Float64Array;
  readonly fixed: Uint8Array;

  // per bin (capacity grows when potential bins are added)
  cap: Float64Array;
  pe: Float64Array;
  memCap: Float64Array;
  server: Int32Array;
  usable: Uint8Array;
  measured: Float64Array;
  requestSum: Float64Array;
  cappedSum: Float64Array;
  guaranteedSum: Float64Array;
  memUsed: Float64Array;
  /** newest-first host utilization history sums, HISTORY_LENGTH per bin. */
  hist: Float64Array;
  /** How many newest samples the bin histories hold (the rest stay zero). */
  readonly histSamples: number;
  private readonly histScratch = new Float64Array(HISTORY_LENGTH);
  /** Set while the constructor takes bin histories from the caller instead of the guests. */
  private skipHistory = false;
  readonly lists: number[][];
  /** Per physical server: MIPS used at the last measurement, over all its host VMs. */
  readonly serverMeasured: Float64Array;
  /**
   * Per physical server: MIPS its bins would be granted now, with the round's moves so far
   * (CloudSim's PABFD weighs "power after" on this live figure against "power before" on
   * the measured one, which spreads a round's placements over hosts).
   */
  readonly serverLive: Float64Array;
  /** Per physical server: watts at its measured load (constant during a round). */
  private readonly powerBefore: Float64Array;
  /** Per bin: guests migrating into it (their memory is reserved there already). */
  inbound: Int32Array;
  /** Per physical server: host-VM slots taken (live, pending or potential). */
  readonly slotsUsed: Int32Array;
  private readonly migCache: Float64Array;
  private readonly migCacheMbps: Float64Array;
  /** Anti-affinity group members per guest (only guests that have a group). */
  readonly antiAffinity: ReadonlyMap<number, readonly number[]>;
  /** Type of each potential bin. */
  readonly potentialType: HostVmType[] = [];

  constructor(
    readonly input: PlannerInput,
    /** Samples of utilization history to keep per bin: true = all (30), false/0 = none. */
    history: boolean | number,
  ) {
    const cloud = input.cloud;
    this.cloud = cloud;
    this.histSamples =
      history === true ? HISTORY_LENGTH : history === false ? 0 : Math.min(HISTORY_LENGTH, history);
    this.guests = cloud.guests.length;
    this.existing = cloud.hostVms.length;
    this.binCount = this.existing;
    const G = this.guests;
    this.hostOf = cloud.guestHost.slice(0, G);
    this.request = input.requestMips;
    const statics = guestStatics(cloud);
    this.mips = statics.mips;
    this.vcpus = statics.vcpus;
    this.memory = statics.memory;
    this.antiAffinity = statics.antiAffinity;
    this.fixed = input.inMigration;
    this.depth = Math.min(input.load.maxCount, this.histSamples);
    this.migCache = new Float64Array(G);
    this.migCacheMbps = new Float64Array(G);
    // Room for potential bins (free slots) without regrowing in the common case.
    const B = this.existing + 16;
    this.cap = new Float64Array(B);
    this.pe = new Float64Array(B);
    this.memCap = new Float64Array(B);
    this.server = new Int32Array(B).fill(-1);
    this.usable = new Uint8Array(B);
    this.measured = new Float64Array(B);
    this.requestSum = new Float64Array(B);
    this.cappedSum = new Float64Array(B);
    this.guaranteedSum = new Float64Array(B);
    this.memUsed = new Float64Array(B);
    this.hist = new Float64Array(this.histSamples > 0 ? B * HISTORY_LENGTH : 0);
    this.lists = [];
    for (let h = 0; h < this.existing; h++) {
      const host = cloud.hostVms[h];
      this.cap[h] = hostVmMips(host.type);
      this.pe[h] = host.type.mipsPerVcpu;
      this.memCap[h] = hostVmGuestMemory(host.type);
      this.server[h] = host.server ?? -1;
      this.usable[h] = host.state === "running" ? 1 : 0;
      this.measured[h] = input.measuredMips[h];
      this.lists.push(cloud.hostGuests[h].slice());
    }
    this.serverLive = new Float64Array(cloud.servers.length);
    // Bin histories: from the caller's running sums when it has them, else from each guest.
    const preset = input.hostHistoryMips;
    this.skipHistory = preset !== undefined && this.hist.length > 0;
    for (let h = 0; h < this.existing; h++) for (const g of this.lists[h]) this.account(g, h, 1);
    this.skipHistory = false;
    if (preset && this.hist.length > 0) {
      const k = this.histSamples;
      for (let h = 0; h < this.existing; h++) {
        if (this.lists[h].length === 0) continue;
        const base = h * HISTORY_LENGTH;
        const inv = 1 / this.cap[h];
        for (let i = 0; i < k; i++) this.hist[base + i] = preset[base + i] * inv;
      }
    }
    this.inbound = new Int32Array(B);
    const inFlight = input.inFlightGuests ?? Array.from({ length: G }, (_, g) => g);
    for (const g of inFlight) {
      const t = input.inboundTarget[g];
      if (t >= 0) {
        this.inbound[t]++;
        this.memUsed[t] += this.memory[g];
        this.guaranteedSum[t] += this.mips[g];
      }
    }
    this.serverMeasured = new Float64Array(cloud.servers.length);
    this.slotsUsed = Int32Array.from(input.pendingAcquisitions);
    for (const host of cloud.hostVms)
      if (host.server !== undefined && host.state !== "released") this.slotsUsed[host.server]++;
    for (let h = 0; h < this.existing; h++) {
      if (this.server[h] >= 0 && cloud.hostVms[h].state !== "released")
        this.serverMeasured[this.server[h]] += this.measured[h];
    }
    this.powerBefore = Float64Array.from(cloud.servers, (srv, i) =>
      powerAt(srv.power, this.serverMeasured[i] / (srv.cores * srv.mipsPerCore)),
    );
  }

  /** Adds a potential host VM of `type` on `server`; returns its bin index. */
  addPotentialBin(type: HostVmType, server: number): number {
    const b = this.binCount++;
    if (b >= this.cap.length) this.growBins(b + 1);
    this.cap[b] = hostVmMips(type);
    this.pe[b] = type.mipsPerVcpu;
    this.memCap[b] = hostVmGuestMemory(type);
    this.server[b] = server;
    this.usable[b] = 1;
    this.measured[b] = 0;
    this.lists.push([]);
    this.potentialType.push(type);
    this.busy = undefined; // a new bin: rebuild the search order when next asked
    this.slotsUsed[server]++;
    return b;
  }

  isPotential(b: number): boolean {
    return b >= this.existing;
  }

  /** Per-vCPU request capped at the bin's per-vCPU MIPS, times vCPUs (what CloudSim's scheduler grants at most). */
  capped(g: number, b: number): number {
    const perVcpu = this.request[g] / this.vcpus[g];
    return (perVcpu > this.pe[b] ? this.pe[b] : perVcpu) * this.vcpus[g];
  }

  /** Would guest g in bin b share a physical server (or host VM) with a member of its anti-affinity group? */
  breaksAntiAffinity(g: number, b: number): boolean {
    const members = this.antiAffinity.get(g);
    if (!members) return false;
    const s = this.server[b];
    for (const m of members) {
      if (m === g) continue;
      const o = this.hostOf[m];
      if (o === UNPLACED) continue;
      if (o === b || (s >= 0 && this.server[o] === s)) return true;
    }
    return false;
  }

  /**
   * Shape of bin b's physical server (power table, capacities), or -1. Bins on idle servers
   * of one shape are interchangeable for a placement and the first wins ties, so searches
   * need to try only one of them.
   */
  shapeOf(b: number): number {
    if (this.shapes.length <= b) this.extendShapes();
    return this.shapes[b];
  }

  private shapes: Int32Array = new Int32Array(0);

  private extendShapes(): void {
    const next = new Int32Array(Math.max(this.cap.length, this.binCount));
    next.set(this.shapes);
    for (let b = this.shapes.length; b < next.length; b++) {
      const s = this.server[b];
      const type = b < this.existing ? this.cloud.hostVms[b].type : this.potentialType[b - this.existing];
      next[b] = s < 0 || !type ? -1 : shapeId(this.cloud.servers[s], type);
    }
    this.shapes = next;
  }

  /** Is bin b's physical server idle now and at the last measurement? */
  serverIdle(b: number): boolean {
    const s = this.server[b];
    return s >= 0 && this.serverLive[s] === 0 && this.serverMeasured[s] === 0;
  }

  /**
   * Bins a placement search must look at, in index order: every bin that is not on an idle
   * server, plus the first idle-server bin of each shape (the others would tie and lose).
   * Cheap to keep: during a round bins only turn from idle to busy.
   */
  searchOrder(): number[] {
    if (!this.busy) this.initSearchOrder();
    const out = this.busy!.slice();
    for (const q of this.idleQueues) {
      while (q.next < q.bins.length && !this.isIdleBin(q.bins[q.next])) q.next++;
      if (q.next < q.bins.length) out.push(q.bins[q.next]);
    }
    if (this.idleQueues.length > 0) out.sort((a, b) => a - b);
    return out;
  }

  private busy: number[] | undefined;
  private idleQueues: { bins: number[]; next: number }[] = [];
  private busyMark = new Uint8Array(0);
  private serverBins: number[][] = [];

  private isIdleBin(b: number): boolean {
    return (
      this.usable[b] === 1 && this.lists[b].length === 0 && this.serverIdle(b) && !this.antiAffinityDiffers
    );
  }

  /** With anti-affinity groups, idle servers are not interchangeable: look at every bin. */
  private get antiAffinityDiffers(): boolean {
    return this.antiAffinity.size > 0;
  }

  private initSearchOrder(): void {
    this.busy = [];
    this.busyMark = new Uint8Array(this.cap.length);
    this.serverBins = [];
    for (let b = 0; b < this.binCount; b++) {
      const s = this.server[b];
      if (s >= 0) (this.serverBins[s] ??= []).push(b);
    }
    const byShape = new Map<number, number[]>();
    for (let b = 0; b < this.binCount; b++) {
      const shape = this.shapeOf(b);
      if (shape >= 0 && this.isIdleBin(b)) {
        const list = byShape.get(shape) ?? [];
        list.push(b);
        byShape.set(shape, list);
      } else {
        this.busy.push(b);
        this.busyMark[b] = 1;
      }
    }
    this.idleQueues = [...byShape.values()].map((bins) => ({ bins, next: 0 }));
  }

  /**
   * Keeps the search order right when bin b gains a guest: its whole server is busy now, so
   * the server's other bins are no longer interchangeable idle ones either.
   */
  private noteBusy(b: number): void {
    if (!this.busy) return;
    const s = this.server[b];
    if (s < 0) this.insertBusy(b);
    else for (const x of this.serverBins[s] ?? [b]) this.insertBusy(x);
  }

  private insertBusy(b: number): void {
    if (!this.busy || b >= this.busyMark.length || this.busyMark[b]) return;
    this.busyMark[b] = 1;
    // Binary insert keeps index order.
    let lo = 0;
    let hi = this.busy.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.busy[mid] < b) lo = mid + 1;
      else hi = mid;
    }
    this.busy.splice(lo, 0, b);
  }

  /** A fresh mark for shape-deduplicating searches (see shapeOf). */
  nextSearch(): Int32Array {
    this.searchStamp++;
    if (this.shapeSeen.length < shapeKeys.size + 1) this.shapeSeen = new Int32Array(shapeKeys.size * 2 + 8);
    return this.shapeSeen;
  }
  searchStamp = 0;
  private shapeSeen = new Int32Array(8);

  /** MIPS a time-shared scheduler would grant the bin's guests now. */
  allocated(b: number): number {
    return this.cappedSum[b] <= this.cap[b] ? this.cappedSum[b] : this.cap[b];
  }

  /** Free MIPS as a time-shared scheduler sees it: none once oversubscribed. */
  available(b: number): number {
    const used = this.cappedSum[b];
    return used <= this.cap[b] ? this.cap[b] - used : 0;
  }

  /** Requested utilization of the bin's current guests (may exceed 1). */
  requestedUtilization(b: number): number {
    return this.requestSum[b] / this.cap[b];
  }

  /** Utilization at the last measurement ("stale" during a round, as in CloudSim). */
  measuredUtilization(b: number): number {
    return this.measured[b] / this.cap[b];
  }

  moveGuest(g: number, to: number): void {
    const from = this.hostOf[g];
    if (from === to) return;
    if (from !== UNPLACED) {
      const list = this.lists[from];
      list.splice(list.indexOf(g), 1);
      this.account(g, from, -1);
    }
    this.hostOf[g] = to;
    if (to !== UNPLACED) {
      this.lists[to].push(g);
      this.account(g, to, 1);
      this.noteBusy(to);
    }
  }

  /** Adds (sign 1) or removes (sign -1) a guest's contribution to a bin's sums. */
  private account(g: number, b: number, sign: 1 | -1): void {
    const liveBefore = this.allocated(b);
    this.requestSum[b] += sign * this.request[g];
    this.cappedSum[b] += sign * this.capped(g, b);
    this.guaranteedSum[b] += sign * this.mips[g];
    this.memUsed[b] += sign * this.memory[g];
    if (sign < 0 && this.lists[b].length === 0) {
      // Avoid drift: an empty bin has exactly zero sums.
      this.requestSum[b] = 0;
      this.cappedSum[b] = 0;
    }
    if (this.server[b] >= 0) this.serverLive[this.server[b]] += this.allocated(b) - liveBefore;
    if (this.hist.length > 0 && !this.skipHistory) {
      const scale = (sign * this.mips[g]) / this.cap[b];
      const base = b * HISTORY_LENGTH;
      const tmp = this.histScratch;
      const n = this.input.load.newestFirst(g, tmp, this.histSamples);
      const hist = this.hist;
      for (let i = 0; i < n; i++) hist[base + i] += tmp[i] * scale;
      if (sign < 0 && this.lists[b].length === 0) hist.fill(0, base, base + HISTORY_LENGTH);
    }
  }

  /**
   * The newest `n` samples of the bin's utilization history (with guest `extra` added),
   * newest first, without trimming; returns how many samples there are (at most n).
   */
  historyWindow(b: number, out: Float64Array, extra: number, n: number): number {
    const m = Math.min(n, this.depth);
    const base = b * HISTORY_LENGTH;
    const hist = this.hist;
    for (let i = 0; i < m; i++) out[i] = hist[base + i];
    if (extra >= 0) {
      const scale = this.mips[extra] / this.cap[b];
      const tmp = this.histScratch;
      const k = this.input.load.newestFirst(extra, tmp, m);
      for (let i = 0; i < k; i++) out[i] += tmp[i] * scale;
    }
    return m;
  }

  /** Samples of history the longest-lived guest has (the depth any bin's history can have). */
  private readonly depth: number;

  /**
   * The bin's utilization history, newest first, with guest `extra` added if given, trimmed
   * of trailing zeros like CloudSim's trimZeroTail (an all-zero history has length 1).
   * Returns the length written into `out`.
   */
  history(b: number, out: Float64Array, extra = -1): number {
    const base = b * HISTORY_LENGTH;
    for (let i = 0; i < HISTORY_LENGTH; i++) out[i] = this.hist[base + i];
    if (extra >= 0) {
      const scale = this.mips[extra] / this.cap[b];
      const tmp = this.histScratch;
      const n = this.input.load.newestFirst(extra, tmp, this.histSamples);
      for (let i = 0; i < n; i++) out[i] += tmp[i] * scale;
    }
    let i = HISTORY_LENGTH - 1;
    while (i >= 0 && out[i] === 0) i--;
    return Math.max(1, i + 1);
  }

  /**
   * PABFD's power-aware criterion: watts on the bin's physical server with `addMips` more
   * than it would use now, minus watts at its last measured load (bare metal: the bin is
   * the server). As in CloudSim, "after" counts this round's moves and "before" does not.
   */
  powerIncrease(b: number, addMips: number): number {
    const s = this.server[b];
    if (s < 0) return addMips; // placement unknown: rank by load alone
    const server = this.cloud.servers[s];
    const total = server.cores * server.mipsPerCore;
    return powerAt(server.power, (this.serverLive[s] + addMips) / total) - this.powerBefore[s];
  }

  /**
   * Scheduling intervals the slowest of the bin's guests (or `extra`) needs to migrate away
   * (LR predicts that far ahead). Under CloudSim's model every migration fits in one
   * interval when the largest guest does: then the answer is 1 without asking each guest.
   */
  migrationIntervals(b: number, extra = -1): number {
    if (this.lists[b].length === 0 && extra < 0) return Math.ceil(Number.NEGATIVE_INFINITY);
    if (this.allFitOneInterval === undefined) this.allFitOneInterval = this.computeAllFitOneInterval();
    if (this.allFitOneInterval) return 1;
    return Math.ceil(this.maxMigrationSeconds(b, extra) / this.input.intervalSeconds);
  }

  private allFitOneInterval: boolean | undefined;

  private computeAllFitOneInterval(): boolean {
    if (this.input.mechanism.model !== "cloudsim") return false;
    let maxMem = 0;
    for (let g = 0; g < this.guests; g++) maxMem = Math.max(maxMem, this.memory[g]);
    let minMbps = Number.POSITIVE_INFINITY;
    for (const s of this.cloud.servers) minMbps = Math.min(minMbps, s.networkMbps);
    // CloudSim: RAM / (bw / 2) with bw in kbit/s and RAM in MB.
    const worst = maxMem / ((minMbps * 1000) / 16000);
    return worst > 0 && worst <= this.input.intervalSeconds;
  }

  /** Longest time any of the bin's guests (or `extra`) would take to migrate away, s. */
  maxMigrationSeconds(b: number, extra = -1): number {
    let worst = Number.NEGATIVE_INFINITY;
    for (const g of this.lists[b]) worst = Math.max(worst, this.migrationSeconds(g, b));
    if (extra >= 0) worst = Math.max(worst, this.migrationSeconds(extra, b));
    return worst;
  }

  /** Time to move guest g out of bin b across the network (the worst case a detector plans for). */
  migrationSeconds(g: number, b: number): number {
    const s = this.server[b];
    const mbps = s >= 0 ? this.cloud.servers[s].networkMbps : 1000;
    // Detectors ask about the same guests again and again in a round: remember per link speed.
    if (this.migCacheMbps[g] === mbps) return this.migCache[g];
    const subject = {
      memoryMiB: this.memory[g],
      residentMiB: this.input.residentMiB[g],
      dirtyRateMiBps: this.input.dirtyRateMiBps[g],
    };
    const e = estimateMove("cross-server", subject, mbps, this.input.calibration, this.input.mechanism);
    this.migCacheMbps[g] = mbps;
    this.migCache[g] = e ? e.totalSeconds : 0;
    return this.migCache[g];
  }

  private growBins(n: number): void {
    const size = Math.max(n, this.cap.length * 2);
    const g64 = (a: Float64Array) => {
      const x = new Float64Array(size);
      x.set(a);
      return x;
    };
    this.cap = g64(this.cap);
    this.pe = g64(this.pe);
    this.memCap = g64(this.memCap);
    this.measured = g64(this.measured);
    this.requestSum = g64(this.requestSum);
    this.cappedSum = g64(this.cappedSum);
    this.guaranteedSum = g64(this.guaranteedSum);
    this.memUsed = g64(this.memUsed);
    const inbound = new Int32Array(size);
    inbound.set(this.inbound);
    this.inbound = inbound;
    const server = new Int32Array(size).fill(-1);
    server.set(this.server);
    this.server = server;
    const usable = new Uint8Array(size);
    usable.set(this.usable);
    this.usable = usable;
    if (this.hist.length > 0) {
      const hist = new Float64Array(size * HISTORY_LENGTH);
      hist.set(this.hist);
      this.hist = hist;
    }
  }
}

/**
 * Adds one potential bin of `type` on every physical server with a free host-VM slot, so
 * policies can weigh "acquire a host VM there" like any other bin. Returns the bins added.
 */
export function addFreeSlotBins(ws: Workspace, type: HostVmType): number[] {
  const added: number[] = [];
  for (let s = 0; s < ws.cloud.servers.length; s++) {
    if (freeSlots(ws, s) > 0) added.push(ws.addPotentialBin(type, s));
  }
  return added;
}

/** Host-VM slots of server s not taken by live host VMs, pending acquisitions or potential bins. */
export function freeSlots(ws: Workspace, s: number): number {
  return ws.cloud.servers[s].hostVmSlots - ws.slotsUsed[s];
}

/**
 * Shape of a bin: server power table and size, host VM type. Numbered once per
 * (server, type) pair for the life of the process, so rounds only look them up.
 */
const shapeCache = new WeakMap<PhysicalServer, Map<HostVmType, number>>();
const shapeKeys = new Map<string, number>();
const powerIds = new WeakMap<object, number>();
let nextPowerId = 0;

function shapeId(server: PhysicalServer, type: HostVmType): number {
  let perType = shapeCache.get(server);
  if (!perType) shapeCache.set(server, (perType = new Map()));
  let id = perType.get(type);
  if (id !== undefined) return id;
  let pid = powerIds.get(server.power);
  if (pid === undefined) powerIds.set(server.power, (pid = nextPowerId++));
  const key = `${pid}/${server.cores}x${server.mipsPerCore}/${type.vcpus}x${type.mipsPerVcpu}/${hostVmGuestMemory(type)}`;
  id = shapeKeys.get(key);
  if (id === undefined) shapeKeys.set(key, (id = shapeKeys.size));
  perType.set(type, id);
  return id;
}

/** What never changes about a cloud's guests, computed once per cloud (and per new guest). */
interface GuestStatics {
  count: number;
  mips: Float64Array;
  vcpus: Int32Array;
  memory: Float64Array;
  antiAffinity: Map<number, number[]>;
}

const staticsCache = new WeakMap<Cloud, GuestStatics>();

function guestStatics(cloud: Cloud): GuestStatics {
  const G = cloud.guests.length;
  const cached = staticsCache.get(cloud);
  if (cached && cached.count === G) return cached;
  const out: GuestStatics = {
    count: G,
    mips: new Float64Array(G),
    vcpus: new Int32Array(G),
    memory: new Float64Array(G),
    antiAffinity: new Map(),
  };
  const groups = new Map<string, number[]>();
  for (let g = 0; g < G; g++) {
    const guest = cloud.guests[g];
    out.mips[g] = guestMips(guest);
    out.vcpus[g] = guest.vcpus;
    out.memory[g] = guest.memoryMiB;
    if (guest.antiAffinityGroup !== undefined) {
      const list = groups.get(guest.antiAffinityGroup) ?? [];
      list.push(g);
      groups.set(guest.antiAffinityGroup, list);
    }
  }
  for (const members of groups.values()) for (const g of members) out.antiAffinity.set(g, members);
  staticsCache.set(cloud, out);
  return out;
}

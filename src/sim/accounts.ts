/**
 * What a simulation measures, accumulated as it runs: SLA time of host VMs (SLATAH), CPU lost
 * to migrations (PDM), energy of physical servers, billed host-VM time and cost, and a time
 * series for reports. Follows CloudSim's definitions (state entries at update instants; a
 * segment counts with the state at its start) so the reference figures are comparable.
 */
import { billedSeconds, type Cloud, type HostVmType, isBilled, powerAt } from "../model/index.ts";
import type { SimulationRules } from "./rules/index.ts";

/** What the accounts take from the rule set: the PDM, SLA and energy rules. */
export type AccountingRules = Pick<SimulationRules, "migrationLoss" | "slaViolationSeconds" | "drawsPower">;

export interface SeriesPoint {
  readonly t: number;
  readonly billedHostVms: number;
  readonly activeHostVms: number;
  readonly costPerHour: number;
  readonly powerW: number;
  readonly violatingHostVms: number;
  readonly instant: number;
  readonly precopy: number;
  readonly postcopy: number;
}

/** Rentals of one host-VM type over a run (nested clouds). */
export interface TypeRentals {
  readonly type: HostVmType;
  /** Host VMs of this type rented at some time (at the start or acquired). */
  hostVms: number;
  /** Time they ran, and the time billed for it (rounded up per rental, see billedSeconds). */
  rentedSeconds: number;
  billedSeconds: number;
  cost: number;
}

export class Accounts {
  // per host VM (grows with acquisitions)
  private used: number[] = [];
  private entryTime: number[] = [];
  private entryUsed: number[] = [];
  private entryReq: number[] = [];
  private entryActive: boolean[] = [];
  private billedSince: number[] = [];
  private known = 0;
  slaViolationSeconds = 0;
  activeSeconds = 0;
  billedSeconds = 0;
  cost = 0;
  /** Per host-VM type name, in the order first rented. */
  readonly rentals = new Map<string, TypeRentals>();

  // per physical server
  private readonly serverHosts: number[][];
  private readonly energyTime: Float64Array;
  private readonly energyUtil: Float64Array;
  private readonly energyOn: Uint8Array;
  joules = 0;

  // per guest
  private readonly gTime: Float64Array;
  private readonly gGranted: Float64Array;
  private readonly gReq: Float64Array;
  private readonly gMig: Uint8Array;
  requestedMipsSeconds = 0;
  migrationLossMipsSeconds = 0;

  readonly series: SeriesPoint[] = [];

  constructor(
    private readonly cloud: Cloud,
    guests: number,
    private readonly rules: AccountingRules,
  ) {
    const S = cloud.servers.length;
    this.serverHosts = Array.from({ length: S }, () => []);
    this.energyTime = new Float64Array(S);
    this.energyUtil = new Float64Array(S);
    this.energyOn = new Uint8Array(S);
    this.gTime = new Float64Array(guests).fill(Number.NaN);
    this.gGranted = new Float64Array(guests);
    this.gReq = new Float64Array(guests);
    this.gMig = new Uint8Array(guests);
    for (let h = 0; h < cloud.hostVms.length; h++) this.hostVmStateChanged(h, 0);
    for (let s = 0; s < S; s++) this.energyOn[s] = this.serverOn(s) ? 1 : 0;
  }

  private track(h: number): void {
    while (this.known <= h) {
      const i = this.known++;
      this.used.push(0);
      this.entryTime.push(Number.NaN);
      this.entryUsed.push(0);
      this.entryReq.push(0);
      this.entryActive.push(false);
      this.billedSince.push(Number.NaN);
      const s = this.cloud.hostVms[i].server;
      if (s !== undefined) this.serverHosts[s].push(i);
    }
  }

  /** A host VM appeared or changed state: billing and its server's power state follow. */
  hostVmStateChanged(h: number, t: number): void {
    this.track(h);
    const host = this.cloud.hostVms[h];
    if (host.server !== undefined) this.closeServer(host.server, t);
    if (host.type.bareMetal) return;
    const billed = isBilled(host);
    if (billed && Number.isNaN(this.billedSince[h])) {
      this.billedSince[h] = t;
      this.rentalsOf(host.type).hostVms++;
    }
    if (!billed && !Number.isNaN(this.billedSince[h])) this.closeBilling(h, t);
    if (host.server !== undefined) this.energyOn[host.server] = this.serverOn(host.server) ? 1 : 0;
  }

  /** Ends a host VM's rental: its time rounds up to the type's billing increments. */
  private closeBilling(h: number, t: number, released = true): void {
    const type = this.cloud.hostVms[h].type;
    const rented = t - this.billedSince[h];
    // Still running at the end of the run: count the time actually used within it.
    const dt = released ? billedSeconds(type, rented) : rented;
    this.billedSeconds += dt;
    this.cost += (dt / 3600) * type.pricePerHour;
    this.billedSince[h] = Number.NaN;
    const r = this.rentalsOf(type);
    r.rentedSeconds += rented;
    r.billedSeconds += dt;
    r.cost += (dt / 3600) * type.pricePerHour;
  }

  private rentalsOf(type: HostVmType): TypeRentals {
    let r = this.rentals.get(type.name);
    if (!r) {
      r = { type, hostVms: 0, rentedSeconds: 0, billedSeconds: 0, cost: 0 };
      this.rentals.set(type.name, r);
    }
    return r;
  }

  private serverOn(s: number): boolean {
    for (const h of this.serverHosts[s])
      if (isBilled(this.cloud.hostVms[h]) && !this.cloud.hostVms[h].type.bareMetal) return true;
    return false;
  }

  /** A host VM's CPU shares were recomputed at t: the segment since its last update ends. */
  hostUpdated(h: number, t: number, usedMips: number, requestedMips: number, capacityMips: number): void {
    this.track(h);
    this.used[h] = usedMips;
    const last = this.entryTime[h];
    if (!Number.isNaN(last) && t > last) {
      const dt = t - last;
      // Migration loss as downtime: the PDM denominator is the requested MIPS-seconds, summed
      // per host VM (linear demand: the segment's mean is the mean of its ends). Under CPU
      // shares it is summed per guest instead (guestUpdated).
      if (this.rules.migrationLoss === "downtime")
        this.requestedMipsSeconds += ((this.entryReq[h] + requestedMips) / 2) * dt;
      if (this.entryActive[h]) {
        this.activeSeconds += dt;
        this.slaViolationSeconds += this.rules.slaViolationSeconds(
          this.entryUsed[h],
          this.entryReq[h],
          requestedMips,
          capacityMips,
          dt,
        );
      }
    }
    this.entryTime[h] = t;
    this.entryUsed[h] = usedMips;
    this.entryReq[h] = requestedMips;
    this.entryActive[h] = usedMips > 0;
  }

  /** Was the host VM's last update an idle one (nothing used, nothing asked)? */
  idleSinceLastUpdate(h: number): boolean {
    return (
      h < this.known && !Number.isNaN(this.entryTime[h]) && this.entryUsed[h] === 0 && this.entryReq[h] === 0
    );
  }

  /** A guest's grant was recomputed at t (by the host VM it runs on; migration loss as CPU shares). */
  guestUpdated(g: number, t: number, granted: number, requested: number, inMigration: boolean): void {
    const last = this.gTime[g];
    if (!Number.isNaN(last) && t > last) {
      const dt = t - last;
      this.requestedMipsSeconds += this.gReq[g] * dt;
      if (this.gMig[g] && this.gGranted[g] < this.gReq[g])
        this.migrationLossMipsSeconds += (this.gReq[g] - this.gGranted[g]) * dt;
    }
    this.gTime[g] = t;
    this.gGranted[g] = granted;
    this.gReq[g] = requested;
    this.gMig[g] = inMigration ? 1 : 0;
  }

  /** A guest left the cloud (rules that remove guests at zero demand): no more entries for it. */
  guestRemoved(_g: number, _t: number): void {}

  /** A guest paused for a switchover (migration loss as downtime): its demand is lost meanwhile. */
  downtime(_g: number, requestMips: number, seconds: number): void {
    this.migrationLossMipsSeconds += requestMips * seconds;
  }

  /** Accounts server energy up to t for all servers, or those of the given host VMs. */
  closeEnergy(t: number, hosts: readonly number[] | undefined): void {
    if (hosts === undefined) {
      for (let s = 0; s < this.serverHosts.length; s++) this.closeServer(s, t);
      return;
    }
    for (const h of hosts) {
      const s = this.cloud.hostVms[h].server;
      if (s !== undefined) this.closeServer(s, t);
    }
  }

  private serverUtilization(s: number): number {
    const server = this.cloud.servers[s];
    let used = 0;
    for (const h of this.serverHosts[s]) used += this.used[h];
    const u = used / (server.cores * server.mipsPerCore);
    return u > 1 && u < 1.01 ? 1 : u;
  }

  private closeServer(s: number, t: number): void {
    const now = this.serverUtilization(s);
    const dt = t - this.energyTime[s];
    if (dt > 0) {
      const from = this.energyUtil[s];
      if (this.rules.drawsPower(from, this.energyOn[s] === 1)) {
        const table = this.cloud.servers[s].power;
        const p0 = powerAt(table, from);
        const p1 = powerAt(table, now);
        this.joules += (p0 + (p1 - p0) / 2) * dt;
      }
    }
    this.energyTime[s] = t;
    this.energyUtil[s] = now;
  }

  usedMipsSnapshot(): Float64Array {
    this.track(this.cloud.hostVms.length - 1);
    return Float64Array.from(this.used);
  }

  /** Records one point of the time series (at a planning round). */
  sample(t: number, started: { instant: number; precopy: number; postcopy: number }): void {
    let billed = 0;
    let active = 0;
    let costPerHour = 0;
    let violating = 0;
    for (let h = 0; h < this.cloud.hostVms.length; h++) {
      const host = this.cloud.hostVms[h];
      const hasGuests = this.cloud.hostGuests[h].length > 0;
      if (host.type.bareMetal ? hasGuests : isBilled(host)) {
        billed++;
        costPerHour += host.type.pricePerHour;
      }
      if (hasGuests) active++;
      if (h < this.known && this.entryActive[h] && this.entryUsed[h] < this.entryReq[h]) violating++;
    }
    let powerW = 0;
    for (let s = 0; s < this.serverHosts.length; s++) {
      const u = this.serverUtilization(s);
      if (this.rules.drawsPower(u, this.energyOn[s] === 1)) powerW += powerAt(this.cloud.servers[s].power, u);
    }
    this.series.push({
      t,
      billedHostVms: billed,
      activeHostVms: active,
      costPerHour,
      powerW,
      violatingHostVms: violating,
      ...started,
    });
  }

  /** Closes billing at the end of the run (energy and SLA segments end at the last update). */
  finish(t: number): void {
    for (let h = 0; h < this.known; h++)
      if (!Number.isNaN(this.billedSince[h])) this.closeBilling(h, t, false);
  }
}

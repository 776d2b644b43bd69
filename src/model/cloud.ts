/**
 * The mutable state of one virtual cloud: entities plus the placement of guests in host VMs.
 * Mutations keep the hard invariants (see invariants.ts); anything else is the planner's job.
 */
import { ModelError } from "./errors.ts";
import {
  type GuestVm,
  HOST_VM_TRANSITIONS,
  type HostVm,
  type HostVmState,
  type HostVmType,
  hostVmGuestMemory,
  type PhysicalServer,
} from "./topology.ts";

export const UNPLACED = -1;

export class Cloud {
  readonly servers: PhysicalServer[] = [];
  readonly hostVms: HostVm[] = [];
  readonly guests: GuestVm[] = [];
  /** guest index -> host VM index, or UNPLACED. */
  guestHost: Int32Array = new Int32Array(0);
  /** host VM index -> guest indices (unordered; order of arrival). */
  readonly hostGuests: number[][] = [];
  /** host VM index -> reserved guest memory, MiB. */
  hostMemoryUsed: Float64Array = new Float64Array(0);

  private readonly serverIndex = new Map<string, number>();
  private readonly hostVmIndex = new Map<string, number>();
  private readonly guestIndex = new Map<string, number>();

  addServer(s: PhysicalServer): number {
    if (this.serverIndex.has(s.id))
      throw new ModelError("duplicate-id", `physical server ${s.id} exists already`);
    this.serverIndex.set(s.id, this.servers.length);
    this.servers.push(s);
    return this.servers.length - 1;
  }

  addHostVm(
    id: string,
    type: HostVmType,
    server: number | undefined,
    state: HostVmState,
    now: number,
    /** When it was requested (billing runs from here); defaults to now. */
    acquiredAt = now,
  ): number {
    if (this.hostVmIndex.has(id)) throw new ModelError("duplicate-id", `host VM ${id} exists already`);
    if (server !== undefined && (server < 0 || server >= this.servers.length)) {
      throw new ModelError("unknown-entity", `host VM ${id}: no physical server #${server}`);
    }
    const i = this.hostVms.length;
    this.hostVmIndex.set(id, i);
    this.hostVms.push({ id, type, server, state, stateSince: now, acquiredAt });
    this.hostGuests.push([]);
    this.hostMemoryUsed = grow(this.hostMemoryUsed, this.hostVms.length);
    return i;
  }

  addGuest(g: GuestVm): number {
    if (this.guestIndex.has(g.id)) throw new ModelError("duplicate-id", `guest VM ${g.id} exists already`);
    if (!(g.vcpus >= 1 && g.mipsPerVcpu > 0 && g.memoryMiB >= 0)) {
      throw new ModelError("invalid-value", `guest VM ${g.id}: vcpus, MIPS and memory must be positive`);
    }
    const i = this.guests.length;
    this.guestIndex.set(g.id, i);
    this.guests.push(g);
    if (this.guestHost.length < this.guests.length) {
      const next = new Int32Array(Math.max(16, this.guestHost.length * 2));
      next.fill(UNPLACED);
      next.set(this.guestHost);
      this.guestHost = next;
    }
    this.guestHost[i] = UNPLACED;
    return i;
  }

  server(id: string): number {
    return lookup(this.serverIndex, id, "physical server");
  }
  hostVm(id: string): number {
    return lookup(this.hostVmIndex, id, "host VM");
  }
  guest(id: string): number {
    return lookup(this.guestIndex, id, "guest VM");
  }
  hasGuest(id: string): boolean {
    return this.guestIndex.has(id);
  }

  /** Memory still free for guests in a host VM. */
  freeMemory(h: number): number {
    return hostVmGuestMemory(this.hostVms[h].type) - this.hostMemoryUsed[h];
  }

  /** Why the guest cannot be placed into host VM h right now, or undefined if it can. */
  placementProblem(g: number, h: number): string | undefined {
    const guest = this.guests[g];
    const host = this.hostVms[h];
    if (host.state !== "running") return `host VM ${host.id} is ${host.state}, not running`;
    if (guest.vcpus > host.type.vcpus) {
      return `guest VM ${guest.id} has ${guest.vcpus} vCPUs, host VM ${host.id} only ${host.type.vcpus}`;
    }
    if (guest.mipsPerVcpu > host.type.mipsPerVcpu) {
      return `guest VM ${guest.id} needs ${guest.mipsPerVcpu} MIPS per vCPU, host VM ${host.id} offers ${host.type.mipsPerVcpu}`;
    }
    const needed = this.guestHost[g] === h ? 0 : guest.memoryMiB;
    if (needed > this.freeMemory(h) + 1e-9) {
      return `guest VM ${guest.id} needs ${guest.memoryMiB} MiB, host VM ${host.id} has ${Math.floor(this.freeMemory(h))} MiB free`;
    }
    return undefined;
  }

  /** Places (or moves) a guest; throws ModelError if the host VM cannot take it. */
  place(g: number, h: number): void {
    const problem = this.placementProblem(g, h);
    if (problem) throw new ModelError("capacity", problem);
    this.assign(g, h);
  }

  /**
   * Moves a guest without capacity checks. The simulator uses it to replay what the
   * executor did (a migration reserved its destination when it started).
   */
  assign(g: number, h: number): void {
    const from = this.guestHost[g];
    if (from === h) return;
    if (from !== UNPLACED) {
      const list = this.hostGuests[from];
      const at = list.indexOf(g);
      list.splice(at, 1);
      this.hostMemoryUsed[from] -= this.guests[g].memoryMiB;
    }
    this.guestHost[g] = h;
    if (h !== UNPLACED) {
      this.hostGuests[h].push(g);
      this.hostMemoryUsed[h] += this.guests[g].memoryMiB;
    }
  }

  transition(h: number, to: HostVmState, now: number): void {
    const host = this.hostVms[h];
    if (!HOST_VM_TRANSITIONS[host.state].includes(to)) {
      throw new ModelError("invalid-transition", `host VM ${host.id} cannot go from ${host.state} to ${to}`);
    }
    if (to === "released" && this.hostGuests[h].length > 0) {
      throw new ModelError(
        "placement",
        `host VM ${host.id} still runs ${this.hostGuests[h].length} guest VM(s); drain it before release`,
      );
    }
    host.state = to;
    host.stateSince = now;
  }

  /** Records where the underlying cloud placed (or moved) a host VM. */
  locate(h: number, server: number | undefined): void {
    if (server !== undefined && (server < 0 || server >= this.servers.length)) {
      throw new ModelError("unknown-entity", `no physical server #${server}`);
    }
    this.hostVms[h].server = server;
  }
}

function lookup(map: Map<string, number>, id: string, what: string): number {
  const i = map.get(id);
  if (i === undefined) throw new ModelError("unknown-entity", `unknown ${what} ${id}`);
  return i;
}

function grow(a: Float64Array, n: number): Float64Array {
  if (a.length >= n) return a;
  const next = new Float64Array(Math.max(16, a.length * 2));
  next.set(a);
  return next;
}

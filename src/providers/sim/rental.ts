/**
 * Host VMs rented from the simulated datacenter: acquired and provisioned in virtual time,
 * placed dedicated-host style (the server asked for, else the emptiest one).
 */
import { type HostVmRental, ProviderError, type ProviderHostVm } from "../types.ts";
import type { SimWorldState } from "./state.ts";
import type { WorldHostVm } from "./world.ts";

export class SimRental implements HostVmRental {
  readonly name = "sim";
  readonly clock = "simulated";

  constructor(private readonly s: SimWorldState) {}

  get speed(): number {
    return this.s.speed;
  }

  now(): number {
    return this.s.now();
  }

  async describe() {
    return { servers: this.s.world.servers, hostVmTypes: this.s.world.hostVmTypes };
  }

  async hostVms(): Promise<readonly ProviderHostVm[]> {
    await this.s.sync();
    return this.s.world.hostVms.map(hostVmView);
  }

  async acquireHostVm(type: string, server: string | undefined): Promise<ProviderHostVm> {
    await this.s.sync();
    const w = this.s.world;
    const t = w.hostVmTypes.find((x) => x.name === type);
    if (!t) throw new ProviderError("invalid", `no host VM type ${type}`);
    const used = (id: string) => w.hostVms.filter((h) => h.server === id && h.state !== "released").length;
    const candidates = w.servers.filter((x) => used(x.id) < x.hostVmSlots);
    const chosen =
      candidates.find((x) => x.id === server) ??
      [...candidates].sort((a, b) => used(a.id) - used(b.id) || a.id.localeCompare(b.id))[0];
    if (!chosen) throw new ProviderError("capacity", "no physical server has a free host-VM slot");
    const now = this.now();
    const h: WorldHostVm = {
      id: `${chosen.id}-${this.s.nextId("hv")}`,
      type,
      server: chosen.id,
      state: "provisioning",
      acquiredAt: now,
      stateSince: now,
      readyAt: now + t.provisionSeconds,
    };
    w.hostVms.push(h);
    await this.s.persist();
    return hostVmView(h);
  }

  async releaseHostVm(id: string): Promise<void> {
    await this.s.sync();
    const h = this.s.world.hostVms.find((x) => x.id === id);
    if (!h) throw new ProviderError("not-found", `no host VM ${id}`);
    h.state = "released";
    h.stateSince = this.now();
    await this.s.persist();
  }

  resume(): Promise<void> {
    return this.s.resume();
  }

  close(): Promise<void> {
    return this.s.close();
  }
}

function hostVmView(h: WorldHostVm): ProviderHostVm {
  return {
    id: h.id,
    type: h.type,
    server: h.server,
    state: h.state,
    acquiredAt: h.acquiredAt,
    stateSince: h.stateSince,
  };
}

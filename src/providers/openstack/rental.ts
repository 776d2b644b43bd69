/**
 * Host VMs rented from an OpenStack project through Nova. Nova tells a project's user no
 * host names, only each server's hostId = sha224(project_id + host): equal ids mean the same
 * physical host, within this project. So host VMs carry no server here; their hostIds are
 * placement hints (key evidence scoped to the project) for discovery to fuse.
 * Servers this rental made carry the metadata nestcloud=host-vm; others are left alone.
 */
import { type HostVmState, type HostVmType, HP_ML110_G5, type PhysicalServer } from "../../model/index.ts";
import { MIPS_PER_CORE } from "../machine.ts";
import { keyEvidence, type PlacementEvidence } from "../placement/index.ts";
import { type HostVmRental, ProviderError, type ProviderHostVm } from "../types.ts";
import { NovaClient, type NovaServer, type OpenStackCredentials } from "./nova.ts";

export interface OpenStackRentalOptions extends OpenStackCredentials {
  /** Image the host VMs boot (one with nestcloud's host-VM agent). */
  readonly imageRef: string;
  /** Flavors offered as host-VM types (default: all). */
  readonly flavors?: readonly string[];
  /** What one physical server is assumed to offer (Nova does not say): cores and MiB. */
  readonly serverCores?: number;
  readonly serverMemoryMiB?: number;
  /** Assumed number of physical servers the project may land on (planner capacity). */
  readonly servers?: number;
  readonly pageSize?: number;
  readonly timeoutMs?: number;
}

const TAG = { key: "nestcloud", value: "host-vm" };

/** A server this rental made (tagged nestcloud=host-vm); others in the project are left alone. */
export const isHostVmServer = (s: NovaServer): boolean => s.metadata[TAG.key] === TAG.value;

function stateOf(status: string): HostVmState {
  switch (status) {
    case "ACTIVE":
      return "running";
    case "DELETED":
    case "SOFT_DELETED":
    case "SHELVED_OFFLOADED":
      return "released";
    case "BUILD":
    case "REBUILD":
      return "provisioning";
    default:
      // SHUTOFF, ERROR, MIGRATING, ...: rented but not usable now.
      return "draining";
  }
}

export class OpenStackRental implements HostVmRental {
  readonly name = "openstack";
  readonly clock = "wall";
  readonly speed = 1;
  readonly nova: NovaClient;
  private types: HostVmType[] | undefined;
  private flavorIds = new Map<string, string>();
  private counter = 0;

  constructor(private readonly o: OpenStackRentalOptions) {
    this.nova = new NovaClient(o, { pageSize: o.pageSize, timeoutMs: o.timeoutMs });
  }

  now(): number {
    return Date.now() / 1000;
  }

  async describe(): Promise<{ servers: readonly PhysicalServer[]; hostVmTypes: readonly HostVmType[] }> {
    if (!this.types) {
      const flavors = (await this.nova.flavors()).filter(
        (f) => !this.o.flavors || this.o.flavors.includes(f.name),
      );
      this.flavorIds = new Map(flavors.map((f) => [f.name, f.id]));
      this.types = flavors.map((f) => ({
        name: f.name,
        vcpus: f.vcpus,
        mipsPerVcpu: MIPS_PER_CORE,
        memoryMiB: f.ram,
        hypervisorOverheadMiB: 0,
        // Notional: Nova has no prices; the planner only compares them.
        pricePerHour: Math.round((0.02 * f.vcpus + 0.005 * (f.ram / 1024)) * 10_000) / 10_000,
        provisionSeconds: 60,
        billingIncrementSeconds: 1,
        minimumBillingSeconds: 60,
        bareMetal: false,
      }));
    }
    const cores = this.o.serverCores ?? 32;
    // Nova names no servers: discovery's groups are given these ids (placement/fusion.ts).
    const servers = Array.from(
      { length: this.o.servers ?? 16 },
      (_, i): PhysicalServer => ({
        id: `server-${i + 1}`,
        cores,
        mipsPerCore: MIPS_PER_CORE,
        memoryMiB: this.o.serverMemoryMiB ?? 256 * 1024,
        networkMbps: 10_000,
        power: { watts: HP_ML110_G5.watts.map((w) => Math.round(((w * cores) / 2) * 10) / 10) },
        hostVmSlots: 64,
      }),
    );
    return { servers, hostVmTypes: this.types };
  }

  private async ours(): Promise<NovaServer[]> {
    return (await this.nova.servers()).filter(isHostVmServer);
  }

  private view(s: NovaServer): ProviderHostVm {
    const type =
      s.flavorName ?? [...this.flavorIds].find(([, id]) => id === s.flavorId)?.[0] ?? s.flavorId ?? "unknown";
    const created = Date.parse(s.created) / 1000;
    const updated = Date.parse(s.updated) / 1000;
    return {
      id: s.id,
      type,
      // Never disclosed to a project: see placementEvidence().
      server: undefined,
      state: stateOf(s.status),
      acquiredAt: Number.isFinite(created) ? created : this.now(),
      stateSince: Number.isFinite(updated) ? updated : this.now(),
    };
  }

  async hostVms(): Promise<readonly ProviderHostVm[]> {
    if (!this.types) await this.describe();
    return (await this.ours()).map((s) => this.view(s));
  }

  /** hostIds as key evidence in this project's scope (empty ones: not placed yet). */
  async placementEvidence(): Promise<PlacementEvidence[]> {
    const project = await this.nova.projectId();
    const at = this.now();
    return (await this.ours())
      .filter((s) => s.hostId !== "" && stateOf(s.status) !== "released")
      .map((s) => keyEvidence(s.id, `openstack-project:${project}`, s.hostId, "provider-hint", at));
  }

  /** Nova places the server itself (the `server` wish is not passed on: a project cannot choose hosts). */
  async acquireHostVm(type: string, _server: string | undefined): Promise<ProviderHostVm> {
    if (!this.types) await this.describe();
    const flavorRef = this.flavorIds.get(type);
    if (!flavorRef) throw new ProviderError("invalid", `no flavor ${type} offered as a host-VM type`);
    const name = `nestcloud-hv-${Date.now().toString(36)}-${++this.counter}`;
    const id = await this.nova.createServer({
      name,
      flavorRef,
      imageRef: this.o.imageRef,
      metadata: { [TAG.key]: TAG.value },
    });
    const s = await this.nova.server(id);
    if (!s) throw new ProviderError("unavailable", `server ${id} vanished right after its creation`);
    return this.view(s);
  }

  async releaseHostVm(id: string): Promise<void> {
    await this.nova.deleteServer(id);
  }

  async close(): Promise<void> {}
}

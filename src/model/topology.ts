/**
 * The virtual cloud's topology: physical servers (L0), host VMs rented on them (L1) and the
 * guest VMs nested inside host VMs (L2). Entities refer to each other by index into the
 * Cloud's arrays so that the planner and the simulator can keep per-entity state in typed
 * arrays; ids are the stable names users and the API see.
 */
import type { PowerTable } from "./power.ts";

export interface PhysicalServer {
  readonly id: string;
  readonly cores: number;
  readonly mipsPerCore: number;
  readonly memoryMiB: number;
  /** NIC bandwidth, Mbit/s: bounds cross-server migrations. */
  readonly networkMbps: number;
  readonly power: PowerTable;
  /** How many host VMs the underlying cloud can place on this server. */
  readonly hostVmSlots: number;
}

/** An instance type of the underlying cloud (or the whole server when there is no nesting). */
export interface HostVmType {
  readonly name: string;
  readonly vcpus: number;
  readonly mipsPerVcpu: number;
  readonly memoryMiB: number;
  /** Memory the guest hypervisor keeps for itself; guests get memoryMiB - this. */
  readonly hypervisorOverheadMiB: number;
  readonly pricePerHour: number;
  /** Seconds from acquisition request to a running guest hypervisor. */
  readonly provisionSeconds: number;
  /**
   * Billing granularity: a host VM's rented time is rounded up to whole increments
   * (1 = per second; 3600 = per started hour, as EC2 billed until 2017) with a minimum.
   */
  readonly billingIncrementSeconds: number;
  readonly minimumBillingSeconds: number;
  /**
   * True when the "host VM" is the physical server itself (no nesting, the CloudSim
   * reference): it is never acquired or released, only switched on and off.
   */
  readonly bareMetal: boolean;
}

/** provisioning -> running -> draining -> released (released is final). */
export type HostVmState = "provisioning" | "running" | "draining" | "released";

export const HOST_VM_TRANSITIONS: Readonly<Record<HostVmState, readonly HostVmState[]>> = {
  provisioning: ["running", "released"],
  running: ["draining", "released"],
  draining: ["running", "released"],
  released: [],
};

export interface HostVm {
  readonly id: string;
  readonly type: HostVmType;
  /** Index of the physical server it runs on; undefined while the placement is unknown. */
  server: number | undefined;
  state: HostVmState;
  /** Simulation/wall time (s) of the last state change. */
  stateSince: number;
  /** When the host VM was requested: billing runs from here. */
  readonly acquiredAt: number;
}

export type GuestRole =
  | { readonly kind: "tenant" }
  /** A security VM monitors its targets (guest ids) from outside. */
  | {
      readonly kind: "security";
      readonly targets: readonly string[];
      /** The worst channel it may monitor through (planner/pairs.ts); absent: any (remote). */
      readonly requires?: "local" | "direct" | "remote";
    };

/**
 * What a guest is as a machine: its size and how fast it dirties memory. The one
 * declaration of a guest's shape: a scenario's guest types, the specs a provider is asked
 * to create, the simulated world's guests and the controller's new guests extend it.
 */
export interface GuestShape {
  readonly vcpus: number;
  /** Guaranteed MIPS per vCPU: the guest may always use up to vcpus x mipsPerVcpu. */
  readonly mipsPerVcpu: number;
  /** Guaranteed (reserved) memory, MiB: never overcommitted. */
  readonly memoryMiB: number;
  /** Memory the guest dirties per second at 100 % CPU, MiB/s (scaled by its load). */
  readonly dirtyRateMiBps: number;
}

/**
 * A guest's own devices beyond its console, as a data plane that runs real guests makes them
 * (a simulated plane ignores them): a data disk copied from an image the host VM's image
 * folder holds, and a NIC. Security VMs' disk and network monitors watch them.
 */
export interface GuestDevices {
  readonly disk?: { readonly image: string };
  readonly nic?: boolean;
}

/** A guest as a provider creates and reports it: whose it is and its shape. */
export interface GuestSpec extends GuestShape {
  readonly id: string;
  readonly tenant: string;
  readonly devices?: GuestDevices;
}

/** The spec alone, of anything that carries one (a stored or simulated guest, a request). */
export function guestSpec(g: GuestSpec): GuestSpec {
  return {
    id: g.id,
    tenant: g.tenant,
    vcpus: g.vcpus,
    mipsPerVcpu: g.mipsPerVcpu,
    memoryMiB: g.memoryMiB,
    dirtyRateMiBps: g.dirtyRateMiBps,
    ...(g.devices ? { devices: g.devices } : {}),
  };
}

export interface GuestVm extends GuestSpec {
  /** Guests sharing an affinity group must share a host VM. */
  readonly affinityGroup?: string;
  /** Guests sharing an anti-affinity group must be on different physical servers. */
  readonly antiAffinityGroup?: string;
  readonly role: GuestRole;
}

export function guestMips(g: GuestVm): number {
  return g.vcpus * g.mipsPerVcpu;
}

export function hostVmMips(t: HostVmType): number {
  return t.vcpus * t.mipsPerVcpu;
}

/** Memory available to guests in a host VM of this type. */
export function hostVmGuestMemory(t: HostVmType): number {
  return t.memoryMiB - t.hypervisorOverheadMiB;
}

export function serverMips(s: PhysicalServer): number {
  return s.cores * s.mipsPerCore;
}

/** A host VM that can receive guests now. */
export function acceptsGuests(h: HostVm): boolean {
  return h.state === "running";
}

/**
 * Billed seconds for a host VM rented for `seconds`: rounded up to whole increments, at
 * least the minimum.
 */
export function billedSeconds(t: HostVmType, seconds: number): number {
  const inc = Math.max(1, t.billingIncrementSeconds);
  return Math.max(t.minimumBillingSeconds, Math.ceil(seconds / inc - 1e-9) * inc);
}

/** Seconds until the host VM starts a new billing increment (0 right at a boundary). */
export function secondsToNextBillingBoundary(h: HostVm, now: number): number {
  const inc = Math.max(1, h.type.billingIncrementSeconds);
  const used = Math.max(now - h.acquiredAt, h.type.minimumBillingSeconds);
  const paid = Math.ceil(used / inc - 1e-9) * inc;
  return paid - (now - h.acquiredAt);
}

/** A host VM that is billed (and may hold guests). */
export function isBilled(h: HostVm): boolean {
  return h.state !== "released";
}

/**
 * The testbed rental's state: which slices are rented (a testbed's slices are fixed, so
 * "acquire" rents an idle slice and "release" returns it). JSON, saved through a StateStore
 * after every change so that a restarted controller, or a follower taking over, sees the same
 * rentals. (What each guest was created as is the agent data plane's state.)
 */
import { type HostVmState, type HostVmType, HP_ML110_G5, type PhysicalServer } from "../../model/index.ts";
import type { TestbedState } from "../../testbed/index.ts";
import { MIPS_PER_CORE } from "../machine.ts";

export { MIPS_PER_CORE };

export interface Rental {
  /** Host-VM id the controller sees: `<server>-<slice>` for the first rental of a slice. */
  id: string;
  server: string;
  slice: string;
  state: HostVmState;
  acquiredAt: number;
  stateSince: number;
}

export interface TestbedWorld {
  version: 1;
  testbedId: string;
  /** The testbed's creation time: a state saved for an older testbed of the same id is stale. */
  createdAt: string;
  rentals: Rental[];
}

/** A slice's shape as a host-VM type name, e.g. slice-1x768. */
export function typeName(cpus: number, memoryMiB: number): string {
  return `slice-${cpus}x${memoryMiB}`;
}

/** Every slice rented from the testbed's start: that is how `testbed up` leaves them. */
export function initialWorld(state: TestbedState): TestbedWorld {
  const t = Date.parse(state.createdAt) / 1000;
  return {
    version: 1,
    testbedId: state.id,
    createdAt: state.createdAt,
    rentals: state.hostVms.map((h) => ({
      id: `${h.server}-${h.name}`,
      server: h.server,
      slice: h.name,
      state: "running",
      acquiredAt: t,
      stateSince: t,
    })),
  };
}

/** Servers as the planner sees them: the cores and memory of their slices. */
export function describeTestbed(state: TestbedState): {
  servers: PhysicalServer[];
  hostVmTypes: HostVmType[];
} {
  const servers = state.servers.map((s): PhysicalServer => {
    const slices = state.hostVms.filter((h) => h.server === s.name);
    const cores = slices.reduce((n, h) => n + h.cpus, 0);
    return {
      id: s.name,
      cores,
      mipsPerCore: MIPS_PER_CORE,
      memoryMiB: slices.reduce((n, h) => n + h.memoryMiB, 0),
      // veth pairs through a bridge: no NIC limit, so the 10 Gbit/s of a datacenter link.
      networkMbps: 10_000,
      // The ML110 G5 has two cores: scale its table to this server's core count.
      power: { watts: HP_ML110_G5.watts.map((w) => Math.round(((w * Math.max(1, cores)) / 2) * 10) / 10) },
      hostVmSlots: slices.length,
    };
  });
  // One type per slice shape, the most common first (the planner acquires the first one).
  const shapes = new Map<string, { cpus: number; memoryMiB: number; count: number }>();
  for (const h of state.hostVms) {
    const k = typeName(h.cpus, h.memoryMiB);
    const s = shapes.get(k) ?? { cpus: h.cpus, memoryMiB: h.memoryMiB, count: 0 };
    s.count++;
    shapes.set(k, s);
  }
  const hostVmTypes = [...shapes.entries()]
    .sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]))
    .map(
      ([name, s]): HostVmType => ({
        name,
        vcpus: s.cpus,
        mipsPerVcpu: MIPS_PER_CORE,
        memoryMiB: s.memoryMiB,
        // The server agent's ledger lets guests reserve all of a slice's memory; QEMU's own
        // overhead is headroom in the slice's cgroup limit, not taken from the guests.
        hypervisorOverheadMiB: 0,
        // Notional: nothing is paid for a slice. Per-minute billing lets the planner drain
        // and return idle slices within minutes, so consolidation is visible on a testbed.
        pricePerHour: Math.round((0.02 * s.cpus + 0.005 * (s.memoryMiB / 1024)) * 10_000) / 10_000,
        provisionSeconds: 1,
        billingIncrementSeconds: 60,
        minimumBillingSeconds: 60,
        bareMetal: false,
      }),
    );
  return { servers, hostVmTypes };
}

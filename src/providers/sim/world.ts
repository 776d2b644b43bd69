/**
 * The state of a simulated datacenter: JSON-serializable so that it can be persisted after
 * every change (a controller that crashes, or a follower that takes over, finds the world as
 * it was) and advanced lazily from its clock.
 */
import type { GuestSpec, HostVmState, HostVmType, PhysicalServer } from "../../model/index.ts";

export interface WorldHostVm {
  id: string;
  type: string;
  server: string;
  state: HostVmState;
  acquiredAt: number;
  stateSince: number;
  /** When provisioning ends. */
  readyAt: number;
}

export interface WorldGuest extends GuestSpec {
  hostVm: string | undefined;
  running: boolean;
  /** Which series of the synthetic trace drives its load. */
  series: number;
  /**
   * Its recent load peak (model/memory.ts) as of the trace sample at `at`: what its resident
   * memory follows. Absent until first observed (and in worlds saved before it existed).
   */
  peak?: { at: number; value: number };
  /** The boot it is configured for (virtual AMT; absent: normal). */
  boot?: { mode: "normal" | "rescue"; append?: string };
}

export interface WorldMigration {
  id: string;
  guest: string;
  from: string;
  to: string;
  mechanism: "instant" | "precopy" | "postcopy";
  status: "running" | "completed" | "failed" | "cancelled";
  startedAt: number;
  endsAt: number;
  finishedAt: number | undefined;
  bytes: number;
  error: string | undefined;
  /** The modelled pause of the guest at the switchover (ms); absent in worlds saved before it. */
  pauseMs?: number;
}

/** A rejuvenation of a host VM in the simulated world (sim/rejuvenation-cost.ts's times). */
export interface WorldRejuvenation {
  id: string;
  hostVm: string;
  mode: "in-place" | "evacuate";
  /** The host VM of the same server holding the guests meanwhile (evacuate). */
  spare: string | null;
  guests: string[];
  startedAt: number;
  prepareSeconds: number;
  switchSeconds: number;
  pausePerGuestSeconds: number;
  restartSeconds: number;
  endsAt: number;
}

export interface World {
  version: 1;
  /** Provider time = worldT0 + (wall seconds - wallT0) x speed. */
  clock: { worldT0: number; wallT0: number; speed: number };
  seed: number;
  series: number;
  servers: PhysicalServer[];
  hostVmTypes: HostVmType[];
  hostVms: WorldHostVm[];
  guests: WorldGuest[];
  migrations: WorldMigration[];
  /** Absent in worlds saved before rejuvenation was simulated. */
  rejuvenations?: WorldRejuvenation[];
  nextId: number;
}

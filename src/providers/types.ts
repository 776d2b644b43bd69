/**
 * What the controller needs from the world it runs in, in two parts: the rental of host VMs
 * from the underlying cloud (and where they physically are, when it is known) and the guest
 * data plane that runs guests on them (a simulation, or nestcloud's agents). A Provider is
 * the two composed (compose.ts). Everything is reported on the rental's clock.
 */

import type { GuestPowerEventKind, Inventory, PowerAnswer, PowerRequest } from "../agent/index.ts";
import type { GuestSpec, HostVmState, HostVmType, PhysicalServer } from "../model/index.ts";
import type { Alert, MonitorKind } from "../monitor/index.ts";
import type { PlacementEvidence } from "./placement/evidence.ts";
import type { PlacementReport } from "./placement/report.ts";

/** What a trial handover found (see placement/trial.ts). */
export interface PlacementTrialView {
  readonly a: string;
  readonly b: string;
  readonly together: boolean | undefined;
  readonly ms: number;
  readonly detail: string;
}

/** What a provider is asked to create and reports: the model's guest spec. */
export type { GuestSpec };

export interface ProviderHostVm {
  readonly id: string;
  readonly type: string;
  /** Physical server id, when the provider discloses (or we discovered) it. */
  readonly server: string | undefined;
  readonly state: HostVmState;
  readonly acquiredAt: number;
  readonly stateSince: number;
}

export interface ProviderGuest {
  readonly id: string;
  /** What the guest is (so a controller can adopt guests it did not create). */
  readonly spec: GuestSpec;
  readonly hostVm: string | undefined;
  readonly running: boolean;
  /** CPU load now, fraction of the guest's guaranteed MIPS. */
  readonly cpu: number;
  readonly residentMiB: number;
  readonly dirtyRateMiBps: number;
}

export type MigrationStatus = "running" | "completed" | "failed" | "cancelled";

export interface ProviderMigration {
  readonly id: string;
  readonly guest: string;
  readonly from: string;
  readonly to: string;
  readonly mechanism: "instant" | "precopy" | "postcopy";
  readonly status: MigrationStatus;
  /** 0..1, never decreasing. */
  readonly progress: number;
  readonly remainingBytes: number;
  readonly etaSeconds: number;
  readonly startedAt: number;
  readonly finishedAt: number | undefined;
  readonly error: string | undefined;
  /** How long the guest was paused for the switchover (ms), once completed, where measured. */
  readonly pauseMs?: number | undefined;
}

export interface ProviderSnapshot {
  readonly now: number;
  readonly hostVms: readonly ProviderHostVm[];
  readonly guests: readonly ProviderGuest[];
  readonly migrations: readonly ProviderMigration[];
}

/** Where a provider keeps its state between processes (the controller's store). */
export interface StateStore {
  load(): Promise<string | undefined>;
  save(json: string): Promise<void>;
}

/** A StateStore in this process's memory: what a provider keeps when given no store. */
export function memoryStore(): StateStore {
  let text: string | undefined;
  return {
    async load() {
      return text;
    },
    async save(json) {
      text = json;
    },
  };
}

export type ProviderClock = "wall" | "simulated";

/**
 * Renting host VMs from the underlying cloud (a simulation, a testbed's slices, later an
 * OpenStack project): which servers and types exist, which host VMs are rented, acquire and
 * release. Knows nothing of guests. A host VM's server may be unknown (`server` undefined):
 * placement discovery fills it in.
 */
export interface HostVmRental {
  readonly name: string;
  /** Seconds on the rental's clock (virtual for a simulation). */
  now(): number;
  /**
   * What now() counts: "wall" is Unix time (seconds since 1970, UTC); "simulated" is seconds
   * since the start of the simulated world's first day (its epoch).
   */
  readonly clock: ProviderClock;
  /** Seconds of provider time per second of wall time (1 for real infrastructure). */
  readonly speed: number;
  describe(): Promise<{ servers: readonly PhysicalServer[]; hostVmTypes: readonly HostVmType[] }>;
  hostVms(): Promise<readonly ProviderHostVm[]>;
  acquireHostVm(type: string, server: string | undefined): Promise<ProviderHostVm>;
  /** Returns a host VM; the caller has made sure the data plane no longer uses it. */
  releaseHostVm(id: string): Promise<void>;
  /**
   * What the underlying cloud hints about placement when it names no servers (OpenStack's
   * per-project hostId), for discovery to fuse; absent when it says nothing at all.
   */
  placementEvidence?(): Promise<PlacementEvidence[]>;
  /** This controller just became the leader: pick up the state the previous one left. */
  resume?(): Promise<void>;
  close(): Promise<void>;
}

/** Where a guest's console is served: the agent that holds its serial port now. */
export interface ConsoleEndpoint {
  readonly hostVm: string;
  /** The host-VM agent's base URL. */
  readonly agentUrl: string;
  /** The bearer token the agent takes. */
  readonly token: string;
  /** The agent's console identity key (an uncompressed P-256 point). */
  readonly identity: Buffer;
}

/**
 * The guest data plane on rented host VMs: creating, running and migrating guests (in a
 * simulation, or through nestcloud's agents on any rental whose host VMs run them).
 */
export type RejuvenationModeName = "in-place" | "evacuate";

/** What a finished rejuvenation of a host VM measured (per guest: pause and where it ended). */
export interface RejuvenationResult {
  /** How guests changed process: x-ignore-shared (QEMU 7.2) or cpr-transfer (>= 10). */
  readonly mechanism: string;
  readonly qemu: string;
  readonly spare: string | null;
  readonly guests: readonly {
    readonly guest: string;
    readonly outcome: "moved" | "stayed" | "unknown";
    readonly pauseMs: number | null;
    readonly error: string | null;
  }[];
  readonly maxPauseMs: number | null;
  readonly medianPauseMs: number | null;
  /** Destinations started, before any guest paused. */
  readonly prepareMs: number;
  /** First switchover to last guest settled (both ways for evacuate). */
  readonly switchMs: number;
  readonly totalMs: number;
  readonly bytesMoved: number;
  readonly agentRestartMs: number | null;
  /** evacuate: the host VM that replaced the renewed one (null: it was kept, its agent restarted). */
  readonly replacement?: string | null;
  /** evacuate: the spare was rented for this rejuvenation (and released after it, if emptied). */
  readonly spareAcquired?: boolean;
  readonly spareReleased?: boolean;
}

/** How a rejuvenation goes beyond its mode. */
export interface RejuvenateOptions {
  /** evacuate: the guests move back to the renewed host VM (default true). */
  readonly moveBack?: boolean;
}

/**
 * What a data plane needs of the rental to replace a host VM and rent a spare for an
 * evacuation (the composed provider gives the rental's; planes alone cannot rent).
 */
export interface HostVmRenewal {
  /** Rents a host VM of `type` on `server`; answers its id. */
  acquire(type: string, server: string): Promise<string>;
  release(id: string): Promise<void>;
  /** The host VM's type, as the rental names it. */
  typeOf(id: string): Promise<string>;
}

/** A rejuvenation of one host VM that a data plane runs (RAM stays put; guests never reboot). */
export interface ProviderRejuvenation {
  readonly id: string;
  readonly hostVm: string;
  readonly mode: RejuvenationModeName;
  readonly status: "running" | "completed" | "failed";
  /** Where it stands: a step and the guests settled in it. */
  readonly step: string;
  readonly settled: number;
  readonly of: number;
  readonly startedAt: number;
  readonly finishedAt: number | undefined;
  readonly error: string | undefined;
  readonly result: RejuvenationResult | undefined;
}

/** What a security VM runs against each target and with what (the API's choice, stored). */
export interface SecurityVmOptions {
  /**
   * Its monitors (default all three): memory on each target, disk on a target's data disk and
   * network on its NIC where the target has them.
   */
  readonly monitors?: readonly MonitorKind[];
  /** ClamAV body signatures for the disk monitor's malware scan (none: no scan). */
  readonly signatures?: readonly { readonly name: string; readonly hex: string }[];
  /** The tenant's Suricata rules, beside nestcloud's defaults. */
  readonly rules?: string;
}

/** One security VM's monitors as its plane runs them (issue 13). */
export interface SecurityVmSpec extends SecurityVmOptions {
  readonly id: string;
  /** The guests it watches. */
  readonly targets: readonly string[];
}

/** Where one pair's monitor runs now and what the last follow did to it. */
export interface MonitorAnchor {
  readonly secvm: string;
  readonly target: string;
  /** The host VM whose agent runs the monitor's service (null: not started yet). */
  readonly hostVm: string | null;
  /** The service's state as its agent last said (starting, running, restarting, failed...). */
  readonly state: string;
  /** Memory rounds the service has done in this anchor. */
  readonly rounds: number;
  /** Its last move to its target's new place, if it moved. */
  readonly lastMove?: MonitorSwitch;
}

/** A monitor's move to its target's new place, made before the old one was broken. */
export interface MonitorSwitch {
  readonly secvm: string;
  readonly target: string;
  readonly from: string;
  readonly to: string;
  /** Wall ms from asking the destination's agent until its monitor ran (the old one ran meanwhile). */
  readonly makeMs: number;
  /**
   * How long the target was held paused at its destination for the new monitor's baseline and
   * the old one's last round (a pre-copy: attached before it resumed); null: made after it ran.
   */
  readonly heldMs: number | null;
  /**
   * The longest the target ran with no monitor seeing its current memory across this move:
   * 0 when the new monitor was attached before the destination resumed, or when the old one's
   * view stayed live (an instant handover maps the same RAM file); else from the move's
   * completion to the new monitor's baseline. null: the move that brought the target is not
   * known (e.g. it happened before this controller started).
   */
  readonly gapMs: number | null;
}

/** The security VMs' monitors of a data plane that can run them (the agents'). */
export interface SecurityVmMonitors {
  /** Starts the monitors a security VM lacks (idempotent: the controller calls it each loop). */
  ensure(spec: SecurityVmSpec): Promise<void>;
  remove(id: string): Promise<void>;
  /** Moves each monitor whose target now runs elsewhere: the new one made, then the old removed. */
  follow(): Promise<MonitorSwitch[]>;
  /** The alerts raised since the last drain, per security VM, oldest first. */
  drain(): Promise<{ secvm: string; alerts: Alert[] }[]>;
  anchors(): MonitorAnchor[];
}

/** Something a guest did to its power, as its plane saw it (the controller logs it). */
export interface GuestPowerEventView {
  readonly guest: string;
  /** Unix seconds (wall). */
  readonly at: number;
  readonly kind: GuestPowerEventKind;
  readonly detail: string;
}

export type { Inventory as GuestInventory, PowerAnswer, PowerRequest };

/**
 * The virtual AMT of a plane's guests: power and boot control that works when the guest's
 * OS is hung or off, the guest's inventory, and what guests did to their power.
 */
export interface GuestPowerControl {
  act(guest: string, req: PowerRequest): Promise<PowerAnswer>;
  inventory(guest: string): Promise<Inventory>;
  /** What guests did since the last call (powered off, reset, panicked, booted), oldest first. */
  drainEvents(): Promise<GuestPowerEventView[]>;
}

export interface GuestDataPlane {
  /** The virtual AMT (planes that model or run power control). */
  readonly power?: GuestPowerControl;
  /** Security VMs' monitors (planes that run them; others model security VMs by placement only). */
  readonly securityVms?: SecurityVmMonitors;
  /** Guests and migrations as of now (`now` on the rental's clock). */
  observe(
    now: number,
  ): Promise<{ guests: readonly ProviderGuest[]; migrations: readonly ProviderMigration[] }>;
  /** Whether a host VM still holds guests or takes part in a migration (it cannot be released). */
  inUse(hostVm: string): Promise<boolean>;
  createGuest(spec: GuestSpec, hostVm: string): Promise<void>;
  setGuestRunning(id: string, running: boolean): Promise<void>;
  deleteGuest(id: string): Promise<void>;
  /** Starts a migration; `seconds` is the planner's estimate (a simulation uses it as the duration). */
  migrate(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<ProviderMigration>;
  /**
   * Moves guests together in lock-step (a security VM and its targets): none switches over
   * at its destination before all are ready; if one cannot start, none is left moving.
   * Planes that cannot (yet) have no such method: the controller refuses co-migrate actions.
   */
  coMigrate?(moves: readonly CoMigrationMove[]): Promise<ProviderMigration[]>;
  migration(id: string): Promise<ProviderMigration | undefined>;
  cancelMigration(id: string): Promise<void>;
  /**
   * Renews a host VM's hypervisor layer under its running guests (planes that can: the
   * agents'); evacuate moves them to another host VM of its server and back.
   */
  rejuvenate?(
    hostVm: string,
    mode: RejuvenationModeName,
    opts?: RejuvenateOptions & { readonly renewal?: HostVmRenewal },
  ): Promise<ProviderRejuvenation>;
  rejuvenation?(id: string): Promise<ProviderRejuvenation | undefined>;
  /**
   * Consoles (planes whose guests have serial ports): where the guest's console is served
   * now (null: the guest runs nowhere at the moment, e.g. mid-move), and the secret the
   * console tickets' key derives from (shared with the agents). `movedTo`: the agent URL a
   * move named (the source's "moved" close): only that agent is asked.
   */
  readonly consoles?: {
    locate(guestId: string, movedTo?: string): Promise<ConsoleEndpoint | null>;
    ticketSecret(): string;
  };
  resume?(): Promise<void>;
  close(): Promise<void>;
}

/** One guest of a co-migration: where it goes, how, the planner's estimate. */
export interface CoMigrationMove {
  readonly guest: string;
  readonly to: string;
  readonly mechanism: ProviderMigration["mechanism"];
  readonly seconds: number;
}

/** The guest operations a Provider passes on to its data plane. */
export type GuestOperations = Pick<
  GuestDataPlane,
  | "createGuest"
  | "setGuestRunning"
  | "deleteGuest"
  | "migrate"
  | "coMigrate"
  | "migration"
  | "cancelMigration"
  | "rejuvenate"
  | "rejuvenation"
>;

/** What the controller drives: a rental and the data plane on its host VMs, as one. */
export interface Provider extends GuestOperations {
  readonly name: string;
  readonly rental: HostVmRental;
  readonly plane: GuestDataPlane;
  now(): number;
  readonly clock: ProviderClock;
  readonly speed: number;
  describe(): ReturnType<HostVmRental["describe"]>;
  snapshot(): Promise<ProviderSnapshot>;
  acquireHostVm: HostVmRental["acquireHostVm"];
  /** Releases a host VM once the data plane no longer uses it (else a conflict). */
  releaseHostVm(id: string): Promise<void>;
  /**
   * Where each host VM is, and how that is known: told by the rental, or discovered (with
   * each entry's source, confidence and age).
   */
  placement(): Promise<PlacementReport>;
  /**
   * The conclusive measurement on demand (providers that discover placement through agents):
   * a trial handover of an empty probe guest from host VM `a` to `b`. together: undefined
   * when the trial could not decide (an agent down, no room).
   */
  placementTrial?(a: string, b: string): Promise<PlacementTrialView>;
  /**
   * This controller just became the leader: pick up the provider's state as the previous
   * leader left it (a simulation reloads its saved world; real providers need nothing).
   */
  resume(): Promise<void>;
  close(): Promise<void>;
}

/** A provider refused or failed an operation; the message says which and why. */
export class ProviderError extends Error {
  constructor(
    /** exists: the id asked for is taken (a guest with it exists or is being made). */
    readonly code: "not-found" | "conflict" | "exists" | "capacity" | "unavailable" | "invalid",
    message: string,
  ) {
    super(message);
    this.name = "ProviderError";
  }
}

/**
 * An instant (zero-copy) handover was asked between host VMs that are not on one server:
 * the placement the planner used is stale. Carries the pair so the map can be corrected.
 */
export class NotCoResidentError extends ProviderError {
  constructor(
    readonly from: string,
    readonly to: string,
    message: string,
  ) {
    super("invalid", message);
    this.name = "NotCoResidentError";
  }
}

/** What callers of the migration orchestrator pass and get back, and its co-migration barrier. */
import type {
  IncomingStatus,
  MigrationOptions,
  MigrationProgressView,
  OutgoingStatus,
} from "../api-types.ts";

export interface AgentEndpoint {
  server: string;
  hostVm: string;
  /** The host-VM agent's URL. */
  hostVmUrl: string;
  /** The server agent's URL. */
  serverUrl: string;
  /** The server's data-plane address (a pre-copy destination listens there). */
  address: string;
}

export type Mechanism = "instant" | "precopy" | "postcopy";

export interface MigrationHooks {
  /** The destination QEMU is listening (tests inject faults here). */
  afterPrepare?: (incoming: IncomingStatus) => Promise<void> | void;
  /** The source agent accepted the migration. */
  afterStart?: (outgoing: OutgoingStatus) => Promise<void> | void;
  /** The source completed; the destination is about to be finished. */
  beforeFinish?: (outgoing: OutgoingStatus) => Promise<void> | void;
}

export interface MigrateRequest {
  guestId: string;
  from: AgentEndpoint;
  to: AgentEndpoint;
  /** auto: instant on the same server, pre-copy across servers. */
  mechanism?: Mechanism | "auto";
  options?: Omit<MigrationOptions, "postcopy" | "pauseBeforeSwitchover" | "ignoreStall">;
  /** Post-copy: switch once the first full pass is done (default), or only when pre-copy stalls. */
  postcopySwitch?: "after-first-pass" | "on-stall";
  onProgress?: (p: MigrationProgressView) => void;
  hooks?: MigrationHooks;
  /**
   * Pre-copy: compare the source's and the destination's RAM files before finishing (both
   * are paused then) and roll back on any difference. Guards against QEMU 7.2's TCG dirty
   * tracking race (docs/qemu-tcg-lost-pages.md); costs one read of the guest's RAM on each
   * side, inside the downtime. Default off.
   */
  verifyRam?: boolean;
  /**
   * A live update (rejuvenation): `from` and `to` are the same host VM and a fresh QEMU
   * there takes the guest over by an instant handover (its RAM file stays; no accounting
   * moves, the guest stays on this host VM).
   */
  inPlace?: boolean;
}

export interface MigrationOutcome {
  migrationId: string;
  guestId: string;
  mechanism: Mechanism;
  from: AgentEndpoint;
  to: AgentEndpoint;
  /**
   * From the migrate command (QEMU's MIGRATION setup event) to the guest running at the
   * destination (its RESUME event), or to completion if later (post-copy).
   */
  totalMs: number | null;
  /** The guest's real pause: source STOP event to destination RESUME event. */
  downtimeMs: number | null;
  /** QEMU's own figures (source side; its downtime ends when the source has sent everything). */
  qemu: OutgoingStatus["result"];
  transferredBytes: number;
  /** Starting the destination QEMU, before the migration itself. */
  prepareMs: number;
  /** This call, first request to last. */
  endToEndMs: number;
  sourceCpuSeconds: number | null;
  destinationCpuSeconds: number | null;
  source: OutgoingStatus;
  destination: IncomingStatus;
  /** The RAM check before finish, when asked for (MigrateRequest.verifyRam). */
  ramCheck?: { result: "equal"; chunks: number; ms: number } | { result: "skipped"; why: string; ms: number };
}

export class MigrationFailedError extends Error {
  override name = "MigrationFailedError";
  constructor(
    message: string,
    readonly migrationId: string,
    /** rolled-back: completed at the source but undone; failed / cancelled: never completed. */
    readonly outcome: "failed" | "cancelled" | "rolled-back" | "unresolved" | "refused",
    /** Where the guest runs now. */
    readonly guestAt: "source" | "destination" | "unknown",
  ) {
    super(message);
  }
}

export interface MigrationHandle {
  readonly migrationId: string;
  readonly done: Promise<MigrationOutcome>;
  /** Cancels before switchover; resolves when the guest runs at the source again. */
  cancel(reason?: string): Promise<void>;
}

export interface OrchestratorOptions {
  log?: (msg: string) => void;
  /** Lease of an unfinished incoming; renewed every second. Default 15 s (timing.ts). */
  leaseMs?: number;
  /** Pre-copy: no byte moved for this long = broken link. Default 10 s (timing.ts). */
  noProgressTimeoutMs?: number;
  /**
   * How long an agent may stay unreachable (dead, restarted by its supervisor) in the
   * middle of a migration before the orchestrator gives up on it. Default 60 s (timing.ts).
   */
  agentRecoveryMs?: number;
}

/** A barrier for co-migration: partners wait at pre-switchover until all arrived. */
export class Barrier {
  private arrived = 0;
  released = false;
  private release!: () => void;
  private fail!: (e: Error) => void;
  readonly open: Promise<void>;
  constructor(private readonly parties: number) {
    this.open = new Promise((res, rej) => {
      this.release = res;
      this.fail = rej;
    });
    this.open.catch(() => {});
  }
  arrive(): Promise<void> {
    if (++this.arrived === this.parties) {
      this.released = true;
      this.release();
    }
    return this.open;
  }
  abort(e: Error): void {
    this.fail(e);
  }
}

/**
 * The source side of a migration on a host-VM agent: a qemu MigrationJob whose destination
 * is run by another agent (prepared and finished by the orchestrator). On completion the
 * source QEMU stays paused (postmigrate) until the orchestrator confirms: "success" stops
 * it, "rollback" resumes it (allowed only because the destination never ran, see
 * incoming.ts). A failure or cancel before switchover resumes the source at once (the
 * qemu module's job does that).
 */
import {
  MigrationCancelledError,
  type MigrationDestination,
  type MigrationJob,
  type MigrationProgress,
  type QmpEvent,
  startMigration,
} from "../qemu/index.ts";
import type {
  ConfirmOutcome,
  MigrationProgressView,
  OutgoingPhaseName,
  OutgoingResult,
  OutgoingStatus,
  StartOutgoingRequest,
} from "./api-types.ts";
import type { GuestContext, GuestRuntime } from "./guest-runtime.ts";
import { conflict } from "./http.ts";
import { cpuSeconds, qmpTimestampMs } from "./proc.ts";
import { ChangeSignal } from "./waiters.ts";

function view(p: MigrationProgress): MigrationProgressView {
  return {
    status: p.status,
    elapsedMs: p.elapsedMs,
    totalBytes: p.totalBytes,
    transferredBytes: p.transferredBytes,
    remainingBytes: p.remainingBytes,
    pass: p.pass,
    dirtyRateBytesPerSec: p.dirtyRateBytesPerSec,
    throughputBytesPerSec: p.throughputBytesPerSec,
    expectedDowntimeMs: p.expectedDowntimeMs,
    percent: p.percent,
    etaMs: p.etaMs,
    stalled: p.stalled,
  };
}

export class OutgoingMigration {
  phase: OutgoingPhaseName = "running";
  progress: MigrationProgressView | null = null;
  result: OutgoingResult | null = null;
  error: { name: string; message: string } | null = null;
  readonly timing: OutgoingStatus["timing"] = { migrateAt: null, stoppedAt: null, completedAt: null };
  readonly cpu: OutgoingStatus["cpu"] = { start: null, end: null };
  readonly changes = new ChangeSignal();
  private job: MigrationJob | null = null;
  private readonly pid: number | null;

  constructor(
    private readonly ctx: GuestContext,
    readonly guest: GuestRuntime,
    readonly req: StartOutgoingRequest,
    /** Called after a confirmed success: the agent forgets the guest. */
    private readonly onGone: (m: OutgoingMigration) => void,
  ) {
    this.pid = guest.qemu?.pid ?? null;
  }

  get migrationId(): string {
    return this.req.migrationId;
  }

  /** Nothing more will happen to this migration. */
  done(): boolean {
    return (
      this.phase === "confirmed" ||
      this.phase === "rolled-back" ||
      this.phase === "failed" ||
      this.phase === "cancelled"
    );
  }

  private setPhase(p: OutgoingPhaseName): void {
    this.phase = p;
    this.changes.notify();
  }

  start(): void {
    const src = this.guest.qemu;
    if (!src) throw conflict(`guest ${this.guest.guestId} has no QEMU`);
    const o = this.req.options ?? {};
    this.guest.state = "migrating";
    this.cpu.start = cpuSeconds(src.pid);
    const onEvent = (e: QmpEvent) => {
      const at = qmpTimestampMs(e.timestamp);
      if (e.event === "STOP" && this.timing.stoppedAt === null && this.timing.migrateAt !== null) {
        this.timing.stoppedAt = at;
      }
      if (e.event !== "MIGRATION") return;
      const s = e.data?.status;
      if (s === "setup" && this.timing.migrateAt === null) this.timing.migrateAt = at;
      else if (s === "pre-switchover") this.setPhase("pre-switchover");
      else if (s === "postcopy-active") this.setPhase("postcopy");
      else if (s === "completed") {
        // Reported at once (not when the job has gathered its figures): the orchestrator's
        // finish of the destination is on the guest's downtime path.
        this.timing.completedAt = at;
        this.cpu.end = cpuSeconds(src.pid);
        this.setPhase("completed");
      }
    };
    src.qmp.on("event", onEvent);
    // The destination is prepared and finished by the orchestrator through its own agent.
    let destLost: string | null = null;
    const dest: MigrationDestination = {
      label: this.req.uri,
      listen: async () => this.req.uri,
      isAlive: () => destLost === null,
      hint: () => (destLost ? ` (${destLost})` : ""),
      complete: async () => {},
      discard: async () => {},
    };
    this.markDestinationLost = (why: string) => {
      destLost = why;
    };
    this.job = startMigration(src, dest, {
      kind: this.req.mode,
      uri: this.req.uri,
      downtimeLimitMs: o.downtimeLimitMs,
      maxBandwidth: o.maxBandwidth,
      autoConverge: o.autoConverge,
      postcopy: o.postcopy,
      pauseBeforeSwitchover: o.pauseBeforeSwitchover,
      onStall: o.ignoreStall ? "ignore" : "fail",
      stallTimeoutMs: o.stallTimeoutMs,
      noProgressTimeoutMs: o.noProgressTimeoutMs,
      timeoutMs: o.timeoutMs,
      stopSourceOnSuccess: false,
      // Phases follow QMP events, which also wake the job: polling query-migrate faster
      // would only compete with the migration for QEMU's main lock.
      pollMs: this.req.mode === "handover" ? 50 : 200,
      onProgress: (p) => {
        this.progress = view(p);
        this.changes.notify();
      },
      log: (m) => this.ctx.log.info({ migration: this.migrationId }, m),
    });
    this.job.done.then(
      (r) => {
        src.qmp.off("event", onEvent);
        this.result = {
          totalTimeMs: r.totalTimeMs,
          downtimeMs: r.downtimeMs,
          setupTimeMs: r.setupTimeMs,
          wallMs: r.wallMs,
          transferredBytes: r.transferredBytes,
          totalBytes: r.totalBytes,
          passes: r.passes,
          switchedToPostcopy: r.switchedToPostcopy,
        };
        this.cpu.end ??= cpuSeconds(src.pid);
        if (this.phase === "running" || this.phase === "postcopy" || this.phase === "pre-switchover") {
          this.setPhase("completed");
        } else this.changes.notify();
      },
      (e: Error) => {
        src.qmp.off("event", onEvent);
        this.error = { name: e.name, message: e.message };
        this.cpu.end ??= cpuSeconds(src.pid);
        const beforeSwitch = this.phase !== "postcopy" && this.phase !== "completed";
        // Before switchover the job resumed the source: the guest runs here again.
        if (beforeSwitch) this.guest.state = "running";
        this.setPhase(e instanceof MigrationCancelledError ? "cancelled" : "failed");
        this.ctx.log.warn(
          { migration: this.migrationId, err: e.message },
          "outgoing migration ended without success",
        );
      },
    );
  }

  /** Set by start(): tells the job its destination is gone (it then cancels at once). */
  markDestinationLost: (why: string) => void = () => {};

  async cancel(reason: string): Promise<void> {
    if (!this.job) throw conflict("migration not started");
    if (this.phase === "cancelled" || this.phase === "failed" || this.phase === "rolled-back") return;
    await this.job.cancel(reason);
  }

  async continueSwitchover(): Promise<void> {
    if (this.phase !== "pre-switchover")
      throw conflict(`migration ${this.migrationId} is ${this.phase}, not pre-switchover`);
    await this.job!.continueSwitchover();
  }

  async startPostcopy(): Promise<void> {
    if (this.phase !== "running")
      throw conflict(`migration ${this.migrationId} is ${this.phase}: cannot switch to post-copy`);
    await this.job!.startPostcopy();
  }

  async confirm(outcome: ConfirmOutcome): Promise<void> {
    if (this.phase === "confirmed" && outcome === "success") return;
    if (this.phase === "rolled-back" && outcome === "rollback") return;
    if (this.phase !== "completed")
      throw conflict(`migration ${this.migrationId} is ${this.phase}, not completed`);
    // Figures arrive a moment after the completion event; wait for them (bounded).
    await Promise.race([this.job!.done.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    const q = this.guest.qemu;
    if (outcome === "success") {
      this.guest.detach();
      if (q) {
        if (this.req.mode === "handover") q.releasePoolFile();
        await q.stop();
      }
      this.setPhase("confirmed");
      this.onGone(this);
    } else {
      if (this.result?.switchedToPostcopy) {
        throw conflict(
          `migration ${this.migrationId} switched to post-copy: the guest cannot resume at the source`,
        );
      }
      // QEMU allows `cont` after a completed migration: the destination never ran (-S).
      await q?.qmp.cont();
      this.guest.state = "running";
      this.setPhase("rolled-back");
    }
  }

  status(): OutgoingStatus {
    return {
      migrationId: this.migrationId,
      guestId: this.guest.guestId,
      mode: this.req.mode,
      phase: this.phase,
      progress: this.progress,
      result: this.result,
      error: this.error,
      timing: this.timing,
      cpu: this.cpu,
      pid: this.pid,
    };
  }
}

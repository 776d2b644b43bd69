/**
 * The source side of a migration on a host-VM agent: a qemu MigrationJob whose destination
 * is run by another agent (prepared and finished by the orchestrator). On completion the
 * source QEMU stays paused (postmigrate) until the orchestrator confirms: "success" stops
 * it, "rollback" resumes it (allowed only because the destination never ran, see
 * incoming.ts). A failure or cancel before switchover resumes the source at once (the
 * qemu module's job does that).
 *
 * A completed migration that no orchestrator confirms (it died, or gave up) is settled here
 * after `destination.resolveAfterMs`: the incoming at the destination is aborted first,
 * which fences it (the destination agent serializes finish and abort: once aborted it can
 * never run), and only then is the guest resumed here; if the destination already runs
 * the guest, the abort is refused and the source is stopped instead. Either way exactly
 * one copy runs. An agent restarted by its supervisor adopts a migrating source QEMU and
 * follows its migration from where it stands (adopt).
 */
import {
  MigrationCancelledError,
  type MigrationDestination,
  type MigrationFigures,
  type MigrationJob,
  type MigrationProgressReport,
  type MigrationStatus,
  migrationFigures,
  progressReport,
  type QmpEvent,
  startMigration,
} from "../../qemu/index.ts";
import type {
  ConfirmOutcome,
  OutgoingPhaseName,
  OutgoingStatus,
  StartOutgoingRequest,
} from "../api-types.ts";
import { AgentHttpError } from "../client.ts";
import { conflict } from "../http.ts";
import { cpuSeconds, qmpTimestampMs } from "../proc.ts";
import { ChangeSignal } from "../waiters.ts";
import { hasStore, hasWritableDisks, removeGuestStore } from "./devices.ts";
import type { GuestContext, GuestRuntime } from "./guest-runtime.ts";

export class OutgoingMigration {
  phase: OutgoingPhaseName = "running";
  progress: MigrationProgressReport | null = null;
  result: MigrationFigures | null = null;
  error: { name: string; message: string } | null = null;
  readonly timing: OutgoingStatus["timing"] = { migrateAt: null, stoppedAt: null, completedAt: null };
  readonly cpu: OutgoingStatus["cpu"] = { start: null, end: null };
  readonly changes = new ChangeSignal();
  private job: MigrationJob | null = null;
  private readonly pid: number | null;
  /** Set for a migration a dead predecessor started: follow it from this status. */
  private attach: MigrationStatus | null = null;
  private confirming: { outcome: ConfirmOutcome; done: Promise<void> } | null = null;
  private resolveTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: GuestContext,
    readonly guest: GuestRuntime,
    readonly req: StartOutgoingRequest,
    /** Called after a confirmed success: the agent forgets the guest. */
    private readonly onGone: (m: OutgoingMigration) => void,
  ) {
    this.pid = guest.qemu?.pid ?? null;
  }

  /**
   * The outgoing migration of a source QEMU adopted from a dead predecessor: start() then
   * follows it (status as found, see adoption.ts) instead of starting one.
   */
  static adopt(
    ctx: GuestContext,
    guest: GuestRuntime,
    req: StartOutgoingRequest,
    onGone: (m: OutgoingMigration) => void,
    status: MigrationStatus,
  ): OutgoingMigration {
    const m = new OutgoingMigration(ctx, guest, req, onGone);
    m.attach = status;
    return m;
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
    if (p === "completed") this.armSelfResolve();
    else if (this.resolveTimer) {
      clearTimeout(this.resolveTimer);
      this.resolveTimer = null;
    }
  }

  start(): void {
    const src = this.guest.qemu;
    if (!src) throw conflict(`guest ${this.guest.guestId} has no QEMU`);
    const o = this.req.options ?? {};
    this.guest.state = "migrating";
    this.guest.setOutgoing(this.req);
    this.cpu.start = cpuSeconds(src.pid);
    // A handover's source stops the guest and sends its device state within the pause: at the
    // control path's priority until it stops, or until the guest runs here again on failure.
    const handover = this.req.mode === "handover";
    if (handover) src.prioritize(true);
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
    if (this.attach === "pre-switchover") this.setPhase("pre-switchover");
    else if (this.attach === "postcopy-active") this.setPhase("postcopy");
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
      attach: this.attach ?? undefined,
      ...(this.req.cprUri ? { cprChannel: this.req.cprUri } : {}),
      // Across servers the writable disks go along in the migration stream (QEMU's block
      // migration, into the destination's empty images); a handover shares the files.
      ...(hasWritableDisks(this.guest.config)
        ? { extraCapabilities: { block: this.req.mode === "precopy" } }
        : {}),
      // Phases follow QMP events, which also wake the job: polling query-migrate faster
      // would only compete with the migration for QEMU's main lock.
      pollMs: this.req.mode === "handover" ? 50 : 200,
      onProgress: (p) => {
        this.progress = progressReport(p);
        this.changes.notify();
      },
      log: (m) => this.ctx.log.info({ migration: this.migrationId }, m),
    });
    this.job.done.then(
      (r) => {
        src.qmp.off("event", onEvent);
        this.result = migrationFigures(r);
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
        if (beforeSwitch) {
          if (handover) src.prioritize(false);
          this.guest.state = "running";
          this.guest.setOutgoing(null);
        }
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

  /**
   * The orchestrator's decision after completion (or the source's own, see selfResolve):
   * one at a time; the same decision again is a no-op, a different one is refused.
   */
  confirm(outcome: ConfirmOutcome): Promise<void> {
    if (this.confirming) {
      if (this.confirming.outcome !== outcome)
        throw conflict(`migration ${this.migrationId} is being confirmed with ${this.confirming.outcome}`);
      return this.confirming.done;
    }
    if (this.phase === "confirmed" && outcome === "success") return Promise.resolve();
    if (this.phase === "rolled-back" && outcome === "rollback") return Promise.resolve();
    if (this.phase !== "completed")
      throw conflict(`migration ${this.migrationId} is ${this.phase}, not completed`);
    const done = this.doConfirm(outcome);
    this.confirming = { outcome, done };
    return done.finally(() => {
      this.confirming = null;
    });
  }

  private async doConfirm(outcome: ConfirmOutcome): Promise<void> {
    // Figures arrive a moment after the completion event; wait for them (bounded).
    await Promise.race([this.job!.done.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    const q = this.guest.qemu;
    if (outcome === "success") {
      this.guest.detach();
      if (q) {
        if (this.req.mode === "handover") q.releasePoolFile();
        await q.stop();
      }
      // The guest left this server (pre-copy): its disks and logs here are stale copies.
      if (this.req.mode === "precopy" && hasStore(this.guest.config))
        removeGuestStore(this.ctx.cfg, this.guest.guestId);
      this.setPhase("confirmed");
      this.onGone(this);
    } else {
      if (this.result?.switchedToPostcopy) {
        throw conflict(
          `migration ${this.migrationId} switched to post-copy: the guest cannot resume at the source`,
        );
      }
      // QEMU allows `cont` after a completed migration: the destination never ran (-S).
      q?.prioritize(false);
      await q?.qmp.cont();
      this.guest.state = "running";
      this.guest.setOutgoing(null);
      this.setPhase("rolled-back");
    }
  }

  private armSelfResolve(): void {
    const d = this.req.destination;
    if (!d || this.resolveTimer) return;
    this.resolveTimer = setTimeout(() => void this.selfResolve(d.url), d.resolveAfterMs ?? 30_000);
    this.resolveTimer.unref();
  }

  /**
   * Nobody confirmed the completed migration in time: settle it with the destination
   * agent, which decides by the state of its incoming (retried while it is unreachable:
   * the guest stays paused here until then, never resumed on a guess).
   */
  private async selfResolve(url: string): Promise<void> {
    const peer = this.ctx.peer(url);
    const log = this.ctx.log;
    for (let attempt = 0; this.phase === "completed"; attempt++) {
      let outcome: ConfirmOutcome | null = null;
      let why = "";
      try {
        const inc = await peer.abortIncoming(this.migrationId, 5000);
        outcome = "rollback";
        why = `the destination's incoming is ${inc.state} now (fenced: it never ran)`;
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 409) {
          outcome = "success";
          why = `the destination runs the guest (${e.body.message})`;
        } else if (e instanceof AgentHttpError && e.status === 404) {
          // The destination agent knows no such incoming: the guest arrived there (and the
          // record was pruned) or the destination never existed there.
          try {
            await peer.guest(this.guest.guestId);
            outcome = "success";
            why = "the destination agent has the guest";
          } catch (e2) {
            if (e2 instanceof AgentHttpError && e2.status === 404) {
              outcome = "rollback";
              why = "the destination agent has neither the incoming nor the guest";
            }
          }
        }
        if (!outcome && attempt % 10 === 0) {
          log.warn(
            { migration: this.migrationId, err: (e as Error).message },
            "completed migration unconfirmed; the destination agent cannot settle it yet (retrying)",
          );
        }
      }
      if (outcome === "rollback" && this.result?.switchedToPostcopy) {
        log.error(
          { migration: this.migrationId },
          `${why}, but the guest switched to post-copy: it cannot resume here`,
        );
        return;
      }
      if (outcome) {
        log.warn({ migration: this.migrationId, outcome }, `completed migration unconfirmed: ${why}`);
        try {
          await this.confirm(outcome);
        } catch (e) {
          // The orchestrator got there first (with the same decision, which the fence forces).
          log.info({ migration: this.migrationId, err: (e as Error).message }, "settled meanwhile");
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 2000));
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

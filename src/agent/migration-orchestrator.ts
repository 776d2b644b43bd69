/**
 * Moves a guest between host VMs through the agents' HTTP APIs; the one place that knows
 * which agent to call in which order and how to undo each step.
 *
 *   1. accounting: same server -> begin a handover at the server agent (room on the
 *      destination host VM); across servers -> reserve at the destination's server agent;
 *   2. prepare: the destination agent starts QEMU paused (-S -incoming defer): on the same
 *      pool file (instant) or its own (pre-copy), and answers the URI it listens on;
 *   3. perform: the source agent migrates (unix socket for instant, TCP for pre-copy);
 *      post-copy: arm the destination, then switch; co-migration: wait at pre-switchover
 *      until every partner is there, then continue all;
 *   4. decide: the source completed -> finish the destination (it starts running) ->
 *      confirm the source (stop it) -> commit the accounting. The source failed or was
 *      cancelled -> it already runs again -> abort the destination -> undo the accounting.
 *
 * The decision point is finish. If it fails and the destination agent provably never got
 * the request (connection refused) or answered an error, the destination never ran (it
 * was started with -S), so the source resumes: a rollback with the guest's memory intact,
 * even for an instant handover that shares the RAM file. Only a finish whose fate is
 * unknown (reset or timeout mid-request) is not rolled back: the source stays paused and
 * the outcome is "unresolved" (never two running copies).
 *
 * Agents die and are restarted by their supervisors; a restarted agent adopts its QEMUs.
 * So an agent that stops answering is waited for (agentRecoveryMs) rather than given up
 * at once: the source's migration goes on in QEMU meanwhile and the destination's lease
 * is kept alive, so that the restarted source agent can report where the migration stands
 * and the move is finished or rolled back as usual. If the orchestrator gives up (or dies)
 * after the source completed, the source agent settles the migration itself once nobody
 * confirms it (it was told the destination: see outgoing.ts): it fences the destination
 * and resumes the guest, or stops its copy if the destination already runs it.
 */
import { randomBytes } from "node:crypto";
import type {
  GuestConfig,
  IncomingStatus,
  MigrationOptions,
  MigrationProgressView,
  OutgoingStatus,
} from "./api-types.ts";
import { AgentHttpError, AgentUnreachableError, HostVmAgentClient, ServerAgentClient } from "./client.ts";
import { nowMs } from "./proc.ts";

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
  /** Lease of an unfinished incoming; renewed every second. Default 15 s. */
  leaseMs?: number;
  /** Pre-copy: no byte moved for this long = broken link. Default 10 s. */
  noProgressTimeoutMs?: number;
  /**
   * How long an agent may stay unreachable (dead, restarted by its supervisor) in the
   * middle of a migration before the orchestrator gives up on it. Default 60 s.
   */
  agentRecoveryMs?: number;
}

const TERMINAL = new Set(["completed", "failed", "cancelled", "confirmed", "rolled-back"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A barrier for co-migration: partners wait at pre-switchover until all arrived. */
class Barrier {
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

export class MigrationOrchestrator {
  private readonly log: (msg: string) => void;
  constructor(
    private readonly token: string,
    private readonly opts: OrchestratorOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
  }

  migrate(req: MigrateRequest): Promise<MigrationOutcome> {
    return this.start(req).done;
  }

  start(req: MigrateRequest, barrier?: Barrier): MigrationHandle {
    const migrationId = `m-${req.guestId}-${randomBytes(4).toString("hex")}`;
    const run = new Run(this.token, this.opts, this.log, migrationId, req, barrier);
    const done = run.execute();
    done.catch(() => {});
    return { migrationId, done, cancel: (reason) => run.cancel(reason ?? "cancelled on request") };
  }

  /**
   * Co-migration: every guest pauses before switchover and none switches until all are
   * ready; if any fails before that, the others are cancelled (their guests resume at their
   * sources). After the release each finishes on its own.
   */
  async coMigrate(reqs: MigrateRequest[]): Promise<MigrationOutcome[]> {
    const barrier = new Barrier(reqs.length);
    const handles = reqs.map((r) => this.start(r, barrier));
    for (const h of handles) {
      h.done.catch((e: Error) => {
        if (barrier.released) return;
        // Before the release a partner's failure cancels the whole group: no guest of it
        // may run at its destination while another stays behind.
        barrier.abort(new Error(`co-migration partner ${h.migrationId} failed: ${e.message}`));
        for (const other of handles) {
          if (other !== h) void other.cancel(`co-migration partner ${h.migrationId} failed`).catch(() => {});
        }
      });
    }
    const settled = await Promise.allSettled(handles.map((h) => h.done));
    const errors = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : []));
    if (errors.length > 0) {
      // Name the partner that failed first-hand, not only those cancelled because of it.
      const root = errors.find((e) => !/co-migration partner/.test(e.message)) ?? errors[0];
      const where = (e: Error) => (e instanceof MigrationFailedError ? e.guestAt : "unknown");
      const at =
        errors.every((e) => where(e) === "source") && errors.length === reqs.length ? "source" : "unknown";
      throw new MigrationFailedError(
        `co-migration of ${reqs.map((r) => r.guestId).join(", ")} failed: ${root.message}` +
          (errors.length > 1 ? ` (${errors.length - 1} partner(s) cancelled)` : ""),
        root instanceof MigrationFailedError ? root.migrationId : handles[0].migrationId,
        root instanceof MigrationFailedError ? root.outcome : "failed",
        at,
      );
    }
    return settled.map((s) => (s as PromiseFulfilledResult<MigrationOutcome>).value);
  }
}

class Run {
  private readonly src: HostVmAgentClient;
  private readonly dst: HostVmAgentClient;
  private readonly srcServer: ServerAgentClient;
  private readonly dstServer: ServerAgentClient;
  private readonly mechanism: Mechanism;
  private cancelRequested: string | null = null;
  private started = false;
  private arrived = false;
  private out: OutgoingStatus | null = null;
  private doneP: Promise<MigrationOutcome> | null = null;

  constructor(
    token: string,
    private readonly opts: OrchestratorOptions,
    private readonly log: (msg: string) => void,
    readonly migrationId: string,
    private readonly req: MigrateRequest,
    private readonly barrier: Barrier | undefined,
  ) {
    this.src = new HostVmAgentClient(req.from.hostVmUrl, token);
    this.dst = new HostVmAgentClient(req.to.hostVmUrl, token);
    this.srcServer = new ServerAgentClient(req.from.serverUrl, token);
    this.dstServer = new ServerAgentClient(req.to.serverUrl, token);
    const m = req.mechanism ?? "auto";
    this.mechanism = m === "auto" ? (req.from.server === req.to.server ? "instant" : "precopy") : m;
  }

  async cancel(reason: string): Promise<void> {
    this.cancelRequested ??= reason;
    if (this.started) {
      try {
        await this.src.cancelOutgoing(this.migrationId, reason);
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 409) {
          throw new MigrationFailedError(e.body.message, this.migrationId, "refused", "destination");
        }
        throw e;
      }
    }
    await this.doneP?.catch(() => {});
  }

  execute(): Promise<MigrationOutcome> {
    this.doneP = this.run();
    return this.doneP;
  }

  private fail(
    msg: string,
    outcome: MigrationFailedError["outcome"],
    at: MigrationFailedError["guestAt"],
  ): never {
    throw new MigrationFailedError(
      `migration ${this.migrationId} of ${this.req.guestId}: ${msg}`,
      this.migrationId,
      outcome,
      at,
    );
  }

  private async run(): Promise<MigrationOutcome> {
    const { req, mechanism } = this;
    const t0 = nowMs();
    const instant = mechanism === "instant";
    if (instant && req.from.server !== req.to.server) {
      this.fail(
        `instant handover needs both host VMs on one server (${req.from.server} != ${req.to.server})`,
        "refused",
        "source",
      );
    }
    if (req.from.server === req.to.server && req.from.hostVm === req.to.hostVm) {
      this.fail("source and destination are the same host VM", "refused", "source");
    }
    const g = await this.src.guest(req.guestId);
    if (g.state !== "running")
      this.fail(`guest is ${g.state} at the source, not running`, "refused", "source");
    const guest: GuestConfig = { guestId: g.guestId, memoryMiB: g.memoryMiB, cpus: g.cpus, bootId: g.bootId };

    // 1. accounting
    let handoverId: string | null = null;
    if (instant) {
      const b = await this.srcServer.beginHandover({
        guestId: req.guestId,
        fromHostVm: req.from.hostVm,
        toHostVm: req.to.hostVm,
      });
      handoverId = b.handover.handoverId;
    } else {
      await this.dstServer.reserve({ hostVm: req.to.hostVm, guestId: req.guestId, memoryMiB: g.memoryMiB });
    }
    const undoAccounting = async () => {
      const undo = () =>
        handoverId
          ? this.srcServer.abortHandover(handoverId)
          : this.dstServer.release(req.to.hostVm, req.guestId);
      try {
        await undo();
      } catch (e) {
        if (!(e instanceof AgentUnreachableError)) {
          this.log(`${this.migrationId}: undoing the accounting failed: ${(e as Error).message}`);
          return;
        }
        // The server agent is out of reach (a cut link): keep trying in the background
        // for a while instead of leaving a reservation that no guest uses.
        this.log(
          `${this.migrationId}: server agent unreachable, retrying the accounting undo in the background`,
        );
        void (async () => {
          for (let i = 0; i < 30; i++) {
            await sleep(2000);
            try {
              await undo();
              return;
            } catch (e2) {
              if (!(e2 instanceof AgentUnreachableError)) return;
            }
          }
        })();
      }
    };
    const abortDestination = async () => {
      try {
        // Bounded: behind a cut link this would wait for TCP; the lease covers that case.
        await this.dst.abortIncoming(this.migrationId, 5000);
      } catch (e) {
        this.log(`${this.migrationId}: aborting the destination failed: ${(e as Error).message}`);
        if (!(e instanceof AgentUnreachableError)) return;
        // Its agent is down: once its supervisor restarted it, the new agent has adopted
        // the paused QEMU as an incoming again; abort it there as soon as it answers (its
        // lease would kill it too, later).
        void (async () => {
          const deadline = nowMs() + this.recoveryMs;
          while (nowMs() < deadline) {
            await sleep(1000);
            try {
              await this.dst.abortIncoming(this.migrationId, 5000);
              this.log(`${this.migrationId}: the destination (its agent back) is aborted`);
              return;
            } catch (e2) {
              if (!(e2 instanceof AgentUnreachableError)) return;
            }
          }
        })();
      }
    };

    // 2. prepare
    let inc: IncomingStatus;
    const tPrep = nowMs();
    try {
      if (this.cancelRequested) this.fail(this.cancelRequested, "cancelled", "source");
      inc = await this.dst.prepareIncoming({
        migrationId: this.migrationId,
        guest,
        mode: instant ? "handover" : "precopy",
        listenHost: req.to.address,
        postcopy: mechanism === "postcopy",
        workloads: g.workloads,
        leaseMs: this.opts.leaseMs ?? 15_000,
      });
    } catch (e) {
      await undoAccounting();
      if (e instanceof MigrationFailedError) throw e;
      this.fail(`preparing the destination failed: ${(e as Error).message}`, "failed", "source");
    }
    const prepareMs = nowMs() - tPrep;
    let leaseTimer: NodeJS.Timeout | null = null;
    try {
      await req.hooks?.afterPrepare?.(inc);
      if (this.cancelRequested) this.fail(this.cancelRequested, "cancelled", "source");

      // 3. perform
      const o = req.options ?? {};
      this.out = await this.src.startOutgoing(req.guestId, {
        migrationId: this.migrationId,
        mode: instant ? "handover" : "precopy",
        uri: inc.uri!,
        options: {
          ...o,
          noProgressTimeoutMs:
            o.noProgressTimeoutMs ?? (instant ? undefined : (this.opts.noProgressTimeoutMs ?? 10_000)),
          postcopy: mechanism === "postcopy",
          ignoreStall: mechanism === "postcopy",
          pauseBeforeSwitchover: this.barrier !== undefined,
        },
        // An instant handover is over in milliseconds: wait for it in the same request.
        waitMs: instant && !this.barrier ? 30_000 : 0,
        // If nobody confirms a completed migration (this orchestrator died or gave up), the
        // source settles it with the destination's agent.
        destination: { url: req.to.hostVmUrl, resolveAfterMs: 2 * (this.opts.leaseMs ?? 15_000) },
      });
      this.started = true;
      await req.hooks?.afterStart?.(this.out);
      if (this.cancelRequested)
        await this.src.cancelOutgoing(this.migrationId, this.cancelRequested).catch(() => {});
    } catch (e) {
      if (!this.started) {
        await abortDestination();
        await undoAccounting();
        if (e instanceof MigrationFailedError) throw e;
        this.fail(`starting the source failed: ${(e as Error).message}`, "failed", "source");
      }
      throw e;
    }

    // The destination's lease, and a watch on it: a destination that died makes the source cancel.
    let destDown = 0;
    leaseTimer = setInterval(() => {
      this.dst.incoming(this.migrationId, true, 2000).then(
        (s) => {
          destDown = 0;
          if (
            (s.state === "failed" || s.state === "expired" || s.state === "aborted") &&
            this.out &&
            !TERMINAL.has(this.out.phase)
          ) {
            void this.src
              .cancelOutgoing(this.migrationId, `destination ${s.state}: ${s.error ?? ""}`)
              .catch(() => {});
          }
        },
        () => {
          destDown++;
        },
      );
    }, 1000);

    let out = this.out!;
    let switched = false;
    let destRunning = false;
    try {
      for (let errors = 0; ; ) {
        try {
          out = await this.watch(
            out,
            () => switched,
            (v) => (switched = v),
            () => destRunning,
            (v) => (destRunning = v),
            () => destDown,
          );
          break;
        } catch (e) {
          if (e instanceof AgentUnreachableError && e.url.startsWith(this.src.baseUrl)) {
            // The source agent is down; its QEMU migrates on. Wait for its successor (the
            // destination's lease is renewed meanwhile) and go on from what it reports.
            out = await this.awaitSource(e);
            continue;
          }
          // An agent call failed mid-way: ask the source to cancel (refused after
          // switchover), then keep watching it until it reaches a final phase.
          this.log(`${this.migrationId}: ${(e as Error).message}; cancelling`);
          if (++errors > 20) {
            this.fail(`lost track of the migration: ${(e as Error).message}`, "unresolved", "unknown");
          }
          if (!switched)
            await this.src.cancelOutgoing(this.migrationId, (e as Error).message).catch(() => {});
          await sleep(500);
          out = await this.src.outgoing(this.migrationId).catch(() => out);
        }
      }
    } finally {
      clearInterval(leaseTimer);
    }
    if (out.progress) req.onProgress?.(out.progress);

    // 4. decide
    if (out.phase !== "completed" && switched) {
      this.fail(
        `post-copy failed after the switch (${out.error?.message ?? out.phase}): the guest's memory is split between both sides`,
        "failed",
        "unknown",
      );
    }
    if (out.phase !== "completed") {
      await Promise.all([abortDestination(), undoAccounting()]);
      const why = out.error?.message ?? out.phase;
      this.fail(
        `${out.phase} before switchover; the guest runs at the source: ${why}`,
        out.phase === "cancelled" ? "cancelled" : "failed",
        "source",
      );
    }
    await req.hooks?.beforeFinish?.(out);
    const fin = await this.finishDestination(abortDestination, undoAccounting);
    // Success: the guest runs at the destination. Stop the source and move the accounting.
    let confirmed: OutgoingStatus = out;
    const confirmDeadline = nowMs() + this.recoveryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        confirmed = await this.src.confirmOutgoing(this.migrationId, "success");
        break;
      } catch (e) {
        const down = e instanceof AgentUnreachableError;
        if (down ? nowMs() > confirmDeadline : attempt >= 5) {
          // Its agent settles it later (the destination runs the guest: it stops its copy).
          this.log(
            `${this.migrationId}: confirming the source failed (${(e as Error).message}); it stays paused`,
          );
          break;
        }
        await sleep(down ? 500 : 200 * (attempt + 1));
      }
    }
    try {
      if (handoverId) await this.srcServer.commitHandover(handoverId);
      else await this.srcServer.release(req.from.hostVm, req.guestId);
    } catch (e) {
      this.log(`${this.migrationId}: accounting after success failed: ${(e as Error).message}`);
    }
    const s = confirmed;
    const r = s.result;
    return {
      migrationId: this.migrationId,
      guestId: req.guestId,
      mechanism,
      from: req.from,
      to: req.to,
      // Post-copy resumes the guest before the last page arrived: the move ends at completion.
      totalMs:
        fin.resumedAt !== null && s.timing.migrateAt !== null
          ? Math.max(fin.resumedAt, s.timing.completedAt ?? 0) - s.timing.migrateAt
          : null,
      downtimeMs:
        fin.resumedAt !== null && s.timing.stoppedAt !== null ? fin.resumedAt - s.timing.stoppedAt : null,
      qemu: r,
      transferredBytes: r?.transferredBytes ?? 0,
      prepareMs,
      endToEndMs: nowMs() - t0,
      sourceCpuSeconds: s.cpu.start !== null && s.cpu.end !== null ? s.cpu.end - s.cpu.start : null,
      destinationCpuSeconds:
        fin.cpu.start !== null && fin.cpu.end !== null ? fin.cpu.end - fin.cpu.start : null,
      source: s,
      destination: fin,
    };
  }

  /** Follows the source until a final phase, driving post-copy and the co-migration barrier. */
  private async watch(
    start: OutgoingStatus,
    switched: () => boolean,
    setSwitched: (v: boolean) => void,
    destRunning: () => boolean,
    setDestRunning: (v: boolean) => void,
    destDown: () => number,
  ): Promise<OutgoingStatus> {
    const { req, mechanism } = this;
    let out = start;
    while (!TERMINAL.has(out.phase)) {
      if (out.progress) req.onProgress?.(out.progress);
      if (mechanism === "postcopy" && !switched() && out.phase === "running" && out.progress) {
        const p = out.progress;
        const due =
          (req.postcopySwitch ?? "after-first-pass") === "after-first-pass" ? p.pass >= 2 : p.stalled;
        if (due) {
          // Arm first: once switched, the destination must start running by itself.
          await this.dst.finishIncoming(this.migrationId, { arm: true });
          await this.src.postcopyOutgoing(this.migrationId).catch((e) => {
            if (!(e instanceof AgentHttpError && e.status === 409)) throw e;
          });
          setSwitched(true);
        }
      }
      if (out.phase === "pre-switchover" && this.barrier && !this.arrived) {
        this.arrived = true;
        try {
          await this.barrier.arrive();
        } catch (e) {
          await this.src.cancelOutgoing(this.migrationId, (e as Error).message).catch(() => {});
        }
        out = await this.src.outgoing(this.migrationId);
        if (out.phase === "pre-switchover") await this.src.continueOutgoing(this.migrationId);
      }
      if (out.phase === "postcopy" && !destRunning()) {
        await this.dst.finishIncoming(this.migrationId, { timeoutMs: 30_000 });
        setDestRunning(true);
      }
      if (destDown() >= 5 && !switched()) {
        await this.src
          .cancelOutgoing(this.migrationId, "destination agent unreachable for 5 s")
          .catch(() => {});
      }
      out = await this.src.outgoing(this.migrationId, { waitMs: 1000, unless: out.phase });
    }
    return out;
  }

  /**
   * The decision point. Success: the destination runs. A failure is rolled back only when
   * the destination provably never ran and never will: its agent never got the request
   * (refused), or it answered and we then killed its QEMU.
   */
  private async finishDestination(
    abortDestination: () => Promise<void>,
    undoAccounting: () => Promise<void>,
  ): Promise<IncomingStatus> {
    let err: Error;
    try {
      return await this.dst.finishIncoming(this.migrationId, { timeoutMs: 30_000 });
    } catch (e) {
      err = e as Error;
    }
    let neverRan = err instanceof AgentUnreachableError && err.delivered === "no";
    if (!neverRan) {
      // The agent got the request (or may have): ask it; kill its QEMU unless it runs.
      const known = await this.probeDestination();
      if (known === "unknown") {
        // A (restarted) agent without this incoming: it had no QEMU left to adopt for it.
        neverRan = true;
      } else if (known?.state === "running") return known;
      else if (known) {
        try {
          const a = await this.dst.abortIncoming(this.migrationId);
          neverRan = a.state !== "running";
        } catch (e) {
          if (e instanceof AgentHttpError && e.status === 409) {
            const again = await this.probeDestination();
            if (again !== "unknown" && again?.state === "running") return again;
          }
        }
      }
    }
    if (!neverRan) {
      this.fail(
        `finishing the destination failed and its fate is unknown (${err.message}); the source stays paused`,
        "unresolved",
        "unknown",
      );
    }
    this.log(`${this.migrationId}: finish failed (${err.message}); rolling back to the source`);
    await this.src.confirmOutgoing(this.migrationId, "rollback");
    await abortDestination();
    await undoAccounting();
    this.fail(
      `the destination could not be started (${err.message}); rolled back, the guest runs at the source`,
      "rolled-back",
      "source",
    );
  }

  /**
   * After a finish of unknown fate: what does the destination agent say? Waited for while
   * it is down (its supervisor restarts it, the new agent adopts the QEMU as an incoming,
   * or as the guest if it already runs), up to agentRecoveryMs; null if it never answers
   * (the source then stays paused), "unknown" if it answers that it has no such incoming.
   */
  private async probeDestination(): Promise<IncomingStatus | "unknown" | null> {
    const deadline = nowMs() + this.recoveryMs;
    for (;;) {
      try {
        return await this.dst.incoming(this.migrationId, false, 2000);
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 404) return "unknown";
      }
      if (nowMs() > deadline) return null;
      await sleep(500);
    }
  }

  private get recoveryMs(): number {
    return this.opts.agentRecoveryMs ?? 60_000;
  }

  /**
   * The source agent stopped answering mid-migration: wait (bounded) for its successor and
   * return what it reports. Its QEMU carries on meanwhile, and so does the lease renewal
   * of the destination. Gives up as "unresolved": the destination is then left to its
   * lease, and the source agent, once back, settles a completed migration by itself.
   */
  private async awaitSource(first: AgentUnreachableError): Promise<OutgoingStatus> {
    const t0 = nowMs();
    this.log(
      `${this.migrationId}: source agent unreachable (${first.causeText}); waiting up to ` +
        `${Math.round(this.recoveryMs / 1000)} s for it to come back`,
    );
    for (;;) {
      await sleep(500);
      try {
        const out = await this.src.outgoing(this.migrationId);
        this.log(
          `${this.migrationId}: source agent back after ${Math.round(nowMs() - t0)} ms: migration ${out.phase}`,
        );
        return out;
      } catch (e) {
        if (e instanceof AgentHttpError) {
          this.fail(
            `the source agent came back without the migration (${e.body.message}): its QEMU was not adopted`,
            "unresolved",
            "unknown",
          );
        }
        if (nowMs() - t0 > this.recoveryMs) {
          this.fail(
            `source agent unreachable for ${Math.round(this.recoveryMs / 1000)} s (${(e as Error).message}); ` +
              "the destination is left to its lease, the source agent settles the migration when it is back",
            "unresolved",
            "unknown",
          );
        }
      }
    }
  }
}

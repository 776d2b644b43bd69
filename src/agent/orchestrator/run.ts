/**
 * One migration, phase by phase (see migration-orchestrator.ts for the protocol and why it
 * is safe): check -> account -> prepare -> perform -> follow (with the destination's lease
 * renewed) -> decide: finish, confirm, commit on success; rollback otherwise. Each phase
 * undoes what the earlier ones did when it fails before the switch. Time bounds: timing.ts.
 */

import { compareRamDigests, type RamComparison } from "../../qemu/index.ts";
import type { GuestConfig, GuestStatus, IncomingStatus, OutgoingStatus } from "../api-types.ts";
import { AgentHttpError, AgentUnreachableError, HostVmAgentClient, ServerAgentClient } from "../client.ts";
import { nowMs } from "../proc.ts";
import { MIGRATION_TIMING as T } from "./timing.ts";
import {
  type Barrier,
  type Mechanism,
  type MigrateRequest,
  MigrationFailedError,
  type MigrationOutcome,
  type OrchestratorOptions,
} from "./types.ts";

/** Phases of the source after which nothing more happens on its own. */
const TERMINAL = new Set(["completed", "failed", "cancelled", "confirmed", "rolled-back"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the accounting phase did, and how to undo or complete it. */
interface Accounting {
  /** Same server: the handover begun at the server agent; across servers: null (a reservation). */
  handoverId: string | null;
  /** A live update on one host VM: nothing to account (the guest's memory stays where it counts). */
  none?: true;
}

export class Run {
  private readonly src: HostVmAgentClient;
  private readonly dst: HostVmAgentClient;
  private readonly srcServer: ServerAgentClient;
  private readonly dstServer: ServerAgentClient;
  private readonly mechanism: Mechanism;
  private cancelRequested: string | null = null;
  private started = false;
  /** The source's pause before the switch was handled (barrier, logs, continue). */
  private continued = false;
  private out: OutgoingStatus | null = null;
  private doneP: Promise<MigrationOutcome> | null = null;
  /** Post-copy: the source switched (the guest's memory is split from then on). */
  private switched = false;
  /** Post-copy: the destination was finished (it runs the guest). */
  private destRunning = false;
  /** Lease renewals failed in a row (the destination agent is unreachable). */
  private destDown = 0;

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

  private get instant(): boolean {
    return this.mechanism === "instant";
  }
  private get leaseMs(): number {
    return this.opts.leaseMs ?? T.leaseMs;
  }
  private get recoveryMs(): number {
    return this.opts.agentRecoveryMs ?? T.agentRecoveryMs;
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
    const t0 = nowMs();
    const g = await this.check();
    const acc = await this.account(g);
    const { inc, prepareMs } = await this.prepare(g, acc);
    await this.perform(inc, acc);
    const out = await this.follow();
    if (out.progress) this.req.onProgress?.(out.progress);
    return this.decide(out, acc, { t0, prepareMs });
  }

  /** Refuses moves that cannot work; the source guest as it runs now. */
  private async check(): Promise<GuestStatus> {
    const { req } = this;
    if (this.instant && req.from.server !== req.to.server) {
      this.fail(
        `instant handover needs both host VMs on one server (${req.from.server} != ${req.to.server})`,
        "refused",
        "source",
      );
    }
    const sameHostVm = req.from.server === req.to.server && req.from.hostVm === req.to.hostVm;
    if (sameHostVm && !req.inPlace) {
      this.fail("source and destination are the same host VM", "refused", "source");
    }
    if (req.inPlace && (!sameHostVm || !this.instant)) {
      this.fail(
        "a live update stays on its host VM and hands the RAM file over (instant)",
        "refused",
        "source",
      );
    }
    const g = await this.src.guest(req.guestId);
    if (g.state !== "running")
      this.fail(`guest is ${g.state} at the source, not running`, "refused", "source");
    return g;
  }

  /** 1. Accounting: a handover begun on one server, or a reservation at the destination's. */
  private async account(g: GuestStatus): Promise<Accounting> {
    const { req } = this;
    if (req.inPlace) return { handoverId: null, none: true };
    if (this.instant) {
      const b = await this.srcServer.beginHandover({
        guestId: req.guestId,
        fromHostVm: req.from.hostVm,
        toHostVm: req.to.hostVm,
      });
      return { handoverId: b.handover.handoverId };
    }
    await this.dstServer.reserve({ hostVm: req.to.hostVm, guestId: req.guestId, memoryMiB: g.memoryMiB });
    return { handoverId: null };
  }

  /** Undoes the accounting (abort the handover, release the reservation). */
  private async undoAccounting(acc: Accounting): Promise<void> {
    if (acc.none) return;
    const undo = () =>
      acc.handoverId
        ? this.srcServer.abortHandover(acc.handoverId)
        : this.dstServer.release(this.req.to.hostVm, this.req.guestId);
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
        for (let i = 0; i < T.accountingRetries; i++) {
          await sleep(T.accountingRetryEveryMs);
          try {
            await undo();
            return;
          } catch (e2) {
            if (!(e2 instanceof AgentUnreachableError)) return;
          }
        }
      })();
    }
  }

  /** Completes the accounting once the destination runs the guest. */
  private async commitAccounting(acc: Accounting): Promise<void> {
    if (acc.none) return;
    try {
      if (acc.handoverId) await this.srcServer.commitHandover(acc.handoverId);
      else await this.srcServer.release(this.req.from.hostVm, this.req.guestId);
    } catch (e) {
      this.log(`${this.migrationId}: accounting after success failed: ${(e as Error).message}`);
    }
  }

  /** 2. Prepare: the destination QEMU, paused, listening. Undoes the accounting on failure. */
  private async prepare(
    g: GuestStatus,
    acc: Accounting,
  ): Promise<{ inc: IncomingStatus; prepareMs: number }> {
    // The guest as the source runs it, its devices too: the destination QEMU must match.
    const guest: GuestConfig = { guestId: g.guestId, memoryMiB: g.memoryMiB, cpus: g.cpus, bootId: g.bootId };
    if (g.devices?.length) guest.devices = g.devices;
    // A guest booted into rescue keeps that command line where it goes (virtual AMT).
    if (g.boot) guest.boot = g.boot;
    const tPrep = nowMs();
    try {
      if (this.cancelRequested) this.fail(this.cancelRequested, "cancelled", "source");
      const inc = await this.dst.prepareIncoming({
        migrationId: this.migrationId,
        guest,
        mode: this.instant ? "handover" : "precopy",
        listenHost: this.req.to.address,
        postcopy: this.mechanism === "postcopy",
        workloads: g.workloads,
        leaseMs: this.leaseMs,
        ...(this.req.inPlace ? { inPlace: true } : {}),
        // What the stream does not carry across servers (read-only disks, serial logs) comes from there.
        ...(guest.devices ? { source: { url: this.req.from.hostVmUrl } } : {}),
      });
      return { inc, prepareMs: nowMs() - tPrep };
    } catch (e) {
      await this.undoAccounting(acc);
      if (e instanceof MigrationFailedError) throw e;
      this.fail(`preparing the destination failed: ${(e as Error).message}`, "failed", "source");
    }
  }

  /**
   * 3. Perform: the source agent starts migrating towards the destination. Until it
   * accepted, a failure aborts the destination and undoes the accounting.
   */
  private async perform(inc: IncomingStatus, acc: Accounting): Promise<void> {
    const { req, instant } = this;
    try {
      await req.hooks?.afterPrepare?.(inc);
      if (this.cancelRequested) this.fail(this.cancelRequested, "cancelled", "source");
      const o = req.options ?? {};
      this.out = await this.src.startOutgoing(req.guestId, {
        migrationId: this.migrationId,
        mode: instant ? "handover" : "precopy",
        uri: inc.uri!,
        ...(inc.cprUri ? { cprUri: inc.cprUri } : {}),
        options: {
          ...o,
          noProgressTimeoutMs:
            o.noProgressTimeoutMs ??
            (instant ? undefined : (this.opts.noProgressTimeoutMs ?? T.noProgressTimeoutMs)),
          postcopy: this.mechanism === "postcopy",
          ignoreStall: this.mechanism === "postcopy",
          // Post-copy pauses too: the source's guest is stopped then, so the destination can
          // take the last lines of its serial logs before the switch (watch).
          pauseBeforeSwitchover: this.barrier !== undefined || this.mechanism === "postcopy",
        },
        // An instant handover is over in milliseconds: wait for it in the same request.
        waitMs: instant && !this.barrier ? T.instantStartWaitMs : 0,
        // If nobody confirms a completed migration (this orchestrator died or gave up), the
        // source settles it with the destination's agent.
        destination: { url: req.to.hostVmUrl, resolveAfterMs: T.selfResolveAfterLeases * this.leaseMs },
      });
      this.started = true;
      await req.hooks?.afterStart?.(this.out);
      if (this.cancelRequested)
        await this.src.cancelOutgoing(this.migrationId, this.cancelRequested).catch(() => {});
    } catch (e) {
      if (!this.started) {
        await this.abortDestination();
        await this.undoAccounting(acc);
        if (e instanceof MigrationFailedError) throw e;
        this.fail(`starting the source failed: ${(e as Error).message}`, "failed", "source");
      }
      throw e;
    }
  }

  /**
   * Renews the destination's lease every second while the source migrates, and watches it:
   * a destination that failed, expired or was aborted makes the source cancel. Counts
   * renewals that failed in a row (destDown). Returns the stop function.
   */
  private renewLease(): () => void {
    this.destDown = 0;
    const timer = setInterval(() => {
      this.dst.incoming(this.migrationId, true, T.leaseRenewCallMs).then(
        (s) => {
          this.destDown = 0;
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
          this.destDown++;
        },
      );
    }, T.leaseRenewEveryMs);
    return () => clearInterval(timer);
  }

  /**
   * Follows the source to a final phase (lease renewed meanwhile). A source agent that
   * stops answering is waited for (awaitSource); any other failed call cancels the source
   * (refused after the switch) and the following goes on until QEMU settled.
   */
  private async follow(): Promise<OutgoingStatus> {
    const stopLease = this.renewLease();
    let out = this.out!;
    try {
      for (let errors = 0; ; ) {
        try {
          return await this.watch(out);
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
          if (++errors > T.watchErrorLimit) {
            this.fail(`lost track of the migration: ${(e as Error).message}`, "unresolved", "unknown");
          }
          if (!this.switched)
            await this.src.cancelOutgoing(this.migrationId, (e as Error).message).catch(() => {});
          await sleep(T.watchErrorPauseMs);
          out = await this.src.outgoing(this.migrationId).catch(() => out);
        }
      }
    } finally {
      stopLease();
    }
  }

  /** Follows the source until a final phase, driving post-copy and the co-migration barrier. */
  private async watch(start: OutgoingStatus): Promise<OutgoingStatus> {
    const { req, mechanism } = this;
    let out = start;
    while (!TERMINAL.has(out.phase)) {
      if (out.progress) req.onProgress?.(out.progress);
      if (mechanism === "postcopy" && !this.switched && out.phase === "running" && out.progress) {
        const p = out.progress;
        const due =
          (req.postcopySwitch ?? "after-first-pass") === "after-first-pass" ? p.pass >= 2 : p.stalled;
        if (due) {
          // Arm first: once switched, the destination must start running by itself.
          await this.dst.finishIncoming(this.migrationId, { arm: true });
          await this.src.postcopyOutgoing(this.migrationId).catch((e) => {
            if (!(e instanceof AgentHttpError && e.status === 409)) throw e;
          });
          this.switched = true;
        }
      }
      if (out.phase === "pre-switchover" && !this.continued) {
        this.continued = true;
        if (this.barrier) {
          try {
            await this.barrier.arrive();
          } catch (e) {
            await this.src.cancelOutgoing(this.migrationId, (e as Error).message).catch(() => {});
          }
        }
        // Post-copy: the source's guest is stopped and the destination armed; the source's
        // serial lines since arming go to the destination's logs before the guest prints there.
        if (this.switched) await this.continueLogs();
        out = await this.src.outgoing(this.migrationId);
        if (out.phase === "pre-switchover") await this.src.continueOutgoing(this.migrationId);
      }
      if (out.phase === "postcopy" && !this.destRunning) {
        await this.dst.finishIncoming(this.migrationId, { timeoutMs: T.finishTimeoutMs });
        this.destRunning = true;
      }
      if (this.destDown >= T.destinationDownLimit && !this.switched) {
        await this.src
          .cancelOutgoing(this.migrationId, "destination agent unreachable for 5 s")
          .catch(() => {});
      }
      out = await this.src.outgoing(this.migrationId, { waitMs: T.watchPollMs, unless: out.phase });
    }
    return out;
  }

  /** Never fails the move: a log left short is a console's loss, not the guest's. */
  private async continueLogs(): Promise<void> {
    try {
      const c = await this.dst.continueIncomingLogs(this.migrationId, T.logContinueCallMs);
      this.log(
        `${this.migrationId}: destination took the source's last serial bytes (${JSON.stringify(c.bytes)}) in ${Math.round(c.ms)} ms`,
      );
    } catch (e) {
      this.log(
        `${this.migrationId}: continuing the serial logs at the destination failed: ${(e as Error).message}`,
      );
    }
  }

  /**
   * 4. Decide. The source completed: finish the destination, confirm the source, commit the
   * accounting. It did not: roll back (it already runs the guest again).
   */
  private async decide(
    out: OutgoingStatus,
    acc: Accounting,
    t: { t0: number; prepareMs: number },
  ): Promise<MigrationOutcome> {
    if (out.phase !== "completed" && this.switched) {
      this.fail(
        `post-copy failed after the switch (${out.error?.message ?? out.phase}): the guest's memory is split between both sides`,
        "failed",
        "unknown",
      );
    }
    if (out.phase !== "completed") await this.rollback(out, acc);
    await this.req.hooks?.beforeFinish?.(out);
    const ramCheck = this.mechanism === "precopy" && this.req.verifyRam ? await this.verifyRam(acc) : null;
    const fin = await this.finish(acc);
    // Success: the guest runs at the destination. Stop the source and move the accounting.
    const confirmed = await this.confirm(out);
    await this.commitAccounting(acc);
    return { ...this.outcome(confirmed, fin, t), ...(ramCheck ? { ramCheck } : {}) };
  }

  /**
   * Pre-copy, before finish: both RAM files are frozen (the source paused in postmigrate, the
   * destination loaded and never started, -S), so they must be equal. QEMU 7.2 under TCG can
   * miss a dirty page (docs/qemu-tcg-lost-pages.md); a difference is rolled back: the
   * destination never ran, so it is aborted and the source, whose RAM is the guest's, resumes.
   * A check that cannot be made (an agent still down after the recovery wait) does not stop
   * the move; the outcome says it was skipped.
   */
  private async verifyRam(acc: Accounting): Promise<NonNullable<MigrationOutcome["ramCheck"]>> {
    const t0 = nowMs();
    const ms = () => Math.round(nowMs() - t0);
    const deadline = t0 + this.recoveryMs;
    const get = async <R>(f: () => Promise<R>): Promise<R> => {
      for (;;) {
        try {
          return await f();
        } catch (e) {
          if (!(e instanceof AgentUnreachableError) || nowMs() > deadline) throw e;
          await sleep(T.recoveryPollMs);
        }
      }
    };
    let cmp: RamComparison;
    try {
      await this.dst.incoming(this.migrationId, true).catch(() => {});
      const [a, b] = await Promise.all([
        get(() => this.src.outgoingRamDigest(this.migrationId)),
        get(() => this.dst.incomingRamDigest(this.migrationId)),
      ]);
      await this.dst.incoming(this.migrationId, true).catch(() => {});
      cmp = compareRamDigests(a, b);
    } catch (e) {
      const why = (e as Error).message;
      this.log(`${this.migrationId}: RAM check skipped: ${why}`);
      return { result: "skipped", why, ms: ms() };
    }
    if (cmp.kind === "equal") return { result: "equal", chunks: cmp.chunks, ms: ms() };
    if (cmp.kind === "incomparable") {
      this.log(`${this.migrationId}: RAM check skipped: ${cmp.why}`);
      return { result: "skipped", why: cmp.why, ms: ms() };
    }
    const which = cmp.differing.slice(0, 8).join(", ") + (cmp.differing.length > 8 ? ", ..." : "");
    this.log(`${this.migrationId}: destination RAM differs from the source's in MiB ${which}; rolling back`);
    await this.abortDestination();
    await this.src.confirmOutgoing(this.migrationId, "rollback");
    await this.undoAccounting(acc);
    this.fail(
      `the destination's RAM differs from the source's in ${cmp.differing.length} of ${cmp.chunks} MiB ` +
        `(${which}): the destination lacks writes the source has (a lost dirty page: docs/qemu-tcg-lost-pages.md); rolled back, the guest runs at the source`,
      "rolled-back",
      "source",
    );
  }

  /** The source failed or was cancelled before the switch: it runs the guest again. */
  private async rollback(out: OutgoingStatus, acc: Accounting): Promise<never> {
    await Promise.all([this.abortDestination(), this.undoAccounting(acc)]);
    const why = out.error?.message ?? out.phase;
    this.fail(
      `${out.phase} before switchover; the guest runs at the source: ${why}`,
      out.phase === "cancelled" ? "cancelled" : "failed",
      "source",
    );
  }

  /**
   * Aborts the destination (bounded: behind a cut link this would wait for TCP; the lease
   * covers that). If its agent is down, retried in the background until its successor
   * (which adopted the paused QEMU as an incoming) answers, up to agentRecoveryMs.
   */
  private async abortDestination(): Promise<void> {
    try {
      await this.dst.abortIncoming(this.migrationId, T.abortCallMs);
    } catch (e) {
      this.log(`${this.migrationId}: aborting the destination failed: ${(e as Error).message}`);
      if (!(e instanceof AgentUnreachableError)) return;
      void (async () => {
        const deadline = nowMs() + this.recoveryMs;
        while (nowMs() < deadline) {
          await sleep(T.abortRetryEveryMs);
          try {
            await this.dst.abortIncoming(this.migrationId, T.abortCallMs);
            this.log(`${this.migrationId}: the destination (its agent back) is aborted`);
            return;
          } catch (e2) {
            if (!(e2 instanceof AgentUnreachableError)) return;
          }
        }
      })();
    }
  }

  /**
   * The decision point: finish the destination. Success: it runs. A failure is rolled back
   * only when the destination provably never ran and never will: its agent never got the
   * request (refused), or it answered and we then killed its QEMU.
   */
  private async finish(acc: Accounting): Promise<IncomingStatus> {
    let err: Error;
    try {
      return await this.dst.finishIncoming(this.migrationId, { timeoutMs: T.finishTimeoutMs });
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
    await this.resumeSource();
    await this.abortDestination();
    await this.undoAccounting(acc);
    this.fail(
      `the destination could not be started (${err.message}); rolled back, the guest runs at the source`,
      "rolled-back",
      "source",
    );
  }

  /**
   * Resumes the source after a finish that provably never ran the destination (confirm
   * "rollback"), waiting for its agent while it is down: an in-place live update loses both
   * sides at once when the host VM's agent dies, and its successor adopts the paused source.
   */
  private async resumeSource(): Promise<void> {
    const deadline = nowMs() + this.recoveryMs;
    for (;;) {
      try {
        await this.src.confirmOutgoing(this.migrationId, "rollback");
        return;
      } catch (e) {
        if (!(e instanceof AgentUnreachableError) || nowMs() > deadline) throw e;
        await sleep(T.confirmUnreachableRetryMs);
      }
    }
  }

  /**
   * Stops the source (confirm "success"), retried while its agent is down (its successor
   * adopts the paused QEMU) and a few times on answered errors. If it never gets through,
   * the source agent settles it later (the destination runs the guest: it stops its copy).
   */
  private async confirm(out: OutgoingStatus): Promise<OutgoingStatus> {
    const deadline = nowMs() + this.recoveryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.src.confirmOutgoing(this.migrationId, "success");
      } catch (e) {
        const down = e instanceof AgentUnreachableError;
        if (down ? nowMs() > deadline : attempt >= T.confirmRetries) {
          this.log(
            `${this.migrationId}: confirming the source failed (${(e as Error).message}); it stays paused`,
          );
          return out;
        }
        await sleep(down ? T.confirmUnreachableRetryMs : T.confirmBackoffMs * (attempt + 1));
      }
    }
  }

  /** The figures of a successful move, from both sides' reports. */
  private outcome(
    s: OutgoingStatus,
    fin: IncomingStatus,
    t: { t0: number; prepareMs: number },
  ): MigrationOutcome {
    const { req } = this;
    const r = s.result;
    return {
      migrationId: this.migrationId,
      guestId: req.guestId,
      mechanism: this.mechanism,
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
      prepareMs: t.prepareMs,
      endToEndMs: nowMs() - t.t0,
      sourceCpuSeconds: s.cpu.start !== null && s.cpu.end !== null ? s.cpu.end - s.cpu.start : null,
      destinationCpuSeconds:
        fin.cpu.start !== null && fin.cpu.end !== null ? fin.cpu.end - fin.cpu.start : null,
      source: s,
      destination: fin,
    };
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
        return await this.dst.incoming(this.migrationId, false, T.probeCallMs);
      } catch (e) {
        if (e instanceof AgentHttpError && e.status === 404) return "unknown";
      }
      if (nowMs() > deadline) return null;
      await sleep(T.recoveryPollMs);
    }
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
      await sleep(T.recoveryPollMs);
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

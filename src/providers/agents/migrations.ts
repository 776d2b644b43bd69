/**
 * Migrations the agent data plane started: each one is a MigrationOrchestrator run in this
 * process, and its progress is what the orchestrator reports (destination prepared, QEMU's
 * transfer figures, destination about to start, outcome). Kept in memory: a run belongs to
 * the process that drives it (see docs/architecture.md on a controller restart mid-move).
 */
import {
  type AgentEndpoint,
  type MigrateRequest,
  MigrationFailedError,
  type MigrationHandle,
  type MigrationOrchestrator,
  type MigrationProgressView,
} from "../../agent/index.ts";
import { ProviderError, type ProviderMigration } from "../types.ts";

/** Finished migrations kept for the executor's polls and the API. */
const KEEP_FINISHED = 200;

interface Tracked {
  id: string;
  guest: string;
  from: string;
  to: string;
  mechanism: ProviderMigration["mechanism"];
  status: ProviderMigration["status"];
  progress: number;
  remainingBytes: number;
  /** The orchestrator's ETA, when QEMU reports one. */
  etaSeconds: number | undefined;
  /** The planner's estimate of the whole move, for an ETA before QEMU has figures. */
  estimateSeconds: number;
  startedAt: number;
  finishedAt: number | undefined;
  error: string | undefined;
  pauseMs: number | undefined;
  handle: MigrationHandle;
}

export interface StartMove {
  guest: string;
  /** Host-VM ids the controller knows them by. */
  from: string;
  to: string;
  source: AgentEndpoint;
  destination: AgentEndpoint;
  mechanism: ProviderMigration["mechanism"];
  estimateSeconds: number;
  memoryBytes: number;
}

/**
 * Told about a pre-copy or an instant handover between its source's completion and its
 * destination's start, and of its outcome: the security VMs' monitors attach to the
 * destination while it waits paused.
 */
export interface ArrivalObserver {
  beforeResume(m: {
    migrationId: string;
    guest: string;
    from: string;
    to: string;
    mechanism?: "precopy" | "instant";
  }): Promise<void>;
  settled(
    migrationId: string,
    guestAt: "source" | "destination" | "unknown",
    move?: { guest: string; mechanism: ProviderMigration["mechanism"] },
  ): Promise<void>;
}

export class MigrationBook {
  private readonly list: Tracked[] = [];

  constructor(
    private readonly orchestrator: MigrationOrchestrator,
    private readonly now: () => number,
    private readonly log: (msg: string) => void,
    private readonly arrivals?: ArrivalObserver,
  ) {}

  running(): Tracked[] {
    return this.list.filter((m) => m.status === "running");
  }

  start(s: StartMove): ProviderMigration {
    const r = this.request(s);
    return this.track(s, this.orchestrator.start(r.req), r.bind);
  }

  /**
   * A co-migration: every member paused before its switchover until all are ready (one
   * barrier); a member that fails before the release cancels the others. Tracked one by one.
   */
  startGroup(moves: readonly StartMove[]): ProviderMigration[] {
    const rs = moves.map((s) => this.request(s));
    const handles = this.orchestrator.startGroup(rs.map((r) => r.req));
    return moves.map((s, i) => this.track(s, handles[i], rs[i].bind));
  }

  /** The orchestrator's request for a move, its hooks bound to its entry once tracked. */
  private request(s: StartMove): { req: MigrateRequest; bind: (t: Tracked) => void } {
    // Progress only goes up: a phase sets a floor, QEMU's transfer fills the span between.
    const raise = (t: Tracked, p: number) => {
      if (p > t.progress) t.progress = Math.min(1, p);
    };
    let tracked: Tracked | undefined;
    const onProgress = (p: MigrationProgressView) => {
      if (!tracked) return;
      raise(tracked, 0.1 + 0.8 * Math.min(1, Math.max(0, p.percent / 100)));
      tracked.remainingBytes = p.remainingBytes;
      if (p.etaMs !== null) tracked.etaSeconds = p.etaMs / 1000;
    };
    const req: MigrateRequest = {
      guestId: s.guest,
      from: s.source,
      to: s.destination,
      mechanism: s.mechanism,
      onProgress,
      hooks: {
        afterPrepare: () => {
          if (tracked) raise(tracked, 0.1);
        },
        beforeFinish: async (out) => {
          if (!tracked) return;
          raise(tracked, 0.9);
          tracked.remainingBytes = 0;
          // Bounded and never failing (ArrivalObserver.beforeResume): the move goes on after it.
          if (s.mechanism === "precopy" || s.mechanism === "instant")
            await this.arrivals
              ?.beforeResume({
                migrationId: out.migrationId,
                guest: s.guest,
                from: s.from,
                to: s.to,
                mechanism: s.mechanism,
              })
              .catch((e) =>
                this.log(`migration ${out.migrationId}: attach before resume: ${(e as Error).message}`),
              );
        },
      },
    };
    return {
      req,
      bind: (t) => {
        tracked = t;
      },
    };
  }

  private track(s: StartMove, handle: MigrationHandle, bind: (t: Tracked) => void): ProviderMigration {
    const startedAt = this.now();
    const tracked: Tracked = {
      id: handle.migrationId,
      guest: s.guest,
      from: s.from,
      to: s.to,
      mechanism: s.mechanism,
      status: "running",
      progress: 0,
      remainingBytes: s.mechanism === "instant" ? 0 : s.memoryBytes,
      etaSeconds: undefined,
      estimateSeconds: s.estimateSeconds,
      startedAt,
      finishedAt: undefined,
      error: undefined,
      pauseMs: undefined,
      handle,
    };
    bind(tracked);
    const t = tracked;
    this.list.push(t);
    const settled = (at: "source" | "destination" | "unknown") =>
      void this.arrivals
        ?.settled(t.id, at, { guest: t.guest, mechanism: t.mechanism })
        .catch((e) => this.log(`migration ${t.id}: monitors after the move: ${(e as Error).message}`));
    handle.done.then(
      (outcome) => {
        settled("destination");
        t.status = "completed";
        t.progress = 1;
        t.remainingBytes = 0;
        t.finishedAt = this.now();
        t.pauseMs = outcome.downtimeMs ?? undefined;
        this.log(
          `migration ${t.id} of ${t.guest} ${t.from} -> ${t.to} (${t.mechanism}) completed in ` +
            `${outcome.endToEndMs.toFixed(0)} ms, guest paused ${outcome.downtimeMs?.toFixed(0) ?? "?"} ms`,
        );
        this.prune();
      },
      (e: unknown) => {
        const f = e instanceof MigrationFailedError ? e : undefined;
        settled(f?.guestAt ?? "unknown");
        t.status = f?.outcome === "cancelled" ? "cancelled" : "failed";
        t.error =
          (e as Error).message + (f && f.guestAt !== "source" ? ` (the guest is at: ${f.guestAt})` : "");
        t.finishedAt = this.now();
        this.log(`migration ${t.id} of ${t.guest} ${t.status}: ${t.error}`);
        this.prune();
      },
    );
    return this.view(t);
  }

  get(id: string): ProviderMigration | undefined {
    const t = this.list.find((m) => m.id === id);
    return t ? this.view(t) : undefined;
  }

  views(): ProviderMigration[] {
    return this.list.map((t) => this.view(t));
  }

  /** Cancels before the switchover; refused (conflict) once the destination may run. */
  async cancel(id: string): Promise<void> {
    const t = this.list.find((m) => m.id === id);
    if (!t) throw new ProviderError("not-found", `no migration ${id}`);
    if (t.status !== "running") throw new ProviderError("conflict", `migration ${id} is ${t.status}`);
    try {
      await t.handle.cancel("cancelled by the controller");
    } catch (e) {
      if (e instanceof MigrationFailedError && e.outcome === "refused")
        throw new ProviderError("conflict", `migration ${id} cannot be cancelled any more: ${e.message}`);
      throw new ProviderError("unavailable", `cancelling migration ${id}: ${(e as Error).message}`);
    }
  }

  /** Waits for running migrations (a guest left mid-move would stay paused at its source). */
  async settle(timeoutMs: number): Promise<void> {
    const pending = this.running().map((t) => t.handle.done.catch(() => {}));
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(pending),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private view(t: Tracked): ProviderMigration {
    const now = this.now();
    const eta =
      t.status !== "running" ? 0 : (t.etaSeconds ?? Math.max(0, t.estimateSeconds - (now - t.startedAt)));
    return {
      id: t.id,
      guest: t.guest,
      from: t.from,
      to: t.to,
      mechanism: t.mechanism,
      status: t.status,
      progress: t.progress,
      remainingBytes: t.remainingBytes,
      etaSeconds: eta,
      startedAt: t.startedAt,
      finishedAt: t.finishedAt,
      error: t.error,
      pauseMs: t.pauseMs,
    };
  }

  private prune(): void {
    const done = this.list.filter((m) => m.status !== "running");
    for (const m of done.slice(0, Math.max(0, done.length - KEEP_FINISHED)))
      this.list.splice(this.list.indexOf(m), 1);
  }
}

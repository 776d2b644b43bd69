/**
 * Applies plans against the provider, one step at a time, journaling each action before it
 * acts and after it finishes. Whatever happens (a crash between the two, a takeover by
 * another controller), the next step reads the journal, asks the provider what really
 * happened, and carries on: every guest ends up running exactly once, where the journal says.
 */
import { hostVmGuestMemory } from "../model/index.ts";
import { unhandledKind } from "../planner/index.ts";
import { type Provider, ProviderError, type ProviderSnapshot } from "../providers/index.ts";
import type { EventBus } from "./events.ts";
import type { Leadership } from "./leader.ts";
import type { ControllerMetrics } from "./metrics.ts";
import type { ActionPayload } from "./reconciler.ts";
import type { Store } from "./store/connect.ts";
import type { ActionChange, StoredAction as ActionRow } from "./store/repositories/index.ts";

type Migrate = Extract<ActionPayload, { kind: "migrate" }>;
type Acquire = Extract<ActionPayload, { kind: "acquire-host-vm" }>;
type Release = Extract<ActionPayload, { kind: "release-host-vm" }>;
type Rejuvenate = Extract<ActionPayload, { kind: "rejuvenate" }>;
type CoMigrate = Extract<ActionPayload, { kind: "co-migrate" }>;

/** Why a co-migrate action fails on a data plane without lock-step moves (stored with it). */
export const CO_MIGRATE_UNSUPPORTED =
  "co-migrate: this provider's data plane cannot move guests in lock-step (the simulated and the agents' planes can); the action is refused, not split into independent moves";

/** Why a rejuvenate action fails on a provider without it (stored with it, so the plan shows it). */
export const REJUVENATE_UNSUPPORTED =
  "rejuvenate: this provider cannot renew a host VM under its guests (the agents' data plane can); the action is refused, not skipped";

const TERMINAL = new Set(["done", "failed", "cancelled"]);

export interface ExecutorOptions {
  readonly maxConcurrentMigrations: number;
  readonly maxPerHostVm: number;
}

export class Executor {
  private busy = false;

  constructor(
    private readonly store: Store,
    private readonly provider: Provider,
    private readonly leader: Leadership,
    private readonly events: EventBus,
    private readonly metrics: ControllerMetrics,
    private readonly opts: ExecutorOptions,
  ) {}

  /** Advances every approved or applying plan by what can be done now. */
  async step(): Promise<void> {
    if (!this.leader.isLeader || this.busy) return;
    this.busy = true;
    try {
      // Cancelled plans are polled too while migrations they started are still running.
      const plans = await this.store.repos.plans.toAdvance();
      if (plans.length === 0) return;
      const snap = await this.provider.snapshot();
      for (const p of plans) {
        if (p.status === "approved") {
          await this.leader.fenced((tx) => tx.plans.setStatus(p.id, "applying"));
          this.events.emit("plan.applying", undefined, { id: p.id }, snap.now);
        }
        await this.advance(p.id, snap, p.status !== "cancelled");
      }
    } finally {
      this.busy = false;
    }
  }

  private async actions(planId: number): Promise<ActionRow[]> {
    return this.store.repos.plans.actions(planId);
  }

  private async journal(planId: number, idx: number, change: ActionChange): Promise<void> {
    await this.leader.fenced((tx) => tx.plans.updateAction(planId, idx, change));
  }

  private async advance(planId: number, first: ProviderSnapshot, proceed: boolean): Promise<void> {
    let actions = await this.actions(planId);
    let snap = first;
    for (const a of actions) if (a.status === "running") await this.poll(planId, a, snap);
    if (!proceed) return;
    // What finished just now changed the world: look again before starting anything.
    if (actions.some((a) => a.status === "running")) snap = await this.provider.snapshot();
    actions = await this.actions(planId);

    // Actions whose dependencies failed cannot run.
    for (const [i, a] of actions.entries()) {
      if (a.status !== "pending") continue;
      if (a.dependsOn.some((d) => actions[d].status === "failed" || actions[d].status === "cancelled")) {
        await this.finish(planId, a, "failed", "an action it depends on failed", snap.now);
        actions[i] = { ...a, status: "failed" };
      }
    }

    let running = await this.store.repos.migrations.countRunning();
    for (const a of actions) {
      if (a.status !== "pending") continue;
      if (!a.dependsOn.every((d) => actions[d].status === "done")) continue;
      const p = a.payload;
      switch (p.kind) {
        case "migrate":
          if (running >= this.opts.maxConcurrentMigrations) continue;
          if (await this.startMigration(planId, a, p, snap)) running++;
          break;
        case "acquire-host-vm":
          await this.startAcquire(planId, a, p, snap);
          break;
        case "release-host-vm":
          await this.release(planId, a, p, snap);
          break;
        case "rejuvenate":
          await this.startRejuvenation(planId, a, p, snap);
          break;
        case "co-migrate":
          if (running + p.members.length > this.opts.maxConcurrentMigrations && running > 0) continue;
          if (await this.startCoMigration(planId, a, p, snap)) running += p.members.length;
          break;
        default:
          await this.finish(planId, a, "failed", unknownKind(p), snap.now);
      }
    }

    actions = await this.actions(planId);
    if (actions.every((a) => TERMINAL.has(a.status))) {
      const failed = actions.filter((a) => a.status !== "done").length;
      const status = failed === 0 ? "applied" : "failed";
      await this.leader.fenced((tx) => tx.plans.setStatus(planId, status, "applying"));
      this.events.emit(`plan.${status}`, undefined, { id: planId, failed }, snap.now);
    }
  }

  private async finish(
    planId: number,
    a: ActionRow,
    status: "done" | "failed" | "cancelled",
    error: string | null,
    now: number,
  ): Promise<void> {
    await this.journal(planId, a.idx, { status, finishedAt: now, error });
  }

  /** Finds out what became of a running action (also after a crash or a takeover). */
  private async poll(planId: number, a: ActionRow, snap: ProviderSnapshot): Promise<void> {
    const p = a.payload;
    switch (p.kind) {
      case "migrate":
        return this.pollMigration(planId, a, p, snap);
      case "acquire-host-vm":
        return this.pollAcquire(planId, a, p, snap);
      case "release-host-vm":
        return this.pollRelease(planId, a, p, snap);
      case "rejuvenate":
        return this.pollRejuvenation(planId, a, p, snap);
      case "co-migrate":
        return this.pollCoMigration(planId, a, p, snap);
      default:
        return this.finish(planId, a, "failed", unknownKind(p), snap.now);
    }
  }

  /**
   * Starts renewing a host VM under its guests. Refused when the provider cannot, when the
   * host VM is not running, or while a migration involves it (the provider checks too).
   */
  private async startRejuvenation(
    planId: number,
    a: ActionRow,
    p: Rejuvenate,
    snap: ProviderSnapshot,
  ): Promise<void> {
    if (!this.provider.rejuvenate) return this.finish(planId, a, "failed", REJUVENATE_UNSUPPORTED, snap.now);
    const h = snap.hostVms.find((x) => x.id === p.hostVm);
    if (h?.state !== "running")
      return this.finish(
        planId,
        a,
        "failed",
        `host VM ${p.hostVm} is ${h?.state ?? "unknown"}, not running`,
        snap.now,
      );
    if (snap.migrations.some((m) => m.status === "running" && (m.from === p.hostVm || m.to === p.hostVm)))
      return; // after the migrations that involve it
    await this.journal(planId, a.idx, { status: "running", startedAt: snap.now });
    try {
      const r = await this.provider.rejuvenate(
        p.hostVm,
        p.mode ?? "in-place",
        p.moveBack === false ? { moveBack: false } : {},
      );
      await this.journal(planId, a.idx, {
        payload: { ...p, rejuvenation: r.id, progress: { step: r.step, settled: r.settled, of: r.of } },
      });
      this.events.emit(
        "hostvm.rejuvenating",
        undefined,
        { id: p.hostVm, mode: r.mode, rejuvenation: r.id, plan: planId },
        snap.now,
      );
    } catch (e) {
      await this.finish(planId, a, "failed", e instanceof ProviderError ? e.message : String(e), snap.now);
    }
  }

  /**
   * A rejuvenation journaled as running: its progress, then its result. One the provider
   * does not know (it never started, or a restarted controller lost the run that drove it)
   * fails: its guests are wherever the migration rules left them, each running once.
   */
  private async pollRejuvenation(
    planId: number,
    a: ActionRow,
    p: Rejuvenate,
    snap: ProviderSnapshot,
  ): Promise<void> {
    const r = p.rejuvenation ? await this.provider.rejuvenation?.(p.rejuvenation) : undefined;
    if (!r) {
      const why = p.rejuvenation
        ? `the provider lost track of rejuvenation ${p.rejuvenation} (a controller restart?); no guest was left twice`
        : "the rejuvenation's start was not recorded (a controller restart?); start it again";
      return this.finish(planId, a, "failed", why, snap.now);
    }
    const progress = { step: r.step, settled: r.settled, of: r.of };
    if (r.status === "running") {
      if (JSON.stringify(progress) !== JSON.stringify(p.progress)) {
        await this.journal(planId, a.idx, { payload: { ...p, progress } });
        this.events.emit("hostvm.rejuvenation.progress", undefined, { id: p.hostVm, ...progress }, snap.now);
      }
      return;
    }
    await this.leader.fenced(async (tx) => {
      await tx.plans.updateAction(planId, a.idx, {
        payload: {
          ...p,
          progress,
          ...(r.result ? { result: { ...r.result, guests: [...r.result.guests] } } : {}),
        },
        status: r.status === "completed" ? "done" : "failed",
        finishedAt: snap.now,
        error: r.error ?? null,
      });
    });
    this.events.emit(
      r.status === "completed" ? "hostvm.rejuvenated" : "hostvm.rejuvenation.failed",
      undefined,
      {
        id: p.hostVm,
        mode: r.mode,
        maxPauseMs: r.result?.maxPauseMs ?? null,
        mechanism: r.result?.mechanism ?? null,
        error: r.error ?? null,
      },
      snap.now,
    );
  }

  private async pollMigration(
    planId: number,
    a: ActionRow,
    p: Migrate,
    snap: ProviderSnapshot,
  ): Promise<void> {
    let id = p.migration;
    if (!id) {
      // Journaled as running but the provider's id was never recorded: did it start?
      const started = snap.migrations.find(
        (m) => m.guest === p.guest && m.from === p.from && m.startedAt >= (a.startedAt ?? 0) - 1e-6,
      );
      if (started) {
        id = started.id;
        p.migration = id;
        await this.journal(planId, a.idx, { payload: p });
        await this.recordMigration(p, started.to, id, started.mechanism, planId, started.startedAt);
      } else {
        // Never started: the guest is still at its source; try again.
        await this.journal(planId, a.idx, { status: "pending", startedAt: null });
        return;
      }
    }
    const found = await this.provider.migration(id);
    // An id that now names another guest's move is not ours (a provider that lost state may
    // hand out an id again): as unknown.
    const m = found && found.guest === p.guest ? found : undefined;
    const guestRow = await this.store.repos.guests.get(p.guest);
    if (!m) {
      const to = await this.target(p, planId);
      const arrived = guestRow?.hostVm === to;
      await this.settleMigration(
        planId,
        a,
        p,
        arrived ? "completed" : "failed",
        arrived ? null : "the provider lost track of the migration",
        snap.now,
        guestRow?.tenant,
      );
      return;
    }
    // Audits write progress too, from their own snapshots: a running migration's stored
    // progress only moves forward, so an older reading never shows it going back.
    const updated = await this.leader.fenced((tx) =>
      tx.migrations.recordProgress(id, {
        progress: m.progress,
        status: m.status,
        detail: { remainingBytes: m.remainingBytes, etaSeconds: m.etaSeconds },
      }),
    );
    if (m.status === "running") {
      if (!updated) return;
      this.events.emit(
        "migration.progress",
        guestRow?.tenant,
        { id, guest: p.guest, progress: m.progress, etaSeconds: m.etaSeconds },
        snap.now,
      );
      return;
    }
    await this.settleMigration(
      planId,
      a,
      p,
      m.status,
      m.error ?? null,
      m.finishedAt ?? snap.now,
      guestRow?.tenant,
      m.pauseMs,
    );
    return;
  }

  private async pollAcquire(planId: number, a: ActionRow, p: Acquire, snap: ProviderSnapshot): Promise<void> {
    if (!p.hostVm) {
      // The acquisition may or may not have happened; audit adopts any host VM we did
      // not record, and an empty one is released by a later round. Try again.
      await this.journal(planId, a.idx, { status: "pending", startedAt: null });
      return;
    }
    const h = snap.hostVms.find((x) => x.id === p.hostVm);
    if (h?.state === "running") await this.finish(planId, a, "done", null, snap.now);
    else if (!h || h.state === "released")
      await this.finish(planId, a, "failed", `host VM ${p.hostVm} did not come up`, snap.now);
    return;
  }

  /** A release journaled as running: look at the provider. */
  private async pollRelease(planId: number, a: ActionRow, p: Release, snap: ProviderSnapshot): Promise<void> {
    const h = snap.hostVms.find((x) => x.id === p.hostVm);
    if (!h || h.state === "released") await this.finish(planId, a, "done", null, snap.now);
    else await this.journal(planId, a.idx, { status: "pending", startedAt: null });
  }

  private async settleMigration(
    planId: number,
    a: ActionRow,
    p: Migrate,
    status: "completed" | "failed" | "cancelled",
    error: string | null,
    now: number,
    tenant: string | undefined,
    pauseMs?: number,
  ): Promise<void> {
    const to = await this.target(p, planId);
    await this.leader.fenced(async (tx) => {
      if (status === "completed") await tx.guests.setHostVm(p.guest, to);
      if (p.migration) {
        await tx.migrations.update(p.migration, {
          status,
          progress: status === "completed" ? 1 : undefined,
          // The guest's pause, where the provider measured it (what a user of a move asks first).
          detail: pauseMs === undefined ? undefined : { remainingBytes: 0, etaSeconds: 0, pauseMs },
          finishedAt: now,
          error,
        });
      }
      await tx.plans.updateAction(planId, a.idx, {
        status: status === "completed" ? "done" : status === "cancelled" ? "cancelled" : "failed",
        finishedAt: now,
        error,
      });
    });
    this.metrics.migrations.inc({ mechanism: p.mechanism, outcome: status });
    this.events.emit(
      `migration.${status}`,
      tenant,
      { id: p.migration, guest: p.guest, from: p.from, to, mechanism: p.mechanism, error },
      now,
    );
  }

  /** The host VM a move goes to: named, or the one its acquisition produced. */
  private async target(p: Pick<Migrate, "to">, planId: number): Promise<string | undefined> {
    if ("hostVm" in p.to) return p.to.hostVm;
    const acq = (await this.store.repos.plans.action(planId, p.to.acquire))?.payload;
    return acq?.kind === "acquire-host-vm" ? acq.hostVm : undefined;
  }

  private async startMigration(
    planId: number,
    a: ActionRow,
    p: Migrate,
    snap: ProviderSnapshot,
  ): Promise<boolean> {
    const to = await this.target(p, planId);
    const busy = (h: string) =>
      snap.migrations.filter((m) => m.status === "running" && (m.from === h || m.to === h)).length;
    if (to && (busy(p.from) >= this.opts.maxPerHostVm || busy(to) >= this.opts.maxPerHostVm)) return false;
    const problem = await this.checkMove(p, to, snap);
    if (problem) {
      await this.finish(planId, a, "failed", problem, snap.now);
      return false;
    }
    // Journal first: a crash from here on is resolved by poll().
    await this.journal(planId, a.idx, { status: "running", startedAt: snap.now });
    try {
      const m = await this.provider.migrate(p.guest, to!, p.mechanism, p.seconds);
      p.migration = m.id;
      await this.journal(planId, a.idx, { payload: p });
      await this.recordMigration(p, to!, m.id, m.mechanism, planId, m.startedAt);
      const tenant = await this.store.repos.guests.tenantOf(p.guest);
      this.events.emit(
        "migration.started",
        tenant,
        { id: m.id, guest: p.guest, from: p.from, to, mechanism: m.mechanism, plan: planId },
        snap.now,
      );
      return true;
    } catch (e) {
      const msg = e instanceof ProviderError ? e.message : String(e);
      await this.finish(planId, a, "failed", msg, snap.now);
      return false;
    }
  }

  /**
   * Starts a co-migration: every member checked as a move, then one lock-step request to the
   * plane (which starts all or none). Journaled running first, as a migration is.
   */
  private async startCoMigration(
    planId: number,
    a: ActionRow,
    p: CoMigrate,
    snap: ProviderSnapshot,
  ): Promise<boolean> {
    if (!this.provider.coMigrate) {
      await this.finish(planId, a, "failed", CO_MIGRATE_UNSUPPORTED, snap.now);
      return false;
    }
    const to = await this.target(p, planId);
    const member = (m: CoMigrate["members"][number]): Migrate => ({
      kind: "migrate",
      guest: m.guest,
      from: m.from,
      to: p.to,
      mechanism: m.mechanism,
      seconds: m.seconds,
      reason: p.reason,
    });
    for (const m of p.members) {
      const problem = await this.checkMove(member(m), to, snap);
      if (problem) {
        await this.finish(planId, a, "failed", `co-migration: ${problem}`, snap.now);
        return false;
      }
    }
    await this.journal(planId, a.idx, { status: "running", startedAt: snap.now });
    try {
      const started = await this.provider.coMigrate(
        p.members.map((m) => ({ guest: m.guest, to: to!, mechanism: m.mechanism, seconds: m.seconds })),
      );
      const members = p.members.map((m, i) => ({ ...m, migration: started[i].id }));
      await this.journal(planId, a.idx, { payload: { ...p, members } });
      for (const [i, m] of started.entries()) {
        await this.recordMigration(member(p.members[i]), to!, m.id, m.mechanism, planId, m.startedAt);
        const tenant = await this.store.repos.guests.tenantOf(m.guest);
        this.events.emit(
          "migration.started",
          tenant,
          {
            id: m.id,
            guest: m.guest,
            from: m.from,
            to,
            mechanism: m.mechanism,
            plan: planId,
            coMigration: true,
          },
          snap.now,
        );
      }
      return true;
    } catch (e) {
      await this.finish(planId, a, "failed", e instanceof ProviderError ? e.message : String(e), snap.now);
      return false;
    }
  }

  /** A co-migration journaled as running: done when every member completed, failed if any did not. */
  private async pollCoMigration(
    planId: number,
    a: ActionRow,
    p: CoMigrate,
    snap: ProviderSnapshot,
  ): Promise<void> {
    if (p.members.some((m) => !m.migration)) {
      // Its start was not recorded (a crash between journal and plane): the plane starts all
      // or none, so if none of its guests moves the action can start again.
      const moving = snap.migrations.some(
        (m) => m.status === "running" && p.members.some((x) => x.guest === m.guest),
      );
      if (!moving) await this.journal(planId, a.idx, { status: "pending", startedAt: null });
      return;
    }
    const to = await this.target(p, planId);
    const found = await Promise.all(p.members.map((m) => this.provider.migration(m.migration!)));
    if (found.some((m) => m?.status === "running")) return;
    const outcome = found.map((m, i) => {
      if (m && m.guest === p.members[i].guest)
        return { status: m.status, error: m.error ?? null, at: m.finishedAt, pauseMs: m.pauseMs };
      return {
        status: "failed" as const,
        error: "the provider lost track of the migration",
        at: undefined,
        pauseMs: undefined,
      };
    });
    const errors = outcome.flatMap((o, i) =>
      o.status === "completed" ? [] : [`${p.members[i].guest}: ${o.error ?? o.status}`],
    );
    await this.leader.fenced(async (tx) => {
      for (const [i, m] of p.members.entries()) {
        const o = outcome[i];
        if (o.status === "completed") await tx.guests.setHostVm(m.guest, to);
        await tx.migrations.update(m.migration!, {
          status: o.status as "completed" | "failed" | "cancelled",
          progress: o.status === "completed" ? 1 : undefined,
          detail:
            o.pauseMs === undefined ? undefined : { remainingBytes: 0, etaSeconds: 0, pauseMs: o.pauseMs },
          finishedAt: o.at ?? snap.now,
          error: o.error,
        });
      }
      await tx.plans.updateAction(planId, a.idx, {
        status: errors.length === 0 ? "done" : "failed",
        finishedAt: snap.now,
        error: errors.length === 0 ? null : `co-migration: ${errors.join("; ")}`,
      });
    });
    for (const [i, m] of p.members.entries()) {
      const status = outcome[i].status;
      this.metrics.migrations.inc({ mechanism: m.mechanism, outcome: status });
      const tenant = await this.store.repos.guests.tenantOf(m.guest);
      this.events.emit(
        `migration.${status}`,
        tenant,
        {
          id: m.migration,
          guest: m.guest,
          from: m.from,
          to,
          mechanism: m.mechanism,
          error: outcome[i].error,
        },
        snap.now,
      );
    }
  }

  private async recordMigration(
    p: Migrate,
    to: string,
    id: string,
    mechanism: string,
    planId: number,
    startedAt: number,
  ): Promise<void> {
    await this.leader.fenced((tx) =>
      tx.migrations.recordStarted({
        id,
        guest: p.guest,
        from: p.from,
        to,
        mechanism,
        status: "running",
        progress: 0,
        detail: {},
        plan: planId,
        startedAt,
        finishedAt: null,
        error: null,
      }),
    );
  }

  /** Why the move cannot start now (the world changed since planning), or undefined. */
  private async checkMove(
    p: Migrate,
    to: string | undefined,
    snap: ProviderSnapshot,
  ): Promise<string | undefined> {
    if (!to) return "its destination host VM was never acquired";
    const guest = snap.guests.find((g) => g.id === p.guest);
    if (!guest) return `guest ${p.guest} no longer exists`;
    if (guest.hostVm !== p.from) return `guest ${p.guest} is no longer on ${p.from}`;
    if (snap.migrations.some((m) => m.status === "running" && m.guest === p.guest))
      return `guest ${p.guest} is migrating already`;
    const target = snap.hostVms.find((h) => h.id === to);
    if (!target || target.state !== "running") return `host VM ${to} is not running`;
    const type = await this.store.repos.hostVmTypes.get(target.type);
    const memory = new Map((await this.store.repos.guests.sizes()).map((r) => [r.id, r.memoryMiB]));
    let used = 0;
    for (const g of snap.guests) if (g.hostVm === to) used += memory.get(g.id) ?? 0;
    for (const m of snap.migrations)
      if (m.status === "running" && m.to === to) used += memory.get(m.guest) ?? 0;
    const capacity = type ? hostVmGuestMemory(type) : 0;
    if (used + (memory.get(p.guest) ?? 0) > capacity)
      return `host VM ${to} has no room for ${p.guest} any more`;
    return undefined;
  }

  private async startAcquire(
    planId: number,
    a: ActionRow,
    p: Acquire,
    snap: ProviderSnapshot,
  ): Promise<void> {
    await this.journal(planId, a.idx, { status: "running", startedAt: snap.now });
    try {
      const h = await this.provider.acquireHostVm(p.type, p.server);
      p.hostVm = h.id;
      await this.leader.fenced(async (tx) => {
        await tx.plans.updateAction(planId, a.idx, { payload: p });
        await tx.hostVms.recordAcquired({
          id: h.id,
          type: h.type,
          server: h.server ?? null,
          state: h.state,
          stateSince: h.stateSince,
          acquiredAt: h.acquiredAt,
          kept: Boolean(p.keep),
        });
      });
      this.events.emit("hostvm.acquired", undefined, { id: h.id, server: h.server, plan: planId }, snap.now);
    } catch (e) {
      await this.finish(planId, a, "failed", e instanceof ProviderError ? e.message : String(e), snap.now);
    }
  }

  private async release(planId: number, a: ActionRow, p: Release, snap: ProviderSnapshot): Promise<void> {
    if (
      snap.guests.some((g) => g.hostVm === p.hostVm) ||
      snap.migrations.some((m) => m.status === "running" && m.to === p.hostVm)
    ) {
      await this.finish(planId, a, "failed", `host VM ${p.hostVm} is not empty`, snap.now);
      return;
    }
    await this.journal(planId, a.idx, { status: "running", startedAt: snap.now });
    try {
      await this.provider.releaseHostVm(p.hostVm);
      await this.leader.fenced(async (tx) => {
        await tx.hostVms.released(p.hostVm, snap.now);
        await tx.plans.updateAction(planId, a.idx, { status: "done", finishedAt: snap.now });
      });
      this.events.emit("hostvm.released", undefined, { id: p.hostVm, plan: planId }, snap.now);
    } catch (e) {
      await this.finish(planId, a, "failed", e instanceof ProviderError ? e.message : String(e), snap.now);
    }
  }

  /** Cancels a plan: pending actions are dropped, running migrations asked to stop. */
  async cancel(planId: number, now: number): Promise<void> {
    const actions = await this.actions(planId);
    await this.leader.fenced(async (tx) => {
      await tx.plans.setStatus(planId, "cancelled");
      await tx.plans.cancelPending(planId, now);
    });
    for (const a of actions) {
      if (a.status !== "running") continue;
      const p = a.payload;
      switch (p.kind) {
        case "migrate":
          if (p.migration) await this.provider.cancelMigration(p.migration).catch(() => {});
          break;
        case "co-migrate":
          for (const m of p.members)
            if (m.migration) await this.provider.cancelMigration(m.migration).catch(() => {});
          break;
        // An acquisition or a release completes on its own (its poll settles it); a
        // rejuvenation runs to its end too (each guest move settles safely; none is half done).
        case "acquire-host-vm":
        case "release-host-vm":
        case "rejuvenate":
          break;
        default: {
          // Nothing known to stop; the compiler still requires every kind above.
          const unknown: never = p;
          void unknown;
        }
      }
    }
    this.events.emit("plan.cancelled", undefined, { id: planId }, now);
  }
}

/** The error stored with an action of a kind this executor does not know (compile-time `never`). */
function unknownKind(p: never): string {
  try {
    return unhandledKind(p);
  } catch (e) {
    return (e as Error).message;
  }
}

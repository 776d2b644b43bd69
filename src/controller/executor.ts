/**
 * Applies plans against the provider, one step at a time, journaling each action before it
 * acts and after it finishes. Whatever happens (a crash between the two, a takeover by
 * another controller), the next step reads the journal, asks the provider what really
 * happened, and carries on: every guest ends up running exactly once, where the journal says.
 */
import { hostVmGuestMemory } from "../model/index.ts";
import { type Provider, ProviderError, type ProviderSnapshot } from "../providers/index.ts";
import type { EventBus } from "./events.ts";
import type { Leadership } from "./leader.ts";
import type { ControllerMetrics } from "./metrics.ts";
import type { ActionPayload } from "./reconciler.ts";
import type { Store } from "./store/connect.ts";

type ActionRow = {
  plan_id: number;
  idx: number;
  kind: string;
  payload: string;
  depends_on: string;
  status: string;
  started_at: number | null;
  finished_at: number | null;
  error: string | null;
};

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
      const plans = await this.store.db
        .selectFrom("plans")
        .selectAll()
        .where((eb) =>
          eb.or([
            eb("status", "in", ["approved", "applying"]),
            eb.and([
              eb("status", "=", "cancelled"),
              eb.exists(
                eb
                  .selectFrom("plan_actions")
                  .select("plan_actions.idx")
                  .whereRef("plan_actions.plan_id", "=", "plans.id")
                  .where("plan_actions.status", "=", "running"),
              ),
            ]),
          ]),
        )
        .orderBy("id")
        .execute();
      if (plans.length === 0) return;
      const snap = await this.provider.snapshot();
      for (const p of plans) {
        if (p.status === "approved") {
          await this.leader.fenced((tx) =>
            tx.updateTable("plans").set({ status: "applying" }).where("id", "=", p.id).execute(),
          );
          this.events.emit("plan.applying", undefined, { id: p.id }, snap.now);
        }
        await this.advance(Number(p.id), snap, p.status !== "cancelled");
      }
    } finally {
      this.busy = false;
    }
  }

  private async actions(planId: number): Promise<ActionRow[]> {
    return this.store.db
      .selectFrom("plan_actions")
      .selectAll()
      .where("plan_id", "=", planId)
      .orderBy("idx")
      .execute();
  }

  private async journal(planId: number, idx: number, set: Partial<ActionRow>): Promise<void> {
    await this.leader.fenced((tx) =>
      tx.updateTable("plan_actions").set(set).where("plan_id", "=", planId).where("idx", "=", idx).execute(),
    );
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
    for (const a of actions) {
      if (a.status !== "pending") continue;
      const deps = JSON.parse(a.depends_on) as number[];
      if (deps.some((d) => actions[d].status === "failed" || actions[d].status === "cancelled")) {
        await this.finish(planId, a, "failed", "an action it depends on failed", snap.now);
        a.status = "failed";
      }
    }

    let running = Number(
      (
        await this.store.db
          .selectFrom("migrations")
          .select((eb) => eb.fn.countAll().as("n"))
          .where("status", "=", "running")
          .executeTakeFirstOrThrow()
      ).n,
    );
    for (const a of actions) {
      if (a.status !== "pending") continue;
      const deps = JSON.parse(a.depends_on) as number[];
      if (!deps.every((d) => actions[d].status === "done")) continue;
      if (a.kind === "migrate") {
        if (running >= this.opts.maxConcurrentMigrations) continue;
        if (await this.startMigration(planId, a, snap)) running++;
      } else if (a.kind === "acquire-host-vm") await this.startAcquire(planId, a, snap);
      else if (a.kind === "release-host-vm") await this.release(planId, a, snap);
    }

    actions = await this.actions(planId);
    if (actions.every((a) => TERMINAL.has(a.status))) {
      const failed = actions.filter((a) => a.status !== "done").length;
      const status = failed === 0 ? "applied" : "failed";
      await this.leader.fenced((tx) =>
        tx
          .updateTable("plans")
          .set({ status })
          .where("id", "=", planId)
          .where("status", "=", "applying")
          .execute(),
      );
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
    await this.journal(planId, a.idx, { status, finished_at: now, error });
  }

  /** Finds out what became of a running action (also after a crash or a takeover). */
  private async poll(planId: number, a: ActionRow, snap: ProviderSnapshot): Promise<void> {
    const p = JSON.parse(a.payload) as ActionPayload;
    if (p.kind === "migrate") {
      let id = p.migration;
      if (!id) {
        // Journaled as running but the provider's id was never recorded: did it start?
        const started = snap.migrations.find(
          (m) => m.guest === p.guest && m.from === p.from && m.startedAt >= (a.started_at ?? 0) - 1e-6,
        );
        if (started) {
          id = started.id;
          p.migration = id;
          await this.journal(planId, a.idx, { payload: JSON.stringify(p) });
          await this.recordMigration(p, started.to, id, started.mechanism, planId, started.startedAt);
        } else {
          // Never started: the guest is still at its source; try again.
          await this.journal(planId, a.idx, { status: "pending", started_at: null });
          return;
        }
      }
      const found = await this.provider.migration(id);
      // An id that now names another guest's move is not ours (a provider that lost state may
      // hand out an id again): as unknown.
      const m = found && found.guest === p.guest ? found : undefined;
      const guestRow = await this.store.db
        .selectFrom("guests")
        .select(["host_vm_id", "tenant"])
        .where("id", "=", p.guest)
        .executeTakeFirst();
      if (!m) {
        const to = await this.target(p, planId);
        const arrived = guestRow?.host_vm_id === to;
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
        tx
          .updateTable("migrations")
          .set({
            progress: m.progress,
            status: m.status,
            detail: JSON.stringify({ remainingBytes: m.remainingBytes, etaSeconds: m.etaSeconds }),
          })
          .where("id", "=", id)
          .where((eb) => eb.or([eb("progress", "<=", m.progress), eb("status", "!=", "running")]))
          .executeTakeFirst(),
      );
      if (m.status === "running") {
        if (Number(updated.numUpdatedRows) === 0) return;
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
      );
      return;
    }
    if (p.kind === "acquire-host-vm") {
      if (!p.hostVm) {
        // The acquisition may or may not have happened; audit adopts any host VM we did
        // not record, and an empty one is released by a later round. Try again.
        await this.journal(planId, a.idx, { status: "pending", started_at: null });
        return;
      }
      const h = snap.hostVms.find((x) => x.id === p.hostVm);
      if (h?.state === "running") await this.finish(planId, a, "done", null, snap.now);
      else if (!h || h.state === "released")
        await this.finish(planId, a, "failed", `host VM ${p.hostVm} did not come up`, snap.now);
      return;
    }
    // A release journaled as running: look at the provider.
    const h = snap.hostVms.find((x) => x.id === p.hostVm);
    if (!h || h.state === "released") await this.finish(planId, a, "done", null, snap.now);
    else await this.journal(planId, a.idx, { status: "pending", started_at: null });
  }

  private async settleMigration(
    planId: number,
    a: ActionRow,
    p: Extract<ActionPayload, { kind: "migrate" }>,
    status: "completed" | "failed" | "cancelled",
    error: string | null,
    now: number,
    tenant: string | undefined,
  ): Promise<void> {
    const to = await this.target(p, planId);
    await this.leader.fenced(async (tx) => {
      if (status === "completed")
        await tx.updateTable("guests").set({ host_vm_id: to }).where("id", "=", p.guest).execute();
      if (p.migration) {
        await tx
          .updateTable("migrations")
          .set({ status, progress: status === "completed" ? 1 : undefined, finished_at: now, error })
          .where("id", "=", p.migration)
          .execute();
      }
      await tx
        .updateTable("plan_actions")
        .set({
          status: status === "completed" ? "done" : status === "cancelled" ? "cancelled" : "failed",
          finished_at: now,
          error,
        })
        .where("plan_id", "=", planId)
        .where("idx", "=", a.idx)
        .execute();
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
  private async target(
    p: Extract<ActionPayload, { kind: "migrate" }>,
    planId: number,
  ): Promise<string | undefined> {
    if ("hostVm" in p.to) return p.to.hostVm;
    const row = await this.store.db
      .selectFrom("plan_actions")
      .select("payload")
      .where("plan_id", "=", planId)
      .where("idx", "=", p.to.acquire)
      .executeTakeFirst();
    const acq = row ? (JSON.parse(row.payload) as ActionPayload) : undefined;
    return acq?.kind === "acquire-host-vm" ? acq.hostVm : undefined;
  }

  private async startMigration(planId: number, a: ActionRow, snap: ProviderSnapshot): Promise<boolean> {
    const p = JSON.parse(a.payload) as Extract<ActionPayload, { kind: "migrate" }>;
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
    await this.journal(planId, a.idx, { status: "running", started_at: snap.now });
    try {
      const m = await this.provider.migrate(p.guest, to!, p.mechanism, p.seconds);
      p.migration = m.id;
      await this.journal(planId, a.idx, { payload: JSON.stringify(p) });
      await this.recordMigration(p, to!, m.id, m.mechanism, planId, m.startedAt);
      const tenant = (
        await this.store.db.selectFrom("guests").select("tenant").where("id", "=", p.guest).executeTakeFirst()
      )?.tenant;
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

  private async recordMigration(
    p: Extract<ActionPayload, { kind: "migrate" }>,
    to: string,
    id: string,
    mechanism: string,
    planId: number,
    startedAt: number,
  ): Promise<void> {
    await this.leader.fenced(async (tx) => {
      const exists = await tx.selectFrom("migrations").select("id").where("id", "=", id).executeTakeFirst();
      if (exists) return;
      await tx
        .insertInto("migrations")
        .values({
          id,
          guest_id: p.guest,
          from_host_vm: p.from,
          to_host_vm: to,
          mechanism,
          status: "running",
          progress: 0,
          detail: "{}",
          plan_id: planId,
          started_at: startedAt,
          finished_at: null,
          error: null,
        })
        .execute();
    });
  }

  /** Why the move cannot start now (the world changed since planning), or undefined. */
  private async checkMove(
    p: Extract<ActionPayload, { kind: "migrate" }>,
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
    const type = await this.store.db
      .selectFrom("host_vm_types")
      .selectAll()
      .where("name", "=", target.type)
      .executeTakeFirst();
    const rows = await this.store.db
      .selectFrom("guests")
      .select(["id", "memory_mib", "host_vm_id"])
      .execute();
    const memory = new Map(rows.map((r) => [r.id, r.memory_mib]));
    let used = 0;
    for (const g of snap.guests) if (g.hostVm === to) used += memory.get(g.id) ?? 0;
    for (const m of snap.migrations)
      if (m.status === "running" && m.to === to) used += memory.get(m.guest) ?? 0;
    const capacity = type
      ? hostVmGuestMemory({
          name: type.name,
          vcpus: type.vcpus,
          mipsPerVcpu: type.mips_per_vcpu,
          memoryMiB: type.memory_mib,
          hypervisorOverheadMiB: type.overhead_mib,
          pricePerHour: type.price_per_hour,
          provisionSeconds: type.provision_seconds,
          billingIncrementSeconds: type.billing_increment_seconds,
          minimumBillingSeconds: type.minimum_billing_seconds,
          bareMetal: false,
        })
      : 0;
    if (used + (memory.get(p.guest) ?? 0) > capacity)
      return `host VM ${to} has no room for ${p.guest} any more`;
    return undefined;
  }

  private async startAcquire(planId: number, a: ActionRow, snap: ProviderSnapshot): Promise<void> {
    const p = JSON.parse(a.payload) as Extract<ActionPayload, { kind: "acquire-host-vm" }>;
    await this.journal(planId, a.idx, { status: "running", started_at: snap.now });
    try {
      const h = await this.provider.acquireHostVm(p.type, p.server);
      p.hostVm = h.id;
      await this.leader.fenced(async (tx) => {
        await tx
          .updateTable("plan_actions")
          .set({ payload: JSON.stringify(p) })
          .where("plan_id", "=", planId)
          .where("idx", "=", a.idx)
          .execute();
        const exists = await tx.selectFrom("host_vms").select("id").where("id", "=", h.id).executeTakeFirst();
        if (!exists) {
          await tx
            .insertInto("host_vms")
            .values({
              id: h.id,
              type: h.type,
              server_id: h.server ?? null,
              state: h.state,
              state_since: h.stateSince,
              acquired_at: h.acquiredAt,
              kept: p.keep ? 1 : 0,
            })
            .execute();
        } else if (p.keep) {
          // An audit adopted it first: mark it kept all the same.
          await tx.updateTable("host_vms").set({ kept: 1 }).where("id", "=", h.id).execute();
        }
      });
      this.events.emit("hostvm.acquired", undefined, { id: h.id, server: h.server, plan: planId }, snap.now);
    } catch (e) {
      await this.finish(planId, a, "failed", e instanceof ProviderError ? e.message : String(e), snap.now);
    }
  }

  private async release(planId: number, a: ActionRow, snap: ProviderSnapshot): Promise<void> {
    const p = JSON.parse(a.payload) as Extract<ActionPayload, { kind: "release-host-vm" }>;
    if (
      snap.guests.some((g) => g.hostVm === p.hostVm) ||
      snap.migrations.some((m) => m.status === "running" && m.to === p.hostVm)
    ) {
      await this.finish(planId, a, "failed", `host VM ${p.hostVm} is not empty`, snap.now);
      return;
    }
    await this.journal(planId, a.idx, { status: "running", started_at: snap.now });
    try {
      await this.provider.releaseHostVm(p.hostVm);
      await this.leader.fenced(async (tx) => {
        await tx
          .updateTable("host_vms")
          .set({ state: "released", state_since: snap.now })
          .where("id", "=", p.hostVm)
          .execute();
        await tx
          .updateTable("plan_actions")
          .set({ status: "done", finished_at: snap.now })
          .where("plan_id", "=", planId)
          .where("idx", "=", a.idx)
          .execute();
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
      await tx.updateTable("plans").set({ status: "cancelled" }).where("id", "=", planId).execute();
      await tx
        .updateTable("plan_actions")
        .set({ status: "cancelled", finished_at: now })
        .where("plan_id", "=", planId)
        .where("status", "=", "pending")
        .execute();
    });
    for (const a of actions) {
      if (a.status !== "running" || a.kind !== "migrate") continue;
      const p = JSON.parse(a.payload) as Extract<ActionPayload, { kind: "migrate" }>;
      if (p.migration) await this.provider.cancelMigration(p.migration).catch(() => {});
    }
    this.events.emit("plan.cancelled", undefined, { id: planId }, now);
  }
}

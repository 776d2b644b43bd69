/**
 * The control loop: audit the provider (what runs where, how loaded), then — when this
 * controller leads — plan with the same policy the simulator runs, and hand the plan to the
 * executor according to each guest's automation level:
 *   manual: the planner never moves it; suggest: its moves wait for approval; automatic: applied.
 */

import { Rng } from "../model/index.ts";
import type { ActionPlan } from "../planner/index.ts";
import { type Policy, validatePlan } from "../planner/index.ts";
import type { Provider, ProviderSnapshot } from "../providers/index.ts";
import type { EventBus } from "./events.ts";
import type { Leadership } from "./leader.ts";
import type { ControllerMetrics } from "./metrics.ts";
import type { Store } from "./store/connect.ts";
import { buildView, type CloudView, LoadBook, plannerInput, type StoredTopology } from "./view.ts";

/** The automation levels (a guest's, or the cloud's for guests without one; see above). */
export const AUTOMATION_LEVELS = ["manual", "suggest", "automatic"] as const;
export type Automation = (typeof AUTOMATION_LEVELS)[number];

/** A stored plan action's payload: ids, not indices, so it survives restarts. */
export type ActionPayload =
  | {
      kind: "migrate";
      guest: string;
      from: string;
      to: { hostVm: string } | { acquire: number };
      mechanism: "instant" | "precopy" | "postcopy";
      seconds: number;
      reason: string;
      migration?: string;
    }
  | {
      kind: "acquire-host-vm";
      type: string;
      server: string | undefined;
      hostVm?: string;
      /** An operator's explicit acquisition: the host VM is kept (see host_vms.kept). */
      keep?: boolean;
    }
  | { kind: "release-host-vm"; hostVm: string };

export interface ReconcilerOptions {
  readonly intervalSeconds: number;
  readonly maxConcurrentMigrations: number;
  readonly maxPerHostVm: number;
  /** A proposal nobody approved is replaced after this long (provider seconds). */
  readonly proposalTtlSeconds: number;
}

export class Reconciler {
  readonly loads = new LoadBook();
  private readonly random: Rng;
  lastSnapshot: ProviderSnapshot | undefined;

  constructor(
    private readonly store: Store,
    private readonly provider: Provider,
    private readonly policy: Policy,
    private readonly leader: Leadership,
    private readonly events: EventBus,
    private readonly metrics: ControllerMetrics,
    readonly opts: ReconcilerOptions,
  ) {
    this.random = new Rng(1);
  }

  /** Copies servers and host-VM types from the provider (once, and when it changes). */
  async describe(): Promise<void> {
    const { servers, hostVmTypes } = await this.provider.describe();
    await this.leader.fenced(async (tx) => {
      for (const s of servers) {
        const row = {
          id: s.id,
          cores: s.cores,
          mips_per_core: s.mipsPerCore,
          memory_mib: s.memoryMiB,
          network_mbps: s.networkMbps,
          power: JSON.stringify(s.power.watts),
          host_vm_slots: s.hostVmSlots,
        };
        await tx
          .insertInto("servers")
          .values(row)
          .onConflict((oc) => oc.column("id").doUpdateSet(row))
          .execute();
      }
      for (const t of hostVmTypes) {
        const row = {
          name: t.name,
          vcpus: t.vcpus,
          mips_per_vcpu: t.mipsPerVcpu,
          memory_mib: t.memoryMiB,
          overhead_mib: t.hypervisorOverheadMiB,
          price_per_hour: t.pricePerHour,
          provision_seconds: t.provisionSeconds,
          billing_increment_seconds: t.billingIncrementSeconds,
          minimum_billing_seconds: t.minimumBillingSeconds,
        };
        await tx
          .insertInto("host_vm_types")
          .values(row)
          .onConflict((oc) => oc.column("name").doUpdateSet(row))
          .execute();
      }
    });
  }

  /**
   * Audit: brings the store in line with what the provider reports — host VMs (adopting any
   * the store does not know), where guests run and whether they run, migration progress.
   */
  async audit(): Promise<ProviderSnapshot> {
    // The provider's reads take a while (a testbed asks every agent): a migration the
    // executor settles meanwhile may be newer than what the snapshot saw.
    const asked = this.provider.now();
    const snap = await this.provider.snapshot();
    this.lastSnapshot = snap;
    await this.leader.fenced(async (tx) => {
      const known = new Map((await tx.selectFrom("host_vms").selectAll().execute()).map((h) => [h.id, h]));
      for (const h of snap.hostVms) {
        const row = {
          type: h.type,
          server_id: h.server ?? null,
          state: h.state,
          state_since: h.stateSince,
          acquired_at: h.acquiredAt,
        };
        const old = known.get(h.id);
        if (!old) {
          await tx
            .insertInto("host_vms")
            .values({ id: h.id, ...row })
            .execute();
          this.events.emit(
            "hostvm.appeared",
            undefined,
            { id: h.id, state: h.state, server: h.server },
            snap.now,
          );
        } else if (old.state !== h.state || old.server_id !== (h.server ?? null)) {
          await tx.updateTable("host_vms").set(row).where("id", "=", h.id).execute();
          this.events.emit(
            "hostvm.changed",
            undefined,
            { id: h.id, state: h.state, server: h.server },
            snap.now,
          );
        }
      }
      const guests = new Map(
        (await tx.selectFrom("guests").select(["id", "host_vm_id", "power_state", "tenant"]).execute()).map(
          (g) => [g.id, g],
        ),
      );
      // Guests whose move was settled after the snapshot was asked for: their stored place is
      // newer than the snapshot's (which may show them still at the source).
      const settledSince = new Set(
        (
          await tx
            .selectFrom("migrations")
            .select("guest_id")
            .where("status", "!=", "running")
            .where("finished_at", ">=", asked)
            .execute()
        ).map((m) => m.guest_id),
      );
      for (const g of snap.guests) {
        const old = guests.get(g.id);
        if (!old) {
          // A guest the provider runs that the store does not know: adopt it.
          await tx
            .insertInto("guests")
            .values({
              id: g.id,
              tenant: g.spec.tenant,
              vcpus: g.spec.vcpus,
              mips_per_vcpu: g.spec.mipsPerVcpu,
              memory_mib: g.spec.memoryMiB,
              dirty_rate_mibps: g.spec.dirtyRateMiBps,
              affinity_group: null,
              anti_affinity_group: null,
              role: "tenant",
              targets: "[]",
              host_vm_id: g.hostVm ?? null,
              power_state: g.running ? "running" : "stopped",
              automation: null,
              created_at: snap.now,
            })
            .execute();
          this.events.emit("vm.appeared", g.spec.tenant, { id: g.id, hostVm: g.hostVm }, snap.now);
          continue;
        }
        const power = g.running ? "running" : "stopped";
        const hostVm = settledSince.has(g.id) ? old.host_vm_id : (g.hostVm ?? null);
        if (old.host_vm_id !== hostVm || old.power_state !== power) {
          await tx
            .updateTable("guests")
            .set({ host_vm_id: hostVm, power_state: power })
            .where("id", "=", g.id)
            .execute();
        }
      }
      for (const m of snap.migrations) {
        const row = await tx
          .selectFrom("migrations")
          .select(["status", "progress"])
          .where("id", "=", m.id)
          .executeTakeFirst();
        // Only running ones: a settled migration is final (a snapshot taken before the
        // executor settled it would otherwise turn it back to running).
        if (row?.status !== "running" || (row.status === m.status && row.progress >= m.progress)) continue;
        await tx
          .updateTable("migrations")
          .set({
            status: m.status,
            // Forward only: the executor may have stored a newer reading than this snapshot's.
            progress: m.status === "running" ? Math.max(row.progress, m.progress) : m.progress,
            detail: JSON.stringify({ remainingBytes: m.remainingBytes, etaSeconds: m.etaSeconds }),
            finished_at: m.finishedAt ?? null,
            error: m.error ?? null,
          })
          .where("id", "=", m.id)
          .execute();
      }
    });
    this.loads.record(snap);
    this.updateGauges(snap);
    return snap;
  }

  private updateGauges(snap: ProviderSnapshot): void {
    this.metrics.guests.reset();
    for (const g of snap.guests) this.metrics.guests.inc({ state: g.running ? "running" : "stopped" });
    this.metrics.hostVms.reset();
    for (const h of snap.hostVms) this.metrics.hostVms.inc({ state: h.state });
  }

  async topology(): Promise<StoredTopology> {
    const db = this.store.db;
    return {
      servers: await db.selectFrom("servers").selectAll().orderBy("id").execute(),
      types: await db.selectFrom("host_vm_types").selectAll().orderBy("name").execute(),
      hostVms: await db.selectFrom("host_vms").selectAll().orderBy("id").execute(),
      guests: await db.selectFrom("guests").selectAll().orderBy("id").execute(),
      running: await db.selectFrom("migrations").selectAll().where("status", "=", "running").execute(),
    };
  }

  async cloudAutomation(): Promise<Automation> {
    const row = await this.store.db
      .selectFrom("settings")
      .select("value")
      .where("key", "=", "automation")
      .executeTakeFirst();
    return (row?.value as Automation | undefined) ?? "automatic";
  }

  /**
   * One planning round (leader only): plan, then split by automation into an applied plan
   * and a proposal. Returns the ids of the plans it stored.
   */
  async round(): Promise<{ applied?: number; proposed?: number; waiting?: number }> {
    // One plan at a time: the next round plans from where the current one leaves the cloud.
    const applying = await this.store.db
      .selectFrom("plans")
      .select("id")
      .where("status", "in", ["approved", "applying"])
      .executeTakeFirst();
    if (applying) return { waiting: Number(applying.id) };
    const { automatic, suggested, now } = await this.propose(true);
    const out: { applied?: number; proposed?: number } = {};
    if (automatic.length > 0) out.applied = await this.storePlan(automatic, "applying", "reconciler", now);
    // One proposal at a time: a second one, planned while the first waits, would work
    // against it (moving guests into host VMs the first one empties).
    const standing = await this.store.db
      .selectFrom("plans")
      .select("id")
      .where("status", "=", "proposed")
      .executeTakeFirst();
    if (suggested.length > 0 && !standing)
      out.proposed = await this.storePlan(suggested, "proposed", "reconciler", now);
    return out;
  }

  /**
   * Runs the planner on the current state and splits its plan by automation level. With
   * `expire`, stale proposals are superseded on the way (a round); without, nothing is written
   * (a preview).
   */
  async propose(
    expire: boolean,
  ): Promise<{ automatic: ActionPayload[]; suggested: ActionPayload[]; now: number }> {
    const snap = this.lastSnapshot ?? (await this.audit());
    const topo = await this.topology();
    const view = buildView(topo);
    const cloudLevel = await this.cloudAutomation();
    const level = new Map(topo.guests.map((g) => [g.id, (g.automation as Automation | null) ?? cloudLevel]));

    // A standing proposal keeps its guests out of planning until approved, cancelled or stale.
    const proposals = await this.store.db
      .selectFrom("plans")
      .selectAll()
      .where("status", "=", "proposed")
      .execute();
    const fixed = new Set<string>([...level].filter(([, l]) => l === "manual").map(([id]) => id));
    for (const p of proposals) {
      if (expire && snap.now - p.created_at > this.opts.proposalTtlSeconds) {
        await this.leader.fenced((tx) =>
          tx.updateTable("plans").set({ status: "superseded" }).where("id", "=", p.id).execute(),
        );
        this.events.emit("plan.superseded", undefined, { id: p.id }, snap.now);
        continue;
      }
      const actions = await this.store.db
        .selectFrom("plan_actions")
        .select("payload")
        .where("plan_id", "=", p.id)
        .execute();
      for (const a of actions) {
        const payload = JSON.parse(a.payload) as ActionPayload;
        if (payload.kind === "migrate") fixed.add(payload.guest);
      }
    }
    // Guests moving under an applying plan are in flight already (migrations table).
    const lastMovedAt = new Map<string, number>();
    for (const m of await this.store.db
      .selectFrom("migrations")
      .select(["guest_id", "finished_at"])
      .where("status", "=", "completed")
      .execute()) {
      if (m.finished_at !== null)
        lastMovedAt.set(m.guest_id, Math.max(lastMovedAt.get(m.guest_id) ?? 0, m.finished_at));
    }
    const input = plannerInput({
      view,
      load: this.loads.history(view.guestIds),
      snapshot: snap,
      running: topo.running,
      fixed,
      lastMovedAt,
      intervalSeconds: this.opts.intervalSeconds,
      caps: {
        maxConcurrentMigrations: this.opts.maxConcurrentMigrations,
        maxPerHostVm: this.opts.maxPerHostVm,
      },
      random: this.random,
    });
    const started = performance.now();
    const plan = this.policy.plan(input);
    this.metrics.plannerSeconds.observe((performance.now() - started) / 1000);
    validatePlan(plan);
    const kept = new Set(topo.hostVms.filter((h) => h.kept).map((h) => h.id));
    return { ...split(plan, view, level, cloudLevel, kept), now: snap.now };
  }

  /** Journals a plan and its actions in one transaction. */
  async storePlan(
    list: ActionPayload[],
    status: string,
    source: string,
    now: number,
    notes: string[] = [],
  ): Promise<number> {
    const deps = dependencies(list);
    const id = await this.leader.fenced(async (tx) => {
      const row = await tx
        .insertInto("plans")
        .values({ created_at: now, status, source, notes: JSON.stringify(notes), epoch: this.leader.epoch })
        .returning("id")
        .executeTakeFirstOrThrow();
      const planId = Number(row.id);
      for (const [idx, a] of list.entries()) {
        await tx
          .insertInto("plan_actions")
          .values({
            plan_id: planId,
            idx,
            kind: a.kind,
            payload: JSON.stringify(a),
            depends_on: JSON.stringify(deps[idx]),
            status: "pending",
            started_at: null,
            finished_at: null,
            error: null,
          })
          .execute();
      }
      return planId;
    });
    this.events.emit(
      status === "proposed" ? "plan.proposed" : "plan.created",
      undefined,
      { id, actions: list.length, status },
      now,
    );
    return id;
  }
}

/**
 * Splits a plan by the automation level of the guests it moves. Acquisitions follow the
 * moves that need them; releases wait for every move out of their host VM.
 *
 * Renting is the cloud's decision, so the cloud's level governs it: acquisitions ahead of
 * need and releases are dropped in manual, proposed in suggest, applied in automatic — except
 * that a host VM an operator acquired (kept) is released only by a plan the operator approves.
 */
export function split(
  plan: ActionPlan,
  view: CloudView,
  level: ReadonlyMap<string, Automation>,
  cloudLevel: Automation,
  kept: ReadonlySet<string>,
): { automatic: ActionPayload[]; suggested: ActionPayload[] } {
  const automatic: ActionPayload[] = [];
  const suggested: ActionPayload[] = [];
  // Plan-local index of each acquisition in each output list.
  const acqIn = new Map<number, { list: ActionPayload[]; idx: number }>();
  const suggestedHosts = new Set<string>();
  const hostId = (h: number) => view.hostVmIds[h];
  for (const a of plan.actions) {
    if (a.kind !== "migrate") continue;
    const guestId = view.guestIds[a.guest];
    const lvl = level.get(guestId) ?? "automatic";
    if (lvl === "manual") continue;
    const list = lvl === "automatic" ? automatic : suggested;
    let to: { hostVm: string } | { acquire: number };
    if (a.to.kind === "existing") to = { hostVm: hostId(a.to.hostVm) };
    else {
      const acq = plan.actions[a.to.action];
      if (acq.kind !== "acquire-host-vm") continue;
      let placed = acqIn.get(acq.id);
      if (placed && placed.list !== list) continue; // needed by the other list: re-planned next round
      if (!placed) {
        placed = { list, idx: list.length };
        list.push({
          kind: "acquire-host-vm",
          type: acq.type,
          server: acq.server === undefined ? undefined : view.serverIds[acq.server],
        });
        acqIn.set(acq.id, placed);
      }
      to = { acquire: placed.idx };
    }
    if (list === suggested) suggestedHosts.add(hostId(a.from));
    list.push({
      kind: "migrate",
      guest: guestId,
      from: hostId(a.from),
      to,
      mechanism: a.estimate.mechanism,
      seconds: a.estimate.totalSeconds,
      reason: a.reason,
    });
  }
  const rentalList = (keptHost: boolean): ActionPayload[] | undefined =>
    cloudLevel === "manual" ? undefined : cloudLevel === "suggest" || keptHost ? suggested : automatic;
  for (const a of plan.actions) {
    if (a.kind === "acquire-host-vm" && !acqIn.has(a.id)) {
      // Acquired ahead of need (no guest's move depends on it): the cloud's decision.
      const list = rentalList(false);
      if (!list) continue;
      acqIn.set(a.id, { list, idx: list.length });
      list.push({
        kind: "acquire-host-vm",
        type: a.type,
        server: a.server === undefined ? undefined : view.serverIds[a.server],
      });
    }
  }
  for (const a of plan.actions) {
    if (a.kind !== "release-host-vm") continue;
    const id = hostId(a.hostVm);
    const list = rentalList(kept.has(id));
    if (!list) continue;
    // A host VM still waiting on a proposal's moves is released by that proposal or not at all.
    if (list === automatic && suggestedHosts.has(id)) continue;
    list.push({ kind: "release-host-vm", hostVm: id });
  }
  return { automatic, suggested };
}

/** Dependencies between stored actions: moves wait for their acquisition, releases for the moves out. */
export function dependencies(list: readonly ActionPayload[]): number[][] {
  return list.map((a, i) => {
    if (a.kind === "migrate") {
      const deps = "acquire" in a.to ? [a.to.acquire] : [];
      // A guest moved twice moves once at a time.
      for (let j = i - 1; j >= 0; j--) {
        const b = list[j];
        if (b.kind === "migrate" && b.guest === a.guest) {
          deps.push(j);
          break;
        }
      }
      return deps;
    }
    if (a.kind === "release-host-vm") {
      return list.flatMap((b, j) => (b.kind === "migrate" && b.from === a.hostVm ? [j] : []));
    }
    return [];
  });
}

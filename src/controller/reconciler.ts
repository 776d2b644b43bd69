/**
 * The control loop: audit the provider (what runs where, how loaded), then — when this
 * controller leads — plan with the same policy the simulator runs, and hand the plan to the
 * executor according to each guest's automation level:
 *   manual: the planner never moves it; suggest: its moves wait for approval; automatic: applied.
 */

import { guestSpec, Rng } from "../model/index.ts";
import {
  type Action,
  type ActionPlan,
  type PlannerInput,
  type Policy,
  unhandledKind,
  validatePlan,
} from "../planner/index.ts";
import type { Provider, ProviderSnapshot } from "../providers/index.ts";
import type { Automation } from "./api/schemas/common.ts";
import type { ActionPayload } from "./api/schemas/plans.ts";
import type { EventBus } from "./events.ts";
import type { Leadership } from "./leader.ts";
import type { ControllerMetrics } from "./metrics.ts";
import type { Store } from "./store/connect.ts";
import { buildView, type CloudView, LoadBook, plannerInput, type StoredTopology } from "./view.ts";

/** Automation levels and plan actions are the API's vocabulary (one definition: its schemas). */
export type { ActionPayload, Automation };

export interface ReconcilerOptions {
  readonly intervalSeconds: number;
  readonly maxConcurrentMigrations: number;
  readonly maxPerHostVm: number;
  /** A proposal nobody approved is replaced after this long (provider seconds). */
  readonly proposalTtlSeconds: number;
  /** Seed of the planner's random draws, derived as the simulator derives them (default: 1, not derived). */
  readonly seed?: number;
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
    this.random = opts.seed === undefined ? new Rng(1) : Rng.derive(opts.seed, "planner");
  }

  /** Copies servers and host-VM types from the provider (once, and when it changes). */
  async describe(): Promise<void> {
    const { servers, hostVmTypes } = await this.provider.describe();
    await this.leader.fenced(async (tx) => {
      for (const s of servers) await tx.servers.put(s);
      for (const t of hostVmTypes) await tx.hostVmTypes.put(t);
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
      const known = new Map((await tx.hostVms.list()).map((h) => [h.id, h]));
      for (const h of snap.hostVms) {
        const reported = {
          id: h.id,
          type: h.type,
          server: h.server ?? null,
          state: h.state,
          stateSince: h.stateSince,
          acquiredAt: h.acquiredAt,
        };
        const old = known.get(h.id);
        if (!old) {
          await tx.hostVms.insert({ ...reported, kept: false });
          this.events.emit(
            "hostvm.appeared",
            undefined,
            { id: h.id, state: h.state, server: h.server },
            snap.now,
          );
        } else if (old.state !== h.state || old.server !== (h.server ?? null)) {
          await tx.hostVms.update(reported);
          this.events.emit(
            "hostvm.changed",
            undefined,
            { id: h.id, state: h.state, server: h.server },
            snap.now,
          );
        }
      }
      const guests = new Map((await tx.guests.placements()).map((g) => [g.id, g]));
      // Guests whose move was settled after the snapshot was asked for: their stored place is
      // newer than the snapshot's (which may show them still at the source).
      const settledSince = await tx.migrations.guestsSettledSince(asked);
      for (const g of snap.guests) {
        const old = guests.get(g.id);
        if (!old) {
          // A guest the provider runs that the store does not know: adopt it.
          await tx.guests.insert({
            ...guestSpec(g.spec),
            id: g.id,
            affinityGroup: null,
            antiAffinityGroup: null,
            role: "tenant",
            targets: [],
            hostVm: g.hostVm ?? null,
            powerState: g.running ? "running" : "stopped",
            automation: null,
            createdAt: snap.now,
          });
          this.events.emit("vm.appeared", g.spec.tenant, { id: g.id, hostVm: g.hostVm }, snap.now);
          continue;
        }
        const power = g.running ? "running" : "stopped";
        const hostVm = settledSince.has(g.id) ? old.hostVm : (g.hostVm ?? null);
        if (old.hostVm !== hostVm || old.powerState !== power)
          await tx.guests.setPlacement(g.id, hostVm, power);
      }
      for (const m of snap.migrations) {
        const row = await tx.migrations.get(m.id);
        // Only running ones: a settled migration is final (a snapshot taken before the
        // executor settled it would otherwise turn it back to running).
        if (row?.status !== "running" || (row.status === m.status && row.progress >= m.progress)) continue;
        await tx.migrations.update(m.id, {
          status: m.status,
          // Forward only: the executor may have stored a newer reading than this snapshot's.
          progress: m.status === "running" ? Math.max(row.progress, m.progress) : m.progress,
          detail: { remainingBytes: m.remainingBytes, etaSeconds: m.etaSeconds },
          finishedAt: m.finishedAt ?? null,
          error: m.error ?? null,
        });
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
    const r = this.store.repos;
    return {
      servers: await r.servers.list(),
      types: await r.hostVmTypes.list(),
      hostVms: await r.hostVms.list(),
      guests: await r.guests.list(),
      running: await r.migrations.running(),
    };
  }

  async cloudAutomation(): Promise<Automation> {
    return (await this.store.repos.settings.automation()) ?? "automatic";
  }

  /**
   * One planning round (leader only): plan, then split by automation into an applied plan
   * and a proposal. Returns the ids of the plans it stored.
   */
  async round(): Promise<{ applied?: number; proposed?: number; waiting?: number }> {
    // One plan at a time: the next round plans from where the current one leaves the cloud.
    const applying = await this.store.repos.plans.anyWithStatus(["approved", "applying"]);
    if (applying !== undefined) return { waiting: applying };
    const { automatic, suggested, now, notes } = await this.propose(true);
    const out: { applied?: number; proposed?: number } = {};
    // The planner's notes go with what it stored (why a host VM is renewed, what waits).
    if (automatic.length > 0)
      out.applied = await this.storePlan(automatic, "applying", "reconciler", now, notes);
    // One proposal at a time: a second one, planned while the first waits, would work
    // against it (moving guests into host VMs the first one empties).
    const standing = await this.store.repos.plans.anyWithStatus(["proposed"]);
    if (suggested.length > 0 && standing === undefined)
      out.proposed = await this.storePlan(suggested, "proposed", "reconciler", now, notes);
    return out;
  }

  /**
   * Runs the planner on the current state and splits its plan by automation level. With
   * `expire`, stale proposals are superseded on the way (a round); without, nothing is written
   * (a preview).
   */
  async propose(expire: boolean): Promise<{
    automatic: PlannedAction[];
    suggested: PlannedAction[];
    now: number;
    notes: readonly string[];
  }> {
    const snap = this.lastSnapshot ?? (await this.audit());
    const topo = await this.topology();
    const view = buildView(topo);
    const { cloudLevel, level, fixed } = await this.automation(topo, snap.now, expire);
    const input = await this.plannerInput(view, snap, topo.running, fixed);
    const started = performance.now();
    const plan = this.policy.plan(input);
    this.metrics.plannerSeconds.observe((performance.now() - started) / 1000);
    validatePlan(plan);
    const kept = new Set(topo.hostVms.filter((h) => h.kept).map((h) => h.id));
    return { ...split(plan, view, level, cloudLevel, kept), now: snap.now, notes: plan.notes };
  }

  /** Wall seconds between the policy's checks between rounds, if it has them (as the simulator asks). */
  get reactWallSeconds(): number | undefined {
    const every = this.policy.reactIntervalSeconds;
    if (!this.policy.react || every === undefined || !(every > 0 && every < this.opts.intervalSeconds))
      return undefined;
    return every / this.provider.speed;
  }

  /**
   * The policy's check between rounds (overload relief on current load), as the simulator
   * runs it every reactIntervalSeconds: on a fresh reading of the provider (not added to the
   * load history, which keeps one sample per round), the placement the store has. Its moves of
   * guests in automatic are applied at once beside any plan under way; the others are left to
   * the next round's proposal (a relief waiting for approval would come too late).
   */
  async react(): Promise<{ applied?: number }> {
    const react = this.policy.react;
    if (!react) return {};
    const snap = await this.provider.snapshot();
    const topo = await this.topology();
    const view = buildView(topo);
    const { cloudLevel, level, fixed } = await this.automation(topo, snap.now, false);
    const input = await this.plannerInput(view, snap, topo.running, fixed);
    const started = performance.now();
    const plan = react.call(this.policy, input);
    this.metrics.plannerSeconds.observe((performance.now() - started) / 1000);
    if (plan.actions.length === 0) return {};
    validatePlan(plan);
    const kept = new Set(topo.hostVms.filter((h) => h.kept).map((h) => h.id));
    const { automatic } = split(plan, view, level, cloudLevel, kept);
    if (automatic.length === 0) return {};
    return { applied: await this.storePlan(automatic, "applying", "reflex", snap.now, plan.notes) };
  }

  /**
   * Each guest's automation level and the guests the planner must leave alone: manual ones,
   * and those of a standing proposal until it is approved, cancelled or stale. With `expire`,
   * stale proposals are superseded on the way.
   */
  private async automation(topo: StoredTopology, now: number, expire: boolean) {
    const cloudLevel = await this.cloudAutomation();
    const level = new Map(topo.guests.map((g) => [g.id, g.automation ?? cloudLevel]));
    const proposals = await this.store.repos.plans.withStatus("proposed");
    const fixed = new Set<string>([...level].filter(([, l]) => l === "manual").map(([id]) => id));
    for (const p of proposals) {
      if (expire && now - p.createdAt > this.opts.proposalTtlSeconds) {
        await this.leader.fenced((tx) => tx.plans.setStatus(p.id, "superseded"));
        this.events.emit("plan.superseded", undefined, { id: p.id }, now);
        continue;
      }
      for (const a of await this.store.repos.plans.actions(p.id))
        if (a.payload.kind === "migrate") fixed.add(a.payload.guest);
        else if (a.payload.kind === "co-migrate") for (const m of a.payload.members) fixed.add(m.guest);
    }
    return { cloudLevel, level, fixed };
  }

  /**
   * What the planner sees now: the stored placement, the provider's last load readings, and
   * `fixed` guests it must leave alone (guests moving under an applying plan are in flight
   * already: the migrations table says so).
   */
  async plannerInput(
    view: CloudView,
    snap: ProviderSnapshot,
    running: StoredTopology["running"],
    fixed: ReadonlySet<string>,
  ): Promise<PlannerInput> {
    const lastMovedAt = await this.store.repos.migrations.lastCompleted();
    const rejuvenations = await this.store.repos.plans.rejuvenations();
    return plannerInput({
      rejuvenations,
      view,
      load: this.loads.history(view.guestIds),
      snapshot: snap,
      running,
      fixed,
      lastMovedAt,
      intervalSeconds: this.opts.intervalSeconds,
      caps: {
        maxConcurrentMigrations: this.opts.maxConcurrentMigrations,
        maxPerHostVm: this.opts.maxPerHostVm,
      },
      random: this.random,
    });
  }

  /** Journals a plan and its actions in one transaction. */
  async storePlan(
    list: readonly PlannedAction[],
    status: string,
    source: string,
    now: number,
    notes: readonly string[] = [],
  ): Promise<number> {
    const id = await this.leader.fenced((tx) =>
      tx.plans.create({ createdAt: now, status, source, notes, epoch: this.leader.epoch }, list),
    );
    this.events.emit(
      status === "proposed" ? "plan.proposed" : "plan.created",
      undefined,
      { id, actions: list.length, status },
      now,
    );
    return id;
  }
}

/** An action as stored: its payload and the indices, within its plan, of what it waits for. */
export interface PlannedAction {
  readonly payload: ActionPayload;
  readonly dependsOn: readonly number[];
}

/** One planner action as the API and the store name things (ids, not indices). */
export function payloadOf(
  a: Action,
  view: CloudView,
  acquisitionIndex: (action: number) => number,
): ActionPayload {
  const hostId = (h: number) => view.hostVmIds[h];
  switch (a.kind) {
    case "migrate":
      return {
        kind: "migrate",
        guest: view.guestIds[a.guest],
        from: hostId(a.from),
        to:
          a.to.kind === "existing"
            ? { hostVm: hostId(a.to.hostVm) }
            : { acquire: acquisitionIndex(a.to.action) },
        mechanism: a.estimate.mechanism,
        seconds: a.estimate.totalSeconds,
        reason: a.reason,
      };
    case "acquire-host-vm":
      return {
        kind: "acquire-host-vm",
        type: a.type,
        server: a.server === undefined ? undefined : view.serverIds[a.server],
      };
    case "release-host-vm":
      return { kind: "release-host-vm", hostVm: hostId(a.hostVm) };
    case "rejuvenate":
      return { kind: "rejuvenate", hostVm: hostId(a.hostVm), mode: a.mode };
    case "co-migrate":
      return {
        kind: "co-migrate",
        members: a.members.map((m) => ({
          guest: view.guestIds[m.guest],
          from: hostId(m.from),
          mechanism: m.estimate.mechanism,
          seconds: m.estimate.totalSeconds,
        })),
        to:
          a.to.kind === "existing"
            ? { hostVm: hostId(a.to.hostVm) }
            : { acquire: acquisitionIndex(a.to.action) },
        reason: a.reason,
      };
    default:
      return unhandledKind(a);
  }
}

/**
 * A whole planner plan as stored actions, in the planner's order with the planner's
 * dependencies (what the API asks for is planned whole: nothing to split).
 */
export function toStored(plan: ActionPlan, view: CloudView): PlannedAction[] {
  return plan.actions.map((a) => ({ payload: payloadOf(a, view, (i) => i), dependsOn: a.dependsOn }));
}

type ListName = "automatic" | "suggested";

/**
 * Splits a plan by the automation level of the guests it moves, keeping the planner's order
 * and dependencies within each part. Acquisitions follow the moves that need them; a release
 * waits for every move out of its host VM (the planner's dependencies say so).
 *
 * Renting is the cloud's decision, so the cloud's level governs it: acquisitions ahead of
 * need, releases and rejuvenations are dropped in manual, proposed in suggest, applied in
 * automatic — except that a host VM an operator acquired (kept) is released only by a plan
 * the operator approves.
 *
 * An action whose dependency landed in the other part (or nowhere) is re-planned next round,
 * with two exceptions for releases: one proposed while the moves out of its host VM are
 * applied keeps its place without those dependencies (its host VM is empty by the time it is
 * approved; the executor checks), and one applied while a move out waits for approval is
 * dropped (the host VM is released by that proposal or not at all).
 */
export function split(
  plan: ActionPlan,
  view: CloudView,
  level: ReadonlyMap<string, Automation>,
  cloudLevel: Automation,
  kept: ReadonlySet<string>,
): { automatic: PlannedAction[]; suggested: PlannedAction[] } {
  const rental = (keptHost: boolean): ListName | undefined =>
    cloudLevel === "manual" ? undefined : cloudLevel === "suggest" || keptHost ? "suggested" : "automatic";
  const guestList = (g: number): ListName | undefined => {
    const lvl = level.get(view.guestIds[g]) ?? "automatic";
    return lvl === "manual" ? undefined : lvl === "automatic" ? "automatic" : "suggested";
  };
  // The part each action goes to (undefined: dropped). An acquisition goes with the first move
  // into it (moves into it in the other part are then re-planned), else it is ahead of need.
  const firstMoveInto = new Map<number, ListName | undefined>();
  // A co-migration goes where all its guests' levels agree (else it waits for a later round).
  const membersList = (guests: readonly number[]): ListName | undefined => {
    const lists = new Set(guests.map(guestList));
    return lists.size === 1 ? [...lists][0] : undefined;
  };
  for (const a of plan.actions) {
    if (a.kind === "migrate" && a.to.kind === "acquired" && !firstMoveInto.has(a.to.action))
      firstMoveInto.set(a.to.action, guestList(a.guest));
    if (a.kind === "co-migrate" && a.to.kind === "acquired" && !firstMoveInto.has(a.to.action))
      firstMoveInto.set(a.to.action, membersList(a.members.map((m) => m.guest)));
  }
  const part: (ListName | undefined)[] = [];
  const deps: number[][] = [];
  for (const a of plan.actions) {
    let list: ListName | undefined;
    let keptDeps = [...a.dependsOn];
    switch (a.kind) {
      case "migrate":
        list = guestList(a.guest);
        if (a.dependsOn.some((d) => part[d] !== list)) list = undefined;
        break;
      case "acquire-host-vm":
        list = firstMoveInto.has(a.id) ? firstMoveInto.get(a.id) : rental(false);
        break;
      case "release-host-vm":
        list = rental(kept.has(view.hostVmIds[a.hostVm]));
        if (a.dependsOn.some((d) => part[d] === undefined)) list = undefined;
        else if (list === "automatic" && a.dependsOn.some((d) => part[d] === "suggested")) list = undefined;
        else if (list === "suggested") keptDeps = a.dependsOn.filter((d) => part[d] === "suggested");
        break;
      case "rejuvenate":
        list = rental(kept.has(view.hostVmIds[a.hostVm]));
        if (a.dependsOn.some((d) => part[d] !== list)) list = undefined;
        break;
      case "co-migrate":
        list = membersList(a.members.map((m) => m.guest));
        if (a.dependsOn.some((d) => part[d] !== list)) list = undefined;
        break;
      default:
        unhandledKind(a);
    }
    part.push(list);
    deps.push(keptDeps);
  }
  const out: Record<ListName, PlannedAction[]> = { automatic: [], suggested: [] };
  const index = new Int32Array(plan.actions.length).fill(-1);
  for (const a of plan.actions) {
    const list = part[a.id];
    if (list === undefined) continue;
    index[a.id] = out[list].length;
    out[list].push({
      payload: payloadOf(a, view, (i) => index[i]),
      dependsOn: deps[a.id].map((d) => index[d]),
    });
  }
  return out;
}

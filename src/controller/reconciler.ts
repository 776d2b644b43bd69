/**
 * The control loop: audit the provider (what runs where, how loaded), then — when this
 * controller leads — plan with the same policy the simulator runs, and hand the plan to the
 * executor according to each guest's automation level:
 *   manual: the planner never moves it; suggest: its moves wait for approval; automatic: applied.
 */

import { guestSpec, Rng } from "../model/index.ts";
import type { ActionPlan } from "../planner/index.ts";
import { type Policy, validatePlan } from "../planner/index.ts";
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
    const { automatic, suggested, now } = await this.propose(true);
    const out: { applied?: number; proposed?: number } = {};
    if (automatic.length > 0) out.applied = await this.storePlan(automatic, "applying", "reconciler", now);
    // One proposal at a time: a second one, planned while the first waits, would work
    // against it (moving guests into host VMs the first one empties).
    const standing = await this.store.repos.plans.anyWithStatus(["proposed"]);
    if (suggested.length > 0 && standing === undefined)
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
    const level = new Map(topo.guests.map((g) => [g.id, g.automation ?? cloudLevel]));

    // A standing proposal keeps its guests out of planning until approved, cancelled or stale.
    const proposals = await this.store.repos.plans.withStatus("proposed");
    const fixed = new Set<string>([...level].filter(([, l]) => l === "manual").map(([id]) => id));
    for (const p of proposals) {
      if (expire && snap.now - p.createdAt > this.opts.proposalTtlSeconds) {
        await this.leader.fenced((tx) => tx.plans.setStatus(p.id, "superseded"));
        this.events.emit("plan.superseded", undefined, { id: p.id }, snap.now);
        continue;
      }
      for (const a of await this.store.repos.plans.actions(p.id))
        if (a.payload.kind === "migrate") fixed.add(a.payload.guest);
    }
    // Guests moving under an applying plan are in flight already (migrations table).
    const lastMovedAt = await this.store.repos.migrations.lastCompleted();
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
    const id = await this.leader.fenced((tx) =>
      tx.plans.create(
        { createdAt: now, status, source, notes, epoch: this.leader.epoch },
        list.map((payload, idx) => ({ payload, dependsOn: deps[idx] })),
      ),
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

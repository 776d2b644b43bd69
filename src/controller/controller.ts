/**
 * One controller process: store + provider + planner, the reconcile loop and the executor,
 * and the operations the API offers. Several controllers may share a PostgreSQL store; only
 * the leader plans, executes and writes, the others serve reads and wait to take over.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { type GuestSpec, guestSpec, hostVmMips } from "../model/index.ts";
import {
  type Policy,
  placeRequested,
  planCoMove,
  planMove,
  type RequestedMechanism,
} from "../planner/index.ts";
import { type Provider, ProviderError, type SecurityVmOptions } from "../providers/index.ts";
import { VirtualAmt } from "./amt.ts";
import type { Principal } from "./auth.ts";
import { ApiError, moveRefusalError, notFound } from "./errors.ts";
import { EventBus } from "./events.ts";
import { Executor } from "./executor.ts";
import { History } from "./history.ts";
import { Leadership } from "./leader.ts";
import { ControllerMetrics } from "./metrics.ts";
import { pairChannels, SecurityMonitoring } from "./monitoring.ts";
import { type Automation, type PlannedAction, Reconciler, toStored } from "./reconciler.ts";
import type { Store } from "./store/connect.ts";
import type { GuestIdStatus, Repositories, StoredGuest } from "./store/repositories/index.ts";
import { buildView } from "./view.ts";

export interface ControllerOptions {
  readonly store: Store;
  readonly provider: Provider;
  readonly policy: Policy;
  readonly log: Logger;
  /** Planning interval on the provider's clock, s. */
  readonly intervalSeconds?: number;
  readonly maxConcurrentMigrations?: number;
  readonly maxPerHostVm?: number;
  /** Name of this controller among its peers (logs, leadership). */
  readonly holder?: string;
  /** Seed of the planner's random draws (the simulator's scenario seed, to plan alike). */
  readonly seed?: number;
}

export interface NewGuest extends GuestSpec {
  antiAffinityGroup?: string;
  automation?: Automation;
  hostVm?: string;
  role: "tenant" | "security";
  targets: string[];
  monitoring?: SecurityVmOptions;
}

/** Events after which guests or host VMs are somewhere else than the views say. */
const PLACEMENT_EVENTS = new Set([
  "migration.completed",
  "migration.failed",
  "migration.cancelled",
  "hostvm.acquired",
  "hostvm.released",
  "hostvm.rejuvenated",
  "hostvm.rejuvenation.failed",
]);

export class Controller {
  readonly store: Store;
  readonly provider: Provider;
  readonly events: EventBus;
  readonly metrics = new ControllerMetrics();
  readonly leader: Leadership;
  readonly reconciler: Reconciler;
  readonly executor: Executor;
  readonly intervalSeconds: number;
  readonly history: History;
  /** Security VMs' channels and alerts (monitoring.ts). */
  readonly monitoring: SecurityMonitoring;
  /** Power and boot control, inventory and the guests' event log (amt.ts). */
  readonly amt: VirtualAmt;
  private readonly log: Logger;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private kicked: (() => void) | undefined;
  /** Guest ids whose creation is under way (claimed before the provider is asked). */
  private readonly creating = new Set<string>();

  constructor(private readonly opts: ControllerOptions) {
    this.store = opts.store;
    this.provider = opts.provider;
    this.log = opts.log;
    this.events = new EventBus((err, e) =>
      this.log.warn({ err, event: e.kind }, "an event subscriber failed; it was unsubscribed"),
    );
    this.intervalSeconds = opts.intervalSeconds ?? 300;
    // A sample at least every half round even when nothing changes (the chart's x axis moves on).
    this.history = new History(this.store, this.intervalSeconds / 2);
    this.leader = new Leadership(this.store, opts.holder ?? `controller-${randomUUID().slice(0, 8)}`);
    const caps = {
      maxConcurrentMigrations: opts.maxConcurrentMigrations ?? 8,
      maxPerHostVm: opts.maxPerHostVm ?? 2,
    };
    this.reconciler = new Reconciler(
      this.store,
      this.provider,
      opts.policy,
      this.leader,
      this.events,
      this.metrics,
      {
        intervalSeconds: this.intervalSeconds,
        ...caps,
        proposalTtlSeconds: 12 * this.intervalSeconds,
        seed: opts.seed,
      },
    );
    this.executor = new Executor(this.store, this.provider, this.leader, this.events, this.metrics, caps);
    this.monitoring = new SecurityMonitoring({
      event: (kind, tenant, data) => this.events.emit(kind, tenant, data),
      alertCounted: (monitor, severity) => this.metrics.alerts.inc({ monitor, severity }),
      switchCounted: (from, to) => this.metrics.channelSwitches.inc({ from, to }),
      pairsByChannel: (counts) => {
        for (const [channel, n] of Object.entries(counts)) this.metrics.monitorPairs.set({ channel }, n);
      },
      moveCounted: (make, gap) => {
        this.metrics.monitorMoves.observe(make);
        if (gap !== null) this.metrics.monitoringGaps.observe(gap);
      },
    });
    this.amt = new VirtualAmt(this.store, this.provider, this.leader, this.log);
    this.amt.follow(this.events);
    // The executor's writes move guests and host VMs: the API's views must not wait for the
    // next audit to show it (a migration shown completed with its guest still at the source).
    this.events.subscribe((e) => {
      if (PLACEMENT_EVENTS.has(e.kind)) this.invalidateViews();
    });
  }

  /** Wall seconds between planning rounds (the interval on the provider's clock, sped up). */
  get roundWallSeconds(): number {
    return this.intervalSeconds / this.provider.speed;
  }

  /** Starts the loops; returns once this controller has tried to lead once. */
  async start(): Promise<void> {
    await this.leadOnce();
    const every = (ms: number, fn: () => Promise<unknown>) => {
      let running = false;
      const t = setInterval(() => {
        if (running || this.stopped) return;
        running = true;
        fn()
          .catch((e) => this.onLoopError(e))
          .finally(() => {
            running = false;
          });
      }, ms);
      this.timers.push(t);
    };
    const roundMs = Math.max(200, this.roundWallSeconds * 1000);
    every(1000, () => this.leadOnce());
    // Security VMs follow their targets and their alerts come in (every second: a switch or an
    // alert waits at most that long to be seen).
    every(1000, () => (this.leader.isLeader ? this.monitorOnce() : Promise.resolve()));
    // What guests did to their power (powered off, panicked, booted) into their event logs.
    every(1000, () => (this.leader.isLeader ? this.amt.drainOnce() : Promise.resolve()));
    // Audit often enough to show progress, but at most ten times a round (large clouds).
    every(Math.max(2000, roundMs / 10), () =>
      this.leader.isLeader ? this.auditAndRecord() : Promise.resolve(),
    );
    every(roundMs, () => (this.leader.isLeader ? this.reconciler.round() : Promise.resolve()));
    // The policy's checks between rounds (nestcloud: overload relief every 30 s), at most
    // twice a wall second however fast the provider's clock runs.
    const reactWall = this.reconciler.reactWallSeconds;
    if (reactWall !== undefined)
      every(Math.max(500, reactWall * 1000), () =>
        this.leader.isLeader ? this.reconciler.react() : Promise.resolve(),
      );
    every(250, () => this.executor.step());
    this.timers.push(
      setInterval(() => {
        this.kicked?.();
      }, 1000),
    );
  }

  private onLoopError(e: unknown): void {
    if (e instanceof Error && e.name === "FencedError") {
      this.log.warn({ err: e.message }, "lost leadership; following");
      this.metrics.leader.set(0);
      return;
    }
    this.log.error({ err: e }, "control loop error");
  }

  private async leadOnce(): Promise<void> {
    const was = this.leader.isLeader;
    const leads = await this.leader.tryLead(this.provider.now());
    this.metrics.leader.set(leads ? 1 : 0);
    if (leads && !was) {
      this.log.info({ holder: this.leader.holder, epoch: this.leader.epoch }, "leading");
      this.events.emit("controller.leading", undefined, {
        holder: this.leader.holder,
        epoch: this.leader.epoch,
      });
      // The provider's state as the last leader left it (a follower's copy is as old as its
      // start): without this a new leader would continue a stale world and reuse its ids.
      await this.provider.resume?.();
      await this.reconciler.describe();
      await this.auditAndRecord();
      // Resume whatever the journal says was under way.
      await this.executor.step();
    }
  }

  /** An audit, then a history sample of what it saw (size and cost of the cloud). */
  private async auditAndRecord(): Promise<void> {
    const snap = await this.reconciler.audit();
    const prices = new Map((await this.repos.hostVmTypes.list()).map((t) => [t.name, t.pricePerHour]));
    const rented = snap.hostVms.filter((h) => h.state !== "released");
    await this.history.record({
      at: snap.now,
      hostVms: rented.length,
      costPerHour: rented.reduce((s, h) => s + (prices.get(h.type) ?? 0), 0),
      guests: snap.guests.length,
    });
  }

  /**
   * One pass over the security VMs: the plane's monitors started where missing and moved to
   * where their targets run now (made before broken), their new alerts taken in, and each
   * pair's channel as placement stands (a change is a switch: event and metric).
   */
  async monitorOnce(): Promise<void> {
    const secvms = await this.repos.guests.list({ role: "security" });
    const plane = this.provider.plane.securityVms;
    if (plane) {
      for (const s of secvms)
        await plane.ensure({ ...s.monitoring, id: s.id, targets: s.targets }).catch((err) => {
          this.metrics.monitorErrors.inc();
          this.log.warn({ err, secvm: s.id }, "starting a security VM's monitors failed; retried next pass");
        });
      const tenants = new Map(secvms.map((s) => [s.id, s.tenant]));
      const moves = await plane.follow().catch((err) => {
        this.metrics.monitorErrors.inc();
        this.log.warn({ err }, "moving monitors to their targets failed; retried next pass");
        return [];
      });
      for (const m of moves) this.monitoring.moved(m, tenants.get(m.secvm));
      for (const d of await plane.drain()) {
        const tenant = tenants.get(d.secvm);
        if (tenant !== undefined) this.monitoring.ingest(d.secvm, tenant, d.alerts);
      }
    }
    const all = await this.repos.guests.list();
    const hostOf = new Map(all.map((g) => [g.id, g.hostVm]));
    const servers = new Map((await this.repos.hostVms.list()).map((h) => [h.id, h.server]));
    this.monitoring.placed(
      pairChannels(
        secvms,
        (g) => hostOf.get(g),
        (h) => servers.get(h),
      ),
    );
  }

  /** Asks the executor to look now (after an approval) instead of at its next tick. */
  kick(): void {
    void this.executor.step().catch((e) => this.onLoopError(e));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.amt.close();
    await this.leader.resign();
  }

  /** A write from the API: only the leader writes. */
  async write<T>(fn: (tx: Repositories) => Promise<T>): Promise<T> {
    if (!this.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    const out = await this.leader.fenced(fn);
    this.viewsAt = -1;
    return out;
  }

  /** The store's repositories (reads; writes go through write()). */
  get repos(): Repositories {
    return this.store.repos;
  }

  // ---- views the API serves --------------------------------------------------------------

  /**
   * Small read-side caches the API's list views use, rebuilt after every audit (the load
   * figures change only then) and on changes the API itself makes. Keeps GET /api/vms a
   * single indexed query plus map lookups, whatever the cloud's size.
   */
  private views = {
    cpu: new Map<string, number>(),
    server: new Map<string, string | null>(),
    hostDemand: new Map<string, number>(),
    hostCap: new Map<string, number>(),
    /** Guest rows by id order (tenant guests and security VMs). */
    guests: [] as StoredGuest[],
    byTenant: new Map<string, StoredGuest[]>(),
  };
  private viewsAt = -1;
  private viewsWall = 0;
  /** Bumped whenever the views are rebuilt: answers cached against it stay valid until then. */
  viewsVersion = 0;

  private async refreshViews(): Promise<void> {
    const snap = this.reconciler.lastSnapshot;
    const stamp = snap?.now ?? -2;
    this.viewsWall = Date.now();
    const cpu = new Map<string, number>();
    const server = new Map<string, string | null>();
    const hostDemand = new Map<string, number>();
    const hostCap = new Map<string, number>();
    const guests = await this.repos.guests.list();
    // Lists per role, and per role and tenant, so a page is a slice.
    const byTenant = new Map<string, StoredGuest[]>();
    for (const g of guests) {
      const key = `${g.role}\u0000${g.tenant}`;
      const list = byTenant.get(key) ?? [];
      list.push(g);
      byTenant.set(key, list);
      const all = byTenant.get(g.role) ?? [];
      all.push(g);
      byTenant.set(g.role, all);
    }
    const mips = new Map(guests.map((g) => [g.id, g.vcpus * g.mipsPerVcpu]));
    const types = new Map((await this.repos.hostVmTypes.list()).map((t) => [t.name, hostVmMips(t)]));
    for (const h of await this.repos.hostVms.list()) {
      server.set(h.id, h.server);
      hostCap.set(h.id, types.get(h.type) ?? 0);
    }
    // Load from the last snapshot, placement from the store (a move settled since the
    // snapshot counts at its destination).
    const placed = new Map(guests.map((g) => [g.id, g.hostVm]));
    for (const g of snap?.guests ?? []) {
      cpu.set(g.id, g.cpu);
      const at = placed.has(g.id) ? placed.get(g.id) : g.hostVm;
      if (at) hostDemand.set(at, (hostDemand.get(at) ?? 0) + g.cpu * (mips.get(g.id) ?? 0));
    }
    this.views = { cpu, server, hostDemand, hostCap, guests, byTenant };
    this.viewsAt = stamp;
    this.viewsVersion++;
  }

  /**
   * Brings the views up to date: after an audit, after a write through this controller,
   * and every 2 s on a follower (it sees the leader's writes only in the store).
   */
  async freshViews(): Promise<void> {
    const stale = (this.reconciler.lastSnapshot?.now ?? -2) !== this.viewsAt;
    if (stale || (!this.leader.isLeader && Date.now() - this.viewsWall > 2000)) await this.refreshViews();
  }

  /** Guest rows (tenant ones or security VMs), optionally of one tenant, in id order. */
  guestRows(role: "tenant" | "security", tenant?: string): readonly StoredGuest[] {
    return this.views.byTenant.get(tenant === undefined ? role : `${role}\u0000${tenant}`) ?? [];
  }

  /** Marks the views stale after a write this controller made. */
  invalidateViews(): void {
    this.viewsAt = -1;
  }

  serverOf(hostVm: string | null): string | null {
    return hostVm ? (this.views.server.get(hostVm) ?? null) : null;
  }

  currentCpu(guest: string): number | null {
    return this.views.cpu.get(guest) ?? null;
  }

  /** Requested CPU of a host VM's guests, as a fraction of its capacity. */
  hostCpu(hostVm: string): number | null {
    const cap = this.views.hostCap.get(hostVm);
    return cap ? (this.views.hostDemand.get(hostVm) ?? 0) / cap : null;
  }

  async overview(p: Principal) {
    const snap = this.reconciler.lastSnapshot;
    const hosts = await this.repos.hostVms.list({ rented: true });
    const prices = new Map((await this.repos.hostVmTypes.list()).map((t) => [t.name, t.pricePerHour]));
    const guests = await this.repos.guests.count(p.role === "tenant" ? p.tenant : undefined);
    const running = await this.repos.migrations.countRunning();
    const proposed = (await this.repos.plans.withStatus("proposed")).length;
    return {
      now: snap?.now ?? this.provider.now(),
      provider: this.provider.name,
      // How to read the provider's times (now, plans' createdAt, migrations' startedAt, ...).
      clock: this.provider.clock,
      speed: this.provider.speed,
      leader: this.leader.isLeader,
      guests: guests.guests,
      runningGuests: guests.running,
      ...(p.role === "admin"
        ? {
            hostVms: hosts.length,
            costPerHour: hosts.reduce((s, h) => s + (prices.get(h.type) ?? 0), 0),
            activeMigrations: running,
            proposedPlans: proposed,
          }
        : {}),
    };
  }

  // ---- operations ---------------------------------------------------------------------------

  /** Stores actions as a plan to apply now (API requests are automatic by definition). */
  async submitActions(actions: readonly PlannedAction[], source: string): Promise<number> {
    if (!this.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    const id = await this.reconciler.storePlan(actions, "applying", source, this.provider.now());
    this.kick();
    return id;
  }

  async cancelPlan(id: number): Promise<void> {
    if (!this.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    await this.executor.cancel(id, this.provider.now());
  }

  /** Creates a guest where the planner places it, or on the host VM named (an admin's choice). */
  async createGuest(spec: NewGuest) {
    if (!this.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    // Claimed before the first await: a second create of the same id meanwhile is refused.
    if (this.creating.has(spec.id)) throw new ApiError(409, guestIdUnavailable(spec.id));
    this.creating.add(spec.id);
    try {
      return await this.createClaimedGuest(spec);
    } finally {
      this.creating.delete(spec.id);
    }
  }

  private async createClaimedGuest(spec: NewGuest) {
    let hostVm = spec.hostVm;
    if (hostVm) {
      const h = await this.repos.hostVms.get(hostVm);
      if (!h || h.state !== "running")
        throw new ApiError(422, `body/hostVm: host VM ${hostVm} is not running`);
    } else hostVm = await this.placeGuest(spec);
    const now = this.provider.now();
    try {
      await this.provider.createGuest(guestSpec(spec), hostVm);
    } catch (e) {
      // Taken at the provider but not (yet) in the store: a create racing this one, or a
      // guest the audit has not adopted. Whose it is must not show.
      if (e instanceof ProviderError && e.code === "exists")
        throw new ApiError(409, guestIdUnavailable(spec.id));
      throw e; // a provider's refusal answers with its kind's status (PROVIDER_ERROR_STATUS)
    }
    const guest: StoredGuest = {
      ...guestSpec(spec),
      affinityGroup: null,
      antiAffinityGroup: spec.antiAffinityGroup ?? null,
      role: spec.role,
      targets: spec.targets,
      monitoring: spec.monitoring ?? null,
      hostVm,
      powerState: "running",
      automation: spec.automation ?? null,
      createdAt: now,
    };
    // An audit may have adopted the guest between the provider's answer and this write (the
    // provider lists it as soon as it runs): what the API was asked for wins.
    await this.write((tx) => tx.guests.put(guest)).catch((e) => {
      throw committedButNotRecorded(`guest VM ${spec.id} was created on ${hostVm}`, e);
    });
    this.viewsAt = -1;
    this.events.emit("vm.created", spec.tenant, { id: spec.id, hostVm }, now);
    return guest;
  }

  /**
   * Where the planner places a new guest (planner/requested.ts placeRequested: the policy's
   * placeNew, as in the simulator). A host VM the placement wants acquired is acquired only
   * when the cloud's automation level is automatic (renting is the cloud's decision); then the
   * guest waits for it to run. Otherwise the answer says to acquire one first.
   */
  private async placeGuest(spec: NewGuest): Promise<string> {
    const topo = await this.reconciler.topology();
    const view = buildView(topo);
    const g = view.cloud.addGuest({
      id: spec.id,
      tenant: spec.tenant,
      vcpus: spec.vcpus,
      mipsPerVcpu: spec.mipsPerVcpu,
      memoryMiB: spec.memoryMiB,
      dirtyRateMiBps: spec.dirtyRateMiBps,
      ...(spec.antiAffinityGroup ? { antiAffinityGroup: spec.antiAffinityGroup } : {}),
      role: spec.role === "security" ? { kind: "security", targets: spec.targets } : { kind: "tenant" },
    });
    view.guestIds.push(spec.id);
    const snap = this.reconciler.lastSnapshot ?? (await this.reconciler.audit());
    const input = await this.reconciler.plannerInput(view, snap, topo.running, new Set());
    const placement = placeRequested(this.opts.policy, input, g);
    const noRoom = `no running host VM has room for ${spec.memoryMiB} MiB; acquire a host VM first`;
    const to = placement.assignments.find((a) => a.guest === g)?.to;
    if (!to) throw new ApiError(409, noRoom);
    if (to.kind === "existing") return view.hostVmIds[to.hostVm];
    if ((await this.reconciler.cloudAutomation()) !== "automatic") throw new ApiError(409, noRoom);
    const acq = placement.acquisitions[to.action];
    const plan = await this.submitActions(
      [
        {
          payload: { kind: "acquire-host-vm", type: acq.type, server: view.serverIds[acq.server] },
          dependsOn: [],
        },
      ],
      "api",
    );
    return this.acquiredBy(plan, acq.type, spec.id);
  }

  /** The host VM a plan of one acquisition produced, once it runs (the executor is kicked meanwhile). */
  private async acquiredBy(plan: number, typeName: string, guest: string): Promise<string> {
    const type = await this.repos.hostVmTypes.get(typeName);
    const wallSeconds = ((type?.provisionSeconds ?? 120) * 3) / this.provider.speed + 30;
    const end = Date.now() + wallSeconds * 1000;
    while (Date.now() < end) {
      await this.executor.step();
      const a = await this.repos.plans.action(plan, 0);
      if (a?.status === "done" && a.payload.kind === "acquire-host-vm" && a.payload.hostVm)
        return a.payload.hostVm;
      if (a?.status === "failed" || a?.status === "cancelled")
        throw new ApiError(
          409,
          `the host VM acquired for guest VM ${guest} did not come up: ${a.error ?? a.status}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new ApiError(
      503,
      `the host VM acquired for guest VM ${guest} (plan ${plan}) is not running yet; try again`,
    );
  }

  /** Starts or stops a guest at the provider, then records it. */
  async setGuestRunning(id: string, running: boolean): Promise<void> {
    await this.provider.setGuestRunning(id, running);
    await this.write((tx) => tx.guests.setPowerState(id, running ? "running" : "stopped")).catch((e) => {
      throw committedButNotRecorded(`guest VM ${id} was ${running ? "started" : "stopped"}`, e);
    });
  }

  async deleteGuest(id: string, tenant: string): Promise<void> {
    await this.provider.deleteGuest(id);
    // The id is retired with the guest: history (migrations, events, metrics) names guests
    // by id, so it is never handed out again.
    await this.write((tx) => tx.guests.retire(id, tenant, Date.now() / 1000)).catch((e) => {
      throw committedButNotRecorded(`guest VM ${id} was deleted`, e);
    });
  }

  /**
   * Whether a new guest may take this id: free, or why not. Ids are one namespace for all
   * tenants; the API tells a tenant only that an id it cannot see is unavailable.
   */
  async guestIdStatus(id: string): Promise<GuestIdStatus | { kind: "creating" }> {
    if (this.creating.has(id)) return { kind: "creating" };
    return this.repos.guests.idStatus(id);
  }

  /**
   * A one-guest move, planned by the planner (planner/requested.ts): to the host VM named, or
   * the best one its rules allow, by the mechanism named or the one the cost models choose. A
   * move the planner refuses answers with the refusal's status and reason. Asked by the API,
   * so the guest's automation level does not matter (manual only keeps the planner's own
   * rounds away from it).
   */
  async chooseMove(
    guestId: string,
    to: string | undefined,
    mechanism: RequestedMechanism,
  ): Promise<PlannedAction[]> {
    const topo = await this.reconciler.topology();
    const view = buildView(topo);
    const g = view.guestIds.indexOf(guestId);
    if (g < 0) throw notFound("guest VM", guestId);
    let target: number | undefined;
    if (to !== undefined) {
      target = view.hostVmIds.indexOf(to);
      if (target < 0) throw new ApiError(422, `body/to: no host VM ${to}`);
    }
    const snap = this.reconciler.lastSnapshot ?? (await this.reconciler.audit());
    const input = await this.reconciler.plannerInput(view, snap, topo.running, new Set());
    const decision = planMove(input, g, { to: target, mechanism });
    if (!decision.ok) throw moveRefusalError(decision.refusal);
    return toStored(decision.plan, view);
  }

  /**
   * A co-migration asked for through the API: the guests (a security VM and its targets) to
   * host VM `to` in lock-step, planned by the planner's pure code (planCoMove). 409 while a
   * move of any of them is in flight: a migration running, or an unfinished action of an
   * applying plan (submitted, not yet started by the executor).
   */
  async submitCoMove(
    guestIds: readonly string[],
    to: string,
  ): Promise<{ plan: number; planned: PlannedAction[] }> {
    // Claimed before the first await: a concurrent request for any of them is refused (409)
    // instead of both passing the in-flight check before either is stored.
    const busy = guestIds.find((g) => this.coMoving.has(g));
    if (busy) throw new ApiError(409, `guest VM ${busy} is moving already (a co-migration is being planned)`);
    for (const g of guestIds) this.coMoving.add(g);
    try {
      const planned = await this.chooseCoMove(guestIds, to);
      return { plan: await this.submitActions(planned, "api"), planned };
    } finally {
      for (const g of guestIds) this.coMoving.delete(g);
    }
  }
  private readonly coMoving = new Set<string>();

  async chooseCoMove(guestIds: readonly string[], to: string): Promise<PlannedAction[]> {
    for (const p of await this.repos.plans.withStatus("applying"))
      for (const a of await this.repos.plans.actions(p.id)) {
        if (a.status !== "pending" && a.status !== "running") continue;
        const moving =
          a.payload.kind === "migrate"
            ? [a.payload.guest]
            : a.payload.kind === "co-migrate"
              ? a.payload.members.map((m) => m.guest)
              : [];
        const busy = guestIds.find((g) => moving.includes(g));
        if (busy)
          throw new ApiError(409, `guest VM ${busy} is moving already (plan ${p.id}, ${a.payload.kind})`);
      }
    const topo = await this.reconciler.topology();
    const view = buildView(topo);
    const gs = guestIds.map((id) => {
      const g = view.guestIds.indexOf(id);
      if (g < 0) throw notFound("guest VM", id);
      return g;
    });
    const target = view.hostVmIds.indexOf(to);
    if (target < 0) throw new ApiError(422, `body/to: no host VM ${to}`);
    const snap = this.reconciler.lastSnapshot ?? (await this.reconciler.audit());
    const input = await this.reconciler.plannerInput(view, snap, topo.running, new Set());
    const decision = planCoMove(input, gs, target);
    if (!decision.ok) throw moveRefusalError(decision.refusal);
    return toStored(decision.plan, view);
  }

  /** What the planner would do now, split by automation level (nothing stored). */
  async preview() {
    const { automatic, suggested, now } = await this.reconciler.propose(false);
    return {
      at: now,
      automatic: automatic.map((a) => a.payload),
      suggested: suggested.map((a) => a.payload),
    };
  }
}

/** The answer to a guest id that the caller cannot see, whatever the reason. */
export function guestIdUnavailable(id: string): string {
  return `guest VM id ${id} is not available (in use, being created or retired); choose another id`;
}

/**
 * The provider did what was asked, but the store did not record it: say so (the next
 * audit adopts what the provider has), rather than a bare error that suggests nothing happened.
 */
function committedButNotRecorded(what: string, cause: unknown): ApiError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new ApiError(503, `${what}, but recording it failed (${why}); the next audit records it`);
}

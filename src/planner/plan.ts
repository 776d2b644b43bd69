/**
 * An action plan: what the planner wants done, as a DAG. The executor (simulated or real)
 * runs an action once everything it depends on has completed, within the parallelism caps.
 * Shaped after OpenStack Watcher's action plans.
 */
import type { MigrationEstimate, Route } from "../migration/index.ts";

/** A host VM the plan refers to: one that exists, or one an acquire action in this plan creates. */
export type HostVmRef =
  | { readonly kind: "existing"; readonly hostVm: number }
  | { readonly kind: "acquired"; readonly action: number };

export interface MigrateAction {
  readonly kind: "migrate";
  readonly id: number;
  readonly guest: number;
  readonly from: number;
  readonly to: HostVmRef;
  readonly route: Route;
  readonly estimate: MigrationEstimate;
  readonly dependsOn: readonly number[];
  readonly reason: MoveReason;
}

export interface AcquireHostVmAction {
  readonly kind: "acquire-host-vm";
  readonly id: number;
  readonly type: string;
  /** Physical server asked for (dedicated-host style); undefined lets the provider choose. */
  readonly server: number | undefined;
  readonly dependsOn: readonly number[];
}

export interface ReleaseHostVmAction {
  readonly kind: "release-host-vm";
  readonly id: number;
  readonly hostVm: number;
  readonly dependsOn: readonly number[];
}

/** How a host VM is renewed: each guest live-updated in place, or moved to a spare and back. */
export const REJUVENATION_MODES = ["in-place", "evacuate"] as const;
export type RejuvenationMode = (typeof REJUVENATION_MODES)[number];

export interface RejuvenateAction {
  readonly kind: "rejuvenate";
  readonly id: number;
  readonly hostVm: number;
  readonly mode: RejuvenationMode;
  readonly dependsOn: readonly number[];
}

/** One guest of a co-migration: where it comes from, how it travels. */
export interface CoMigrationMember {
  readonly guest: number;
  readonly from: number;
  readonly route: Route;
  readonly estimate: MigrationEstimate;
}

/**
 * A security VM and its target(s) moved together to one host VM in lock-step: every member
 * pauses before its switchover until all are ready, so no instant goes unmonitored (issue 13).
 */
export interface CoMigrateAction {
  readonly kind: "co-migrate";
  readonly id: number;
  readonly members: readonly CoMigrationMember[];
  readonly to: HostVmRef;
  readonly dependsOn: readonly number[];
  readonly reason: MoveReason;
}

export type Action =
  | MigrateAction
  | AcquireHostVmAction
  | ReleaseHostVmAction
  | RejuvenateAction
  | CoMigrateAction;

/** Every kind of action, once: executors handle each (their switches end in `unhandledKind`). */
export const ACTION_KINDS = [
  "migrate",
  "acquire-host-vm",
  "release-host-vm",
  "rejuvenate",
  "co-migrate",
] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/**
 * The end of an exhaustive switch over action kinds: the compiler refuses a switch that
 * misses a kind (its value would not be `never`); at run time (a kind stored by another
 * version, say) it is an error, never a silent wait.
 */
export function unhandledKind(a: never): never {
  throw new PlanError(`unknown action kind ${JSON.stringify((a as { kind?: unknown }).kind)}`);
}

/**
 * Why a guest moves: the planner's reasons, and "requested" for a move asked through the API
 * (planned by planMove, requested.ts).
 */
export type MoveReason =
  | "overload"
  | "reactive"
  | "underload"
  | "spare"
  | "rebalance"
  | "evacuate"
  | "requested"
  /** A security VM follows its target(s) so monitoring stays local or direct (pairs.ts). */
  | "monitoring";

export interface ParallelismCaps {
  /** Migrations running at once in the whole cloud. */
  readonly maxConcurrentMigrations: number;
  /** Migrations touching one host VM (as source or destination) at once. */
  readonly maxPerHostVm: number;
}

export interface ActionPlan {
  readonly actions: readonly Action[];
  readonly caps: ParallelismCaps;
  /** Short facts for logs and the API (e.g. overloaded host VMs found). */
  readonly notes: readonly string[];
}

export const UNLIMITED: ParallelismCaps = {
  maxConcurrentMigrations: Number.POSITIVE_INFINITY,
  maxPerHostVm: Number.POSITIVE_INFINITY,
};

export function emptyPlan(caps: ParallelismCaps = UNLIMITED, notes: string[] = []): ActionPlan {
  return { actions: [], caps, notes };
}

export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlanError";
  }
}

/**
 * Checks a plan's structure: ids unique and dense, dependencies point backwards (so the DAG
 * is acyclic by construction), no guest in two migrations that could run concurrently, and
 * references to acquired host VMs point at acquire actions the move depends on.
 */
export function validatePlan(plan: ActionPlan): void {
  const byId = new Map<number, Action>();
  plan.actions.forEach((a, i) => {
    if (a.id !== i) throw new PlanError(`action #${i} has id ${a.id}; ids must be dense and ordered`);
    byId.set(a.id, a);
    for (const d of a.dependsOn) {
      if (!(d >= 0 && d < a.id))
        throw new PlanError(`action ${a.id} depends on ${d}, which does not come before it`);
    }
  });
  // Ancestors in id order: dependencies point backwards, so each set is complete when read.
  const ancestors: Set<number>[] = [];
  for (const a of plan.actions) {
    const set = new Set<number>();
    for (const d of a.dependsOn) {
      set.add(d);
      for (const x of ancestors[d]) set.add(x);
    }
    ancestors.push(set);
  }
  const movesOf = new Map<number, number[]>();
  for (const a of plan.actions) {
    if (a.kind !== "migrate" && a.kind !== "co-migrate") continue;
    if (a.to.kind === "acquired") {
      const acq = byId.get(a.to.action);
      if (!acq || acq.kind !== "acquire-host-vm")
        throw new PlanError(`migration ${a.id} targets action ${a.to.action}, not an acquisition`);
      if (!ancestors[a.id].has(acq.id))
        throw new PlanError(`migration ${a.id} must depend on acquisition ${acq.id}`);
    }
    const guests = a.kind === "migrate" ? [a.guest] : a.members.map((m) => m.guest);
    if (a.kind === "co-migrate" && (guests.length < 2 || new Set(guests).size !== guests.length))
      throw new PlanError(`co-migration ${a.id} needs two or more distinct guests`);
    for (const guest of guests) {
      const list = movesOf.get(guest) ?? [];
      for (const other of list) {
        if (!ancestors[a.id].has(other))
          throw new PlanError(
            `guest #${guest} is in migrations ${other} and ${a.id} that may run concurrently`,
          );
      }
      list.push(a.id);
      movesOf.set(guest, list);
    }
  }
}

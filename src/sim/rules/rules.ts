/**
 * The rules a simulation runs by, kept apart from the engine that runs it. The engine is the
 * kernel (events, demand, placement, the executor, the accounts' bookkeeping); a rule set
 * decides what happens at each instant: when rounds fall, how a host VM's CPU is shared, what
 * a migration costs, which moments are accounted and what draws power. Every difference
 * between the two sets is one member here, so the kernel asks and never tests which set it
 * runs (test/architecture.test.ts keeps it that way).
 *
 * - nested (rules/nested.ts): nestcloud's own semantics.
 * - cloudsim (rules/cloudsim.ts): CloudSim 3.0.3's, to reproduce the reference experiment.
 */
import type { Violation } from "../../model/index.ts";
import type { CapacityRules } from "../../planner/index.ts";
import type { Share, ShareInput } from "../sharing.ts";

export type RuleSetName = "nested" | "cloudsim";

/**
 * What a running migration costs in CPU, and so how PDM (CPU lost to migrations) is measured.
 * - downtime: the guest runs at its source until switchover and loses its demand for the
 *   downtime; PDM's denominator is the host VMs' requested MIPS-seconds (demand linear
 *   between updates).
 * - cpu-shares: the source grants the guest a reduced share and the destination reserves
 *   one for the whole migration (both host VMs list it); PDM is each migrating guest's
 *   shortfall against its request, over each guest's requested MIPS-seconds.
 */
export type MigrationLoss = "downtime" | "cpu-shares";

/**
 * How a run ends.
 * - update-at-duration: one last update of every host VM at the scenario's duration, which
 *   closes the accounts.
 * - at-last-update: events at or after the duration are dropped and the accounts close at
 *   the last update of every host VM before it.
 */
export type RunEnd = "update-at-duration" | "at-last-update";

/** A migration whose transfer has just completed (indices into the cloud). */
export interface CompletedMigration {
  /** The executor's id of the action. */
  readonly action: number;
  readonly guest: number;
  readonly from: number;
  readonly to: number;
  readonly downtimeSeconds: number;
}

/** What a rule set may ask of the engine at the moments it owns. */
export interface SimulationKernel {
  /** Time of the last update of every host VM. */
  lastFullUpdate(): number;
  /** Reads every live guest's demand at t. */
  readDemand(t: number): void;
  /** Shares CPU and accounts up to t on every host VM (and what the rules do after that). */
  updateAllHostVms(t: number): void;
  /** The same on the given host VMs; `reread` first reads their guests' demand at t. */
  updateHostVms(t: number, hostVms: readonly number[], reread: boolean): void;
  /** Applies the move: the guest belongs to its destination from t. */
  applyMove(m: CompletedMigration, t: number): void;
  /** Does another migration complete at this same instant (the next event)? */
  anotherMigrationCompletesAt(t: number): boolean;
  /** The guest paused `seconds` for its switchover: its demand meanwhile is lost (PDM). */
  loseDemand(guest: number, seconds: number): void;
}

export interface SimulationRules {
  readonly name: RuleSetName;

  // --- what the planner and the checks may assume
  /** Memory binding, CPU overcommit, guests per host VM at creation. */
  readonly capacity: CapacityRules;
  /** Invariant violations these rules allow to arise (debug checks skip them). */
  readonly toleratedViolations: ReadonlySet<Violation["rule"]>;

  // --- timeline
  /** Times of the planning rounds after t = 0 within a run of `durationSeconds`. */
  roundTimes(intervalSeconds: number, durationSeconds: number): number[];
  /** Measure and plan at t = 0 as well, before the first round. */
  readonly planAtStart: boolean;
  readonly runEnd: RunEnd;
  /** MIPS a guest is first placed by. */
  initialDemandMips(mips: number, utilizationAtStart: number): number;
  /**
   * Host VMs report their load between rounds, as nestcloud's agents do: the engine keeps
   * per-host-VM demand sums and summed histories as guests move, hands the histories to the
   * planner and runs the policy's polls between rounds. Without it the planner sums every
   * guest's history itself and nothing happens between rounds.
   */
  readonly hostLoadReports: boolean;

  // --- CPU
  readonly migrationLoss: MigrationLoss;
  /** Shares one host VM's CPU among the guests listed at one instant. */
  shareCpu(x: ShareInput, granted: Float64Array): Share;
  /** After an update of every host VM, guests whose demand is exactly 0 leave the cloud. */
  readonly removesGuestsAtZeroDemand: boolean;

  // --- accounting
  /**
   * SLA violation time of a host VM's segment of `dt` seconds that started with `used` of
   * `requested` MIPS and ended with `requestedAtEnd` against `capacity`.
   */
  slaViolationSeconds(
    used: number,
    requested: number,
    requestedAtEnd: number,
    capacity: number,
    dt: number,
  ): number;
  /** Does a physical server at this utilization draw power (for an interval starting there)? */
  drawsPower(utilization: number, carriesBilledHostVm: boolean): boolean;

  // --- moments
  /** A migration has just started from host VM `from` to `to`. */
  migrationStarted(k: SimulationKernel, from: number, to: number, t: number): void;
  /** A migration's transfer completed at t: apply the move and account around it. */
  migrationCompleted(k: SimulationKernel, m: CompletedMigration, t: number): void;
}

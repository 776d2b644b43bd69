/** The outcome of one simulation run, as written to results.json (deterministic: no wall times). */
import type { SeriesPoint } from "./accounts.ts";

export interface SimulationResult {
  readonly scenario: string;
  readonly policy: string;
  readonly trace: string;
  readonly seed: number;
  readonly guests: number;
  readonly physicalServers: number;
  readonly durationSeconds: number;
  /**
   * none: guests run on the physical servers themselves (bare metal; host-VM hours are the
   * hours servers carried guests, and nothing is rented); nested: in host VMs rented by the hour.
   */
  readonly nesting: "none" | "nested";
  readonly hostVmHours: number;
  /**
   * Nested: the fewest host-VM hours any policy could use on this day (lower-bound.ts): per
   * trace interval, the host VMs that hold its total CPU demand and memory. Null on bare metal.
   */
  readonly lowerBoundHostVmHours: number | null;
  readonly cost: number;
  /** What the policy rented and why (nested clouds; empty for bare metal). */
  readonly rentals: RentalSummary;
  readonly energyKWh: number;
  readonly migrations: {
    readonly total: number;
    readonly instant: number;
    readonly precopy: number;
    readonly postcopy: number;
    readonly failed: number;
    readonly superseded: number;
  };
  /** Migrations by the planner's reason (overload, underload, ...) and mechanism. */
  readonly migrationsByReason: Readonly<
    Record<string, { readonly instant: number; readonly precopy: number; readonly postcopy: number }>
  >;
  readonly migrationSeconds: { readonly total: number; readonly mean: number };
  readonly downtimeSeconds: number;
  /** Bytes moved by migrations over the datacenter network (instant handovers move none). */
  readonly networkBytes: number;
  readonly hostVmAcquisitions: number;
  readonly hostVmReleases: number;
  readonly slatah: number;
  readonly pdm: number;
  readonly slav: number;
  readonly esv: number;
  readonly rounds: number;
  readonly series: readonly SeriesPoint[];
  /** The scenario's rolling rejuvenation, when it has one. */
  readonly rollout?: RolloutResult;
  /** Security VMs' monitoring, when the scenario has security VMs (securityVms key). */
  readonly monitoring?: MonitoringResult;
}

/** How monitored the pairs were: share of pair-time per channel, and the moves that kept them. */
export interface MonitoringResult {
  readonly pairs: number;
  /** Share of pair-time on each channel (sums to 1). */
  readonly shares: {
    readonly local: number;
    readonly direct: number;
    readonly remote: number;
    readonly none: number;
  };
  readonly pairHours: number;
  /** Security VMs moved to follow their targets (reason "monitoring"). */
  readonly followMoves: number;
  /** Co-migrations: a security VM and its target(s) moved together in lock-step. */
  readonly coMigrations: number;
}

/**
 * What a rolling rejuvenation did in a run. Its cost in host-VM hours and SLA is the
 * difference to the same run without it (rolloutCost in run.ts); heldHostVmHours is the time
 * renewals kept host VMs from taking or giving guests.
 */
export interface RolloutResult {
  readonly policy: string;
  readonly rejuvenations: number;
  /** Of those, evacuated to a spare; the others in place (asked so, or no spare had room). */
  readonly evacuated: number;
  readonly failed: number;
  readonly guestPauses: number;
  readonly pauseSeconds: number;
  readonly maxPauseMs: number;
  readonly heldHostVmHours: number;
}

/** A run with the rollout against the same run without it: what the rollout cost. */
export interface RolloutCost {
  readonly rollout: RolloutResult;
  readonly hostVmHours: { readonly with: number; readonly without: number; readonly extra: number };
  readonly cost: { readonly with: number; readonly without: number; readonly extra: number };
  /** Demand lost to pauses and moves (PDM) and SLATAH, each run. */
  readonly pdm: { readonly with: number; readonly without: number };
  readonly slatah: { readonly with: number; readonly without: number };
  readonly migrations: { readonly with: number; readonly without: number };
}

export interface RentalSummary {
  /** How the policy decides to rent and give back host VMs. */
  readonly rule: string;
  readonly types: readonly {
    readonly type: string;
    readonly vcpus: number;
    readonly mipsPerVcpu: number;
    readonly memoryMiB: number;
    readonly pricePerHour: number;
    /** Each rental's time is rounded up to a multiple of this, and to at least the minimum. */
    readonly billingIncrementSeconds: number;
    readonly minimumBillingSeconds: number;
    /** Host VMs of this type rented during the run (at the start or acquired). */
    readonly hostVms: number;
    /** Hours they ran, and the hours billed for them (rounding included). */
    readonly rentedHours: number;
    readonly billedHours: number;
    readonly cost: number;
  }[];
}

export interface RunTiming {
  readonly wallSeconds: number;
  readonly plannerMs: {
    readonly mean: number;
    readonly p95: number;
    readonly max: number;
    readonly rounds: number;
  };
}

export function summarizeTiming(wallSeconds: number, plannerMs: readonly number[]): RunTiming {
  const sorted = [...plannerMs].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length);
  const p95 = sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] : 0;
  return {
    wallSeconds,
    plannerMs: { mean, p95, max: sorted[sorted.length - 1] ?? 0, rounds: sorted.length },
  };
}

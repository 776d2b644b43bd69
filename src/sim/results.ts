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
  readonly hostVmHours: number;
  readonly cost: number;
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

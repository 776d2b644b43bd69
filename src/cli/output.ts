/** Terminal output helpers: tables, progress, one-line user errors. */
import { SingleBar } from "cli-progress";
import Table from "cli-table3";
import pc from "picocolors";
import { type RunTiming, type SimulationResult, UserError } from "../sim/index.ts";

export interface Progress {
  update(fraction: number): void;
  stop(): void;
}

/** A progress bar on a terminal; a line per 10 % otherwise (CI logs stay short). */
export function progress(label: string, quiet = false): Progress {
  if (quiet) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new SingleBar({
      format: `${label} [{bar}] {percentage}% | {eta_formatted} left`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    });
    bar.start(100, 0);
    return { update: (f) => bar.update(Math.round(f * 100)), stop: () => bar.stop() };
  }
  let shown = -1;
  return {
    update(f) {
      const step = Math.floor(f * 10);
      if (step > shown) {
        shown = step;
        process.stderr.write(`${label}: ${step * 10}%\n`);
      }
    },
    stop() {},
  };
}

export interface Row {
  readonly result: SimulationResult;
  readonly timing: RunTiming;
}

/**
 * Policies side by side: one column per run. Rows that do not apply to the scenario are left
 * out: bare metal rents nothing (no host-VM hours, no cost) and has one bin per server, so no
 * instant handovers.
 */
export function resultsTable(rows: readonly Row[]): string {
  const nested = rows.some((r) => r.result.nesting === "nested");
  const color = process.stdout.isTTY === true;
  const t = new Table({
    head: ["", ...rows.map((r) => (color ? pc.bold(r.result.policy) : r.result.policy))],
    style: color ? { head: [] } : { head: [], border: [] },
  });
  const line = (name: string, f: (r: Row) => string) => t.push([name, ...rows.map(f)]);
  if (nested) {
    line("host-VM hours", (r) => r.result.hostVmHours.toFixed(1));
    line("  x lower bound", (r) => {
      const x = toLowerBound(r.result);
      return x === null ? "" : `${x.toFixed(2)} (of ${r.result.lowerBoundHostVmHours!.toFixed(1)})`;
    });
    line("cost ($)", (r) => r.result.cost.toFixed(2));
  }
  line("energy (kWh)", (r) => r.result.energyKWh.toFixed(2));
  line("migrations", (r) => String(r.result.migrations.total));
  if (nested) line("  instant", (r) => String(r.result.migrations.instant));
  line("  pre-copy", (r) => String(r.result.migrations.precopy));
  line("  post-copy", (r) => String(r.result.migrations.postcopy));
  line("network (GB)", (r) => (r.result.networkBytes / 1e9).toFixed(2));
  line("SLATAH", (r) => percent(r.result.slatah, 2));
  line("PDM", (r) => percent(r.result.pdm, 2));
  line("SLAV", (r) => r.result.slav.toExponential(3));
  line("ESV", (r) => r.result.esv.toExponential(3));
  line("planner ms/round (mean)", (r) => r.timing.plannerMs.mean.toFixed(2));
  line("wall (s)", (r) => r.timing.wallSeconds.toFixed(2));
  return t.toString();
}

/** Host-VM hours as a multiple of the day's lower bound (nested runs; null otherwise). */
export function toLowerBound(r: SimulationResult): number | null {
  return r.lowerBoundHostVmHours ? r.hostVmHours / r.lowerBoundHostVmHours : null;
}

/** `--flag value` must be one of `allowed`: a user error listing them otherwise. */
export function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value))
    throw new UserError(`--${flag} ${value}: expected one of ${allowed.join(", ")}`);
  return value as T;
}

/** A commander option parser that accepts only `allowed` (checked before the command runs). */
export function choice<T extends string>(flag: string, allowed: readonly T[]): (value: string) => T {
  return (value) => oneOf(flag, value, allowed);
}

/** A fraction as a percent: `percent(1)` is "100 %", `percent(0.0123, 2)` "1.23 %". */
export function percent(fraction: number, digits = 0): string {
  return `${(fraction * 100).toFixed(digits)} %`;
}

/** Unix seconds as a UTC date and time, e.g. "2025-03-01 14:05:09Z". */
export function wallTime(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19)}Z`;
}

/**
 * Seconds on a simulated clock (since the simulated world's epoch) as the simulated day and
 * time of day: 8 h is "day 1 08:00:00", 90,061 s "day 2 01:01:01".
 */
export function simulatedTime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, "0");
  const day = Math.floor(s / 86400) + 1;
  const t = s % 86400;
  return `day ${day} ${two(Math.floor(t / 3600))}:${two(Math.floor((t % 3600) / 60))}:${two(t % 60)}`;
}

/** A time on a provider's clock (see the API's /api/overview `clock`). */
export function providerTime(clock: "wall" | "simulated", seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "";
  return clock === "simulated" ? simulatedTime(seconds) : wallTime(seconds);
}

/** Names a file the command wrote, on stderr (stdout stays the table or JSON). */
export function wrote(file: string): void {
  process.stderr.write(`wrote ${file}\n`);
}

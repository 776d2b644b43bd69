/**
 * What simulate and compare show on the terminal: a progress bar and the results table.
 * Loaded by simulate.ts only (cli-table3 and cli-progress stay out of the other commands).
 */
import { SingleBar } from "cli-progress";
import Table from "cli-table3";
import pc from "picocolors";
import type { RunTiming, SimulationResult } from "../sim/index.ts";
import { percent } from "./output.ts";

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
  if (rows.some((r) => r.result.monitoring)) {
    // Security VMs: share of pair-time per monitoring channel, and the moves that kept them.
    const share = (k: "local" | "direct" | "remote" | "none") => (r: Row) =>
      r.result.monitoring ? percent(r.result.monitoring.shares[k], 1) : "";
    line("monitored: local", share("local"));
    line("  direct", share("direct"));
    line("  remote", share("remote"));
    line("  none", share("none"));
    line("  follow moves", (r) => String(r.result.monitoring?.followMoves ?? ""));
    line("  co-migrations", (r) => String(r.result.monitoring?.coMigrations ?? ""));
  }
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

/**
 * Power model of a physical server: measured watts at 0%, 10%, ..., 100% CPU load
 * (SPECpower style), linear in between. A server that hosts nothing is switched off (0 W);
 * that rule lives with the energy accounting, not here.
 */
export interface PowerTable {
  /** 11 readings, watts at 0, 10, ..., 100 % utilization; non-decreasing. */
  readonly watts: readonly number[];
}

export function powerAt(table: PowerTable, utilization: number): number {
  const u = utilization <= 0 ? 0 : utilization >= 1 ? 1 : utilization;
  const w = table.watts;
  const i = Math.floor(u * 10);
  if (i >= 10) return w[10];
  const frac = u * 10 - i;
  return w[i] + (w[i + 1] - w[i]) * frac;
}

/** Validation message, or undefined when the table is usable. */
export function powerTableProblem(table: PowerTable): string | undefined {
  if (table.watts.length !== 11)
    return `needs 11 readings (0..100 % in steps of 10), got ${table.watts.length}`;
  for (let i = 0; i < 11; i++) {
    const v = table.watts[i];
    if (!Number.isFinite(v) || v < 0) return `reading ${i * 10}% is not a non-negative number`;
    if (i > 0 && v < table.watts[i - 1]) return `readings must not decrease (at ${i * 10}%)`;
  }
  return undefined;
}

/** HP ProLiant ML110 G4 (2 x 1860 MIPS), SPECpower figures used by CloudSim. */
export const HP_ML110_G4: PowerTable = { watts: [86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117] };
/** HP ProLiant ML110 G5 (2 x 2660 MIPS), SPECpower figures used by CloudSim. */
export const HP_ML110_G5: PowerTable = { watts: [93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135] };

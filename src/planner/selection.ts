/**
 * Which guest leaves an overloaded bin: MMT (least memory, i.e. shortest migration), RS
 * (random), MC (highest correlation with the others, falling back to MMT), MU (least used).
 * Guests in migration never qualify. Ties go to the guest that arrived first.
 */
import { randomInt } from "../model/index.ts";
import { rSquared } from "./stats.ts";
import type { Workspace } from "./workspace.ts";

export interface VmSelection {
  readonly name: string;
  /** A guest to move out of bin b, or -1. */
  select(ws: Workspace, b: number): number;
}

function migratable(ws: Workspace, b: number): number[] {
  return ws.lists[b].filter((g) => ws.fixed[g] === 0);
}

export const minimumMigrationTime: VmSelection = {
  name: "mmt",
  select(ws, b) {
    let best = -1;
    let min = Number.MAX_VALUE;
    for (const g of ws.lists[b]) {
      if (ws.fixed[g]) continue;
      if (ws.memory[g] < min) {
        min = ws.memory[g];
        best = g;
      }
    }
    return best;
  },
};

export const minimumUtilization: VmSelection = {
  name: "mu",
  select(ws, b) {
    let best = -1;
    let min = Number.MAX_VALUE;
    for (const g of ws.lists[b]) {
      if (ws.fixed[g]) continue;
      const u = ws.request[g] / ws.mips[g];
      if (u < min) {
        min = u;
        best = g;
      }
    }
    return best;
  },
};

export const randomSelection: VmSelection = {
  name: "rs",
  select(ws, b) {
    const list = migratable(ws, b);
    return list.length === 0 ? -1 : list[randomInt(ws.input.random, list.length)];
  },
};

export const maximumCorrelation: VmSelection = {
  name: "mc",
  select(ws, b) {
    const list = migratable(ws, b);
    if (list.length === 0) return -1;
    if (list.length === 1) return minimumMigrationTime.select(ws, b);
    const load = ws.input.load;
    let m = Number.MAX_SAFE_INTEGER;
    for (const g of list) m = Math.min(m, load.count(g));
    const series = list.map((g) => Float64Array.from({ length: m }, (_, i) => load.recent(g, i)));
    let bestIndex = 0;
    let best = Number.MIN_VALUE;
    try {
      for (let i = 0; i < list.length; i++) {
        const r2 = rSquared(
          series[i],
          series.filter((_, j) => j !== i),
          m,
        );
        if (r2 > best) {
          best = r2;
          bestIndex = i;
        }
      }
    } catch {
      return minimumMigrationTime.select(ws, b);
    }
    return list[bestIndex];
  },
};

/**
 * Turns a policy's ordered list of guest moves into an action plan: acquisitions for new host
 * VMs, one migration per move with its mechanism and cost estimate, releases for host VMs the
 * plan empties. Dependencies: a move waits for its target's acquisition and for the same
 * guest's previous move; a release waits for every move out of its host VM.
 */
import { estimateMove, routeBetween } from "../migration/index.ts";
import { UNPLACED } from "../model/index.ts";
import type { Action, ActionPlan, CoMigrationMember, HostVmRef, MoveReason } from "./plan.ts";
import type { Workspace } from "./workspace.ts";

export interface Move {
  readonly guest: number;
  readonly to: number;
  readonly reason: MoveReason;
}

export interface BuildOptions {
  /** Release host VMs (not bare metal) that end up empty, including ones already empty. */
  readonly releaseEmpty: boolean;
  /** Host VMs that must not be released this round (e.g. kept as spares). */
  readonly keep?: ReadonlySet<number>;
  readonly notes?: string[];
  /** Acquire potential bins that received no guest (host VMs wanted ahead of need). */
  readonly acquireUnused?: boolean;
  /**
   * guest -> co-migration group (pairs.ts): the moves of one group (one per guest, to one
   * host VM) become a single co-migrate action.
   */
  readonly coMigrations?: ReadonlyMap<number, number>;
}

export function buildPlan(ws: Workspace, moves: readonly Move[], opts: BuildOptions): ActionPlan {
  const input = ws.input;
  const cloud = input.cloud;
  const actions: Action[] = [];
  const acquisitionOf = new Map<number, number>();
  const lastMoveOf = new Map<number, number>();
  const movesOutOf = new Map<number, number[]>();
  const current = new Map<number, number>();
  const hostOf = (g: number) => current.get(g) ?? cloud.guestHost[g];

  const ref = (b: number): HostVmRef => {
    if (!ws.isPotential(b)) return { kind: "existing", hostVm: b };
    let id = acquisitionOf.get(b);
    if (id === undefined) {
      id = actions.length;
      actions.push({
        kind: "acquire-host-vm",
        id,
        type: ws.potentialType[b - ws.existing].name,
        server: ws.server[b],
        dependsOn: [],
      });
      acquisitionOf.set(b, id);
    }
    return { kind: "acquired", action: id };
  };
  const serverOf = (b: number) => (ws.server[b] >= 0 ? ws.server[b] : undefined);

  const travel = (guest: number, from: number, to: number) => {
    const route = routeBetween(
      { hostVm: from, server: serverOf(from) },
      { hostVm: to, server: serverOf(to) },
    );
    const src = serverOf(from);
    const linkMbps = src !== undefined ? cloud.servers[src].networkMbps : 1000;
    const estimate = estimateMove(
      route,
      {
        memoryMiB: ws.memory[guest],
        residentMiB: input.residentMiB[guest],
        dirtyRateMiBps: input.dirtyRateMiBps[guest],
      },
      linkMbps,
      input.calibration,
      input.mechanism,
    );
    return estimate ? { route, estimate } : undefined;
  };
  const groups = new Map<number, Move[]>();
  for (const m of moves) {
    const g = opts.coMigrations?.get(m.guest);
    if (g !== undefined) groups.set(g, [...(groups.get(g) ?? []), m]);
  }
  const groupDone = new Set<number>();
  const singles = new Set<Move>();

  for (const m of moves) {
    const group = opts.coMigrations?.get(m.guest);
    if (group !== undefined) {
      if (groupDone.has(group)) continue;
      groupDone.add(group);
      const members: CoMigrationMember[] = [];
      for (const x of groups.get(group) ?? []) {
        const from = hostOf(x.guest);
        if (from === x.to || from === UNPLACED || x.to !== m.to) continue;
        const t = travel(x.guest, from, x.to);
        if (t) members.push({ guest: x.guest, from, ...t });
      }
      if (members.length >= 2) {
        const to = ref(m.to);
        const deps = new Set<number>();
        if (to.kind === "acquired") deps.add(to.action);
        for (const x of members) {
          const prev = lastMoveOf.get(x.guest);
          if (prev !== undefined) deps.add(prev);
        }
        const id = actions.length;
        actions.push({ kind: "co-migrate", id, members, to, dependsOn: [...deps], reason: m.reason });
        for (const x of members) {
          lastMoveOf.set(x.guest, id);
          current.set(x.guest, m.to);
          if (x.from < ws.existing) movesOutOf.set(x.from, [...(movesOutOf.get(x.from) ?? []), id]);
        }
        continue;
      }
      // Fewer than two could travel: each goes on its own below (as planned moves).
      for (const x of groups.get(group) ?? []) if (x !== m) singles.add(x);
    }
    emitSingle(m);
  }
  for (const m of singles) emitSingle(m);

  function emitSingle(m: Move): void {
    const from = hostOf(m.guest);
    if (from === m.to || from === UNPLACED) return;
    const to = ref(m.to);
    const t = travel(m.guest, from, m.to);
    if (!t) return;
    const { route, estimate } = t;
    const deps: number[] = [];
    if (to.kind === "acquired") deps.push(to.action);
    const prev = lastMoveOf.get(m.guest);
    if (prev !== undefined) deps.push(prev);
    const id = actions.length;
    actions.push({
      kind: "migrate",
      id,
      guest: m.guest,
      from,
      to,
      route,
      estimate,
      dependsOn: deps,
      reason: m.reason,
    });
    lastMoveOf.set(m.guest, id);
    current.set(m.guest, m.to);
    if (from < ws.existing) {
      const list = movesOutOf.get(from) ?? [];
      list.push(id);
      movesOutOf.set(from, list);
    }
  }

  if (opts.acquireUnused) for (let b = ws.existing; b < ws.binCount; b++) ref(b);

  if (opts.releaseEmpty) {
    for (let h = 0; h < ws.existing; h++) {
      const host = cloud.hostVms[h];
      if (host.type.bareMetal || host.state !== "running" || opts.keep?.has(h)) continue;
      if (ws.lists[h].length > 0) continue;
      // Guests still arriving would make it non-empty: ws.lists reflects the final placement.
      actions.push({
        kind: "release-host-vm",
        id: actions.length,
        hostVm: h,
        dependsOn: movesOutOf.get(h) ?? [],
      });
    }
  }
  return { actions, caps: input.caps, notes: opts.notes ?? [] };
}

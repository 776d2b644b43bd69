/**
 * Security VMs and their targets as pairs (issue 13): which monitoring channel a placement
 * gives each pair, whether that meets the pair's requirement, what remote monitoring costs,
 * and the round step that keeps pairs local or direct (follow the target, co-migrate, or
 * refuse a move that would leave a required channel impossible).
 *
 * Pure: it reads the cloud and a workspace and changes only the workspace (through the
 * callbacks the policy passes, which keep the policy's own caches right).
 */
import { type Cloud, UNPLACED } from "../model/index.ts";
import type { Move } from "./builder.ts";
import type { Workspace } from "./workspace.ts";

/** Same host VM, same physical server (through the host hypervisor), over the network, or not at all. */
export const MONITORING_CHANNELS = ["local", "direct", "remote", "none"] as const;
export type MonitoringChannel = (typeof MONITORING_CHANNELS)[number];
/** The worst channel a pair accepts ("none" is never acceptable). */
export type ChannelRequirement = Exclude<MonitoringChannel, "none">;

const RANK: Readonly<Record<MonitoringChannel, number>> = { local: 0, direct: 1, remote: 2, none: 3 };

export function meets(channel: MonitoringChannel, requires: ChannelRequirement): boolean {
  return RANK[channel] <= RANK[requires];
}

/** The better (lower) of two channels' ranks; a comparison for sorting. */
export function channelRank(c: MonitoringChannel): number {
  return RANK[c];
}

/** One security VM and one of its targets, as guest indices of the cloud. */
export interface MonitoringPair {
  readonly secvm: number;
  readonly target: number;
  readonly requires: ChannelRequirement;
}

/** The cloud's pairs (a target that is not a known guest is skipped: invariants report it). */
export function monitoringPairs(cloud: Cloud): MonitoringPair[] {
  const out: MonitoringPair[] = [];
  cloud.guests.forEach((g, secvm) => {
    if (g.role.kind !== "security") return;
    for (const id of g.role.targets) {
      const target = cloud.hasGuest(id) ? cloud.guest(id) : -1;
      if (target >= 0) out.push({ secvm, target, requires: g.role.requires ?? "remote" });
    }
  });
  return out;
}

/** The channel between two host VMs (UNPLACED: none); servers unknown are never assumed shared. */
export function channelBetween(
  a: number,
  b: number,
  serverOf: (hostVm: number) => number | undefined,
): MonitoringChannel {
  if (a === UNPLACED || b === UNPLACED) return "none";
  if (a === b) return "local";
  const sa = serverOf(a);
  return sa !== undefined && sa === serverOf(b) ? "direct" : "remote";
}

/**
 * What monitoring costs per pair-hour in the currency of host-VM prices, and what moving a
 * security VM costs. Remote monitoring pays network traffic (page fetches, mirrored packets,
 * NBD reads) and slower checks (memory introspection at 3.6x local time with page caching:
 * system.md); local and direct run at local speed.
 */
export interface PairPricing {
  /** Cost of one pair-hour on a remote channel. */
  readonly remotePerHour: number;
  /** Hours a placement is expected to last (the horizon remote cost is counted over). */
  readonly horizonHours: number;
  /** Cost of one hour of migration (both ends busy): moving a security VM costs its share. */
  readonly migrationPerHour: number;
}

/** Whether moving a security VM (taking `migrationSeconds`) to end `pairsFixed` remote pairs pays. */
export function followPays(p: PairPricing, pairsFixed: number, migrationSeconds: number): boolean {
  return pairsFixed * p.remotePerHour * p.horizonHours > (migrationSeconds / 3600) * p.migrationPerHour;
}

/** What the pair step may ask of the policy (its capacity rules and bookkeeping). */
export interface PairStepHooks {
  /** Whether bin b can take guest g now (the policy's own fit rules). */
  canTake(b: number, g: number): boolean;
  /** Moves g to b in the workspace, keeping the policy's caches right. */
  move(g: number, b: number): void;
  /** Seconds a move of g to b would take (for pricing). */
  migrationSeconds(g: number, b: number): number;
  /** Bins on a server that may take guests (existing or acquired this round). */
  binsOf(server: number): readonly number[];
  /** Opens a new bin (a host VM to acquire) on a server, or -1 (no free slot, none allowed). */
  openBin?(server: number): number;
}

export interface PairStepResult {
  /** Moves after the step: moves of reverted guests removed, security VMs' follow moves added. */
  readonly moves: Move[];
  /** guest -> co-migration group: guests of one group move together, in lock-step, to one host VM. */
  readonly coMigrations: Map<number, number>;
  readonly notes: string[];
}

/**
 * One round's pair step, after the policy chose its moves (the workspace holds the result):
 * 1. a security VM whose pairs end remote (or worse than required) follows its targets to
 *    their host VM (local) or their server (direct) when a bin there can take it and the
 *    remote cost over the horizon exceeds the move's;
 * 2. a target that moved and its security VM that moved (or now follows) to the same host VM
 *    become one co-migration;
 * 3. a pair that still misses its required channel has its target's and security VM's moves
 *    undone (they stay where monitoring works), so no plan leaves a required channel broken.
 */
export function pairStep(
  ws: Workspace,
  pairs: readonly MonitoringPair[],
  moves: readonly Move[],
  pricing: PairPricing,
  hooks: PairStepHooks,
): PairStepResult {
  const cloud = ws.cloud;
  const notes: string[] = [];
  const serverOf = (b: number) => (b >= 0 && ws.server[b] >= 0 ? ws.server[b] : undefined);
  const bySecvm = new Map<number, MonitoringPair[]>();
  for (const p of pairs) {
    const list = bySecvm.get(p.secvm) ?? [];
    list.push(p);
    bySecvm.set(p.secvm, list);
  }
  const movedOnce = new Map<number, number>();
  for (const m of moves) movedOnce.set(m.guest, (movedOnce.get(m.guest) ?? 0) + 1);
  const added: Move[] = [];
  const revert = new Set<number>();

  for (const [s, list] of bySecvm) {
    const chans = (at: number) => list.map((p) => channelBetween(at, ws.hostOf[p.target], serverOf));
    const score = (at: number) => {
      let remote = 0;
      let broken = 0;
      for (const [i, c] of chans(at).entries()) {
        if (c === "remote" || c === "none") remote++;
        if (!meets(c, list[i].requires)) broken++;
      }
      return { remote, broken };
    };
    const here = ws.hostOf[s];
    const now = score(here);
    if (now.remote > 0 || now.broken > 0) {
      // Where the targets are: their host VMs first (local), then other bins of their servers.
      const candidates: number[] = [];
      const seen = new Set<number>([here]);
      const add = (b: number) => {
        if (b >= 0 && !seen.has(b)) {
          seen.add(b);
          candidates.push(b);
        }
      };
      for (const p of list) add(ws.hostOf[p.target]);
      for (const p of list) {
        const srv = serverOf(ws.hostOf[p.target]);
        if (srv !== undefined) for (const b of hooks.binsOf(srv)) add(b);
      }
      let best = -1;
      let bestScore = now;
      for (const b of candidates) {
        const sc = score(b);
        if (sc.broken > bestScore.broken || (sc.broken === bestScore.broken && sc.remote >= bestScore.remote))
          continue;
        if (!hooks.canTake(b, s)) continue;
        // A move that only trades remote for direct must pay; one that mends a requirement must happen.
        if (
          sc.broken === now.broken &&
          !followPays(pricing, now.remote - sc.remote, hooks.migrationSeconds(s, b))
        )
          continue;
        best = b;
        bestScore = sc;
        if (sc.remote === 0 && sc.broken === 0) break;
      }
      if (best < 0 && now.broken > 0 && hooks.openBin) {
        // No host VM of the targets' servers has room: a new one there mends the requirement.
        for (const p of list) {
          const srv = serverOf(ws.hostOf[p.target]);
          const b = srv === undefined ? -1 : hooks.openBin(srv);
          if (b >= 0 && hooks.canTake(b, s) && score(b).broken < now.broken) {
            best = b;
            break;
          }
        }
      }
      if (best >= 0) {
        hooks.move(s, best);
        added.push({ guest: s, to: best, reason: "monitoring" });
        movedOnce.set(s, (movedOnce.get(s) ?? 0) + 1);
      }
    }
    if (score(ws.hostOf[s]).broken > 0) {
      // Undo what this round did to the pair: both stay where they were.
      for (const g of [s, ...list.map((p) => p.target)]) {
        const from = cloud.guestHost[g];
        if (ws.hostOf[g] === from || from === UNPLACED) continue;
        revert.add(g);
      }
    }
  }

  for (const g of revert) {
    const from = cloud.guestHost[g];
    if (hooks.canTake(from, g) || ws.memUsed[from] + ws.memory[g] <= ws.memCap[from] + 1e-9)
      hooks.move(g, from);
    else {
      revert.delete(g);
      notes.push(
        `pair of ${cloud.guests[g].id}: required channel kept only by leaving its move in (no room back)`,
      );
    }
  }
  if (revert.size > 0) notes.push(`monitoring: ${revert.size} move(s) undone to keep required channels`);

  const out = [...moves, ...added].filter((m) => !revert.has(m.guest));
  // Co-migrations: a security VM and its targets that each move once this round to one host VM.
  const coMigrations = new Map<number, number>();
  const once = new Map<number, Move>();
  const count = new Map<number, number>();
  for (const m of out) count.set(m.guest, (count.get(m.guest) ?? 0) + 1);
  for (const m of out) if (count.get(m.guest) === 1) once.set(m.guest, m);
  let group = 0;
  for (const [s, list] of bySecvm) {
    const ms = once.get(s);
    if (!ms) continue;
    const partners = list.map((p) => once.get(p.target)).filter((m) => m !== undefined && m.to === ms.to);
    if (partners.length === 0 || coMigrations.has(s)) continue;
    const free = partners.filter((m) => !coMigrations.has(m!.guest));
    if (free.length === 0) continue;
    coMigrations.set(s, group);
    for (const m of free) coMigrations.set(m!.guest, group);
    group++;
  }
  return { moves: out, coMigrations, notes };
}

/** Time-weighted share of pair-time per channel (what the simulator reports). */
export type ChannelSeconds = Record<MonitoringChannel, number>;

export function emptyChannelSeconds(): ChannelSeconds {
  return { local: 0, direct: 0, remote: 0, none: 0 };
}

/** Adds `seconds` of every pair's channel under the cloud's placement now. */
export function accountChannels(
  cloud: Cloud,
  pairs: readonly MonitoringPair[],
  seconds: number,
  into: ChannelSeconds,
): void {
  const serverOf = (h: number) => cloud.hostVms[h]?.server;
  for (const p of pairs)
    into[channelBetween(cloud.guestHost[p.secvm], cloud.guestHost[p.target], serverOf)] += seconds;
}

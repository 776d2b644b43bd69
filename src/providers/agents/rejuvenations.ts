/**
 * Rejuvenations the agent data plane started: each a Rejuvenator run in this process (as
 * migrations are MigrationOrchestrator runs), its progress and result kept for the
 * executor's polls. Kept in memory: a run belongs to the process that drives it; a
 * controller that restarts mid-run finds it unknown, and the guests are wherever the
 * orchestrator's rules left them (each running exactly once).
 */
import { randomBytes } from "node:crypto";
import type { AgentEndpoint, RejuvenationReport, Rejuvenator } from "../../agent/index.ts";
import type { ProviderRejuvenation, RejuvenationModeName, RejuvenationResult } from "../types.ts";

const KEEP_FINISHED = 50;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface StartRejuvenation {
  hostVm: string;
  mode: RejuvenationModeName;
  endpoint: AgentEndpoint;
  /** evacuate: the spare's id and agent. */
  spare?: { hostVm: string; endpoint: AgentEndpoint; acquired: boolean };
  /** evacuate: the guests go back to the renewed host VM (default true). */
  moveBack?: boolean;
  /** evacuate: replaces the emptied host VM through the rental (Rejuvenator's `replace`). */
  replace?: () => Promise<{ hostVm: string; endpoint: AgentEndpoint }>;
  /** Once the run ended (even failed): releases a spare rented for it if emptied; says so. */
  finally?: (rep: RejuvenationReport | undefined) => Promise<boolean>;
}

export class RejuvenationBook {
  private readonly list: Mutable<ProviderRejuvenation>[] = [];
  private readonly runs = new Map<string, Promise<void>>();

  constructor(
    private readonly rejuvenator: Rejuvenator,
    private readonly now: () => number,
    private readonly log: (msg: string) => void,
  ) {}

  running(): ProviderRejuvenation[] {
    return this.list.filter((r) => r.status === "running");
  }

  get(id: string): ProviderRejuvenation | undefined {
    const r = this.list.find((x) => x.id === id);
    return r ? { ...r } : undefined;
  }

  start(s: StartRejuvenation): ProviderRejuvenation {
    const r: Mutable<ProviderRejuvenation> = {
      id: `rj-${s.hostVm}-${randomBytes(3).toString("hex")}`,
      hostVm: s.hostVm,
      mode: s.mode,
      status: "running",
      step: "starting",
      settled: 0,
      of: 0,
      startedAt: this.now(),
      finishedAt: undefined,
      error: undefined,
      result: undefined,
    };
    this.list.push(r);
    const finished = this.list.filter((x) => x.status !== "running");
    for (const x of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)))
      this.list.splice(this.list.indexOf(x), 1);
    let replacement: string | null = null;
    const replace = s.replace;
    let report: RejuvenationReport | undefined;
    let status: "completed" | "failed" = "failed";
    const run = this.rejuvenator
      .rejuvenate({
        hostVm: s.endpoint,
        mode: s.mode,
        ...(s.spare ? { spare: s.spare.endpoint } : {}),
        ...(s.moveBack === false ? { returnGuests: false } : {}),
        ...(replace
          ? {
              replace: async () => {
                const n = await replace();
                replacement = n.hostVm;
                return n.endpoint;
              },
            }
          : {}),
        onProgress: (p) => {
          r.step = p.step;
          r.settled = p.settled;
          r.of = p.of;
        },
      })
      .then(
        (rep) => {
          report = rep;
          r.result = {
            ...resultOf(rep, s.spare?.hostVm ?? null),
            replacement,
            spareAcquired: s.spare?.acquired ?? false,
          };
          status = rep.ok ? "completed" : "failed";
          if (!rep.ok) {
            const bad = [...rep.out.moves, ...(rep.back?.moves ?? [])].filter((m) => m.outcome !== "moved");
            r.error =
              bad.length > 0
                ? `${bad.length} guest move(s) did not happen: ${bad.map((m) => `${m.guestId}: ${m.error}`).join("; ")}`
                : "the agent was not renewed";
          }
        },
        (e: Error) => {
          status = "failed";
          r.error = e.message;
        },
      )
      .then(async () => {
        // The run's end is reported only once a spare rented for it is given back.
        if (s.finally) r.step = "releasing-spare";
        const released = await s.finally?.(report).catch((e: Error) => {
          this.log(`rejuvenation ${r.id}: the spare rented for it was not released: ${e.message}`);
          return false;
        });
        if (r.result) r.result = { ...r.result, spareReleased: released ?? false };
      })
      .finally(() => {
        r.status = status;
        r.finishedAt = this.now();
        this.log(
          `rejuvenation ${r.id} of ${r.hostVm} (${r.mode}) ${r.status}${r.error ? `: ${r.error}` : ""}`,
        );
        this.runs.delete(r.id);
      });
    this.runs.set(r.id, run);
    return { ...r };
  }

  /** Waits (bounded) for running rejuvenations, so that no guest is left mid-move. */
  async settle(timeoutMs: number): Promise<void> {
    await Promise.race([Promise.all(this.runs.values()), new Promise((r) => setTimeout(r, timeoutMs))]);
  }
}

function resultOf(rep: RejuvenationReport, spare: string | null): RejuvenationResult {
  const moves = [...rep.out.moves, ...(rep.back?.moves ?? [])];
  return {
    mechanism: rep.mechanism,
    qemu: rep.qemu,
    spare,
    guests: moves.map((m) => ({ guest: m.guestId, outcome: m.outcome, pauseMs: m.pauseMs, error: m.error })),
    maxPauseMs: rep.maxPauseMs,
    medianPauseMs: rep.medianPauseMs,
    prepareMs: rep.out.prepareMs + (rep.back?.prepareMs ?? 0),
    switchMs: rep.out.switchMs + (rep.back?.switchMs ?? 0),
    totalMs: rep.totalMs,
    bytesMoved: rep.bytesMoved,
    agentRestartMs: rep.agent?.restartMs ?? null,
  };
}

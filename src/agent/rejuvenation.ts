/**
 * Rejuvenation of one host VM: its hypervisor layer (every guest's QEMU process, and its
 * host-VM agent) renewed under running guests, whose memory stays where it is.
 *
 *   in-place: every guest is live-updated into a fresh QEMU on the same host VM (an instant
 *             handover to itself: x-ignore-shared, only device state moves), then the agent
 *             is restarted by its supervisor and adopts the new QEMUs;
 *   evacuate: every guest moves by instant handover to another host VM of the same server
 *             (a spare), the emptied host VM is replaced (released and re-rented through the
 *             caller's `replace`, whose fresh agent is checked; without it, its agent is
 *             restarted), and the guests move back to it if asked.
 *
 * Both move all guests as one wave: every destination QEMU is started first (a few at a
 * time: starting QEMU costs CPU, ~0.3-0.4 s each under TCG), and only once all are listening
 * do the switchovers begin, a few at a time, so that a guest's pause is only its own
 * switchover. A move that fails leaves its guest running where it was (the orchestrator's
 * rule): the report says which guests moved, which stayed and why.
 */
import { hasCprTransfer, type LiveUpdateMechanism, qemuVersion } from "../qemu/index.ts";
import { HostVmAgentClient, ServerAgentClient } from "./client.ts";
import type { AgentEndpoint, MigrationHooks, MigrationOutcome } from "./migration-orchestrator.ts";
import { MigrationFailedError, MigrationOrchestrator } from "./migration-orchestrator.ts";
import { nowMs } from "./proc.ts";

export const REJUVENATION_MODES = ["in-place", "evacuate"] as const;
export type RejuvenationMode = (typeof REJUVENATION_MODES)[number];

export interface RejuvenationLimits {
  /** Destination QEMUs started at once (CPU-bound). Default 2. */
  prepareParallel?: number;
  /** Switchovers at once (each is milliseconds; too many lengthen each pause). Default 4. */
  switchParallel?: number;
}

export interface RejuvenateRequest extends RejuvenationLimits {
  hostVm: AgentEndpoint;
  mode: RejuvenationMode;
  /** evacuate: the host VM of the same server the guests go to. */
  spare?: AgentEndpoint;
  /** evacuate: move the guests back once the host VM is renewed. Default true. */
  returnGuests?: boolean;
  /**
   * evacuate: replaces the emptied host VM (the rental releases it and rents one in its place
   * on the same server) and answers the replacement, whose agent is then restarted as a fresh
   * VM's boots (on a testbed the slice is re-rented, not rebooted). Called only once every
   * guest left: a guest that stayed keeps the host VM, whose agent is restarted instead.
   */
  replace?: () => Promise<AgentEndpoint>;
  /** Restart the host VM's agent (default true). */
  restartAgent?: boolean;
  onProgress?: (p: RejuvenationProgress) => void;
  /** Per guest (fault tests). */
  hooks?: (guestId: string) => MigrationHooks | undefined;
}

export type RejuvenationStep =
  | "preparing"
  | "switching"
  | "guest-moved"
  | "guest-stayed"
  | "restarting-agent"
  | "agent-restarted"
  | "replacing"
  | "returning"
  | "done";

export interface RejuvenationProgress {
  step: RejuvenationStep;
  guestId?: string;
  /** Guests settled in the current wave / in it. */
  settled: number;
  of: number;
  message?: string;
}

export interface GuestMove {
  guestId: string;
  from: string;
  to: string;
  outcome: "moved" | "stayed" | "unknown";
  /** The guest's real pause (source STOP to destination RESUME). */
  pauseMs: number | null;
  /** Starting its destination QEMU. */
  prepareMs: number | null;
  /** Bytes the migration channel carried (device state; RAM stays in the shared file). */
  transferredBytes: number;
  /** How it changed process: cpr-transfer when the destination took it so, else x-ignore-shared. */
  mechanism: LiveUpdateMechanism | null;
  error: string | null;
}

export interface Wave {
  moves: GuestMove[];
  /** First destination started to last destination listening. */
  prepareMs: number;
  /** First switchover begun to last guest settled (what the guests live through). */
  switchMs: number;
}

export interface AgentRestart {
  oldPid: number;
  newPid: number;
  /** From the restart request to the new agent answering with every guest adopted. */
  restartMs: number;
  adopted: string[];
}

export interface RejuvenationReport {
  hostVm: string;
  mode: RejuvenationMode;
  /**
   * How guests changed process: x-ignore-shared (QEMU 7.2) or cpr-transfer (the host VM's
   * agent runs QEMU >= 10, in place only): cpr-transfer when every moved guest went so.
   */
  mechanism: LiveUpdateMechanism;
  /** The host VM's QEMU (its agent's --version line). */
  qemu: string;
  /** The host VM's agent runs a QEMU with cpr-transfer (>= 10). */
  cprTransferAvailable: boolean;
  out: Wave;
  back: Wave | null;
  agent: AgentRestart | null;
  /** evacuate with `replace`: the host VM that took the old one's place (where guests went back). */
  replacement: AgentEndpoint | null;
  maxPauseMs: number | null;
  medianPauseMs: number | null;
  bytesMoved: number;
  totalMs: number;
  /** Every guest moved (and back) and the agent was renewed. */
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const where = (e: AgentEndpoint) => `${e.server}/${e.hostVm}`;

/** A counting semaphore. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = Math.max(1, n);
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** Opens once `n` parties arrived or dropped out. */
class Gate {
  private count = 0;
  private openIt!: () => void;
  readonly open: Promise<void>;
  openedAt: number | null = null;
  constructor(private readonly n: number) {
    this.open = new Promise((r) => {
      this.openIt = r;
    });
    if (n === 0) this.tick(0);
  }
  tick(k = 1): void {
    this.count += k;
    if (this.count >= this.n && this.openedAt === null) {
      this.openedAt = nowMs();
      this.openIt();
    }
  }
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class Rejuvenator {
  private readonly orch: MigrationOrchestrator;
  constructor(
    private readonly token: string,
    opts: { log?: (msg: string) => void; leaseMs?: number; agentRecoveryMs?: number } = {},
  ) {
    // The lease covers a destination's wait for the whole wave to be prepared.
    this.orch = new MigrationOrchestrator(token, { leaseMs: 30_000, ...opts });
  }

  async rejuvenate(req: RejuvenateRequest): Promise<RejuvenationReport> {
    const t0 = nowMs();
    const src = new HostVmAgentClient(req.hostVm.hostVmUrl, this.token);
    const st = await src.status();
    // An agent too old to say runs the system's QEMU.
    const v = st.qemu ? null : await qemuVersion();
    const qemu = st.qemu?.version ?? v?.text ?? "unknown";
    const cprTransferAvailable = st.qemu ? st.qemu.liveUpdate === "cpr-transfer" : hasCprTransfer(v!);
    const guests = st.guests.filter((g) => g.state === "running").map((g) => g.guestId);
    let out: Wave;
    let back: Wave | null = null;
    let agent: AgentRestart | null = null;
    let replacement: AgentEndpoint | null = null;
    if (req.mode === "in-place") {
      out = await this.wave(req, guests, req.hostVm, req.hostVm, true);
      if (req.restartAgent !== false)
        agent = await this.restartAgent(
          req,
          out.moves.map((m) => m.guestId),
        );
    } else {
      if (!req.spare) throw new Error("evacuate needs a spare host VM on the same server");
      if (req.spare.server !== req.hostVm.server)
        throw new Error(`spare ${where(req.spare)} is not on ${req.hostVm.server}: no instant handover`);
      out = await this.wave(req, guests, req.hostVm, req.spare, false);
      let home = req.hostVm;
      // Replaced only when empty: a guest that stayed (its move failed) keeps its host VM.
      if (req.replace && out.moves.every((m) => m.outcome === "moved")) {
        req.onProgress?.({ step: "replacing", settled: 0, of: 1 });
        replacement = await req.replace();
        home = replacement;
      }
      if (req.restartAgent !== false) agent = await this.restartAgent({ ...req, hostVm: home }, []);
      if (req.returnGuests !== false) {
        const moved = out.moves.filter((m) => m.outcome === "moved").map((m) => m.guestId);
        req.onProgress?.({ step: "returning", settled: 0, of: moved.length });
        back = await this.wave(req, moved, req.spare, home, false);
      }
    }
    const all = [...out.moves, ...(back?.moves ?? [])];
    const pauses = all.flatMap((m) => (m.pauseMs === null ? [] : [m.pauseMs]));
    const ok = all.every((m) => m.outcome === "moved") && (req.restartAgent === false || agent !== null);
    req.onProgress?.({ step: "done", settled: all.length, of: all.length });
    const moved = all.filter((m) => m.outcome === "moved");
    return {
      hostVm: where(req.hostVm),
      mode: req.mode,
      mechanism:
        moved.length > 0 && moved.every((m) => m.mechanism === "cpr-transfer")
          ? "cpr-transfer"
          : "x-ignore-shared",
      qemu,
      cprTransferAvailable,
      out,
      back,
      agent,
      replacement,
      maxPauseMs: pauses.length ? Math.max(...pauses) : null,
      medianPauseMs: median(pauses),
      bytesMoved: all.reduce((s, m) => s + m.transferredBytes, 0),
      totalMs: nowMs() - t0,
      ok,
    };
  }

  /**
   * Moves `guests` from one host VM to another (or to a fresh QEMU on the same one): all
   * destinations started first, then the switchovers, each limited in parallelism.
   */
  async wave(
    req: RejuvenateRequest,
    guests: string[],
    from: AgentEndpoint,
    to: AgentEndpoint,
    inPlace: boolean,
  ): Promise<Wave> {
    const prepareSlots = new Slots(req.prepareParallel ?? 2);
    const switchSlots = new Slots(req.switchParallel ?? 4);
    const gate = new Gate(guests.length);
    const tPrep = nowMs();
    let settled = 0;
    req.onProgress?.({ step: "preparing", settled: 0, of: guests.length });
    const one = async (guestId: string): Promise<GuestMove> => {
      let prepared = false;
      let switching = false;
      const hooks = req.hooks?.(guestId);
      await prepareSlots.take();
      const handle = this.orch.start({
        guestId,
        from,
        to,
        mechanism: "instant",
        inPlace,
        hooks: {
          ...hooks,
          afterPrepare: async (inc) => {
            prepared = true;
            prepareSlots.give();
            gate.tick();
            // The orchestrator renews the destination's lease only once the move is under
            // way: until then (the wave's other destinations, a free switch slot) we do.
            const dst = new HostVmAgentClient(to.hostVmUrl, this.token, { timeoutMs: 2000 });
            const renew = setInterval(() => void dst.incoming(inc.migrationId, true).catch(() => {}), 1000);
            try {
              await hooks?.afterPrepare?.(inc);
              await gate.open;
              await switchSlots.take();
            } finally {
              clearInterval(renew);
            }
            switching = true;
            if (gate.openedAt !== null && settled === 0)
              req.onProgress?.({ step: "switching", settled, of: guests.length });
          },
        },
      });
      const move: GuestMove = {
        guestId,
        from: where(from),
        to: where(to),
        outcome: "stayed",
        pauseMs: null,
        prepareMs: null,
        transferredBytes: 0,
        mechanism: null,
        error: null,
      };
      try {
        const o: MigrationOutcome = await handle.done;
        move.outcome = "moved";
        move.pauseMs = o.downtimeMs;
        move.prepareMs = o.prepareMs;
        move.transferredBytes = o.transferredBytes;
        move.mechanism = o.destination.cprUri ? "cpr-transfer" : "x-ignore-shared";
      } catch (e) {
        move.error = (e as Error).message;
        move.outcome = e instanceof MigrationFailedError && e.guestAt !== "source" ? "unknown" : "stayed";
      } finally {
        if (!prepared) {
          prepareSlots.give();
          gate.tick();
        }
        if (switching) switchSlots.give();
      }
      settled++;
      req.onProgress?.({
        step: move.outcome === "moved" ? "guest-moved" : "guest-stayed",
        guestId,
        settled,
        of: guests.length,
        ...(move.error ? { message: move.error } : {}),
      });
      return move;
    };
    const moves = await Promise.all(guests.map(one));
    const tEnd = nowMs();
    const opened = gate.openedAt ?? tEnd;
    return { moves, prepareMs: opened - tPrep, switchMs: tEnd - opened };
  }

  /**
   * Restarts the host VM's agent and waits for its successor: a new pid answering at the
   * same URL, registered with its server agent, having adopted every guest it had.
   */
  async restartAgent(req: RejuvenateRequest, expect: string[], timeoutMs = 60_000): Promise<AgentRestart> {
    const c = new HostVmAgentClient(req.hostVm.hostVmUrl, this.token, { timeoutMs: 5000 });
    const server = new ServerAgentClient(req.hostVm.serverUrl, this.token, { timeoutMs: 5000 });
    req.onProgress?.({ step: "restarting-agent", settled: 0, of: 1 });
    const t0 = nowMs();
    const { pid: oldPid } = await c.restart();
    const deadline = t0 + timeoutMs;
    for (;;) {
      await sleep(100);
      if (nowMs() > deadline)
        throw new Error(`the agent of ${where(req.hostVm)} did not come back within ${timeoutMs} ms`);
      const st = await c.status().catch(() => null);
      if (!st || st.pid === oldPid) continue;
      const reg = await server.status().catch(() => null);
      const h = reg?.hostVms.find((x) => x.name === req.hostVm.hostVm);
      if (!h || h.pid !== st.pid || h.agentAlive !== true) continue;
      const here = new Set(st.guests.map((g) => g.guestId));
      const missing = expect.filter((g) => !here.has(g));
      if (missing.length > 0) throw new Error(`the restarted agent lost guests: ${missing.join(", ")}`);
      req.onProgress?.({ step: "agent-restarted", settled: 1, of: 1 });
      return {
        oldPid,
        newPid: st.pid,
        restartMs: nowMs() - t0,
        adopted: st.adoptedAtStart.map((a) => a.guestId),
      };
    }
  }
}

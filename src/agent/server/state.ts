/**
 * What a server agent holds, shared by its route plugins: the ledger of which host VM each
 * guest's RAM counts against, the registry of its host-VM agents (checked alive by pid and
 * start time every second), and the reconciler that undoes ledger entries nothing stands
 * behind any more (every few seconds, see ledger.ts).
 */
import { mkdirSync } from "node:fs";
import type { FastifyBaseLogger } from "fastify";
import { isAlive, processStartTime } from "../../testbed/index.ts";
import type { ServerStatus } from "../api-types.ts";
import { HostVmAgentClient } from "../client.ts";
import type { ServerAgentConfig } from "../config.ts";
import { AgentError, conflict } from "../http.ts";
import { LedgerError, MemoryLedger, type ObservedHostVm } from "../ledger.ts";
import { ifaceCounters, poolFiles } from "../proc.ts";

/** How often the ledger is reconciled, and how old an entry must be to be considered. */
export interface ReconcileTiming {
  everyMs: number;
  graceMs: number;
}
/**
 * Every 5 s: cheap (one status call per host-VM agent) and well inside a lease (15-30 s).
 * Entries younger than 20 s are left alone: a reservation is made before its guest or
 * incoming exists, and a migration's prepare takes seconds under load.
 */
export const RECONCILE: ReconcileTiming = { everyMs: 5000, graceMs: 20_000 };
/** Registered agents are checked alive this often (pid and start time, no I/O but /proc). */
const LIVENESS_EVERY_MS = 1000;
/** Bound of one status call to a host-VM agent while reconciling. */
const RECONCILE_CALL_TIMEOUT_MS = 3000;
/** Reconciliations kept for status. */
const KEEP_RECONCILED = 50;

export interface Registration {
  url: string;
  pid: number;
  startTime: number | null;
  alive: boolean;
}

/** Ledger failures as HTTP answers: unknown entries 404, refused moves 409. */
export function ledgerToHttp(e: unknown): never {
  if (e instanceof LedgerError) {
    const status = e.code === "not_found" || e.code === "unknown_host_vm" ? 404 : 409;
    throw new AgentError(status, e.code, e.message);
  }
  throw e;
}

export class ServerState {
  readonly ledger: MemoryLedger;
  readonly agents = new Map<string, Registration>();
  readonly reconciled: ServerStatus["reconciled"] = [];
  private reconciling = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    readonly cfg: ServerAgentConfig,
    private readonly token: string,
    readonly log: FastifyBaseLogger,
    private readonly timing: ReconcileTiming,
  ) {
    mkdirSync(cfg.poolDir, { recursive: true, mode: 0o700 });
    this.ledger = new MemoryLedger(cfg.hostVms);
  }

  start(): void {
    const liveness = setInterval(() => this.checkAgents(), LIVENESS_EVERY_MS);
    const reconciler = setInterval(() => void this.reconcile().catch(() => {}), this.timing.everyMs);
    liveness.unref();
    reconciler.unref();
    this.timers = [liveness, reconciler];
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Marks registered agents that died (pid gone, or reused by another process). */
  checkAgents(): void {
    for (const [hostVm, a] of this.agents) {
      if (!a.alive) continue;
      a.alive = isAlive({ pid: a.pid, startTime: a.startTime });
      if (!a.alive) this.log.warn({ hostVm, pid: a.pid }, "host-VM agent died");
    }
  }

  /** The host VM moved here (testbed move, as a provider's migration would). */
  attach(hostVm: string, memoryMiB: number, cpus: number): void {
    try {
      this.ledger.attach(hostVm, memoryMiB);
    } catch (e) {
      ledgerToHttp(e);
    }
    this.cfg.hostVms.push({ name: hostVm, memoryMiB, cpus });
  }

  /** The host VM left this server; its registration goes with it. */
  detach(hostVm: string): void {
    try {
      this.ledger.detach(hostVm);
    } catch (e) {
      ledgerToHttp(e);
    }
    const i = this.cfg.hostVms.findIndex((h) => h.name === hostVm);
    if (i >= 0) this.cfg.hostVms.splice(i, 1);
    this.agents.delete(hostVm);
  }

  register(hostVm: string, url: string, pid: number): void {
    const startTime = processStartTime(pid);
    this.agents.set(hostVm, { url, pid, startTime, alive: startTime !== null });
  }

  /** The live agent of a host VM, or 409 (not registered, or dead). */
  liveAgent(hostVm: string): Registration {
    this.checkAgents();
    const a = this.agents.get(hostVm);
    if (!a) throw conflict(`host-VM agent ${hostVm} has not registered with server ${this.cfg.server}`);
    if (!a.alive) throw conflict(`host-VM agent ${hostVm} (pid ${a.pid}) is not running`);
    return a;
  }

  pool() {
    return { poolDir: this.cfg.poolDir, files: poolFiles(this.cfg.poolDir) };
  }

  status(): ServerStatus {
    this.checkAgents();
    const { cfg } = this;
    return {
      role: "server",
      testbedId: cfg.testbedId,
      server: cfg.server,
      address: cfg.address,
      pid: process.pid,
      poolDir: cfg.poolDir,
      hostVms: this.ledger.view(this.agents),
      poolFiles: poolFiles(cfg.poolDir),
      handovers: this.ledger.handoverViews(),
      reconciled: this.reconciled,
      iface: cfg.iface ? ifaceCounters(cfg.iface) : null,
    };
  }

  /** Undoes ledger entries that no live host-VM agent's guest or incoming stands behind. */
  async reconcile(): Promise<void> {
    if (this.reconciling) return;
    this.reconciling = true;
    try {
      this.checkAgents();
      const before = Date.now() - this.timing.graceMs;
      const observed = new Map<string, ObservedHostVm>();
      await Promise.all(
        [...this.agents].map(async ([hostVm, a]) => {
          if (!a.alive) return;
          try {
            const st = await new HostVmAgentClient(a.url, this.token, {
              timeoutMs: RECONCILE_CALL_TIMEOUT_MS,
            }).status();
            if (st.pid !== a.pid) return; // not the agent we know: leave it to the next round
            observed.set(hostVm, {
              guests: new Set(st.guests.map((g) => g.guestId)),
              incoming: new Set(
                st.incoming
                  .filter((m) => m.state === "listening" || m.state === "armed" || m.state === "running")
                  .map((m) => m.guestId),
              ),
            });
          } catch {
            // unreachable now: its entries are left as they are
          }
        }),
      );
      for (const r of this.ledger.reconcile(observed, before, Date.now())) {
        this.log.warn(r, `ledger reconciled: ${r.action} ${r.guestId} on ${r.hostVm}`);
        this.reconciled.push({ at: Date.now(), ...r });
        if (this.reconciled.length > KEEP_RECONCILED) this.reconciled.shift();
      }
    } finally {
      this.reconciling = false;
    }
  }
}

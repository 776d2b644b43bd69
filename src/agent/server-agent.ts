/**
 * The server agent: one per physical server. Owns the server's memory-pool folder, keeps
 * the ledger of which host VM each guest's RAM counts against, is the registry of its
 * host-VM agents, and brokers instant handovers between them (a handover is begun here,
 * which checks room on the destination, and committed or aborted here, which moves or
 * keeps the memory accounting). It never touches QEMU itself.
 *
 * A registered host-VM agent is checked to be alive (its pid and start time, in this
 * server's pid space) every second and whenever it matters (status, handovers): a dead one
 * is shown as such and refused as a handover party until its successor registers. Every
 * few seconds the ledger is reconciled with what the live host-VM agents report (guests,
 * incomings): entries nothing stands behind any more are undone (ledger.ts, reconcile).
 */
import { mkdirSync } from "node:fs";
import type { FastifyBaseLogger } from "fastify";
import { isAlive, processStartTime } from "../testbed/index.ts";
import {
  type BeginHandoverAnswer,
  HandoverBody,
  HandoverParams,
  HostVmParams,
  RegisterBody,
  ReservationBody,
  ReservationParams,
  type ServerStatus,
} from "./api-types.ts";
import { HostVmAgentClient } from "./client.ts";
import type { ServerAgentConfig } from "./config.ts";
import { AgentError, type App, conflict, createApp, notFound } from "./http.ts";
import { LedgerError, MemoryLedger, type ObservedHostVm } from "./ledger.ts";
import { ifaceCounters, poolFiles } from "./proc.ts";

/** How often the ledger is reconciled, and how old an entry must be to be considered. */
export interface ReconcileTiming {
  everyMs: number;
  graceMs: number;
}
const RECONCILE: ReconcileTiming = { everyMs: 5000, graceMs: 20_000 };

interface Registration {
  url: string;
  pid: number;
  startTime: number | null;
  alive: boolean;
}

function ledgerToHttp(e: unknown): never {
  if (e instanceof LedgerError) {
    const status = e.code === "not_found" || e.code === "unknown_host_vm" ? 404 : 409;
    throw new AgentError(status, e.code, e.message);
  }
  throw e;
}

export function buildServerAgent(
  cfg: ServerAgentConfig,
  token: string,
  logger: FastifyBaseLogger,
  timing: ReconcileTiming = RECONCILE,
): App {
  mkdirSync(cfg.poolDir, { recursive: true, mode: 0o700 });
  const ledger = new MemoryLedger(cfg.hostVms);
  const agents = new Map<string, Registration>();
  const reconciled: ServerStatus["reconciled"] = [];
  const app = createApp(token, logger);

  /** Marks registered agents that died (pid gone, or reused by another process). */
  const checkAgents = () => {
    for (const [hostVm, a] of agents) {
      if (!a.alive) continue;
      a.alive = isAlive({ pid: a.pid, startTime: a.startTime });
      if (!a.alive) logger.warn({ hostVm, pid: a.pid }, "host-VM agent died");
    }
  };
  const liveAgent = (hostVm: string): Registration => {
    checkAgents();
    const a = agents.get(hostVm);
    if (!a) throw conflict(`host-VM agent ${hostVm} has not registered with server ${cfg.server}`);
    if (!a.alive) throw conflict(`host-VM agent ${hostVm} (pid ${a.pid}) is not running`);
    return a;
  };

  let reconciling = false;
  const reconcile = async () => {
    if (reconciling) return;
    reconciling = true;
    try {
      checkAgents();
      const before = Date.now() - timing.graceMs;
      const observed = new Map<string, ObservedHostVm>();
      await Promise.all(
        [...agents].map(async ([hostVm, a]) => {
          if (!a.alive) return;
          try {
            const st = await new HostVmAgentClient(a.url, token, { timeoutMs: 3000 }).status();
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
      for (const r of ledger.reconcile(observed, before, Date.now())) {
        logger.warn(r, `ledger reconciled: ${r.action} ${r.guestId} on ${r.hostVm}`);
        reconciled.push({ at: Date.now(), ...r });
        if (reconciled.length > 50) reconciled.shift();
      }
    } finally {
      reconciling = false;
    }
  };
  const liveness = setInterval(checkAgents, 1000);
  const reconciler = setInterval(() => void reconcile().catch(() => {}), timing.everyMs);
  liveness.unref();
  reconciler.unref();
  app.addHook("onClose", async () => {
    clearInterval(liveness);
    clearInterval(reconciler);
  });

  app.get("/v1/status", async (): Promise<ServerStatus> => {
    checkAgents();
    return {
      role: "server",
      testbedId: cfg.testbedId,
      server: cfg.server,
      address: cfg.address,
      pid: process.pid,
      poolDir: cfg.poolDir,
      hostVms: ledger.view(agents),
      poolFiles: poolFiles(cfg.poolDir),
      handovers: ledger.handoverViews(),
      reconciled,
      iface: cfg.iface ? ifaceCounters(cfg.iface) : null,
    };
  });

  app.post(
    "/v1/hostvms/:hostVm/register",
    { schema: { params: HostVmParams, body: RegisterBody } },
    async (req, reply) => {
      if (!cfg.hostVms.some((h) => h.name === req.params.hostVm))
        throw notFound(`no host VM ${req.params.hostVm} on server ${cfg.server}`);
      const startTime = processStartTime(req.body.pid);
      agents.set(req.params.hostVm, {
        url: req.body.url,
        pid: req.body.pid,
        startTime,
        alive: startTime !== null,
      });
      req.log.info(
        { hostVm: req.params.hostVm, url: req.body.url, pid: req.body.pid },
        "host-VM agent registered",
      );
      return reply.code(204).send();
    },
  );

  app.post("/v1/reservations", { schema: { body: ReservationBody } }, async (req, reply) => {
    try {
      ledger.reserve(req.body.hostVm, req.body.guestId, req.body.memoryMiB);
    } catch (e) {
      ledgerToHttp(e);
    }
    return reply
      .code(201)
      .send({ hostVm: req.body.hostVm, guestId: req.body.guestId, memoryMiB: req.body.memoryMiB });
  });

  app.delete(
    "/v1/reservations/:hostVm/:guestId",
    { schema: { params: ReservationParams } },
    async (req, reply) => {
      let gone = false;
      try {
        gone = ledger.release(req.params.hostVm, req.params.guestId);
      } catch (e) {
        ledgerToHttp(e);
      }
      if (!gone)
        throw notFound(`guest ${req.params.guestId} is not accounted on host VM ${req.params.hostVm}`);
      return reply.code(204).send();
    },
  );

  app.post(
    "/v1/handovers",
    { schema: { body: HandoverBody } },
    async (req, reply): Promise<BeginHandoverAnswer> => {
      const { guestId, fromHostVm, toHostVm } = req.body;
      const from = liveAgent(fromHostVm);
      const to = liveAgent(toHostVm);
      let handover: BeginHandoverAnswer["handover"];
      try {
        handover = ledger.beginHandover(guestId, fromHostVm, toHostVm, Date.now());
      } catch (e) {
        ledgerToHttp(e);
      }
      req.log.info({ handover }, "handover begun");
      reply.code(201);
      return {
        handover,
        from: { hostVm: fromHostVm, url: from.url },
        to: { hostVm: toHostVm, url: to.url },
        poolFile: `${cfg.poolDir}/${guestId}.ram`,
      };
    },
  );

  app.post("/v1/handovers/:handoverId/commit", { schema: { params: HandoverParams } }, async (req) => {
    try {
      const h = ledger.commitHandover(req.params.handoverId, Date.now());
      req.log.info({ handover: h }, "handover committed: memory accounting moved");
      return h;
    } catch (e) {
      ledgerToHttp(e);
    }
  });

  app.post("/v1/handovers/:handoverId/abort", { schema: { params: HandoverParams } }, async (req) => {
    try {
      const h = ledger.abortHandover(req.params.handoverId, Date.now());
      req.log.info({ handover: h }, "handover aborted");
      return h;
    } catch (e) {
      ledgerToHttp(e);
    }
  });
  return app;
}

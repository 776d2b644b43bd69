/**
 * The server agent: one per physical server. Owns the server's memory-pool folder, keeps
 * the ledger of which host VM each guest's RAM counts against, is the registry of its
 * host-VM agents, and brokers instant handovers between them (a handover is begun here,
 * which checks room on the destination, and committed or aborted here, which moves or
 * keeps the memory accounting). It never touches QEMU itself.
 */
import { mkdirSync } from "node:fs";
import type { FastifyBaseLogger } from "fastify";
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
import type { ServerAgentConfig } from "./config.ts";
import { AgentError, type App, conflict, createApp, notFound } from "./http.ts";
import { LedgerError, MemoryLedger } from "./ledger.ts";
import { ifaceCounters, poolFiles } from "./proc.ts";

function ledgerToHttp(e: unknown): never {
  if (e instanceof LedgerError) {
    const status = e.code === "not_found" || e.code === "unknown_host_vm" ? 404 : 409;
    throw new AgentError(status, e.code, e.message);
  }
  throw e;
}

export function buildServerAgent(cfg: ServerAgentConfig, token: string, logger: FastifyBaseLogger): App {
  mkdirSync(cfg.poolDir, { recursive: true, mode: 0o700 });
  const ledger = new MemoryLedger(cfg.hostVms);
  const agents = new Map<string, { url: string; pid: number }>();
  const app = createApp(token, logger);

  app.get(
    "/v1/status",
    async (): Promise<ServerStatus> => ({
      role: "server",
      testbedId: cfg.testbedId,
      server: cfg.server,
      address: cfg.address,
      pid: process.pid,
      poolDir: cfg.poolDir,
      hostVms: ledger.view(agents),
      poolFiles: poolFiles(cfg.poolDir),
      handovers: ledger.handoverViews(),
      iface: cfg.iface ? ifaceCounters(cfg.iface) : null,
    }),
  );

  app.post(
    "/v1/hostvms/:hostVm/register",
    { schema: { params: HostVmParams, body: RegisterBody } },
    async (req, reply) => {
      if (!cfg.hostVms.some((h) => h.name === req.params.hostVm))
        throw notFound(`no host VM ${req.params.hostVm} on server ${cfg.server}`);
      agents.set(req.params.hostVm, { url: req.body.url, pid: req.body.pid });
      req.log.info({ hostVm: req.params.hostVm, url: req.body.url }, "host-VM agent registered");
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
      const from = agents.get(fromHostVm);
      const to = agents.get(toHostVm);
      if (!from) throw conflict(`host-VM agent ${fromHostVm} has not registered with server ${cfg.server}`);
      if (!to) throw conflict(`host-VM agent ${toHostVm} has not registered with server ${cfg.server}`);
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

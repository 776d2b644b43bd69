/**
 * Instant handovers between two of this server's host VMs: begin (room on the destination,
 * both agents alive), commit (the memory accounting moves) or abort (it stays).
 */
import {
  type BeginHandoverAnswer,
  BeginHandoverAnswerSchema,
  errorAnswers,
  HandoverBody,
  HandoverParams,
  HandoverViewSchema,
} from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import { ledgerToHttp, type ServerState } from "../state.ts";

// What this resource answers when it cannot do what was asked (besides 400, 401, 500): 409
// when a party's agent is not registered or not alive (ServerState.liveAgent), and the
// ledger's own refusals (404 not_found, unknown_host_vm; 409 capacity, conflict).

export const handoverRoutes: RoutePlugin<{ server: ServerState }> = async (app, { server }) => {
  const tags = ["handovers"];
  app.post(
    "/v1/handovers",
    {
      schema: {
        tags,
        body: HandoverBody,
        response: { 201: BeginHandoverAnswerSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req, reply) => {
      const { guestId, fromHostVm, toHostVm } = req.body;
      const from = server.liveAgent(fromHostVm);
      const to = server.liveAgent(toHostVm);
      let handover: BeginHandoverAnswer["handover"];
      try {
        handover = server.ledger.beginHandover(guestId, fromHostVm, toHostVm, Date.now());
      } catch (e) {
        ledgerToHttp(e);
      }
      req.log.info({ handover }, "handover begun");
      reply.code(201);
      return {
        handover,
        from: { hostVm: fromHostVm, url: from.url },
        to: { hostVm: toHostVm, url: to.url },
        poolFile: `${server.cfg.poolDir}/${guestId}.ram`,
      };
    },
  );

  app.post(
    "/v1/handovers/:handoverId/commit",
    {
      schema: {
        tags,
        params: HandoverParams,
        response: { 200: HandoverViewSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      try {
        const h = server.ledger.commitHandover(req.params.handoverId, Date.now());
        req.log.info({ handover: h }, "handover committed: memory accounting moved");
        return h;
      } catch (e) {
        ledgerToHttp(e);
      }
    },
  );

  app.post(
    "/v1/handovers/:handoverId/abort",
    {
      schema: {
        tags,
        params: HandoverParams,
        response: { 200: HandoverViewSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      try {
        const h = server.ledger.abortHandover(req.params.handoverId, Date.now());
        req.log.info({ handover: h }, "handover aborted");
        return h;
      } catch (e) {
        ledgerToHttp(e);
      }
    },
  );
};

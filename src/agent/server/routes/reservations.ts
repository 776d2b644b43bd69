/** The ledger: a guest's memory reserved on (counted against) one of this server's host VMs. */
import {
  errorAnswers,
  NoContent,
  ReservationBody,
  ReservationParams,
  ReservationSchema,
} from "../../api-types.ts";
import { notFound, type RoutePlugin } from "../../http.ts";
import { ledgerToHttp, type ServerState } from "../state.ts";

/**
 * What this resource answers when it cannot do what was asked (besides 400, 401, 500): the
 * ledger's own refusals (404 unknown_host_vm; 409 capacity, duplicate, conflict), and:
 */
const ReservationErrors = {
  /** 404: nothing to release. */
  notAccounted: (hostVm: string, guestId: string) =>
    notFound(`guest ${guestId} is not accounted on host VM ${hostVm}`),
};

export const reservationRoutes: RoutePlugin<{ server: ServerState }> = async (app, { server }) => {
  const tags = ["ledger"];
  app.post(
    "/v1/reservations",
    {
      schema: {
        tags,
        body: ReservationBody,
        response: { 201: ReservationSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req, reply) => {
      const { hostVm, guestId, memoryMiB } = req.body;
      try {
        server.ledger.reserve(hostVm, guestId, memoryMiB);
      } catch (e) {
        ledgerToHttp(e);
      }
      return reply.code(201).send({ hostVm, guestId, memoryMiB });
    },
  );

  app.delete(
    "/v1/reservations/:hostVm/:guestId",
    { schema: { tags, params: ReservationParams, response: { 204: NoContent, ...errorAnswers(404, 409) } } },
    async (req, reply) => {
      const { hostVm, guestId } = req.params;
      let gone = false;
      try {
        gone = server.ledger.release(hostVm, guestId);
      } catch (e) {
        ledgerToHttp(e);
      }
      if (!gone) throw ReservationErrors.notAccounted(hostVm, guestId);
      return reply.code(204).send(null);
    },
  );
};

/**
 * The host-VM agent's status: its guests, migrations, and what it adopted at start-up; and
 * its restart (rejuvenation of the agent itself: the supervisor starts a fresh process,
 * which adopts every QEMU; refused while a migration is unfinished or without a supervisor).
 */
import { Type } from "typebox";
import { errorAnswers, HostVmStatusSchema } from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { HostVm } from "../state.ts";

export const statusRoutes: RoutePlugin<{ host: HostVm }> = async (app, { host }) => {
  app.get(
    "/v1/status",
    { schema: { tags: ["status"], response: { 200: HostVmStatusSchema, ...errorAnswers() } } },
    async () => host.status(),
  );
  app.post(
    "/v1/restart",
    {
      schema: {
        tags: ["status"],
        body: Type.Object({}, { additionalProperties: false }),
        response: { 202: Type.Object({ pid: Type.Number() }), ...errorAnswers(409) },
      },
    },
    async (_req, reply) => {
      const r = host.restart();
      reply.code(202);
      return r;
    },
  );
};

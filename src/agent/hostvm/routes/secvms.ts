/**
 * Security VMs on this host VM (issue 12): create one with its targets (guests of this host
 * VM), list, read, delete, and read its alerts (numbered; `after` to continue, `waitMs` to
 * wait for the next). Authenticated like every agent route (the app's bearer token).
 */
import {
  AlertPageSchema,
  AlertsQuery,
  CreateSecVmBody,
  DiskBaselineQuery,
  DiskBaselineSchema,
  errorAnswers,
  NoContent,
  SecVmListSchema,
  SecVmParams,
  SecVmStatusSchema,
} from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { SecVmManager } from "../../secvm/manager.ts";

// 404: no such security VM, or a target that is not a guest of this host VM; 409: the id is
// taken, a target is watched by another security VM, has no running QEMU, or its QEMU already
// runs an NBD server (a disk tap); 400: a target names a disk or NIC the guest does not have.
export const secvmRoutes: RoutePlugin<{ secvms: SecVmManager }> = async (app, { secvms }) => {
  const tags = ["secvms"];
  app.post(
    "/v1/secvms",
    {
      schema: {
        tags,
        body: CreateSecVmBody,
        response: { 201: SecVmStatusSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req, reply) => {
      const v = await secvms.create(req.body);
      return reply.code(201).send(v.status());
    },
  );
  app.get(
    "/v1/secvms",
    { schema: { tags, response: { 200: SecVmListSchema, ...errorAnswers() } } },
    async () => [...secvms.vms.values()].map((v) => v.status()),
  );
  app.get(
    "/v1/secvms/:secvmId",
    { schema: { tags, params: SecVmParams, response: { 200: SecVmStatusSchema, ...errorAnswers(404) } } },
    async (req) => secvms.of(req.params.secvmId).status(),
  );
  app.delete(
    "/v1/secvms/:secvmId",
    { schema: { tags, params: SecVmParams, response: { 204: NoContent, ...errorAnswers(404) } } },
    async (req, reply) => {
      await secvms.delete(req.params.secvmId);
      return reply.code(204).send(null);
    },
  );
  // A target's disk baseline as this security VM holds it, for the target's next monitor
  // (diskBaselines of its create request): 404 without a disk monitor of that guest, 409 when
  // the service does not run or does not answer.
  app.get(
    "/v1/secvms/:secvmId/disk-baseline",
    {
      schema: {
        tags,
        params: SecVmParams,
        querystring: DiskBaselineQuery,
        response: { 200: DiskBaselineSchema, ...errorAnswers(404, 409) },
      },
    },
    async (req) => {
      const v = secvms.of(req.params.secvmId);
      const b = await v.diskBaseline(req.query.guestId);
      return { secvmId: v.id, guestId: b.guestId, rounds: b.rounds, files: b.files };
    },
  );
  app.get(
    "/v1/secvms/:secvmId/alerts",
    {
      schema: {
        tags,
        params: SecVmParams,
        querystring: AlertsQuery,
        response: { 200: AlertPageSchema, ...errorAnswers(404) },
      },
    },
    async (req) => {
      const v = secvms.of(req.params.secvmId);
      const q = req.query;
      const page = await v.alerts(q.after ?? 0, q.limit ?? 500, q.waitMs ?? 0);
      return { secvmId: v.id, ...page };
    },
  );
};

/**
 * This host VM's guests exported to security VMs of other host VMs of its server (the direct
 * channel, secvm/exports.ts): made and taken down by the security VM's own agent, which also
 * asks here for each disk round's view. Authenticated like every agent route.
 */
import {
  CreateSecVmExportBody,
  DiskViewBody,
  DiskViewSchema,
  errorAnswers,
  NoContent,
  SecVmExportListSchema,
  SecVmExportParams,
  SecVmExportSchema,
} from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { SecVmExports } from "../../secvm/exports.ts";

// 400: the grantee is on another server or this host VM, or a device the guest lacks; 404: no
// such guest or export; 409: the guest is watched or exported already, has no running QEMU, or
// its QEMU already runs an NBD server.
export const secvmExportRoutes: RoutePlugin<{ exports: SecVmExports }> = async (app, { exports }) => {
  const tags = ["secvms"];
  app.post(
    "/v1/secvm-exports",
    {
      schema: {
        tags,
        body: CreateSecVmExportBody,
        response: { 201: SecVmExportSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req, reply) => reply.code(201).send(await exports.create(req.body)),
  );
  app.get(
    "/v1/secvm-exports",
    { schema: { tags, response: { 200: SecVmExportListSchema, ...errorAnswers() } } },
    async () => exports.list(),
  );
  app.get(
    "/v1/secvm-exports/:exportId",
    {
      schema: { tags, params: SecVmExportParams, response: { 200: SecVmExportSchema, ...errorAnswers(404) } },
    },
    async (req) => exports.of(req.params.exportId).status(),
  );
  app.post(
    "/v1/secvm-exports/:exportId/disk-view",
    {
      schema: {
        tags,
        params: SecVmExportParams,
        body: DiskViewBody,
        response: { 200: DiskViewSchema, ...errorAnswers(404, 409, 502) },
      },
    },
    async (req) => exports.diskView(req.params.exportId, req.body.open),
  );
  app.delete(
    "/v1/secvm-exports/:exportId",
    { schema: { tags, params: SecVmExportParams, response: { 204: NoContent, ...errorAnswers(404) } } },
    async (req, reply) => {
      await exports.delete(req.params.exportId);
      return reply.code(204).send(null);
    },
  );
};

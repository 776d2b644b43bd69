/** The registry of this server's host-VM agents: each registers its URL and pid at start-up. */
import { AttachBody, errorAnswers, HostVmParams, NoContent, RegisterBody } from "../../api-types.ts";
import { notFound, type RoutePlugin } from "../../http.ts";
import type { ServerState } from "../state.ts";

/** What this resource answers when it cannot do what was asked (besides 400, 401, 500). */
const RegistryErrors = {
  /** 404: the host VM is not one of this server's. */
  unknownHostVm: (hostVm: string, server: string) => notFound(`no host VM ${hostVm} on server ${server}`),
};

export const registryRoutes: RoutePlugin<{ server: ServerState }> = async (app, { server }) => {
  app.post(
    "/v1/hostvms/:hostVm/register",
    {
      schema: {
        tags: ["registry"],
        params: HostVmParams,
        body: RegisterBody,
        response: { 204: NoContent, ...errorAnswers(404) },
      },
    },
    async (req, reply) => {
      const { hostVm } = req.params;
      if (!server.cfg.hostVms.some((h) => h.name === hostVm))
        throw RegistryErrors.unknownHostVm(hostVm, server.cfg.server);
      server.register(hostVm, req.body.url, req.body.pid);
      req.log.info({ hostVm, url: req.body.url, pid: req.body.pid }, "host-VM agent registered");
      return reply.code(204).send(null);
    },
  );

  // The underlying cloud moved a host VM here or away (a testbed move stands for it).
  app.put(
    "/v1/hostvms/:hostVm",
    {
      schema: {
        tags: ["registry"],
        params: HostVmParams,
        body: AttachBody,
        response: { 204: NoContent, ...errorAnswers(409) },
      },
    },
    async (req, reply) => {
      server.attach(req.params.hostVm, req.body.memoryMiB, req.body.cpus);
      req.log.info({ hostVm: req.params.hostVm }, "host VM attached to this server");
      return reply.code(204).send(null);
    },
  );
  app.delete(
    "/v1/hostvms/:hostVm",
    {
      schema: {
        tags: ["registry"],
        params: HostVmParams,
        response: { 204: NoContent, ...errorAnswers(404, 409) },
      },
    },
    async (req, reply) => {
      server.detach(req.params.hostVm);
      req.log.info({ hostVm: req.params.hostVm }, "host VM detached from this server");
      return reply.code(204).send(null);
    },
  );
};

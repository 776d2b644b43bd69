/**
 * Host VMs (admin): list, acquire (kept), release (refused while it hosts guests), rejuvenate
 * (its hypervisor layer renewed under its guests: a plan of one rejuvenate action).
 */
import { ApiError, notFound } from "../../errors.ts";
import { ADMIN, type ApiPlugin, answers } from "../plugin.ts";
import { IdParams, PlanAccepted } from "../schemas/common.ts";
import { AcquireHostVm, HostVmList, RejuvenateHostVm } from "../schemas/hostvms.ts";

export const hostVmRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.addHook("preHandler", async () => c.freshViews());

  app.get("/api/hostvms", { ...ADMIN, schema: { response: answers({ 200: HostVmList }) } }, async () => {
    const hosts = await c.repos.hostVms.list({ rented: true });
    const guests = await c.repos.guests.sizes();
    const types = new Map((await c.repos.hostVmTypes.list()).map((t) => [t.name, t]));
    return hosts.map((h) => {
      const t = types.get(h.type);
      const mine = guests.filter((g) => g.hostVm === h.id);
      return {
        id: h.id,
        type: h.type,
        server: h.server,
        state: h.state,
        acquiredAt: h.acquiredAt,
        kept: h.kept,
        pricePerHour: t?.pricePerHour ?? 0,
        guests: mine.map((g) => g.id),
        memoryUsedMiB: mine.reduce((s, g) => s + g.memoryMiB, 0),
        memoryMiB: t ? t.memoryMiB - t.hypervisorOverheadMiB : 0,
        cpu: c.hostCpu(h.id),
      };
    });
  });

  app.post(
    "/api/hostvms",
    { ...ADMIN, schema: { body: AcquireHostVm, response: answers({ 202: PlanAccepted }) } },
    async (req, reply) => {
      const id = await c.submitActions(
        [
          {
            payload: { kind: "acquire-host-vm", type: req.body.type, server: req.body.server, keep: true },
            dependsOn: [],
          },
        ],
        "api",
      );
      reply.code(202);
      return { plan: id };
    },
  );

  app.delete(
    "/api/hostvms/:id",
    { ...ADMIN, schema: { params: IdParams, response: answers({ 202: PlanAccepted }) } },
    async (req, reply) => {
      const h = await c.repos.hostVms.get(req.params.id);
      if (!h || h.state === "released") throw notFound("host VM", req.params.id);
      const guests = await c.repos.guests.idsOn(h.id);
      if (guests.length > 0)
        throw new ApiError(
          409,
          `host VM ${h.id} hosts ${guests.length} guest(s) (${guests
            .slice(0, 5)
            .join(", ")}${guests.length > 5 ? ", ..." : ""}): move or delete them first`,
        );
      const id = await c.submitActions(
        [{ payload: { kind: "release-host-vm", hostVm: h.id }, dependsOn: [] }],
        "api",
      );
      reply.code(202);
      return { plan: id };
    },
  );

  app.post(
    "/api/hostvms/:id/rejuvenate",
    {
      ...ADMIN,
      schema: { params: IdParams, body: RejuvenateHostVm, response: answers({ 202: PlanAccepted }) },
    },
    async (req, reply) => {
      const h = await c.repos.hostVms.get(req.params.id);
      if (!h || h.state === "released") throw notFound("host VM", req.params.id);
      if (h.state !== "running") throw new ApiError(409, `host VM ${h.id} is ${h.state}, not running`);
      const id = await c.submitActions(
        [
          {
            payload: {
              kind: "rejuvenate",
              hostVm: h.id,
              mode: req.body.mode ?? "in-place",
              ...(req.body.moveBack === false ? { moveBack: false } : {}),
            },
            dependsOn: [],
          },
        ],
        "api",
      );
      reply.code(202);
      return { plan: id };
    },
  );
};

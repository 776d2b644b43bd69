/** Guest VMs: list (paged, from the views), read, create, change, start, stop, move, delete. */
import { ApiError } from "../../errors.ts";
import { claimableGuestId, guestView, loadGuest } from "../guests.ts";
import { type ApiPlugin, answers, tenantOf, visibleTenant } from "../plugin.ts";
import { IdParams, ListQuery, NoContent } from "../schemas/common.ts";
import { CreateVm, Guest, GuestList, MigrateVm, MigrationAccepted, PatchVm } from "../schemas/vms.ts";

export const vmRoutes: ApiPlugin = async (app, { controller: c }) => {
  // These routes read the views: refresh them first if an audit or write changed them.
  app.addHook("preHandler", async () => c.freshViews());

  // Paged: ?limit (default 100, at most 10,000) and ?offset; the total is in x-total-count.
  // Served from the controller's read model (refreshed after audits and writes), with pages
  // cached as serialized JSON (this route's serializer) until the views next change.
  const pages = new Map<string, { version: number; total: number; body: string }>();
  app.get(
    "/api/vms",
    { schema: { querystring: ListQuery, response: answers({ 200: GuestList }) } },
    async (req, reply) => {
      const tenant = visibleTenant(req) ?? req.query.tenant;
      const offset = req.query.offset ?? 0;
      const limit = Math.min(req.query.limit ?? 100, 10_000);
      const key = `${tenant ?? ""}\u0000${offset}\u0000${limit}`;
      let page = pages.get(key);
      if (!page || page.version !== c.viewsVersion) {
        const rows = c.guestRows("tenant", tenant);
        const serialize = reply.getSerializationFunction("200") as unknown as (rows: Guest[]) => string;
        page = {
          version: c.viewsVersion,
          total: rows.length,
          body: serialize(rows.slice(offset, offset + limit).map((g) => guestView(c, g))),
        };
        if (pages.size > 1000) pages.clear();
        pages.set(key, page);
      }
      reply.header("x-total-count", String(page.total)).type("application/json; charset=utf-8");
      // A string with a JSON content type is sent as it is (already serialized, by this route's schema).
      return page.body as unknown as Guest[];
    },
  );

  app.get("/api/vms/:id", { schema: { params: IdParams, response: answers({ 200: Guest }) } }, async (req) =>
    guestView(c, await loadGuest(c, req, req.params.id)),
  );

  app.post(
    "/api/vms",
    { schema: { body: CreateVm, response: answers({ 201: Guest }) } },
    async (req, reply) => {
      const tenant = tenantOf(req, req.body.tenant);
      await claimableGuestId(c, req, req.body.id);
      const g = await c.createGuest({
        id: req.body.id,
        tenant,
        vcpus: req.body.vcpus ?? 1,
        mipsPerVcpu: req.body.mipsPerVcpu,
        memoryMiB: req.body.memoryMiB,
        dirtyRateMiBps: req.body.dirtyRateMiBps ?? 10,
        antiAffinityGroup: req.body.antiAffinityGroup,
        automation: req.body.automation,
        hostVm: req.principal.role === "admin" ? req.body.hostVm : undefined,
        ...(req.body.disk || req.body.nic
          ? { devices: { ...(req.body.disk ? { disk: req.body.disk } : {}), nic: req.body.nic === true } }
          : {}),
        role: "tenant",
        targets: [],
      });
      reply.code(201);
      return guestView(c, g);
    },
  );

  app.patch(
    "/api/vms/:id",
    { schema: { params: IdParams, body: PatchVm, response: answers({ 200: Guest }) } },
    async (req) => {
      const g = await loadGuest(c, req, req.params.id);
      await c.write((tx) => tx.guests.setAutomation(g.id, req.body.automation));
      return guestView(c, await loadGuest(c, req, g.id));
    },
  );

  for (const [verb, running] of [
    ["start", true],
    ["stop", false],
  ] as const) {
    app.post(
      `/api/vms/:id/${verb}`,
      { schema: { params: IdParams, response: answers({ 200: Guest }) } },
      async (req) => {
        const g = await loadGuest(c, req, req.params.id);
        await c.setGuestRunning(g.id, running);
        c.events.emit(`vm.${verb}`, g.tenant, { id: g.id });
        return guestView(c, await loadGuest(c, req, g.id));
      },
    );
  }

  app.delete(
    "/api/vms/:id",
    { schema: { params: IdParams, response: answers({ 204: NoContent }) } },
    async (req, reply) => {
      const g = await loadGuest(c, req, req.params.id);
      await c.deleteGuest(g.id, g.tenant);
      c.events.emit("vm.deleted", g.tenant, { id: g.id });
      reply.code(204);
    },
  );

  app.post(
    "/api/vms/:id/migrate",
    { schema: { params: IdParams, body: MigrateVm, response: answers({ 202: MigrationAccepted }) } },
    async (req, reply) => {
      const g = await loadGuest(c, req, req.params.id);
      if (!g.hostVm) throw new ApiError(409, `guest VM ${g.id} is not placed`);
      const planned = await c.chooseMove(g.id, req.body.to, req.body.mechanism ?? "auto");
      const plan = await c.submitActions(planned, "api");
      const move = planned.find((a) => a.payload.kind === "migrate")?.payload;
      reply.code(202);
      return {
        plan,
        guest: g.id,
        from: move?.kind === "migrate" ? move.from : undefined,
        to: req.body.to ?? (move?.kind === "migrate" && "hostVm" in move.to ? move.to.hostVm : undefined),
      };
    },
  );
};

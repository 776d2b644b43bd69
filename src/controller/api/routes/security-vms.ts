/** Security VMs: guests that watch other guests of their tenant. */
import { ApiError, notFound } from "../../errors.ts";
import { claimableGuestId, guestView, loadGuest } from "../guests.ts";
import { type ApiPlugin, answers, tenantOf, visibleTenant } from "../plugin.ts";
import { IdParams, NoContent } from "../schemas/common.ts";
import {
  AlertPage,
  AlertsQuery,
  CoMigrateSecurityVm,
  CoMigrationAccepted,
  CreateSecurityVm,
  SecurityVmPairs,
} from "../schemas/security-vms.ts";
import { Guest, GuestList } from "../schemas/vms.ts";

export const securityVmRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.addHook("preHandler", async () => c.freshViews());

  app.get("/api/security-vms", { schema: { response: answers({ 200: GuestList }) } }, async (req) =>
    (await c.repos.guests.list({ role: "security", tenant: visibleTenant(req) })).map((g) => guestView(c, g)),
  );

  app.post(
    "/api/security-vms",
    { schema: { body: CreateSecurityVm, response: answers({ 201: Guest }) } },
    async (req, reply) => {
      const tenant = tenantOf(req, req.body.tenant);
      await claimableGuestId(c, req, req.body.id);
      for (const t of req.body.targets) {
        if ((await c.repos.guests.tenantOf(t)) !== tenant)
          throw new ApiError(422, `body/targets: guest VM ${t} not found for tenant ${tenant}`);
      }
      const g = await c.createGuest({
        id: req.body.id,
        tenant,
        vcpus: 1,
        mipsPerVcpu: 1000,
        memoryMiB: req.body.memoryMiB ?? 512,
        dirtyRateMiBps: 5,
        role: "security",
        targets: req.body.targets,
        ...(req.body.monitors || req.body.signatures || req.body.rules !== undefined
          ? {
              monitoring: {
                ...(req.body.monitors ? { monitors: req.body.monitors } : {}),
                ...(req.body.signatures ? { signatures: req.body.signatures } : {}),
                ...(req.body.rules !== undefined ? { rules: req.body.rules } : {}),
              },
            }
          : {}),
      });
      reply.code(201);
      return guestView(c, g);
    },
  );

  /** A security VM of this request's tenant (a guest VM that is not one is not found here). */
  const loadSecurityVm = async (req: Parameters<typeof visibleTenant>[0], id: string) => {
    const g = await loadGuest(c, req, id);
    if (g.role !== "security") throw notFound("security VM", id);
    return g;
  };

  app.get(
    "/api/security-vms/:id",
    { schema: { params: IdParams, response: answers({ 200: Guest }) } },
    async (req) => guestView(c, await loadSecurityVm(req, req.params.id)),
  );

  app.get(
    "/api/security-vms/:id/channels",
    { schema: { params: IdParams, response: answers({ 200: SecurityVmPairs }) } },
    async (req) => {
      const g = await loadSecurityVm(req, req.params.id);
      const anchors = c.provider.plane.securityVms?.anchors().filter((a) => a.secvm === g.id);
      const channels = new Map(c.monitoring.pairs({ secvm: g.id }).map((p) => [p.target, p.channel]));
      return g.targets.map((target) => {
        const a = anchors?.find((x) => x.target === target);
        return {
          target,
          channel: channels.get(target) ?? null,
          monitor: anchors
            ? {
                hostVm: a?.hostVm ?? null,
                state: a?.state ?? "new",
                rounds: a?.rounds ?? 0,
                ...(a?.lastMove
                  ? {
                      lastMove: {
                        from: a.lastMove.from,
                        to: a.lastMove.to,
                        makeMs: a.lastMove.makeMs,
                        heldMs: a.lastMove.heldMs,
                        gapMs: a.lastMove.gapMs,
                      },
                    }
                  : {}),
              }
            : null,
        };
      });
    },
  );

  app.post(
    "/api/security-vms/:id/co-migrate",
    {
      schema: {
        params: IdParams,
        body: CoMigrateSecurityVm,
        response: answers({ 202: CoMigrationAccepted }),
      },
    },
    async (req, reply) => {
      const g = await loadSecurityVm(req, req.params.id);
      const targets = req.body.targets ?? g.targets;
      if (new Set(targets).size !== targets.length) throw new ApiError(422, "body/targets: each target once");
      for (const t of targets)
        if (!g.targets.includes(t))
          throw new ApiError(422, `body/targets: ${t} is not a target of security VM ${g.id}`);
      // Its targets are its tenant's own (checked at create); placed, not moving, room at `to`.
      const { plan, planned } = await c.submitCoMove([g.id, ...targets], req.body.to);
      const action = planned[0]?.payload;
      reply.code(202);
      return {
        plan,
        to: req.body.to,
        members:
          action?.kind === "co-migrate"
            ? action.members.map((m) => ({ guest: m.guest, from: m.from, mechanism: m.mechanism }))
            : [],
      };
    },
  );

  app.delete(
    "/api/security-vms/:id",
    { schema: { params: IdParams, response: answers({ 204: NoContent }) } },
    async (req, reply) => {
      const g = await loadSecurityVm(req, req.params.id);
      // Its monitors first (their last alerts are kept), then the VM itself.
      await c.provider.plane.securityVms?.remove(g.id);
      await c.deleteGuest(g.id, g.tenant);
      c.events.emit("vm.deleted", g.tenant, { id: g.id, role: "security" });
      reply.code(204);
    },
  );

  app.get(
    "/api/alerts",
    { schema: { querystring: AlertsQuery, response: answers({ 200: AlertPage }) } },
    async (req) => {
      const q = req.query;
      const own = visibleTenant(req);
      if (own !== undefined && q.tenant !== undefined && q.tenant !== own)
        throw new ApiError(403, `a tenant token cannot read tenant ${q.tenant}'s alerts`);
      const page = c.monitoring.alerts({
        tenant: own ?? q.tenant,
        secvm: q.secvm,
        target: q.target,
        monitor: q.monitor,
        severity: q.severity,
        after: q.after,
        since: q.since,
        limit: q.limit ?? 100,
      });
      return { ...page, alerts: [...page.alerts] };
    },
  );
};

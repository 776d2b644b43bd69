/**
 * The virtual AMT of a guest: power and boot actions (on, off, shutdown, reset, rescue,
 * normal), its inventory, and its event log (paged, newest first; x-total-count). Tenant-
 * scoped like every guest route (another tenant's guest is 404); each action is recorded
 * with who asked (the token's principal and id), refusals too.
 */
import type { FastifyRequest } from "fastify";
import { hashToken, tokenId } from "../../auth.ts";
import { loadGuest } from "../guests.ts";
import { type ApiPlugin, answers } from "../plugin.ts";
import { IdParams } from "../schemas/common.ts";
import { GuestEventList, GuestEventsQuery, Inventory, PowerBody, PowerResult } from "../schemas/power.ts";

/** Who sent a request, as the event log names it: the principal and the token's public id. */
export function actorOf(req: FastifyRequest, header = req.headers.authorization): string {
  const p = req.principal;
  const who = p.role === "tenant" ? `tenant:${p.tenant}` : p.role;
  const m = /^Bearer\s+(\S{1,512})$/i.exec(header ?? "");
  return m ? `${who} (${tokenId(hashToken(m[1]))})` : who;
}

export const powerRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.post(
    "/api/vms/:id/power",
    { schema: { params: IdParams, body: PowerBody, response: answers({ 200: PowerResult }) } },
    async (req) => {
      const g = await loadGuest(c, req, req.params.id);
      const r = await c.amt.act(g.id, g.tenant, req.body, actorOf(req));
      c.events.emit("vm.power", g.tenant, {
        id: g.id,
        action: req.body.action,
        outcome: r.outcome,
        power: r.power,
      });
      return r;
    },
  );

  app.get(
    "/api/vms/:id/inventory",
    { schema: { params: IdParams, response: answers({ 200: Inventory }) } },
    async (req) => c.amt.inventory((await loadGuest(c, req, req.params.id)).id),
  );

  app.get(
    "/api/vms/:id/events",
    {
      schema: { params: IdParams, querystring: GuestEventsQuery, response: answers({ 200: GuestEventList }) },
    },
    async (req, reply) => {
      const g = await loadGuest(c, req, req.params.id);
      const page = await c.repos.guestEvents.page(g.id, req.query.offset ?? 0, req.query.limit ?? 100);
      reply.header("x-total-count", String(page.total));
      return page.events.map(({ id, at, kind, actor, detail }) => ({ id, at, kind, actor, detail }));
    },
  );
};

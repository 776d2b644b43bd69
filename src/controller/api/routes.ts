/**
 * The REST API under /api. Every route needs a bearer token (see server.ts); a tenant token
 * sees and acts on its own tenant's guests only, everything else is for admins.
 */

import { Type, type TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { createToken, listTokens, mayAccess, type Principal, revokeToken } from "../auth.ts";
import { type Controller, guestIdUnavailable } from "../controller.ts";
import { ApiError, notFound } from "../errors.ts";
import type { StoredGuest, StoredPlan } from "../store/repositories/index.ts";
import * as S from "./schemas.ts";

type App = FastifyInstance<
  import("node:http").Server,
  import("node:http").IncomingMessage,
  import("node:http").ServerResponse,
  import("fastify").FastifyBaseLogger,
  TypeBoxTypeProvider
>;

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal;
  }
}

const PlanIdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });

/** Route options of an admin-only route (the auth hook refuses other roles with 403). */
const ADMIN = { config: { auth: { roles: ["admin"] as const } } };

/** The tenant a request acts for: its own (tenant token) or the one named (admin). */
function tenantOf(req: FastifyRequest, asked: string | undefined): string {
  const p = req.principal;
  if (p.role === "tenant") {
    if (asked !== undefined && asked !== p.tenant)
      throw new ApiError(403, `a tenant token cannot act for tenant ${asked}`);
    return p.tenant;
  }
  if (p.role !== "admin") throw new ApiError(403, "this needs an admin or tenant token");
  if (!asked) throw new ApiError(400, "body/tenant: required with an admin token");
  return asked;
}

export function registerRoutes(app: App, c: Controller): void {
  const repos = c.repos;

  const guestView = (g: StoredGuest) => ({
    id: g.id,
    tenant: g.tenant,
    vcpus: g.vcpus,
    mipsPerVcpu: g.mipsPerVcpu,
    memoryMiB: g.memoryMiB,
    hostVm: g.hostVm,
    server: c.serverOf(g.hostVm),
    powerState: g.powerState,
    automation: g.automation,
    role: g.role,
    targets: g.targets as string[],
    cpu: c.currentCpu(g.id),
  });

  async function loadGuest(req: FastifyRequest, id: string): Promise<StoredGuest> {
    const g = await repos.guests.get(id);
    // Another tenant's guest does not exist as far as this token can tell.
    if (!g || !mayAccess(req.principal, g.tenant)) throw notFound("guest VM", id);
    return g;
  }

  // ---- physical servers and host VMs (admin) ----------------------------------------
  app.get("/api/servers", ADMIN, async () => {
    const servers = await repos.servers.list();
    const hosts = await repos.hostVms.list({ rented: true });
    return servers.map((s) => ({
      id: s.id,
      cores: s.cores,
      mipsPerCore: s.mipsPerCore,
      memoryMiB: s.memoryMiB,
      hostVmSlots: s.hostVmSlots,
      hostVms: hosts.filter((h) => h.server === s.id).map((h) => h.id),
    }));
  });

  app.get("/api/hostvms", ADMIN, async () => {
    const hosts = await repos.hostVms.list({ rented: true });
    const guests = await repos.guests.sizes();
    const types = new Map((await repos.hostVmTypes.list()).map((t) => [t.name, t]));
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

  app.post("/api/hostvms", { ...ADMIN, schema: { body: S.AcquireHostVm } }, async (req, reply) => {
    const id = await c.submitActions(
      [{ kind: "acquire-host-vm", type: req.body.type, server: req.body.server, keep: true }],
      "api",
    );
    reply.code(202);
    return { plan: id };
  });

  app.delete("/api/hostvms/:id", { ...ADMIN, schema: { params: S.IdParams } }, async (req, reply) => {
    const h = await repos.hostVms.get(req.params.id);
    if (!h || h.state === "released") throw notFound("host VM", req.params.id);
    const guests = await repos.guests.idsOn(h.id);
    if (guests.length > 0)
      throw new ApiError(
        409,
        `host VM ${h.id} hosts ${guests.length} guest(s) (${guests
          .slice(0, 5)
          .join(", ")}${guests.length > 5 ? ", ..." : ""}): move or delete them first`,
      );
    const id = await c.submitActions([{ kind: "release-host-vm", hostVm: h.id }], "api");
    reply.code(202);
    return { plan: id };
  });

  // ---- guest VMs -------------------------------------------------------------------------
  // Paged: ?limit (default 100, at most 10,000) and ?offset; the total is in x-total-count.
  // Served from the controller's read model (refreshed after audits and writes).
  // Pages are cached as serialized JSON until the views next change (every audit or write).
  const pages = new Map<string, { version: number; total: number; body: string }>();
  app.get("/api/vms", { schema: { querystring: S.ListQuery } }, async (req, reply) => {
    const tenant = req.principal.role === "tenant" ? req.principal.tenant : req.query.tenant;
    const offset = req.query.offset ?? 0;
    const limit = Math.min(req.query.limit ?? 100, 10_000);
    const key = `${tenant ?? ""}\u0000${offset}\u0000${limit}`;
    let page = pages.get(key);
    if (!page || page.version !== c.viewsVersion) {
      const rows = c.guestRows("tenant", tenant);
      page = {
        version: c.viewsVersion,
        total: rows.length,
        body: JSON.stringify(rows.slice(offset, offset + limit).map(guestView)),
      };
      if (pages.size > 1000) pages.clear();
      pages.set(key, page);
    }
    reply.header("x-total-count", String(page.total)).type("application/json; charset=utf-8");
    return page.body;
  });

  app.get("/api/vms/:id", { schema: { params: S.IdParams } }, async (req) =>
    guestView(await loadGuest(req, req.params.id)),
  );

  /**
   * Refuses an id a new guest cannot take. Ids are one namespace for all tenants, so a
   * tenant learns only that an id it cannot see is unavailable — the same answer for another
   * tenant's guest, a retired id, or one being created — never whose it is.
   */
  async function claimableGuestId(req: FastifyRequest, id: string): Promise<void> {
    const st = await c.guestIdStatus(id);
    if (st.kind === "free") return;
    if (st.kind === "taken" && mayAccess(req.principal, st.tenant))
      throw new ApiError(409, `guest VM ${id} exists already`);
    if (st.kind === "retired" && req.principal.role === "admin")
      throw new ApiError(409, `guest VM id ${id} belonged to a deleted guest; ids are never reused`);
    throw new ApiError(409, guestIdUnavailable(id));
  }

  app.post("/api/vms", { schema: { body: S.CreateVm } }, async (req, reply) => {
    const tenant = tenantOf(req, req.body.tenant);
    await claimableGuestId(req, req.body.id);
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
      role: "tenant",
      targets: [],
    });
    reply.code(201);
    return guestView(g);
  });

  app.patch("/api/vms/:id", { schema: { params: S.IdParams, body: S.PatchVm } }, async (req) => {
    const g = await loadGuest(req, req.params.id);
    await c.write((tx) => tx.guests.setAutomation(g.id, req.body.automation));
    return guestView(await loadGuest(req, g.id));
  });

  for (const [verb, running] of [
    ["start", true],
    ["stop", false],
  ] as const) {
    app.post(`/api/vms/:id/${verb}`, { schema: { params: S.IdParams } }, async (req) => {
      const g = await loadGuest(req, req.params.id);
      await c.setGuestRunning(g.id, running);
      c.events.emit(`vm.${verb}`, g.tenant, { id: g.id });
      return guestView(await loadGuest(req, g.id));
    });
  }

  app.delete("/api/vms/:id", { schema: { params: S.IdParams } }, async (req, reply) => {
    const g = await loadGuest(req, req.params.id);
    await c.deleteGuest(g.id, g.tenant);
    c.events.emit("vm.deleted", g.tenant, { id: g.id });
    reply.code(204);
  });

  app.post(
    "/api/vms/:id/migrate",
    { schema: { params: S.IdParams, body: S.MigrateVm } },
    async (req, reply) => {
      const g = await loadGuest(req, req.params.id);
      if (!g.hostVm) throw new ApiError(409, `guest VM ${g.id} is not placed`);
      const move = await c.chooseMove(g.id, req.body.to, req.body.mechanism ?? "auto");
      const plan = await c.submitActions([move], "api");
      reply.code(202);
      return {
        plan,
        guest: g.id,
        from: move.kind === "migrate" ? move.from : undefined,
        to: req.body.to ?? (move.kind === "migrate" && "hostVm" in move.to ? move.to.hostVm : undefined),
      };
    },
  );

  // ---- security VMs ----------------------------------------------------------------------
  app.get("/api/security-vms", async (req) => {
    const tenant = req.principal.role === "tenant" ? req.principal.tenant : undefined;
    return (await repos.guests.list({ role: "security", tenant })).map(guestView);
  });

  app.post("/api/security-vms", { schema: { body: S.CreateSecurityVm } }, async (req, reply) => {
    const tenant = tenantOf(req, req.body.tenant);
    await claimableGuestId(req, req.body.id);
    for (const t of req.body.targets) {
      if ((await repos.guests.tenantOf(t)) !== tenant)
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
    });
    reply.code(201);
    return guestView(g);
  });

  // ---- plans and migrations ------------------------------------------------------------
  const planView = async (p: StoredPlan) => ({
    id: p.id,
    createdAt: p.createdAt,
    status: p.status,
    source: p.source,
    actions: (await repos.plans.actions(p.id)).map((a) => ({
      ...a.payload,
      idx: a.idx,
      status: a.status,
      dependsOn: a.dependsOn as number[],
      error: a.error,
    })),
  });

  app.get("/api/plans", { ...ADMIN, schema: { querystring: S.ListQuery } }, async (req) => {
    const plans = await repos.plans.list({ status: req.query.status, limit: req.query.limit ?? 50 });
    return Promise.all(plans.map(planView));
  });

  app.get("/api/plans/:id", { ...ADMIN, schema: { params: PlanIdParams } }, async (req) => {
    const p = await repos.plans.get(req.params.id);
    if (!p) throw notFound("plan", String(req.params.id));
    return planView(p);
  });

  app.post("/api/plans/preview", ADMIN, async () => {
    return c.preview();
  });

  for (const verb of ["approve", "apply"] as const) {
    app.post(`/api/plans/:id/${verb}`, { ...ADMIN, schema: { params: PlanIdParams } }, async (req) => {
      const p = await repos.plans.get(req.params.id);
      if (!p) throw notFound("plan", String(req.params.id));
      if (p.status !== "proposed")
        throw new ApiError(409, `plan ${p.id} is ${p.status}, only a proposed plan can be approved`);
      await c.write((tx) => tx.plans.setStatus(p.id, "approved", "proposed"));
      c.events.emit("plan.approved", undefined, { id: p.id });
      c.kick();
      return planView({ ...p, status: "approved" });
    });
  }

  app.post("/api/plans/:id/cancel", { ...ADMIN, schema: { params: PlanIdParams } }, async (req) => {
    const p = await repos.plans.get(req.params.id);
    if (!p) throw notFound("plan", String(req.params.id));
    if (!["proposed", "approved", "applying"].includes(p.status))
      throw new ApiError(409, `plan ${p.id} is ${p.status} already`);
    await c.cancelPlan(p.id);
    return planView({ ...p, status: "cancelled" });
  });

  app.get("/api/migrations", { schema: { querystring: S.ListQuery } }, async (req) => {
    const rows = await repos.migrations.list({
      tenant: req.principal.role === "tenant" ? req.principal.tenant : undefined,
      status: req.query.status,
      limit: req.query.limit ?? 100,
    });
    // Running ones with the provider's live figures: the executor stores progress only at its
    // polls, and an instant handover may start and end between two of them. (The leader's
    // provider drives the moves; a follower shows what the store has.)
    const live = new Map<string, { progress: number; remainingBytes: number; etaSeconds: number }>();
    if (c.leader.isLeader) {
      for (const m of rows) {
        if (m.status !== "running") continue;
        const p = await c.provider.migration(m.id).catch(() => undefined);
        if (p?.status === "running") live.set(m.id, p);
      }
    }
    return rows.map((m) => ({
      id: m.id,
      guest: m.guest,
      tenant: m.tenant,
      from: m.from,
      to: m.to,
      mechanism: m.mechanism,
      status: m.status,
      progress: Math.max(m.progress, live.get(m.id)?.progress ?? 0),
      detail: live.has(m.id)
        ? { remainingBytes: live.get(m.id)!.remainingBytes, etaSeconds: live.get(m.id)!.etaSeconds }
        : m.detail,
      plan: m.plan,
      startedAt: m.startedAt,
      finishedAt: m.finishedAt,
      error: m.error,
    }));
  });

  // ---- settings, tokens, overview -----------------------------------------------------
  app.get("/api/settings", ADMIN, async () => {
    return { automation: await c.reconciler.cloudAutomation() };
  });

  app.put("/api/settings", { ...ADMIN, schema: { body: S.Settings } }, async (req) => {
    const value = req.body.automation;
    await c.write((tx) => tx.settings.setAutomation(value));
    return { automation: value };
  });

  // ---- tokens (admin): made, listed without secrets, revoked at once ---------------------
  app.post("/api/tokens", { ...ADMIN, schema: { body: S.CreateToken } }, async (req, reply) => {
    if (req.body.role === "tenant" && !req.body.tenant)
      throw new ApiError(400, "body/tenant: required for a tenant token");
    if (req.body.role !== "tenant" && req.body.tenant)
      throw new ApiError(
        400,
        `body/tenant: only a tenant token has a tenant, not a${req.body.role === "admin" ? "n" : ""} ${req.body.role} token`,
      );
    if (!c.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    const principal: Principal =
      req.body.role === "tenant" ? { role: "tenant", tenant: req.body.tenant! } : { role: req.body.role };
    const now = Date.now() / 1000;
    const { token, info } = await createToken(c.store, principal, req.body.label ?? "", {
      now,
      expiresAt: req.body.expiresInSeconds === undefined ? undefined : now + req.body.expiresInSeconds,
    });
    reply.code(201);
    return { token, ...info };
  });

  app.get("/api/tokens", ADMIN, async () => listTokens(c.store));

  app.delete("/api/tokens/:id", { ...ADMIN, schema: { params: S.TokenIdParams } }, async (req) => {
    if (!c.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
    const info = await revokeToken(c.store, req.params.id);
    if (!info) throw notFound("token", req.params.id);
    return info;
  });

  app.get("/api/overview", async (req) => c.overview(req.principal));

  // The cloud's size and cost over time (provider clock), downsampled to at most `points`.
  app.get("/api/history", { ...ADMIN, schema: { querystring: S.HistoryQuery } }, async (req) => ({
    samples: await c.history.read(req.query.points ?? 720, req.query.since),
  }));
}

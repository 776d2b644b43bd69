/** The cloud as a whole: physical servers (admin), the overview, size and cost over time (admin). */
import { ApiError, notFound } from "../../errors.ts";
import { ADMIN, type ApiPlugin, answers } from "../plugin.ts";
import {
  History,
  HistoryQuery,
  Overview,
  Placement,
  PlacementTrial,
  PlacementTrialBody,
  type PlacementView,
  ServerList,
} from "../schemas/cloud.ts";

export const cloudRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.get("/api/servers", { ...ADMIN, schema: { response: answers({ 200: ServerList }) } }, async () => {
    const servers = await c.repos.servers.list();
    const hosts = await c.repos.hostVms.list({ rented: true });
    return servers.map((s) => ({
      id: s.id,
      cores: s.cores,
      mipsPerCore: s.mipsPerCore,
      memoryMiB: s.memoryMiB,
      hostVmSlots: s.hostVmSlots,
      hostVms: hosts.filter((h) => h.server === s.id).map((h) => h.id),
    }));
  });

  // Physical placement of the rented host VMs, with the source, confidence and age of each.
  app.get("/api/placement", { ...ADMIN, schema: { response: answers({ 200: Placement }) } }, async () => {
    // The clock read first: the simulated provider's clock may advance while the report is
    // built, which would age a placement the provider is telling right now.
    const now = c.provider.now();
    const r = await c.provider.placement();
    const view: PlacementView = {
      mode: r.mode,
      now,
      refreshedAt: r.refreshedAt ?? null,
      hostVms: r.entries.map((e) => ({
        hostVm: e.hostVm,
        server: e.server ?? null,
        source: e.source ?? null,
        confidence: e.confidence,
        ageSeconds: e.at === undefined ? null : Math.max(0, Math.round((now - e.at) * 10) / 10),
        conflict: e.conflict,
      })),
    };
    return view;
  });

  // The conclusive measurement on demand: a probe guest handed over from one host VM to the
  // other (seconds: the probe guest boots first). Its verdict joins the discovered map.
  app.post(
    "/api/placement/trials",
    { ...ADMIN, schema: { body: PlacementTrialBody, response: answers({ 200: PlacementTrial }) } },
    async (req) => {
      const { from, to } = req.body;
      if (!c.provider.placementTrial)
        throw new ApiError(409, "this provider does not discover placement through agents: no trials");
      if (from === to) throw new ApiError(400, "a trial needs two different host VMs");
      for (const id of [from, to]) {
        const h = await c.repos.hostVms.get(id);
        if (!h || h.state === "released") throw notFound("host VM", id);
      }
      const r = await c.provider.placementTrial(from, to);
      return { from, to, together: r.together ?? null, ms: r.ms, detail: r.detail };
    },
  );

  app.get("/api/overview", { schema: { response: answers({ 200: Overview }) } }, async (req) =>
    c.overview(req.principal),
  );

  // The cloud's size and cost over time (provider clock), downsampled to at most `points`.
  app.get(
    "/api/history",
    { ...ADMIN, schema: { querystring: HistoryQuery, response: answers({ 200: History }) } },
    async (req) => ({ samples: await c.history.read(req.query.points ?? 720, req.query.since) }),
  );
};

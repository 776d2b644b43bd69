/** Plans (admin): list, read, preview, approve, cancel. */
import { ApiError, notFound } from "../../errors.ts";
import type { StoredPlan } from "../../store/repositories/index.ts";
import { ADMIN, type ApiPlugin, answers } from "../plugin.ts";
import { Plan, PlanIdParams, PlanList, PlanListQuery, Preview } from "../schemas/plans.ts";

export const planRoutes: ApiPlugin = async (app, { controller: c }) => {
  const plans = c.repos.plans;

  const planView = async (p: StoredPlan): Promise<Plan> => ({
    id: p.id,
    createdAt: p.createdAt,
    status: p.status,
    source: p.source,
    actions: (await plans.actions(p.id)).map((a) => ({
      ...a.payload,
      idx: a.idx,
      status: a.status,
      dependsOn: [...a.dependsOn],
      error: a.error,
    })),
  });

  const load = async (id: number): Promise<StoredPlan> => {
    const p = await plans.get(id);
    if (!p) throw notFound("plan", String(id));
    return p;
  };

  app.get(
    "/api/plans",
    { ...ADMIN, schema: { querystring: PlanListQuery, response: answers({ 200: PlanList }) } },
    async (req) =>
      Promise.all(
        (await plans.list({ status: req.query.status, limit: req.query.limit ?? 50 })).map(planView),
      ),
  );

  app.get(
    "/api/plans/:id",
    { ...ADMIN, schema: { params: PlanIdParams, response: answers({ 200: Plan }) } },
    async (req) => planView(await load(req.params.id)),
  );

  app.post("/api/plans/preview", { ...ADMIN, schema: { response: answers({ 200: Preview }) } }, async () =>
    c.preview(),
  );

  for (const verb of ["approve", "apply"] as const) {
    app.post(
      `/api/plans/:id/${verb}`,
      { ...ADMIN, schema: { params: PlanIdParams, response: answers({ 200: Plan }) } },
      async (req) => {
        const p = await load(req.params.id);
        if (p.status !== "proposed")
          throw new ApiError(409, `plan ${p.id} is ${p.status}, only a proposed plan can be approved`);
        await c.write((tx) => tx.plans.setStatus(p.id, "approved", "proposed"));
        c.events.emit("plan.approved", undefined, { id: p.id });
        c.kick();
        return planView({ ...p, status: "approved" });
      },
    );
  }

  app.post(
    "/api/plans/:id/cancel",
    { ...ADMIN, schema: { params: PlanIdParams, response: answers({ 200: Plan }) } },
    async (req) => {
      const p = await load(req.params.id);
      if (!["proposed", "approved", "applying"].includes(p.status))
        throw new ApiError(409, `plan ${p.id} is ${p.status} already`);
      await c.cancelPlan(p.id);
      return planView({ ...p, status: "cancelled" });
    },
  );
};

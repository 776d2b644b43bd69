/** The controller itself: /health (open), /metrics (admin and metrics tokens), the OpenAPI document. */
import type { ApiPlugin } from "../plugin.ts";
import { ERRORS } from "../schemas/common.ts";
import { Health, MetricsText, OpenApiDocument } from "../schemas/system.ts";

export const systemRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.get(
    "/health",
    { config: { auth: { open: true } }, schema: { response: { 200: Health, ...ERRORS } } },
    async () => ({ status: "ok" as const, leader: c.leader.isLeader, provider: c.provider.name }),
  );

  // Metrics tell the cloud's size and activity: admins and scrape (metrics) tokens only.
  app.get(
    "/metrics",
    {
      config: { auth: { roles: ["admin", "metrics"] } },
      schema: { response: { 200: MetricsText, ...ERRORS } },
    },
    async (_req, reply) => {
      reply.header("content-type", c.metrics.registry.contentType);
      return c.metrics.registry.metrics();
    },
  );

  app.get(
    "/api/openapi.json",
    { schema: { response: { 200: OpenApiDocument, ...ERRORS } } },
    async () => app.swagger() as unknown as Record<string, unknown>,
  );
};

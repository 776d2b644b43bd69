/**
 * The server agent: one per physical server. Owns the server's memory-pool folder, keeps
 * the ledger of which host VM each guest's RAM counts against, is the registry of its
 * host-VM agents, and brokers instant handovers between them (a handover is begun here,
 * which checks room on the destination, and committed or aborted here, which moves or
 * keeps the memory accounting). It never touches QEMU itself.
 *
 * The agent is the shared app (http.ts: auth, validation, errors, OpenAPI) plus one route
 * plugin per resource (server/routes: status and pool, registry, reservations, handovers)
 * over the server's state (server/state.ts).
 *
 * A registered host-VM agent is checked to be alive (its pid and start time, in this
 * server's pid space) every second and whenever it matters (status, handovers): a dead one
 * is shown as such and refused as a handover party until its successor registers. Every
 * few seconds the ledger is reconciled with what the live host-VM agents report (guests,
 * incomings): entries nothing stands behind any more are undone (ledger.ts, reconcile).
 */
import type { FastifyBaseLogger } from "fastify";
import type { ServerAgentConfig } from "./config.ts";
import { type App, createApp } from "./http.ts";
import { handoverRoutes } from "./server/routes/handovers.ts";
import { registryRoutes } from "./server/routes/registry.ts";
import { reservationRoutes } from "./server/routes/reservations.ts";
import { statusRoutes } from "./server/routes/status.ts";
import { RECONCILE, type ReconcileTiming, ServerState } from "./server/state.ts";

export type { ReconcileTiming } from "./server/state.ts";

export function buildServerAgent(
  cfg: ServerAgentConfig,
  token: string,
  logger: FastifyBaseLogger,
  timing: ReconcileTiming = RECONCILE,
): App {
  const server = new ServerState(cfg, token, logger, timing);
  const app = createApp(token, logger, { title: `nestcloud server agent ${cfg.server}` });
  for (const routes of [statusRoutes, registryRoutes, reservationRoutes, handoverRoutes]) {
    void app.register(routes, { server });
  }
  server.start();
  app.addHook("onClose", async () => server.stop());
  return app;
}

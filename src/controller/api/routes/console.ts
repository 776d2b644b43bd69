/**
 * A guest's console: GET /api/vms/:id/console upgrades to a WebSocket relayed to the agent
 * holding the guest's serial port (src/controller/console.ts). Tenant-scoped like every guest
 * route (another tenant's guest is 404, before any upgrade); the token may come as ?token=
 * (a browser's WebSocket cannot send headers; the controller logs no URLs).
 */
import { Gauge } from "prom-client";
import type { WebSocket } from "ws";
import { CONSOLE_PORT } from "../../../agent/index.ts";
import { consoleRelay, subOf, toBuffer, wsPipe } from "../../console.ts";
import { ApiError } from "../../errors.ts";
import { loadGuest } from "../guests.ts";
import type { ApiPlugin } from "../plugin.ts";
import { ERRORS, IdParams } from "../schemas/common.ts";
import { ConsoleQuery, ConsoleUpgrade } from "../schemas/console.ts";
import { actorOf } from "./power.ts";

export const consoleRoutes: ApiPlugin = async (app, { controller: c, log }) => {
  // Events and sizes only: the relay never sees what the guest prints or the user types.
  const relay = consoleRelay(c.provider.plane, c.store, (event, fields) =>
    (log ?? app.log).info({ console: fields }, `console: ${event}`),
  );
  app.addHook("preClose", async () => relay?.closeAll("the controller is shutting down"));
  // The relay's counts at each scrape (clients now; attaches, re-attaches after moves, slow
  // clients dropped, input dropped from non-holders, bytes each way: since start).
  const METRIC = "nestcloud_console_relay";
  if (relay && !c.metrics.registry.getSingleMetric(METRIC))
    new Gauge({
      name: METRIC,
      help: "Console relay: clients now, and counts since start (attaches, reattaches, slow clients dropped, ...)",
      labelNames: ["stat"],
      registers: [c.metrics.registry],
      collect() {
        for (const [stat, v] of Object.entries(relay.stats)) this.set({ stat }, v);
      },
    });

  app.route({
    method: "GET",
    url: "/api/vms/:id/console",
    config: { auth: { tokenInQuery: true } },
    schema: {
      params: IdParams,
      querystring: ConsoleQuery,
      response: { 101: ConsoleUpgrade, ...ERRORS },
    },
    preHandler: async (req) => {
      await loadGuest(c, req, req.params.id);
      if (!relay) throw new ApiError(409, `guests of provider ${c.provider.name} have no console`);
    },
    wsHandler: async (socket: WebSocket, req) => {
      const { id } = req.params as { id: string };
      const port = (req.query as { port?: string }).port ?? CONSOLE_PORT;
      const g = await c.repos.guests.get(id);
      if (!g || !relay) {
        socket.close(4004, "the guest is gone");
        return;
      }
      const header = req.headers.authorization ?? bearerFromQuery(req.url);
      const h = relay.open(
        g.id,
        port,
        {
          sub: subOf(header),
          tenant: g.tenant,
          control: req.principal.role !== "metrics",
          credential: header,
        },
        wsPipe(socket),
      );
      // The guest's event log (virtual AMT): who attached to which port.
      void c.amt.recordFor(g.id, "console.attached", actorOf(req, header), `port ${port}`);
      socket.on("message", (data, isBinary) => h.onMessage(toBuffer(data), isBinary));
      socket.on("close", () => h.onClose());
      socket.on("error", () => h.onClose());
    },
    // A plain GET (no upgrade).
    handler: async () => {
      throw new ApiError(426, "GET /api/vms/:id/console is a WebSocket (Upgrade: websocket)");
    },
  });
};

function bearerFromQuery(url: string): string | undefined {
  const q = url.indexOf("?");
  const token = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get("token");
  return token ? `Bearer ${token}` : undefined;
}

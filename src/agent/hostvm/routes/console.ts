/**
 * The console of a guest's logged serial port: a WebSocket the controller's relay opens on
 * behalf of a client (the protocol is end to end between this agent and the client; see
 * hostvm/console.ts), and the identity key the agent signs its handshakes with (the
 * controller hands it to clients).
 */
import { Type } from "typebox";
import {
  ConsoleIdentitySchema,
  ConsoleInputsSchema,
  ConsoleUpgrade,
  DeviceId,
  ErrorBodySchema,
  errorAnswers,
  GuestParams,
} from "../../api-types.ts";
import { AgentError, notFound, type RoutePlugin } from "../../http.ts";
import { type ConsoleService, consoleGuestConfig } from "../console.ts";
import { inputsPath, readInputs } from "../console-inputs.ts";
import { serialLogOf } from "../devices.ts";
import type { HostVm } from "../state.ts";

const DeviceParams = Type.Object({ guestId: GuestParams.properties.guestId, deviceId: DeviceId });

export const consoleRoutes: RoutePlugin<{ host: HostVm; consoles: ConsoleService }> = async (
  app,
  { host, consoles },
) => {
  const tags = ["console"];
  app.get(
    "/v1/console/identity",
    { schema: { tags, response: { 200: ConsoleIdentitySchema, ...errorAnswers() } } },
    async () => consoles.info(),
  );

  // What the port's sessions have had delivered: the destination of a pre-copy continues it.
  app.get(
    "/v1/guests/:guestId/devices/:deviceId/console/inputs",
    { schema: { tags, params: DeviceParams, response: { 200: ConsoleInputsSchema, ...errorAnswers(404) } } },
    async (req) => {
      const { guestId, deviceId } = req.params;
      const g = host.guestOf(guestId);
      if (!serialLogOf(host.cfg, g.config, deviceId))
        throw notFound(`guest ${guestId} has no serial port ${deviceId} with a log`);
      return readInputs(inputsPath(host.cfg, guestId, deviceId));
    },
  );

  app.route({
    method: "GET",
    url: "/v1/guests/:guestId/devices/:deviceId/console",
    schema: {
      tags,
      params: DeviceParams,
      response: { 101: ConsoleUpgrade, 426: ErrorBodySchema, ...errorAnswers(404, 503) },
    },
    // Refused before the upgrade (an ordinary 404): the relay looks for the guest elsewhere.
    // A guest arriving here (a move's destination before it runs the guest) is accepted too:
    // the session is handshaken now and starts once the guest runs here (console.ts).
    preHandler: async (req) => {
      const { guestId, deviceId } = req.params;
      // An agent on its way out (a restart: ConsoleService.handOff) takes no new session; the
      // relay tries again and finds its successor.
      if (consoles.restarting) throw new AgentError(503, "restarting", "the agent restarts");
      const config = consoleGuestConfig(host, guestId);
      if (!config) throw notFound(`no guest ${guestId} on host VM ${host.where}`);
      if (!serialLogOf(host.cfg, config, deviceId))
        throw notFound(`guest ${guestId} has no serial port ${deviceId} with a log (a console needs one)`);
    },
    wsHandler: (socket, req) => {
      const { guestId, deviceId } = req.params as { guestId: string; deviceId: string };
      consoles.serve(guestId, deviceId, socket);
    },
    // A plain GET (no upgrade).
    handler: async () => {
      throw new AgentError(426, "upgrade_required", "this is a WebSocket (Upgrade: websocket)");
    },
  });
};

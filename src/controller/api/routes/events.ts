/** The event stream (server-sent events, filtered per tenant); the token may come as ?token=. */
import { streamEvents } from "../../event-stream.ts";
import type { ApiPlugin } from "../plugin.ts";
import { ERRORS } from "../schemas/common.ts";
import { EventStream, EventsHeaders } from "../schemas/events.ts";

export const eventRoutes: ApiPlugin = async (app, { controller: c }) => {
  app.get(
    "/api/events",
    {
      config: { auth: { tokenInQuery: true } },
      schema: { headers: EventsHeaders, response: { 200: EventStream, ...ERRORS } },
    },
    async (req, reply) => streamEvents(c.events, req, reply),
  );
};

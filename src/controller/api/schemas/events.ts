/** The event stream: /api/events (server-sent events). */
import { Type } from "typebox";

export const EventsHeaders = Type.Object({
  "last-event-id": Type.Optional(
    Type.String({ pattern: "^[0-9]{1,15}$", description: "id of the last event the client saw" }),
  ),
});

export const EventStream = {
  description: "server-sent events: `id:` (seq), `event:` (kind) and `data:` (the event as JSON)",
  content: { "text/event-stream": { schema: Type.String() } },
} as const;

/** A guest's console: a WebSocket relaying the console protocol (src/console) to its agent. */
import { Type } from "typebox";

export const ConsoleQuery = Type.Object(
  {
    /** The guest's serial port (default: `console`, the port the controller gives every guest). */
    port: Type.Optional(Type.String({ pattern: "^[a-z][a-z0-9]{0,11}$" })),
    /** The bearer token, for a browser's WebSocket (which cannot send headers). */
    token: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const ConsoleUpgrade = Type.String({
  description:
    "a WebSocket: text messages are the relay's (attach, take, release / agent, reattaching, keyboard, not-holder, error), binary ones the console protocol's, end to end with the guest's agent",
});

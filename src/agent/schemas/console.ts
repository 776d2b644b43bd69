/** The console of a guest's logged serial port (end-to-end encrypted, see src/console). */
import { type Static, Type } from "typebox";

export const ConsoleIdentitySchema = Type.Object(
  {
    /** The agent's identity key: an uncompressed P-256 point, base64url. */
    publicKey: Type.String(),
    /** SHA256:<base64> of the point (compare out of band). */
    fingerprint: Type.String(),
  },
  { description: "the key this agent signs its console handshakes with" },
);
export type ConsoleIdentity = Static<typeof ConsoleIdentitySchema>;

export const ConsoleUpgrade = Type.String({
  description:
    "a WebSocket (binary messages: the console protocol's client hello first, then records; see src/console/protocol.ts)",
});

/**
 * The serial port a guest made through the controller has for its console (ttyS1, logged):
 * what `GET /api/vms/:id/console` attaches to unless it names another port.
 */
export const CONSOLE_PORT = "console";

/** The highest keystroke seq delivered per console session (session id -> seq, when). */
export const ConsoleInputsSchema = Type.Record(
  Type.String(),
  Type.Object({ seq: Type.Integer({ minimum: 0 }), at: Type.Number() }),
  { description: "what the port's console sessions have had delivered (a pre-copy carries it along)" },
);
export type ConsoleInputs = Static<typeof ConsoleInputsSchema>;

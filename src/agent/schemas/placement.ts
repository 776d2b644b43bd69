/**
 * The co-residency probe (host-VM agent) and host-VM attachment (server agent): shapes of
 * their requests and answers. A probe is a random nonce; a file named after it in the
 * server's shared memory pool is seen by exactly the host VMs on that server.
 */
import { type Static, Type } from "typebox";

export const ProbeNonce = Type.String({ pattern: "^[0-9a-f]{32}$", description: "128 random bits, hex" });
export const ProbeParams = Type.Object({ nonce: ProbeNonce });
export const ProbeBody = Type.Object({ nonce: ProbeNonce }, { additionalProperties: false });

export const ProbeWritten = Type.Object({
  nonce: ProbeNonce,
  /** The host VM that wrote it, as its agent knows itself. */
  hostVm: Type.String(),
});
export type ProbeWrittenAnswer = Static<typeof ProbeWritten>;

export const ProbesSeen = Type.Object({
  /** Nonces of the probe files this agent sees in its server's pool now. */
  nonces: Type.Array(ProbeNonce),
});
export type ProbesSeenAnswer = Static<typeof ProbesSeen>;

export const AttachBody = Type.Object(
  { memoryMiB: Type.Integer({ minimum: 1 }), cpus: Type.Integer({ minimum: 1, maximum: 64 }) },
  { additionalProperties: false },
);
export type AttachRequest = Static<typeof AttachBody>;

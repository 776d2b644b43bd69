// The NBD client of the disk monitor: protocol constants, codec, transports and the client.
export {
  DEFAULT_NBD_LIMITS,
  NbdClient,
  type NbdConnectOptions,
  type NbdLimits,
} from "./client.ts";
export {
  NbdClosedError,
  NbdCommandError,
  NbdError,
  NbdOptionError,
  NbdProtocolError,
  type NbdProtocolErrorCode,
  NbdTimeoutError,
  NbdUsageError,
} from "./errors.ts";
export { type Extent, rangesWith, rangesWithout, totalLength } from "./extents.ts";
export type { BlockSize, ExportInfo } from "./handshake.ts";
export {
  BASE_ALLOCATION,
  dirtyBitmapContext,
  NBD_FLAG_READ_ONLY,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./protocol.ts";
export { NbdTlsRelay, type NbdTlsRelayOptions } from "./tls-relay.ts";
export {
  type NbdTlsOptions,
  type NbdTransport,
  type NbdUri,
  parseNbdUri,
  tcpTransport,
  tlsTransport,
  unixTransport,
} from "./transport.ts";

// Everything that can go wrong with an NBD connection surfaces as one of these typed errors,
// never as an uncaught exception: the server is treated as hostile (it runs next to a guest
// that may own it), so each of its violations names what was wrong.

export class NbdError extends Error {
  override name = "NbdError";
}

/** What the server did wrong; the connection is closed (the stream cannot be trusted). */
export type NbdProtocolErrorCode =
  /** A magic number is not the one the protocol puts there. */
  | "bad-magic"
  /** A length is larger than this client's bound for that message (hostile or broken server). */
  | "too-large"
  /** A length does not fit the message type (too short, not a multiple, inconsistent). */
  | "bad-length"
  /** The connection ended in the middle of a message. */
  | "truncated"
  /** A reply names a request that is not in flight. */
  | "unknown-handle"
  /** A reply, chunk or option reply that is not allowed here (type, order, option id). */
  | "unexpected-reply"
  /** Data, a hole or an error outside the request, or overlapping an earlier chunk. */
  | "out-of-range"
  /** More messages than the bound (option replies, chunks per reply, extents). */
  | "too-many"
  /** A field holds a value the protocol forbids (flags, sizes, zero lengths, names). */
  | "bad-value";

export class NbdProtocolError extends NbdError {
  override name = "NbdProtocolError";
  constructor(
    readonly code: NbdProtocolErrorCode,
    message: string,
  ) {
    super(`NBD protocol error (${code}): ${message}`);
  }
}

/** The server refused an option during the handshake (e.g. an unknown export). */
export class NbdOptionError extends NbdError {
  override name = "NbdOptionError";
  constructor(
    readonly option: string,
    readonly reply: string,
    readonly serverMessage: string,
  ) {
    super(`NBD server refused ${option}: ${reply}${serverMessage ? `: ${serverMessage}` : ""}`);
  }
}

/** The server answered a command with an error (the connection stays usable). */
export class NbdCommandError extends NbdError {
  override name = "NbdCommandError";
  constructor(
    readonly command: string,
    readonly errno: string,
    readonly serverMessage: string,
    /** Where the error happened (NBD_REPLY_TYPE_ERROR_OFFSET), when the server said. */
    readonly offset?: number,
  ) {
    super(
      `NBD ${command} failed: ${errno}${offset !== undefined ? ` at offset ${offset}` : ""}` +
        (serverMessage ? `: ${serverMessage}` : ""),
    );
  }
}

/** The connection is gone (closed by us, by the server, or after a protocol error). */
export class NbdClosedError extends NbdError {
  override name = "NbdClosedError";
  constructor(readonly reason: string) {
    super(`NBD connection closed (${reason})`);
  }
}

/** No answer within the time bound; the connection is closed (a late reply would desync it). */
export class NbdTimeoutError extends NbdError {
  override name = "NbdTimeoutError";
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`NBD ${what}: no answer within ${timeoutMs} ms`);
  }
}

/** The caller asked for something the export or the negotiated options do not allow. */
export class NbdUsageError extends NbdError {
  override name = "NbdUsageError";
}

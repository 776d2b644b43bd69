// Where an NBD connection comes from: a unix socket (local and direct channels) or TCP
// (remote). The client takes any NbdTransport, so TLS (NBD_OPT_STARTTLS, then a TLS socket
// over the same stream) can be added as one more transport without touching the protocol.
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { NbdClosedError, NbdTimeoutError } from "./errors.ts";

export interface NbdTransport {
  /** For error messages: the socket path or host:port. */
  readonly label: string;
  /** Opens a connected byte stream within timeoutMs. */
  open(timeoutMs: number): Promise<Duplex>;
}

function socketTransport(label: string, dial: () => ReturnType<typeof connect>): NbdTransport {
  return {
    label,
    open: (timeoutMs) =>
      new Promise((resolve, reject) => {
        const sock = dial();
        const timer = setTimeout(() => {
          sock.destroy();
          reject(new NbdTimeoutError(`connect to ${label}`, timeoutMs));
        }, timeoutMs);
        sock.once("connect", () => {
          clearTimeout(timer);
          sock.off("error", onError);
          sock.setNoDelay?.(true);
          resolve(sock);
        });
        const onError = (e: Error) => {
          clearTimeout(timer);
          sock.destroy();
          reject(new NbdClosedError(`cannot connect to ${label}: ${e.message}`));
        };
        sock.once("error", onError);
      }),
  };
}

export function unixTransport(path: string): NbdTransport {
  return socketTransport(path, () => connect({ path }));
}

export function tcpTransport(host: string, port: number): NbdTransport {
  return socketTransport(`${host}:${port}`, () => connect({ host, port }));
}

export interface NbdUri {
  transport: NbdTransport;
  exportName: string;
}

/**
 * The NBD URIs nestcloud hands out (doc/uri.md of the NBD project): `nbd://host[:port]/name`
 * and `nbd+unix:///name?socket=/path`. TLS schemes (nbds) are refused until TLS exists.
 */
export function parseNbdUri(uri: string): NbdUri {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new RangeError(`not an NBD URI: ${uri}`);
  }
  const exportName = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (u.protocol === "nbd+unix:") {
    const socket = u.searchParams.get("socket");
    if (!socket || u.host !== "") throw new RangeError(`nbd+unix URI needs ?socket= and no host: ${uri}`);
    return { transport: unixTransport(socket), exportName };
  }
  if (u.protocol === "nbd:") {
    if (!u.hostname) throw new RangeError(`nbd URI without a host: ${uri}`);
    const port = u.port ? Number(u.port) : 10809;
    return { transport: tcpTransport(u.hostname.replace(/^\[|\]$/g, ""), port), exportName };
  }
  throw new RangeError(`unsupported NBD URI scheme ${u.protocol} (nbd: and nbd+unix: only): ${uri}`);
}

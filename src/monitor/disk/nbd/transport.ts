// Where an NBD connection comes from: a unix socket (local and direct channels), TCP, or TCP
// with TLS (remote): NBD_OPT_STARTTLS first, then a TLS session over the same socket (Node's
// tls.connect({ socket })), both ends proving themselves with certificates of one CA.
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  connect as tlsConnect,
} from "node:tls";
import { NbdClosedError, NbdTimeoutError } from "./errors.ts";

export interface NbdTransport {
  /** For error messages: the socket path or host:port. */
  readonly label: string;
  /** Opens a connected byte stream within timeoutMs. */
  open(timeoutMs: number): Promise<Duplex>;
  /** Set for TLS: after NBD_OPT_STARTTLS, the TLS session over the opened stream. */
  upgrade?(raw: Duplex, timeoutMs: number): Promise<Duplex>;
}

export interface NbdTlsOptions {
  /** PEM: the CA that signs servers, our certificate and key (the server checks them). */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /**
   * Checks the verified server certificate names what we want to reach (e.g. the target's
   * QEMU): a reason to refuse, or null. Replaces the host-name check (QEMUs are reached by
   * address and named by their guest).
   */
  readonly verifyServer: (cert: PeerCertificate) => string | null;
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

/**
 * TCP with TLS (NBD_OPT_STARTTLS); a server that does not verify as `tls` says is refused.
 * The transport keeps its credentials parsed once (a SecureContext) and the server's latest
 * session ticket: each later connection (a round's view, a reconnection) resumes it, skipping
 * the certificate exchange and signatures; still a new connection with fresh keys, and the
 * server still sees (and checks) the client's certificate. A server that does not resume
 * makes a full handshake as before.
 */
export function tlsTransport(host: string, port: number, tls: NbdTlsOptions): NbdTransport {
  const label = `${host}:${port} (TLS)`;
  let context: SecureContext | null = null;
  let session: Buffer | undefined;
  return {
    ...socketTransport(label, () => connect({ host, port })),
    upgrade: (raw, timeoutMs) =>
      new Promise((resolve, reject) => {
        try {
          context ??= createSecureContext({
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
            minVersion: "TLSv1.2",
          });
        } catch (e) {
          reject(new NbdClosedError(`TLS with ${label}: unusable credentials: ${(e as Error).message}`));
          return;
        }
        const t = tlsConnect({
          socket: raw as Socket,
          secureContext: context,
          session,
          minVersion: "TLSv1.2",
          rejectUnauthorized: true,
          checkServerIdentity: (_host, cert) => {
            const why = tls.verifyServer(cert);
            return why === null ? undefined : new Error(why);
          },
        });
        t.on("session", (s: Buffer) => {
          session = s;
        });
        const timer = setTimeout(() => {
          t.destroy();
          reject(new NbdTimeoutError(`TLS handshake with ${label}`, timeoutMs));
        }, timeoutMs);
        t.once("secureConnect", () => {
          clearTimeout(timer);
          t.off("error", onError);
          resolve(t);
        });
        const onError = (e: Error) => {
          clearTimeout(timer);
          t.destroy();
          session = undefined; // a refused handshake: the next one starts afresh
          reject(new NbdClosedError(`TLS with ${label} failed: ${e.message}`));
        };
        t.once("error", onError);
      }),
  };
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

// Receives a guest's mirrored frames from its QEMU's filter-mirror (qemu/net-mirror.ts) over
// a unix socket or TCP, cuts them (framing.ts) and queues them for the IDS (queue.ts).
//
// It always reads. QEMU writes the mirror with qemu_chr_fe_write_all, which, once the socket's
// buffer is full, retries in QEMU's main loop holding the big lock: a peer that stops reading
// freezes the guest's network and then the whole QEMU. So nothing here ever pauses a socket:
// when the consumer is behind, the queue drops (counted); each connection holds at most one
// frame in the making. Several connections may be open at once (a migration's source and
// destination overlap), up to a bound; more are refused (closed) and counted.
//
// Remote channel: TLS over TCP. QEMU's chardev is the TLS client with the target's certificate;
// `authorize` decides from the verified certificate whether this is the target's QEMU (a
// stream from anyone else is refused before a byte of it is parsed).
import { lstatSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type PeerCertificate, type TLSSocket } from "node:tls";
import { type FramingCounts, MirrorFrameParser, MirrorStreamError } from "./framing.ts";
import type { FrameQueue } from "./queue.ts";

export interface MirrorTlsOptions {
  /** PEM: the CA that signs QEMUs, the monitor's certificate and key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** The verified client certificate: null to accept, else the reason to refuse. */
  readonly authorize: (cert: PeerCertificate) => string | null;
  /** Time a connection has to finish its TLS handshake (default 5 s). */
  readonly handshakeTimeoutMs?: number;
}

export type MirrorAddress =
  | { type: "unix"; path: string }
  | { type: "tcp"; host: string; port: number }
  | { type: "tls"; host: string; port: number; tls: MirrorTlsOptions };

export type ReceiverEvent =
  | { type: "connected"; conn: number; peer: string }
  | { type: "closed"; conn: number; frames: number }
  | { type: "stream-error"; conn: number; code: MirrorStreamError["code"]; length?: number; message: string }
  | { type: "refused"; peer: string; reason: string };

export interface MirrorReceiverOptions {
  queue: FrameQueue;
  /** Connections open at once at most (default 4). */
  maxConnections?: number;
  onEvent?: (e: ReceiverEvent) => void;
  /** Every frame as it is cut, with its arrival time (performance.now()), before queueing. */
  onFrame?: (frame: Buffer, at: number) => void;
}

export interface ReceiverCounts extends FramingCounts {
  connections: number;
  open: number;
  refused: number;
  streamErrors: number;
  /** Bytes read from all connections. */
  bytesRead: number;
}

export class MirrorReceiver {
  private server: Server | null = null;
  private unixPath: string | null = null;
  private readonly sockets = new Map<number, { sock: Socket; parser: MirrorFrameParser }>();
  private nextConn = 1;
  private readonly done: FramingCounts = {
    frames: 0,
    frameBytes: 0,
    runts: 0,
    oversized: 0,
    oversizedBytes: 0,
  };
  private readonly c = { connections: 0, refused: 0, streamErrors: 0, bytesRead: 0 };
  readonly maxConnections: number;

  constructor(private readonly opts: MirrorReceiverOptions) {
    this.maxConnections = opts.maxConnections ?? 4;
  }

  counts(): ReceiverCounts {
    const sum = { ...this.done };
    for (const { parser } of this.sockets.values()) {
      for (const k of Object.keys(sum) as Array<keyof FramingCounts>) sum[k] += parser.counts[k];
    }
    return { ...sum, ...this.c, open: this.sockets.size };
  }

  /**
   * Listens for QEMU's connections (the mirror's chardev as a client). A unix path that is a
   * stale socket is replaced; anything else there is an error. Returns the address (a TCP
   * port 0 becomes the port bound).
   */
  async listen(addr: MirrorAddress): Promise<MirrorAddress> {
    if (this.server) throw new Error("mirror receiver already listening");
    const server = addr.type === "tls" ? this.tlsServer(addr.tls) : createServer((sock) => this.attach(sock));
    if (addr.type === "unix") removeStaleSocket(addr.path);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (addr.type === "unix") server.listen(addr.path, resolve);
      else server.listen(addr.port, addr.host, resolve);
    });
    server.on("error", () => {});
    this.server = server;
    if (addr.type === "unix") {
      this.unixPath = addr.path;
      return addr;
    }
    const a = server.address();
    const port = typeof a === "object" && a ? a.port : addr.port;
    return addr.type === "tls" ? { ...addr, port } : { type: "tcp", host: addr.host, port };
  }

  /**
   * New TLS material for the listener (a rotated credential): connections from now on get it,
   * open ones keep theirs (no gap in the stream). A plain or unix listener: an error.
   */
  setCredentials(c: { ca: string; cert: string; key: string }): void {
    const s = this.server as (Server & { setSecureContext?: (o: object) => void }) | null;
    if (!s?.setSecureContext) throw new Error("the mirror receiver does not listen with TLS");
    s.setSecureContext({ ca: c.ca, cert: c.cert, key: c.key, minVersion: "TLSv1.2" });
  }

  /** A TLS listener: only verified peers that `authorize` accepts reach attach(). */
  private tlsServer(o: MirrorTlsOptions): Server {
    const server = createTlsServer(
      {
        ca: o.ca,
        cert: o.cert,
        key: o.key,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: "TLSv1.2",
        handshakeTimeout: o.handshakeTimeoutMs ?? 5000,
      },
      (sock: TLSSocket) => {
        const why = o.authorize(sock.getPeerCertificate());
        if (why !== null) {
          this.c.refused++;
          sock.destroy();
          this.opts.onEvent?.({
            type: "refused",
            peer: `${sock.remoteAddress}:${sock.remotePort}`,
            reason: why,
          });
          return;
        }
        this.attach(sock);
      },
    );
    server.on("tlsClientError", (e, sock) => {
      this.c.refused++;
      this.opts.onEvent?.({
        type: "refused",
        peer: `${sock.remoteAddress}:${sock.remotePort}`,
        reason: `TLS: ${e.message}`,
      });
    });
    return server;
  }

  /** Connects to a QEMU whose mirror chardev is the server. Resolves once connected. */
  connect(addr: MirrorAddress): Promise<void> {
    if (addr.type === "tls")
      return Promise.reject(new Error("TLS mirrors connect to the monitor, not the reverse"));
    return new Promise((resolve, reject) => {
      const sock =
        addr.type === "unix" ? createConnection(addr.path) : createConnection(addr.port, addr.host);
      sock.once("error", reject);
      sock.once("connect", () => {
        sock.off("error", reject);
        this.attach(sock);
        resolve();
      });
    });
  }

  private attach(sock: Socket): void {
    const peer =
      sock.remoteAddress !== undefined ? `${sock.remoteAddress}:${sock.remotePort}` : "unix socket";
    if (this.sockets.size >= this.maxConnections) {
      this.c.refused++;
      sock.destroy();
      this.opts.onEvent?.({ type: "refused", peer, reason: `over ${this.maxConnections} connections` });
      return;
    }
    const conn = this.nextConn++;
    this.c.connections++;
    const { queue, onFrame } = this.opts;
    const parser = new MirrorFrameParser((frame) => {
      onFrame?.(frame, performance.now());
      queue.push(frame);
    });
    this.sockets.set(conn, { sock, parser });
    this.opts.onEvent?.({ type: "connected", conn, peer });
    let failed = false;
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      this.c.streamErrors++;
      const err = e instanceof MirrorStreamError ? e : new MirrorStreamError("truncated", String(e));
      this.opts.onEvent?.({
        type: "stream-error",
        conn,
        code: err.code,
        length: err.length,
        message: err.message,
      });
      sock.destroy();
    };
    sock.on("data", (chunk: Buffer) => {
      if (failed) return;
      this.c.bytesRead += chunk.length;
      try {
        parser.push(chunk);
      } catch (e) {
        fail(e);
      }
    });
    sock.on("end", () => {
      try {
        parser.end();
      } catch (e) {
        fail(e);
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      this.sockets.delete(conn);
      for (const k of Object.keys(this.done) as Array<keyof FramingCounts>) this.done[k] += parser.counts[k];
      this.opts.onEvent?.({ type: "closed", conn, frames: parser.counts.frames });
    });
  }

  /** Stops listening and closes every connection; removes the unix socket. */
  async close(): Promise<void> {
    for (const { sock } of this.sockets.values()) sock.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.unixPath) removeStaleSocket(this.unixPath);
    this.unixPath = null;
  }
}

/** Removes a unix socket left at `path`; refuses to remove anything that is not a socket. */
function removeStaleSocket(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  unlinkSync(path);
}

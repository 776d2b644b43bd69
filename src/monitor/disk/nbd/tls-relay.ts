// The remote end of a disk monitor's NBD channel on the target's server: takes NBD clients over
// TCP, answers their NBD_OPT_STARTTLS itself, authenticates them by client certificate (one of
// our CA, naming the target: `authorize`), then relays the decrypted stream to the target
// QEMU's NBD server on its local unix socket, which sees an ordinary unix client.
//
// Why not QEMU's own TLS (tls-creds-x509 on nbd-server-start, which works and is tested): QEMU
// 7.2 writes each part of a reply (header, data) as its own TLS record on a socket with Nagle
// on, so every read whose reply has data waits for the client's delayed ACK: ~40-50 ms per
// request (measured on loopback), which makes an ext4 walk of sequential small reads 10-80x
// slower. Here both sockets have Nagle off and Node writes whole chunks.
//
// Bounded: one upstream connection per client, pipes with backpressure (a stalled reader
// stalls its own pipe, no buffering beyond the streams' high-water marks), a handshake
// deadline, at most `maxConnections`.
import { connect, createServer, type Server, type Socket } from "node:net";
import {
  createServer as createTlsServer,
  type PeerCertificate,
  type TLSSocket,
  type Server as TlsServer,
} from "node:tls";
import {
  NBD_OPT_STARTTLS,
  NBD_OPTS_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_MAGIC,
} from "./protocol.ts";

export interface NbdTlsRelayOptions {
  /** The target QEMU's NBD server (unix socket). */
  readonly upstream: string;
  /** PEM: the CA that signs clients, the relay's certificate and key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** The verified client certificate: null to admit, else the reason to refuse. */
  readonly authorize: (cert: PeerCertificate) => string | null;
  readonly handshakeTimeoutMs?: number;
  readonly maxConnections?: number;
  readonly onEvent?: (e: { type: "admitted" | "refused"; reason?: string }) => void;
}

const GREETING = 18;

export class NbdTlsRelay {
  readonly counts = { admitted: 0, refused: 0, open: 0 };
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  /** Never listens: handed each raw socket after STARTTLS (the documented 'connection' hand-over). */
  private readonly tls: TlsServer;
  private readonly pending = new WeakMap<Socket, { up: Socket; timer: NodeJS.Timeout }>();

  constructor(private readonly o: NbdTlsRelayOptions) {
    this.tls = createTlsServer(
      {
        ca: o.ca,
        cert: o.cert,
        key: o.key,
        minVersion: "TLSv1.3",
        requestCert: true,
        rejectUnauthorized: true,
      },
      (t: TLSSocket) => this.secured(t),
    );
    this.tls.on("tlsClientError", (e, t) => {
      const raw = (t as unknown as { _parent?: Socket })._parent;
      const p = raw ? this.pending.get(raw) : undefined;
      if (p) clearTimeout(p.timer);
      this.refuse(t as unknown as Socket, p?.up ?? null, `TLS: ${e.message}`);
    });
  }

  /**
   * Rotates the relay's own credential (the target QEMU's reissued certificate): STARTTLS
   * handshakes from now on present it; relayed connections keep theirs until they end.
   */
  setCredentials(c: { ca: string; cert: string; key: string }): void {
    this.tls.setSecureContext({ ca: c.ca, cert: c.cert, key: c.key, minVersion: "TLSv1.3" });
  }

  private secured(t: TLSSocket): void {
    const raw = (t as unknown as { _parent?: Socket })._parent;
    const p = raw ? this.pending.get(raw) : undefined;
    if (!p) {
      t.destroy();
      return;
    }
    clearTimeout(p.timer);
    const up = p.up;
    const why = this.o.authorize(t.getPeerCertificate());
    if (why !== null) {
      this.refuse(t as unknown as Socket, up, why);
      return;
    }
    this.counts.admitted++;
    this.counts.open++;
    this.o.onEvent?.({ type: "admitted" });
    t.pipe(up);
    up.pipe(t);
    const end = () => {
      t.destroy();
      up.destroy();
    };
    t.once("close", end);
    up.once("close", end);
    up.once("close", () => this.counts.open--);
  }

  async listen(host: string, port = 0): Promise<number> {
    const server = createServer({ noDelay: true }, (s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    return (server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private refuse(raw: Socket, up: Socket | null, reason: string): void {
    this.counts.refused++;
    this.o.onEvent?.({ type: "refused", reason });
    raw.destroy();
    up?.destroy();
  }

  private async accept(raw: Socket): Promise<void> {
    if (this.sockets.size >= (this.o.maxConnections ?? 16))
      return this.refuse(raw, null, "too many connections");
    this.sockets.add(raw);
    raw.once("close", () => this.sockets.delete(raw));
    raw.on("error", () => {});
    const timer = setTimeout(
      () => this.refuse(raw, up, "handshake timeout"),
      this.o.handshakeTimeoutMs ?? 5000,
    );
    let up: Socket | null = null;
    try {
      up = connect({ path: this.o.upstream });
      up.on("error", () => raw.destroy());
      const fromUp = exactReader(up);
      const fromClient = exactReader(raw);
      raw.write(await fromUp.read(GREETING));
      up.write(await fromClient.read(4)); // client flags
      const opt = await fromClient.read(16);
      const isStartTls =
        opt.readBigUInt64BE(0) === NBD_OPTS_MAGIC &&
        opt.readUInt32BE(8) === NBD_OPT_STARTTLS &&
        opt.readUInt32BE(12) === 0;
      const reply = Buffer.alloc(20);
      reply.writeBigUInt64BE(NBD_REP_MAGIC, 0);
      reply.writeUInt32BE(opt.readUInt32BE(8), 8);
      reply.writeUInt32BE(isStartTls ? NBD_REP_ACK : NBD_REP_ERR_TLS_REQD, 12);
      fromClient.detach();
      fromUp.detach();
      if (!isStartTls) {
        raw.end(reply);
        this.refuse(raw, up, "no NBD_OPT_STARTTLS");
        return;
      }
      raw.write(reply);
      this.pending.set(raw, { up, timer });
      this.tls.emit("connection", raw);
    } catch (e) {
      clearTimeout(timer);
      this.refuse(raw, up, `handshake: ${(e as Error).message}`);
    }
  }
}

/** Exact-length reads from a socket before it is handed on (no bytes consumed beyond them). */
function exactReader(s: Socket) {
  let buf = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  const pump = () => {
    if (want && buf.length >= want.n) {
      const w = want;
      want = null;
      const out = buf.subarray(0, w.n);
      buf = buf.subarray(w.n);
      w.resolve(out);
    }
  };
  const onData = (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length > 64) {
      want?.reject(new Error("unexpected bytes in the handshake"));
      s.destroy();
      return;
    }
    pump();
  };
  const onEnd = () => want?.reject(new Error("closed in the handshake"));
  s.on("data", onData);
  s.once("close", onEnd);
  return {
    read(n: number): Promise<Buffer> {
      return new Promise((resolve, reject) => {
        want = { n, resolve, reject };
        pump();
      });
    },
    /** Stops reading; anything read beyond the asked bytes is a protocol error. */
    detach(): void {
      s.off("data", onData);
      s.off("close", onEnd);
      s.pause();
      if (buf.length > 0) throw new Error(`${buf.length} unexpected bytes in the handshake`);
    },
  };
}

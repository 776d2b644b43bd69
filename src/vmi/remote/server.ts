// The page server: serves guest-physical memory of the guests it was given to authenticated
// clients, each allowed a list of guests. Besides batched reads it runs a few operations next to
// the memory so that one round trip replaces hundreds: byte search, chunk hashing, reads through
// a kernel address space (page walks done here), and list walks (memory/listwalk.ts).
// Everything is bounded: frame and batch sizes, reply bytes, list length, per-op deadline and
// search bytes, pending requests per connection, connections, handshake and idle time.
// Connections that have not authenticated yet are bounded apart from authenticated ones (in
// total and per source address, with a short handshake deadline): when those slots are full a
// newcomer evicts the oldest unauthenticated connection of its own source address, or of the
// source holding the most, so idle or slow peers cannot lock real clients out.
// Hosting: the server agent constructs one and either listen()s or hands it sockets (handle()).
//
// Two ways to authenticate, chosen by the listener: plain TCP with a shared token (HELLO, AUTH
// with an HMAC proof, WELCOME, then every frame MACed), or TLS with client certificates (the
// remote channel of security VMs): the verified certificate names the client and its guests
// (`tls.identify`), the client's first frame is AUTH without a proof, and no frame carries a MAC
// (TLS already authenticates, orders and encrypts every byte).

import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type PeerCertificate, type TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { deflateRaw, deflateRawSync } from "node:zlib";
import { KernelSpace } from "../address/kspace.ts";
import { MemoryError, RemoteError } from "../errors.ts";
import { checkHashRequest, hashChunksLocal } from "../memory/hash.ts";
import { checkWalkSpec, walkListLocal } from "../memory/listwalk.ts";
import { type PhysicalMemory, readPhys, readVirt } from "../memory/memory.ts";
import { checkFind, findBytesToScan, scanBytes } from "../memory/search.ts";
import { decodeSpace, decodeWalk, encodeNodes, errorHeader } from "./codec.ts";
import {
  decodeRanges,
  encodeFrame,
  FLAG_DEFLATE,
  type Frame,
  FrameMac,
  FrameReader,
  handshakeValues,
  KIND,
  MAX_HANDSHAKE_FRAME,
  PROTOCOL,
  proofMatches,
  tokenBytes,
  VERSION,
} from "./protocol.ts";

const deflateAsync = promisify(deflateRaw);

export interface PageServerLimits {
  /** Ranges per read request (MemProcFS/LeechCore use 4096). */
  readonly maxBatch: number;
  /** Bytes of data in one reply. */
  readonly maxReplyBytes: number;
  /** Bytes of one request frame. */
  readonly maxRequestBytes: number;
  readonly maxListNodes: number;
  readonly maxFindHits: number;
  /**
   * Bytes one search (find) may scan: at most this and at most the guest's memory once, so
   * overlapping regions cannot multiply the work. Its wall time is bounded by opTimeoutMs.
   */
  readonly maxFindBytes: number;
  /** Server-side budget of one operation (list walks and searches stop when it passes). */
  readonly opTimeoutMs: number;
  /** Time a new connection has to complete the handshake. */
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Authenticated connections. */
  readonly maxConnections: number;
  /** Connections still in the handshake, in total and per source address. */
  readonly maxUnauthenticated: number;
  readonly maxUnauthenticatedPerSource: number;
  /** Requests queued on one connection before it is dropped. */
  readonly maxPending: number;
  /** Replies at least this big are compressed when the client asked for compression. */
  readonly compressMinBytes: number;
}

export const DEFAULT_SERVER_LIMITS: PageServerLimits = {
  maxBatch: 4096,
  maxReplyBytes: 64 * 1024 * 1024,
  maxRequestBytes: 1024 * 1024,
  maxListNodes: 65536,
  maxFindHits: 4096,
  maxFindBytes: 64 * 1024 * 1024 * 1024,
  opTimeoutMs: 30_000,
  handshakeTimeoutMs: 2_000,
  idleTimeoutMs: 10 * 60_000,
  maxConnections: 64,
  maxUnauthenticated: 32,
  maxUnauthenticatedPerSource: 8,
  maxPending: 32,
  compressMinBytes: 16 * 1024,
};

export interface PageServerClient {
  /** Client name sent in the handshake (a security VM, a monitor). */
  readonly id: string;
  readonly token: Uint8Array | string;
  /** Guests this client may read. */
  readonly guests: readonly string[];
}

/** A TLS listener's material and how a verified client certificate maps to a client. */
export interface PageServerTls {
  /** PEM: the CA that signs clients, the server's certificate and key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** The client a verified certificate stands for (its guests), or null to refuse it. */
  readonly identify: (cert: PeerCertificate) => { id: string; guests: readonly string[] } | null;
}

export interface PageServerOptions {
  readonly clients: readonly PageServerClient[];
  /** listen() serves TLS with client certificates instead of token authentication. */
  readonly tls?: PageServerTls;
  readonly guests?: ReadonlyMap<string, PhysicalMemory>;
  readonly limits?: Partial<PageServerLimits>;
  readonly log?: (msg: string) => void;
}

export interface PageServerStats {
  connections: number;
  /** Unauthenticated connections closed to make room for a newcomer. */
  evicted: number;
  /** Authenticated clients refused because maxConnections were connected. */
  busy: number;
  authFailures: number;
  forbidden: number;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

interface ClientEntry {
  /** Absent for a client known by its TLS certificate. */
  readonly token?: Buffer;
  readonly guests: ReadonlySet<string>;
}

const CLIENT_ID = /^[A-Za-z0-9._:@-]{1,64}$/;

export class PageServer {
  readonly limits: PageServerLimits;
  readonly stats: PageServerStats = {
    connections: 0,
    evicted: 0,
    busy: 0,
    authFailures: 0,
    forbidden: 0,
    requests: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  private readonly clients = new Map<string, ClientEntry>();
  private readonly guests = new Map<string, PhysicalMemory>();
  private readonly sockets = new Set<Socket>();
  /** Connections in the handshake, oldest first (Map keeps insertion order). */
  private readonly unauthenticated = new Map<Socket, { source: string; evict: () => void }>();
  private readonly unauthBySource = new Map<string, number>();
  private authenticatedCount = 0;
  private server: Server | undefined;

  constructor(private readonly opts: PageServerOptions) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...opts.limits };
    for (const c of opts.clients) {
      if (!CLIENT_ID.test(c.id))
        throw new RemoteError("REMOTE_AUTH", `bad client id ${JSON.stringify(c.id)}`);
      this.clients.set(c.id, { token: tokenBytes(c.token), guests: new Set(c.guests) });
    }
    for (const [id, mem] of opts.guests ?? []) this.guests.set(id, mem);
  }

  /** Serves (or replaces) a guest's memory. */
  addGuest(id: string, mem: PhysicalMemory): void {
    this.guests.set(id, mem);
  }

  removeGuest(id: string): void {
    this.guests.delete(id);
  }

  /** Listens on TCP (default loopback, any free port). */
  listen(port = 0, host = "127.0.0.1"): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      // No listener-level cap: it would count connections in the handshake too (that is how
      // idle peers used to lock clients out); handle() bounds both kinds itself.
      const tls = this.opts.tls;
      const srv = tls
        ? createTlsServer(
            {
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
              requestCert: true,
              rejectUnauthorized: true,
              minVersion: "TLSv1.3",
              handshakeTimeout: this.limits.handshakeTimeoutMs,
              noDelay: true,
            },
            (s: TLSSocket) => this.handleTls(s, tls),
          )
        : createServer((s) => this.handle(s));
      if (tls)
        srv.on("tlsClientError", () => {
          this.stats.authFailures++;
        });
      srv.once("error", reject);
      srv.listen(port, host, () => {
        srv.off("error", reject);
        this.server = srv;
        const a = srv.address();
        resolve({ host, port: typeof a === "object" && a ? a.port : port });
      });
    });
  }

  /**
   * Rotates the server's own TLS credential (a reissued certificate and key, or a new CA):
   * handshakes from now on present it; open connections keep theirs until they close, so no
   * security VM loses its link. Throws when this server does not listen with TLS.
   */
  setCredentials(c: { ca: string; cert: string; key: string }): void {
    const srv = this.server as (Server & { setSecureContext?: (o: object) => void }) | undefined;
    if (!this.opts.tls || !srv?.setSecureContext) throw new Error("the page server does not listen with TLS");
    srv.setSecureContext({ ca: c.ca, cert: c.cert, key: c.key, minVersion: "TLSv1.3" });
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const srv = this.server;
    this.server = undefined;
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }

  /** Connections authenticated and connections still in the handshake, right now. */
  get connectionCounts(): { authenticated: number; unauthenticated: number } {
    return { authenticated: this.authenticatedCount, unauthenticated: this.unauthenticated.size };
  }

  /** A verified TLS client: refused unless its certificate names a client. */
  private handleTls(sock: TLSSocket, tls: PageServerTls): void {
    const who = tls.identify(sock.getPeerCertificate());
    if (!who || !CLIENT_ID.test(who.id)) {
      this.stats.authFailures++;
      this.opts.log?.("page server: TLS client certificate names no client");
      sock.destroy();
      return;
    }
    this.handle(sock, { id: who.id, entry: { guests: new Set(who.guests) } });
  }

  /**
   * Takes over one connection (for hosting inside another server). `peer`: already
   * authenticated by TLS (its certificate), so the token handshake is skipped.
   */
  handle(sock: Socket, peer?: { id: string; entry: ClientEntry }): void {
    if (sock.destroyed) return;
    const source = sock.remoteAddress ?? "unknown";
    this.makeRoom(source);
    this.stats.connections++;
    this.sockets.add(sock);
    sock.setNoDelay(true);
    const conn = new Connection(this, sock, this.limits, this.opts.log, peer);
    this.unauthenticated.set(sock, { source, evict: () => conn.evict() });
    this.unauthBySource.set(source, (this.unauthBySource.get(source) ?? 0) + 1);
    sock.once("close", () => {
      this.sockets.delete(sock);
      this.leaveHandshake(sock);
      if (conn.admitted) this.authenticatedCount--;
    });
    conn.start();
  }

  /** Evicts the oldest handshake of `source` (at its cap), or of the busiest source (all full). */
  private makeRoom(source: string): void {
    let victimSource: string | undefined;
    if ((this.unauthBySource.get(source) ?? 0) >= this.limits.maxUnauthenticatedPerSource) {
      victimSource = source;
    } else if (this.unauthenticated.size >= this.limits.maxUnauthenticated) {
      let most = 0;
      for (const [src, n] of this.unauthBySource) {
        if (n > most) [victimSource, most] = [src, n];
      }
    }
    if (victimSource === undefined) return;
    for (const [s, entry] of this.unauthenticated) {
      if (entry.source !== victimSource) continue;
      this.leaveHandshake(s);
      this.stats.evicted++;
      entry.evict();
      return;
    }
  }

  private leaveHandshake(sock: Socket): void {
    const entry = this.unauthenticated.get(sock);
    if (!entry) return;
    this.unauthenticated.delete(sock);
    const n = (this.unauthBySource.get(entry.source) ?? 1) - 1;
    if (n > 0) this.unauthBySource.set(entry.source, n);
    else this.unauthBySource.delete(entry.source);
  }

  /** @internal A connection proved its token: it leaves the handshake pool if a slot is free. */
  admit(sock: Socket): boolean {
    this.leaveHandshake(sock);
    if (this.authenticatedCount >= this.limits.maxConnections) {
      this.stats.busy++;
      return false;
    }
    this.authenticatedCount++;
    return true;
  }

  /** @internal */ client(id: string): ClientEntry | undefined {
    return this.clients.get(id);
  }

  /** @internal The memory of `guest` if `client` may read it; undefined otherwise. */
  memoryFor(client: ClientEntry, guest: unknown): PhysicalMemory | undefined {
    if (typeof guest !== "string" || !client.guests.has(guest)) return undefined;
    return this.guests.get(guest);
  }
}

class Connection {
  private readonly reader = new FrameReader(MAX_HANDSHAKE_FRAME);
  private outMac: FrameMac | undefined;
  private client: ClientEntry | undefined;
  private clientId = "";
  private compress = false;
  private readonly nonce = randomBytes(32);
  private queue: Promise<void> = Promise.resolve();
  private pending = 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  /** Counted among the server's authenticated connections. */
  admitted = false;

  constructor(
    private readonly server: PageServer,
    private readonly sock: Socket,
    private readonly limits: PageServerLimits,
    private readonly log?: (msg: string) => void,
    private readonly tlsPeer?: { id: string; entry: ClientEntry },
  ) {
    // A TLS peer is authenticated already: its first request may share a read with AUTH.
    if (tlsPeer) this.reader.maxFrame = limits.maxRequestBytes;
  }

  start(): void {
    this.armTimer(this.limits.handshakeTimeoutMs, "handshake timeout");
    this.sock.on("data", (d: Buffer) => this.onData(d));
    this.sock.on("error", () => this.close());
    this.sock.on("close", () => this.close());
    // TLS: the client speaks first (AUTH without a proof), saving the HELLO's round trip.
    if (!this.tlsPeer)
      this.send(KIND.HELLO, 0, { proto: PROTOCOL, version: VERSION, nonce: this.nonce.toString("base64") });
  }

  private armTimer(ms: number, why: string): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.log?.(`page server: closing connection (${why})`);
      this.close();
    }, ms);
    this.timer.unref();
  }

  /** Closed by the server to make room for a newer handshake. */
  evict(): void {
    this.log?.("page server: closing connection (handshake slot needed by a newer connection)");
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.sock.destroy();
  }

  private send(
    kind: number,
    id: number,
    header: Record<string, unknown>,
    body?: Uint8Array,
    flags = 0,
  ): void {
    if (this.closed) return;
    const f = encodeFrame(kind, id, header, body, flags, this.outMac);
    this.server.stats.bytesOut += f.length;
    this.sock.write(f);
  }

  private fail(id: number, e: unknown): void {
    const h = errorHeader(e);
    if (h.code === "REMOTE_SERVER") this.log?.(`page server: ${String(e)}`);
    this.send(KIND.ERROR, id, h);
  }

  private onData(d: Buffer): void {
    if (this.closed) return;
    this.server.stats.bytesIn += d.length;
    let frames: Frame[];
    try {
      frames = this.reader.push(d);
    } catch (e) {
      // Framing or MAC errors leave the stream unusable: tell the peer once, then hang up.
      this.fail(0, e);
      this.close();
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      if (!this.client) {
        this.onAuth(f);
        continue;
      }
      if (f.kind !== KIND.REQUEST) {
        this.fail(f.id, new RemoteError("REMOTE_PROTOCOL", `unexpected frame kind ${f.kind}`));
        this.close();
        return;
      }
      if (++this.pending > this.limits.maxPending) {
        this.fail(
          f.id,
          new RemoteError("REMOTE_LIMIT", `more than ${this.limits.maxPending} requests pending`),
        );
        this.close();
        return;
      }
      this.armTimer(this.limits.idleTimeoutMs, "idle");
      // One request at a time per connection: bounded memory, replies in request order.
      this.queue = this.queue.then(() => this.serve(f)).finally(() => this.pending--);
    }
  }

  private onAuth(f: Frame): void {
    const h = f.header;
    const tlsPeer = this.tlsPeer;
    const id = tlsPeer ? tlsPeer.id : typeof h.client === "string" ? h.client : "";
    const entry = tlsPeer ? tlsPeer.entry : this.server.client(id);
    let ok = false;
    let values: ReturnType<typeof handshakeValues> | undefined;
    if (tlsPeer) ok = f.kind === KIND.AUTH && h.version === VERSION;
    else if (f.kind === KIND.AUTH && h.version === VERSION && entry?.token && typeof h.nonce === "string") {
      const clientNonce = Buffer.from(h.nonce, "base64");
      if (clientNonce.length === 32) {
        values = handshakeValues(entry.token, id, this.nonce, clientNonce);
        ok = proofMatches(values.clientProof, h.proof);
      }
    }
    if (!ok || !entry || (!values && !tlsPeer)) {
      // Same answer for unknown client and wrong token: nothing to probe.
      this.server.stats.authFailures++;
      this.fail(0, new RemoteError("REMOTE_AUTH", "authentication failed"));
      this.close();
      return;
    }
    // A guest named in AUTH is opened now (its size goes with WELCOME): one round trip fewer.
    let guest: { id: string; size: number } | undefined;
    if (h.guest !== undefined) {
      const mem = this.server.memoryFor(entry, h.guest);
      if (!mem) {
        this.server.stats.forbidden++;
        this.log?.(`page server: client ${id} refused guest ${JSON.stringify(h.guest)}`);
        this.fail(
          0,
          new RemoteError(
            "REMOTE_FORBIDDEN",
            `guest ${JSON.stringify(h.guest)} is not served to this client`,
          ),
        );
        this.close();
        return;
      }
      guest = { id: h.guest as string, size: mem.size };
    }
    if (!this.server.admit(this.sock)) {
      this.fail(
        0,
        new RemoteError(
          "REMOTE_LIMIT",
          `server busy: ${this.limits.maxConnections} clients are connected; try again later`,
        ),
      );
      this.close();
      return;
    }
    this.admitted = true;
    this.client = entry;
    this.clientId = id;
    this.compress = h.compress === true;
    this.send(KIND.WELCOME, 0, {
      ...(values ? { proof: values.serverProof.toString("hex") } : {}),
      ...(guest ? { guest } : {}),
      limits: {
        maxBatch: this.limits.maxBatch,
        maxReplyBytes: this.limits.maxReplyBytes,
        maxRequestBytes: this.limits.maxRequestBytes,
        maxListNodes: this.limits.maxListNodes,
        maxFindHits: this.limits.maxFindHits,
      },
    });
    if (values) {
      this.outMac = new FrameMac(values.sessionKey, "S");
      this.reader.mac = new FrameMac(values.sessionKey, "C");
    }
    this.reader.maxFrame = this.limits.maxRequestBytes;
    this.armTimer(this.limits.idleTimeoutMs, "idle");
  }

  private async serve(f: Frame): Promise<void> {
    if (this.closed) return;
    this.server.stats.requests++;
    try {
      const client = this.client as ClientEntry;
      const mem = this.server.memoryFor(client, f.header.guest);
      if (!mem) {
        this.server.stats.forbidden++;
        this.log?.(`page server: client ${this.clientId} refused guest ${JSON.stringify(f.header.guest)}`);
        throw new RemoteError(
          "REMOTE_FORBIDDEN",
          `guest ${JSON.stringify(f.header.guest)} is not served to this client`,
        );
      }
      const t0 = performance.now();
      const { header, body } = await this.op(mem, f);
      // The op's own time, so a client can tell the server's work from the wire and TLS.
      await this.reply(f.id, { ...header, us: Math.round((performance.now() - t0) * 1000) }, body);
    } catch (e) {
      this.fail(f.id, e);
    }
  }

  private async reply(id: number, header: Record<string, unknown>, body?: Uint8Array): Promise<void> {
    if (!body || !this.compress || body.length < this.limits.compressMinBytes) {
      this.send(KIND.REPLY, id, header, body);
      return;
    }
    // Level 1: kernel memory compresses well even at the fastest level; big replies off-thread.
    const z =
      body.length > 1024 * 1024 ? await deflateAsync(body, { level: 1 }) : deflateRawSync(body, { level: 1 });
    if (z.length < body.length) this.send(KIND.REPLY, id, header, z, FLAG_DEFLATE);
    else this.send(KIND.REPLY, id, header, body);
  }

  private checkReply(bytes: number): void {
    if (bytes > this.limits.maxReplyBytes) {
      throw new RemoteError("REMOTE_LIMIT", `reply of ${bytes} bytes exceeds ${this.limits.maxReplyBytes}`);
    }
  }

  private async op(
    mem: PhysicalMemory,
    f: Frame,
  ): Promise<{ header: Record<string, unknown>; body?: Uint8Array }> {
    const h = f.header;
    const deadline = Date.now() + this.limits.opTimeoutMs;
    switch (h.op) {
      case "info":
        return { header: { size: mem.size } };
      case "read": {
        const ranges = decodeRanges(f.body, h.n, this.limits.maxBatch).map((r) => {
          if (r.addr > BigInt(Number.MAX_SAFE_INTEGER))
            throw new MemoryError("MEM_OUT_OF_RANGE", "address too large");
          return { addr: Number(r.addr), len: r.len };
        });
        this.checkReply(ranges.reduce((s, r) => s + r.len, 0));
        return { header: {}, body: Buffer.concat(await readPhys(mem, ranges)) };
      }
      case "vread": {
        const space = new KernelSpace(mem, decodeSpace(h.space));
        const ranges = decodeRanges(f.body, h.n, this.limits.maxBatch);
        this.checkReply(ranges.reduce((s, r) => s + r.len, 0));
        return { header: {}, body: Buffer.concat(await readVirt(space, ranges)) };
      }
      case "walk": {
        const space = new KernelSpace(mem, decodeSpace(h.space));
        const spec = decodeWalk(h.spec);
        if (spec.maxNodes > this.limits.maxListNodes) {
          throw new RemoteError("REMOTE_LIMIT", `maxNodes above the server's ${this.limits.maxListNodes}`);
        }
        this.checkReply(checkWalkSpec(spec) * spec.maxNodes);
        const nodes = await walkListLocal(space, spec, { deadline });
        return { header: { count: nodes.length }, body: encodeNodes(spec, nodes) };
      }
      case "find": {
        if (typeof h.needle !== "string") throw new RemoteError("REMOTE_PROTOCOL", "needle must be base64");
        const needle = Buffer.from(h.needle, "base64");
        const find = {
          maxHits: Math.min(Number(h.maxHits ?? 64), this.limits.maxFindHits),
          align: h.align === undefined ? undefined : Number(h.align),
          regions: Array.isArray(h.regions) ? (h.regions as { start: number; end: number }[]) : undefined,
        };
        checkFind(needle, find, mem.size);
        // Work bound: regions may overlap, so their sum (not the memory size) is what a search
        // costs; at most the guest's memory once, and opTimeoutMs of wall time.
        const maxBytes = Math.min(this.limits.maxFindBytes, mem.size);
        const bytes = findBytesToScan(find.regions, mem.size);
        if (bytes > maxBytes) {
          throw new RemoteError(
            "REMOTE_LIMIT",
            `find over ${bytes} bytes exceeds the server's limit of ${maxBytes} bytes per request (the guest's memory once)`,
          );
        }
        return { header: { hits: await scanBytes(mem, needle, find, { maxBytes, deadline }) } };
      }
      case "hash": {
        const range = { addr: Number(h.addr), len: Number(h.len) };
        const chunk = Number(h.chunk);
        checkHashRequest(range, chunk);
        return { header: {}, body: Buffer.concat(await hashChunksLocal(mem, range, chunk)) };
      }
      default:
        throw new RemoteError("REMOTE_PROTOCOL", `unknown op ${JSON.stringify(h.op)}`);
    }
  }
}

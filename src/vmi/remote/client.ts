// Client of the page server (server.ts). PageClient speaks the protocol (handshake, MACs,
// request ids, timeouts); RemoteMemory is a PhysicalMemory over it for one guest, in one of three
// styles the benchmark compares:
//   naive      one 4 KiB page per round trip, no cache (the originating research's baseline);
//   cached     the same plus a client LRU page cache;
//   optimized  cache + all missing pages of a call in one batch + compression + server-side
//              search, hashing, page walks and list walks (RemoteServerMemory).

import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import {
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  connect as tlsConnect,
} from "node:tls";
import { inflateRawSync } from "node:zlib";
import type { AddressSpaceSpec, KernelView, KernelViewProvider } from "../address/kspace.ts";
import { guardAsync, MemoryError, RemoteError, VmiError } from "../errors.ts";
import type { MemoryHasher } from "../memory/hash.ts";
import type { ListNode, ListWalkSpec } from "../memory/listwalk.ts";
import {
  checkPhysRange,
  type PhysAddr,
  type PhysicalMemory,
  type PhysRange,
  type VirtRange,
} from "../memory/memory.ts";
import type { FindOptions, MemorySearch } from "../memory/search.ts";
import { decodeNodes, encodeSpace, encodeWalk, errorFromHeader } from "./codec.ts";
import { PAGE, PageCache } from "./page-cache.ts";
import {
  encodeFrame,
  encodeRanges,
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

/** The remote channel: TLS with a client certificate instead of a token. */
export interface RemoteTlsOptions {
  /** PEM: the CA that signs page servers, our certificate and key. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** Checks the verified server certificate (e.g. its role): a reason to refuse, or null. */
  readonly verifyServer: (cert: PeerCertificate) => string | null;
  /**
   * TLS sessions to resume, by host:port (kept up to date here): a later connection skips the
   * certificate exchange and signatures. Still a new connection, with fresh keys.
   */
  readonly sessions?: Map<string, Buffer>;
  /**
   * The guest's memory size, when the caller knows it (a security VM knows its target's): then
   * AUTH goes out and connect resolves at once, so the first request travels with AUTH instead
   * of waiting a round trip for WELCOME. A WELCOME that disagrees, or an ERROR (forbidden),
   * fails the connection and everything sent on it.
   */
  readonly guestSize?: number;
}

/** One SecureContext per credential: parsing the PEMs again costs every connection time. */
const contexts = new WeakMap<RemoteTlsOptions, SecureContext>();
function secureContextFor(tls: RemoteTlsOptions): SecureContext {
  let c = contexts.get(tls);
  if (!c) {
    c = createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key, minVersion: "TLSv1.3" });
    contexts.set(tls, c);
  }
  return c;
}

export interface RemoteConnectOptions {
  readonly host: string;
  readonly port: number;
  /** Token authentication (plain TCP); ignored with `tls`. */
  readonly token?: Uint8Array | string;
  /** TLS with client certificates: the server's listener must be a TLS one. */
  readonly tls?: RemoteTlsOptions;
  /** Name this client is registered under at the server. */
  readonly clientId?: string;
  /** Ask the server to compress large replies (deflate). */
  readonly compress?: boolean;
  /**
   * Open this guest during the handshake: the server checks it and sends its size with WELCOME
   * (REMOTE_FORBIDDEN if this client may not read it), saving the `info` round trip.
   */
  readonly guest?: string;
  readonly connectTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
}

export interface ClientStats {
  roundTrips: number;
  bytesSent: number;
  bytesReceived: number;
  /** Time the server says its ops took (its `us` header): the rest of a round trip is transport. */
  serverUs: number;
}

interface Pending {
  resolve(f: Frame): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** Largest reply frame accepted whatever the server advertises. */
const CLIENT_MAX_FRAME = 256 * 1024 * 1024;

export class PageClient {
  readonly stats: ClientStats = { roundTrips: 0, bytesSent: 0, bytesReceived: 0, serverUs: 0 };
  limits = { maxBatch: 4096, maxReplyBytes: 64 * 1024 * 1024, maxListNodes: 65536 };
  /** The guest opened in the handshake and its size (servers that predate it send none). */
  opened: { readonly guest: string; readonly size: number } | undefined;
  private readonly reader = new FrameReader(MAX_HANDSHAKE_FRAME);
  private readonly pending = new Map<number, Pending>();
  private outMac: FrameMac | undefined;
  private nextId = 1;
  private closedWith: RemoteError | undefined;
  private onFrame: (f: Frame) => void = () => {};

  private constructor(
    private readonly sock: Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => {
      this.stats.bytesReceived += d.length;
      let frames: Frame[];
      try {
        frames = this.reader.push(d);
      } catch (e) {
        this.shutdown(e instanceof RemoteError ? e : new RemoteError("REMOTE_PROTOCOL", String(e)));
        return;
      }
      for (const f of frames) this.onFrame(f);
    });
    sock.on("error", (e) =>
      this.shutdown(new RemoteError("REMOTE_CLOSED", `connection error: ${e.message}`)),
    );
    sock.on("close", () => this.shutdown(new RemoteError("REMOTE_CLOSED", "connection closed")));
  }

  static async connect(opts: RemoteConnectOptions): Promise<PageClient> {
    const clientId = opts.clientId ?? "vmi-client";
    const ctMs = opts.connectTimeoutMs ?? 5000;
    if (opts.tls) return PageClient.connectTls(opts, opts.tls, ctMs);
    if (opts.token === undefined)
      throw new RemoteError("REMOTE_AUTH", "a token or TLS credentials are needed");
    const token = tokenBytes(opts.token);
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RemoteError("REMOTE_TIMEOUT", `connect to ${opts.host}:${opts.port} timed out`));
      }, ctMs);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(new RemoteError("REMOTE_CLOSED", `cannot connect to ${opts.host}:${opts.port}: ${e.message}`));
      });
    });
    const c = new PageClient(sock, opts.requestTimeoutMs ?? 30_000);
    try {
      await c.handshake(token, clientId, opts.compress ?? false, ctMs, opts.guest);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  private static async connectTls(
    opts: RemoteConnectOptions,
    tls: RemoteTlsOptions,
    ctMs: number,
  ): Promise<PageClient> {
    const where = `${opts.host}:${opts.port}`;
    let secureContext: SecureContext;
    try {
      secureContext = secureContextFor(tls);
    } catch (e) {
      throw new RemoteError("REMOTE_AUTH", `unusable TLS credentials: ${(e as Error).message}`);
    }
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({
        // Nagle off on the TCP socket under TLS (TLSSocket.setNoDelay would not reach it).
        socket: connect({ host: opts.host, port: opts.port, noDelay: true }),
        host: opts.host,
        secureContext,
        minVersion: "TLSv1.3",
        rejectUnauthorized: true,
        session: tls.sessions?.get(where),
        checkServerIdentity: (_host, cert) => {
          const why = tls.verifyServer(cert);
          return why === null ? undefined : new Error(why);
        },
      });
      if (tls.sessions) s.on("session", (sess: Buffer) => tls.sessions?.set(where, sess));
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RemoteError("REMOTE_TIMEOUT", `TLS connect to ${where} timed out`));
      }, ctMs);
      s.once("secureConnect", () => {
        clearTimeout(timer);
        s.off("error", onError);
        resolve(s);
      });
      const onError = (e: Error) => {
        clearTimeout(timer);
        s.destroy();
        reject(new RemoteError("REMOTE_AUTH", `TLS with ${where} failed: ${e.message}`));
      };
      s.once("error", onError);
    });
    const c = new PageClient(sock, opts.requestTimeoutMs ?? 30_000);
    if (opts.guest !== undefined && tls.guestSize !== undefined && validSize(tls.guestSize)) {
      c.pipelineTls(opts.compress ?? false, opts.guest, tls.guestSize);
      return c;
    }
    try {
      await c.handshakeTls(opts.compress ?? false, ctMs, opts.guest);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  /** TLS: the certificate authenticated us; AUTH only names the guest and options. */
  private async handshakeTls(compress: boolean, ms: number, guest: string | undefined): Promise<void> {
    const welcomeP = this.nextFrame(ms);
    this.write(
      encodeFrame(KIND.AUTH, 0, { version: VERSION, compress, ...(guest !== undefined ? { guest } : {}) }),
    );
    const w = await welcomeP;
    if (w.kind === KIND.ERROR) throw errorFromHeader(w.header);
    if (w.kind !== KIND.WELCOME) throw new RemoteError("REMOTE_PROTOCOL", "no WELCOME");
    this.welcome(w, guest);
  }

  /** AUTH now, WELCOME checked when it comes (see RemoteTlsOptions.guestSize). */
  private pipelineTls(compress: boolean, guest: string, size: number): void {
    this.opened = { guest, size };
    this.onFrame = (w) => {
      try {
        if (w.kind === KIND.ERROR) throw errorFromHeader(w.header);
        if (w.kind !== KIND.WELCOME) throw new RemoteError("REMOTE_PROTOCOL", "no WELCOME");
        this.welcome(w, guest);
        if (this.opened?.size !== size)
          throw new RemoteError("REMOTE_PROTOCOL", `guest size ${this.opened?.size}, expected ${size}`);
      } catch (e) {
        this.shutdown(e instanceof RemoteError ? e : new RemoteError("REMOTE_PROTOCOL", String(e)));
      }
    };
    this.write(encodeFrame(KIND.AUTH, 0, { version: VERSION, compress, guest }));
  }

  private welcome(w: Frame, guest: string | undefined): void {
    const lim = w.header.limits as Record<string, unknown> | undefined;
    const n = (x: unknown, d: number) => (Number.isSafeInteger(x) && (x as number) > 0 ? (x as number) : d);
    this.limits = {
      maxBatch: Math.min(n(lim?.maxBatch, 4096), 65536),
      maxReplyBytes: Math.min(n(lim?.maxReplyBytes, 64 << 20), CLIENT_MAX_FRAME - (1 << 20)),
      maxListNodes: n(lim?.maxListNodes, 65536),
    };
    const g = w.header.guest as { id?: unknown; size?: unknown } | undefined;
    if (guest !== undefined && g !== undefined) {
      if (g.id !== guest || !validSize(g.size))
        throw new RemoteError("REMOTE_PROTOCOL", "bad guest in WELCOME");
      this.opened = { guest, size: g.size };
    }
    this.reader.maxFrame = this.limits.maxReplyBytes + (1 << 20);
    this.onFrame = (f) => this.dispatch(f);
  }

  private nextFrame(ms: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      const timer = setTimeout(() => reject(new RemoteError("REMOTE_TIMEOUT", "handshake timed out")), ms);
      this.pending.set(0, { resolve, reject, timer });
      this.onFrame = (f) => {
        clearTimeout(timer);
        this.pending.delete(0);
        resolve(f);
      };
    });
  }

  private async handshake(
    token: Buffer,
    clientId: string,
    compress: boolean,
    ms: number,
    guest: string | undefined,
  ): Promise<void> {
    const hello = await this.nextFrame(ms);
    const h = hello.header;
    const serverNonce = typeof h.nonce === "string" ? Buffer.from(h.nonce, "base64") : Buffer.alloc(0);
    if (
      hello.kind !== KIND.HELLO ||
      h.proto !== PROTOCOL ||
      h.version !== VERSION ||
      serverNonce.length !== 32
    ) {
      throw new RemoteError("REMOTE_PROTOCOL", "not a nestcloud page server (bad HELLO)");
    }
    const clientNonce = randomBytes(32);
    const v = handshakeValues(token, clientId, serverNonce, clientNonce);
    const welcomeP = this.nextFrame(ms);
    this.write(
      encodeFrame(KIND.AUTH, 0, {
        version: VERSION,
        client: clientId,
        nonce: clientNonce.toString("base64"),
        proof: v.clientProof.toString("hex"),
        compress,
        ...(guest !== undefined ? { guest } : {}),
      }),
    );
    const w = await welcomeP;
    if (w.kind === KIND.ERROR) throw errorFromHeader(w.header);
    // The server proves it knows the token too: a fake server cannot feed us fake memory.
    if (w.kind !== KIND.WELCOME || !proofMatches(v.serverProof, w.header.proof)) {
      throw new RemoteError("REMOTE_AUTH", "the server could not prove it knows the token");
    }
    this.welcome(w, guest);
    this.outMac = new FrameMac(v.sessionKey, "C");
    this.reader.mac = new FrameMac(v.sessionKey, "S");
  }

  private dispatch(f: Frame): void {
    const p = this.pending.get(f.id);
    if (!p) return; // a reply after its request timed out
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    p.resolve(f);
  }

  private write(buf: Buffer): void {
    this.stats.bytesSent += buf.length;
    this.sock.write(buf);
  }

  /** One round trip. Rejects with the server's typed error, or REMOTE_TIMEOUT / REMOTE_CLOSED. */
  async request(
    header: Record<string, unknown>,
    body?: Uint8Array,
    maxBody = this.limits.maxReplyBytes,
  ): Promise<{ header: Record<string, unknown>; body: Buffer }> {
    if (this.closedWith) throw this.closedWith;
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffffffff) + 1;
    const frame = encodeFrame(KIND.REQUEST, id, header, body, 0, this.outMac);
    this.stats.roundTrips++;
    const reply = await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new RemoteError(
            "REMOTE_TIMEOUT",
            `${String(header.op)} request timed out after ${this.timeoutMs} ms`,
          ),
        );
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.write(frame);
    });
    const us = reply.header.us;
    if (Number.isSafeInteger(us) && (us as number) >= 0) this.stats.serverUs += us as number;
    if (reply.kind === KIND.ERROR) throw errorFromHeader(reply.header);
    if (reply.kind !== KIND.REPLY)
      throw new RemoteError("REMOTE_PROTOCOL", `unexpected frame kind ${reply.kind}`);
    let out = reply.body;
    if (reply.flags & FLAG_DEFLATE) {
      try {
        // Bounded: a hostile server cannot make us inflate a zip bomb.
        out = inflateRawSync(out, { maxOutputLength: Math.max(1, maxBody) });
      } catch (e) {
        throw new RemoteError("REMOTE_PROTOCOL", `bad compressed reply: ${(e as Error).message}`);
      }
    }
    return { header: reply.header, body: out };
  }

  private shutdown(e: RemoteError): void {
    if (this.closedWith) return;
    this.closedWith = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
    this.sock.destroy();
  }

  close(): void {
    this.shutdown(new RemoteError("REMOTE_CLOSED", "closed by client"));
  }
}

export interface RemoteMemoryOptions {
  readonly guest: string;
  /** Client page cache capacity in 4 KiB pages (0 = none). */
  readonly pageCache?: number;
  /** Fetch everything a read() call needs in one request (else one page per round trip). */
  readonly batch?: boolean;
}

/** Reads larger than this skip the page cache (BTF, kallsyms: read once). */
const CACHE_BYPASS = 256 * 1024;

function expectLen(body: Buffer, len: number): Buffer {
  if (body.length !== len)
    throw new RemoteError("REMOTE_PROTOCOL", `reply of ${body.length} bytes, expected ${len}`);
  return body;
}

/** One guest's physical memory at a page server. */
export class RemoteMemory implements PhysicalMemory {
  readonly cache: PageCache | undefined;
  readonly batch: boolean;

  protected constructor(
    readonly client: PageClient,
    readonly guest: string,
    readonly size: number,
    opts: RemoteMemoryOptions,
  ) {
    this.cache = (opts.pageCache ?? 0) > 0 ? new PageCache(opts.pageCache ?? 0) : undefined;
    this.batch = opts.batch ?? false;
  }

  /** Opens a guest at the server (fails with REMOTE_FORBIDDEN if this client may not read it). */
  static async open(client: PageClient, opts: RemoteMemoryOptions): Promise<RemoteMemory> {
    return new RemoteMemory(client, opts.guest, await guestSize(client, opts.guest), opts);
  }

  get stats(): ClientStats & { cacheHits: number; cacheMisses: number } {
    return { ...this.client.stats, cacheHits: this.cache?.hits ?? 0, cacheMisses: this.cache?.misses ?? 0 };
  }

  clearCache(): void {
    this.cache?.clear();
  }

  close(): void {
    this.client.close();
  }

  /** Raw batched read: as few requests as the server's limits allow. */
  protected async fetch(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    let i = 0;
    while (i < ranges.length) {
      let bytes = 0;
      let j = i;
      while (j < ranges.length && j - i < this.client.limits.maxBatch) {
        if (j > i && bytes + ranges[j].len > this.client.limits.maxReplyBytes) break;
        bytes += ranges[j++].len;
      }
      const group = ranges.slice(i, j);
      const { body } = await this.client.request(
        { op: "read", guest: this.guest, n: group.length },
        encodeRanges(group),
        bytes,
      );
      expectLen(body, bytes);
      let at = 0;
      for (const r of group) {
        out.push(new Uint8Array(body.buffer, body.byteOffset + at, r.len));
        at += r.len;
      }
      i = j;
    }
    return out;
  }

  private pageRange(page: number): PhysRange {
    return { addr: page, len: Math.min(PAGE, this.size - page) };
  }

  read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    return guardAsync(async () => {
      for (const r of ranges) checkPhysRange(r, this.size);
      if (!this.cache && this.batch) return this.fetch(ranges);
      // Page granularity: collect the pages each range needs.
      const big: number[] = [];
      const needed = new Set<number>();
      ranges.forEach((r, i) => {
        if (this.cache && this.batch && r.len > CACHE_BYPASS) {
          big.push(i);
          return;
        }
        for (let p = r.addr - (r.addr % PAGE); p < r.addr + r.len; p += PAGE) needed.add(p);
      });
      const pages = new Map<number, Uint8Array>();
      const missing: number[] = [];
      for (const p of needed) {
        const hit = this.cache?.get(p);
        if (hit) pages.set(p, hit);
        else missing.push(p);
      }
      const bigRanges = big.map((i) => ranges[i]);
      let bigData: Uint8Array[] = [];
      if (this.batch) {
        const got = await this.fetch([...missing.map((p) => this.pageRange(p)), ...bigRanges]);
        missing.forEach((p, k) => {
          pages.set(p, got[k]);
        });
        bigData = got.slice(missing.length);
      } else {
        // One page per round trip, in order: what a page-granular remote driver does.
        for (const p of missing) pages.set(p, (await this.fetch([this.pageRange(p)]))[0]);
      }
      for (const p of missing) this.cache?.set(p, pages.get(p) as Uint8Array);
      const out: Uint8Array[] = new Array(ranges.length);
      big.forEach((i, k) => {
        out[i] = bigData[k];
      });
      ranges.forEach((r, i) => {
        if (out[i]) return;
        const buf = new Uint8Array(r.len);
        for (let at = 0; at < r.len; ) {
          const a = r.addr + at;
          const p = a - (a % PAGE);
          const n = Math.min(r.len - at, p + PAGE - a);
          buf.set((pages.get(p) as Uint8Array).subarray(a - p, a - p + n), at);
          at += n;
        }
        out[i] = buf;
      });
      return out;
    });
  }
}

function validSize(size: unknown): size is number {
  return Number.isSafeInteger(size) && (size as number) > 0;
}

/** The guest's size: known from the handshake, else one `info` round trip. */
async function guestSize(client: PageClient, guest: string): Promise<number> {
  if (client.opened?.guest === guest) return client.opened.size;
  const { header } = await client.request({ op: "info", guest });
  if (!validSize(header.size)) throw new RemoteError("REMOTE_PROTOCOL", "bad guest size");
  return header.size;
}

/** RemoteMemory plus the operations the server runs next to the memory. */
export class RemoteServerMemory
  extends RemoteMemory
  implements MemorySearch, MemoryHasher, KernelViewProvider
{
  static override async open(client: PageClient, opts: RemoteMemoryOptions): Promise<RemoteServerMemory> {
    return new RemoteServerMemory(client, opts.guest, await guestSize(client, opts.guest), opts);
  }

  findBytes(needle: Uint8Array, opts: FindOptions = {}): Promise<PhysAddr[]> {
    return guardAsync(async () => {
      const { header } = await this.client.request({
        op: "find",
        guest: this.guest,
        needle: Buffer.from(needle).toString("base64"),
        maxHits: opts.maxHits ?? 64,
        ...(opts.align !== undefined ? { align: opts.align } : {}),
        ...(opts.regions ? { regions: opts.regions } : {}),
      });
      const hits = header.hits;
      if (!Array.isArray(hits) || !hits.every((h) => Number.isSafeInteger(h) && h >= 0 && h < this.size)) {
        throw new RemoteError("REMOTE_PROTOCOL", "bad find reply");
      }
      return hits as PhysAddr[];
    });
  }

  hashChunks(range: PhysRange, chunk: number): Promise<Uint8Array[]> {
    return guardAsync(async () => {
      const n = Math.ceil(range.len / chunk);
      const { body } = await this.client.request(
        { op: "hash", guest: this.guest, addr: range.addr, len: range.len, chunk },
        undefined,
        n * 32,
      );
      expectLen(body, n * 32);
      return Array.from({ length: n }, (_, i) => new Uint8Array(body.buffer, body.byteOffset + i * 32, 32));
    });
  }

  kernelView(space: AddressSpaceSpec): KernelView {
    const spaceJson = encodeSpace(space);
    const client = this.client;
    const guest = this.guest;
    return {
      read: (ranges: readonly VirtRange[]) =>
        guardAsync(async () => {
          const out: Uint8Array[] = [];
          for (let i = 0; i < ranges.length; i += client.limits.maxBatch) {
            const group = ranges.slice(i, i + client.limits.maxBatch);
            const bytes = group.reduce((s, r) => s + r.len, 0);
            if (bytes > client.limits.maxReplyBytes)
              throw new MemoryError("MEM_BAD_REQUEST", "virtual read too large");
            const { body } = await client.request(
              { op: "vread", guest, space: spaceJson, n: group.length },
              encodeRanges(group),
              bytes,
            );
            expectLen(body, bytes);
            let at = 0;
            for (const r of group) {
              out.push(new Uint8Array(body.buffer, body.byteOffset + at, r.len));
              at += r.len;
            }
          }
          return out;
        }),
      walkList: (asked: ListWalkSpec): Promise<ListNode[]> =>
        guardAsync(async () => {
          // Within the server's cap a longer list still ends as QUERY_TOO_MANY, from the server.
          const spec = { ...asked, maxNodes: Math.min(asked.maxNodes, client.limits.maxListNodes) };
          const { header, body } = await client.request({
            op: "walk",
            guest,
            space: spaceJson,
            spec: encodeWalk(spec),
          });
          return decodeNodes(spec, header.count, body);
        }),
    };
  }
}

export type RemoteMode = "naive" | "cached" | "optimized";

/** The three styles of remote access compared by bench:vmi. */
export const REMOTE_MODES: Record<
  RemoteMode,
  { pageCache: number; batch: boolean; compress: boolean; serverOps: boolean }
> = {
  naive: { pageCache: 0, batch: false, compress: false, serverOps: false },
  cached: { pageCache: 4096, batch: false, compress: false, serverOps: false },
  optimized: { pageCache: 4096, batch: true, compress: true, serverOps: true },
};

/** Connects and opens one guest; closing the memory closes the connection. */
export async function connectRemoteMemory(
  opts: RemoteConnectOptions & { readonly guest: string; readonly mode?: RemoteMode },
): Promise<RemoteMemory> {
  const m = REMOTE_MODES[opts.mode ?? "optimized"];
  const client = await PageClient.connect({
    ...opts,
    compress: opts.compress ?? m.compress,
    guest: opts.guest,
  });
  try {
    const o = { guest: opts.guest, pageCache: m.pageCache, batch: m.batch };
    return m.serverOps ? await RemoteServerMemory.open(client, o) : await RemoteMemory.open(client, o);
  } catch (e) {
    client.close();
    throw e instanceof VmiError ? e : new RemoteError("REMOTE_CLOSED", String(e));
  }
}

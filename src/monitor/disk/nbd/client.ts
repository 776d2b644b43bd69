// A read-only NBD client for monitoring disks from outside a guest: the handshake
// (handshake.ts), then NBD_CMD_READ (simple or structured replies: data, holes, errors),
// NBD_CMD_BLOCK_STATUS for the selected metadata contexts, and NBD_CMD_DISC.
//
// The server is hostile: it may run in a host VM the guest took over. Every reply is checked
// against the request it answers (handle, type, range, no overlap, complete before DONE),
// every length is bounded before anything is read, the number of chunks per reply and of
// extents per chunk is bounded, and buffering is bounded (reader.ts). A protocol violation
// closes the connection and rejects everything in flight with an NbdProtocolError naming it;
// an error the server reports for a command (NbdCommandError) leaves the connection usable.
import type { Duplex } from "node:stream";
import {
  decodeBlockStatus,
  decodeChunkHeaderRest,
  decodeDataOffset,
  decodeErrorChunk,
  decodeHole,
  decodeSimpleReplyRest,
  encodeOption,
  encodeRequest,
  MAX_ERROR_CHUNK_BYTES,
  SIMPLE_REPLY_REST_BYTES,
  STRUCTURED_REPLY_REST_BYTES,
} from "./codec.ts";
import {
  NbdClosedError,
  NbdCommandError,
  type NbdError,
  NbdOptionError,
  NbdProtocolError,
  NbdTimeoutError,
  NbdUsageError,
} from "./errors.ts";
import { appendExtent, type Extent } from "./extents.ts";
import { type ExportInfo, handshake } from "./handshake.ts";
import {
  chunkTypeName,
  errnoName,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_ESHUTDOWN,
  NBD_OPT_ABORT,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_FLAG_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./protocol.ts";
import { StreamReader } from "./reader.ts";
import type { NbdTransport } from "./transport.ts";

const MiB = 1024 * 1024;

export interface NbdLimits {
  /** One option reply's payload (strings are at most 4 KiB; info replies are tiny). */
  maxOptionReplyBytes: number;
  /** Replies to one option (NBD_REP_INFO, NBD_REP_META_CONTEXT) before its final one. */
  maxOptionReplies: number;
  /** One NBD_CMD_READ (the protocol's interoperable maximum is 32 MiB). */
  maxReadBytes: number;
  /** Extents in one block status chunk (QEMU sends at most 1 MiB of descriptors). */
  maxExtentsPerChunk: number;
  /** Chunks in one structured reply. */
  maxChunksPerReply: number;
  /** Requests in flight at once. */
  maxInFlight: number;
  /** Bytes read ahead from the socket while nobody needs them. */
  bufferHighWater: number;
}

export const DEFAULT_NBD_LIMITS: Readonly<NbdLimits> = {
  maxOptionReplyBytes: 64 * 1024,
  maxOptionReplies: 256,
  maxReadBytes: 32 * MiB,
  maxExtentsPerChunk: 131_072,
  maxChunksPerReply: 65_536,
  maxInFlight: 16,
  bufferHighWater: 1 * MiB,
};

export interface NbdConnectOptions {
  transport: NbdTransport;
  /** Default: the server's default export (""). */
  exportName?: string;
  /** Metadata contexts to select, e.g. "base:allocation", "qemu:dirty-bitmap:b1"; all must be granted. */
  metaContexts?: readonly string[];
  /** Negotiate structured replies (default true; metadata contexts need them). */
  structuredReplies?: boolean;
  limits?: Partial<NbdLimits>;
  /** Bound for connecting and the whole handshake. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Bound for each command. Default 30 s. A command that times out closes the connection. */
  commandTimeoutMs?: number;
}

export interface CommandOptions {
  timeoutMs?: number;
}

interface PendingBase {
  handle: bigint;
  command: string;
  offset: number;
  length: number;
  chunks: number;
  error: NbdCommandError | null;
  timer: NodeJS.Timeout;
  settled: Promise<unknown>;
  reject(e: Error): void;
}

interface PendingRead extends PendingBase {
  kind: "read";
  buf: Buffer;
  /** Covered [start, end) ranges relative to the request, sorted and disjoint. */
  covered: Array<[number, number]>;
  coveredBytes: number;
  resolve(b: Buffer): void;
}

interface PendingStatus extends PendingBase {
  kind: "status";
  reqOne: boolean;
  seen: Map<number, Extent[]>;
  resolve(m: Map<number, Extent[]>): void;
}

type Pending = PendingRead | PendingStatus;

/**
 * readPieces' defaults: 1 MiB requests, 8 in flight (against qemu-nbd on a unix socket, 64 MiB:
 * ~70 ms, where 4 MiB x 4 took ~110-220 ms and 256 KiB x 16 ~110-220 ms).
 */
const DEFAULT_PIECE_BYTES = 1 * MiB;
const DEFAULT_WINDOW = 8;

/** Largest block status length we ask for: u32, and aligned to any minimum block size. */
const MAX_STATUS_LENGTH = 0xffff_0000;

export class NbdClient {
  readonly info: ExportInfo;
  readonly closed: Promise<NbdError>;
  private readonly pending = new Map<bigint, Pending>();
  private readonly slotWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private readonly contextNames = new Map<number, string>();
  private nextHandle = 1n;
  private closeError: NbdError | null = null;
  private closing: Promise<void> | null = null;
  private resolveClosed!: (e: NbdError) => void;

  private constructor(
    private readonly sock: Duplex,
    private readonly reader: StreamReader,
    info: ExportInfo,
    private readonly limits: NbdLimits,
    private readonly commandTimeoutMs: number,
    private readonly label: string,
  ) {
    this.info = info;
    for (const [name, id] of info.contexts) this.contextNames.set(id, name);
    this.closed = new Promise((r) => (this.resolveClosed = r));
    void this.replyLoop();
  }

  /** Connects, negotiates and enters the transmission phase. */
  static async connect(opts: NbdConnectOptions): Promise<NbdClient> {
    const limits: NbdLimits = { ...DEFAULT_NBD_LIMITS, ...opts.limits };
    const timeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    const t0 = Date.now();
    const raw = await opts.transport.open(timeoutMs);
    // With TLS the socket and reader change after NBD_OPT_STARTTLS: `sock`/`reader` are current.
    let sock: Duplex = raw;
    let reader = new StreamReader(sock, limits.bufferHighWater);
    raw.on("error", () => {}); // surfaced through the reader
    const timer = setTimeout(
      () => {
        reader.fail(new NbdTimeoutError(`handshake with ${opts.transport.label}`, timeoutMs));
        sock.destroy();
        raw.destroy();
      },
      Math.max(1, timeoutMs - (Date.now() - t0)),
    );
    const upgrade = opts.transport.upgrade?.bind(opts.transport);
    try {
      const info = await handshake(
        { reader, write: (b) => sock.write(b) },
        {
          exportName: opts.exportName ?? "",
          metaContexts: opts.metaContexts ?? [],
          structuredReplies: opts.structuredReplies ?? true,
          maxOptionReplyBytes: limits.maxOptionReplyBytes,
          maxOptionReplies: limits.maxOptionReplies,
          startTls: upgrade
            ? async () => {
                reader.detach();
                sock = await upgrade(raw, Math.max(1, timeoutMs - (Date.now() - t0)));
                sock.on("error", () => {});
                reader = new StreamReader(sock, limits.bufferHighWater);
                return { reader, write: (b) => sock.write(b) };
              }
            : undefined,
        },
      );
      return new NbdClient(
        sock,
        reader,
        info,
        limits,
        opts.commandTimeoutMs ?? 30_000,
        `${opts.transport.label} export ${JSON.stringify(info.name)}`,
      );
    } catch (e) {
      // A refused option ends with a soft disconnect (NBD_OPT_ABORT); anything else, hard.
      if (e instanceof NbdOptionError && !sock.destroyed) sock.end(encodeOption(NBD_OPT_ABORT));
      sock.destroy();
      raw.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  get size(): number {
    return this.info.size;
  }

  get isClosed(): boolean {
    return this.closeError !== null;
  }

  /** The most bytes the client ever held unread from the socket. */
  get maxQueuedBytes(): number {
    return this.reader.maxQueued;
  }

  /** Largest single read: the client's bound and the server's advertised maximum payload. */
  get maxReadBytes(): number {
    return Math.min(this.limits.maxReadBytes, this.info.blockSize?.maximum ?? 32 * MiB);
  }

  /** Reads `length` bytes at `offset` (one request; at most maxReadBytes). */
  async read(offset: number, length: number, opts: CommandOptions = {}): Promise<Buffer> {
    this.checkRange("read", offset, length);
    if (length > this.maxReadBytes)
      throw new NbdUsageError(`read of ${length} bytes exceeds the maximum of ${this.maxReadBytes}`);
    return this.submit<Buffer>("read", NBD_CMD_READ, 0, offset, length, opts.timeoutMs, (base, resolve) => ({
      ...base,
      kind: "read",
      // Every byte is written (data or hole) before the read succeeds: no need to zero it.
      buf: Buffer.allocUnsafe(length),
      covered: [],
      coveredBytes: 0,
      resolve,
    }));
  }

  /**
   * Reads a range of any size as consecutive pieces of at most `pieceBytes` (default 1 MiB),
   * keeping up to `window` requests in flight (default 8), yielded in order (memory: about
   * window x pieceBytes).
   */
  async *readPieces(
    offset: number,
    length: number,
    opts: { pieceBytes?: number; window?: number } = {},
  ): AsyncGenerator<{ offset: number; data: Buffer }> {
    this.checkRange("read", offset, length);
    const align = this.info.blockSize?.minimum ?? 1;
    let piece = Math.min(opts.pieceBytes ?? DEFAULT_PIECE_BYTES, this.maxReadBytes);
    piece -= piece % align;
    if (piece <= 0) throw new NbdUsageError(`piece size below the minimum block size ${align}`);
    const window = Math.max(1, Math.min(opts.window ?? DEFAULT_WINDOW, this.limits.maxInFlight));
    const end = offset + length;
    const queue: Array<{ offset: number; p: Promise<Buffer> }> = [];
    let next = offset;
    const fill = () => {
      while (queue.length < window && next < end) {
        const n = Math.min(piece, end - next);
        const p = this.read(next, n);
        p.catch(() => {}); // awaited in order below
        queue.push({ offset: next, p });
        next += n;
      }
    };
    fill();
    while (queue.length > 0) {
      const head = queue.shift()!;
      const data = await head.p;
      fill();
      yield { offset: head.offset, data };
    }
  }

  /** Reads a whole range into one buffer (through readPieces). */
  async readRange(offset: number, length: number, opts: { pieceBytes?: number; window?: number } = {}) {
    const out = Buffer.alloc(length);
    for await (const { offset: at, data } of this.readPieces(offset, length, opts))
      data.copy(out, at - offset);
    return out;
  }

  /**
   * One NBD_CMD_BLOCK_STATUS: per selected context, extents from `offset` on (they may cover
   * less than `length`; never more: a final extent reaching past the request is clipped).
   */
  async blockStatus(
    offset: number,
    length: number,
    opts: CommandOptions & { reqOne?: boolean } = {},
  ): Promise<Map<string, Extent[]>> {
    if (this.info.contexts.size === 0)
      throw new NbdUsageError("block status needs metadata contexts (metaContexts when connecting)");
    this.checkRange("block status", offset, length);
    if (length > 0xffff_ffff) throw new NbdUsageError(`block status length ${length} exceeds 32 bits`);
    const byId = await this.submit<Map<number, Extent[]>>(
      "block status",
      NBD_CMD_BLOCK_STATUS,
      opts.reqOne ? NBD_CMD_FLAG_REQ_ONE : 0,
      offset,
      length,
      opts.timeoutMs,
      (base, resolve) => ({ ...base, kind: "status", reqOne: !!opts.reqOne, seen: new Map(), resolve }),
    );
    const out = new Map<string, Extent[]>();
    for (const [id, ex] of byId) out.set(this.contextNames.get(id)!, ex);
    return out;
  }

  /**
   * The map of one context over a range (default: the whole export), asking again from where
   * each answer stopped; neighbours with equal flags merged. At most `maxExtents` extents.
   */
  async extents(
    context: string,
    offset = 0,
    length = this.size - offset,
    opts: { maxExtents?: number } = {},
  ): Promise<Extent[]> {
    if (!this.info.contexts.has(context))
      throw new NbdUsageError(`metadata context ${context} was not selected when connecting`);
    this.checkRange("block status", offset, length);
    const max = opts.maxExtents ?? 1 << 20;
    const end = offset + length;
    const out: Extent[] = [];
    let at = offset;
    while (at < end) {
      const got = (await this.blockStatus(at, Math.min(end - at, MAX_STATUS_LENGTH))).get(context)!;
      for (const e of got) appendExtent(out, e);
      if (out.length > max)
        throw new NbdProtocolError(
          "too-many",
          `${context} needs more than ${max} extents for ${offset}+${length}`,
        );
      const last = got[got.length - 1];
      at = last.offset + last.length;
    }
    return out;
  }

  /** Soft disconnect: waits for requests in flight, sends NBD_CMD_DISC, closes. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      await Promise.allSettled([...this.pending.values()].map((p) => p.settled));
      if (!this.closeError) {
        this.sock.end(
          encodeRequest({ flags: 0, type: NBD_CMD_DISC, handle: this.nextHandle++, offset: 0, length: 0 }),
        );
        // The server closes after NBD_CMD_DISC; give it a moment, then close anyway.
        let t: NodeJS.Timeout | undefined;
        await Promise.race([this.closed, new Promise((r) => (t = setTimeout(r, 2000)))]);
        clearTimeout(t);
      }
      this.shutdown(new NbdClosedError("closed by the client"));
    })();
    return this.closing;
  }

  // ---- requests ----------------------------------------------------------------------------

  private checkRange(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1)
      throw new NbdUsageError(
        `${what}: offset and length must be integers, length >= 1 (${offset}+${length})`,
      );
    if (offset + length > this.size)
      throw new NbdUsageError(`${what} of ${offset}+${length} is beyond the export's ${this.size} bytes`);
    const align = this.info.blockSize?.minimum ?? 1;
    if (offset % align !== 0 || (length % align !== 0 && offset + length !== this.size))
      throw new NbdUsageError(
        `${what} of ${offset}+${length} is not aligned to the minimum block size ${align}`,
      );
  }

  private checkOpen(): void {
    if (this.closeError) throw new NbdClosedError(this.closeError.message);
    if (this.closing) throw new NbdClosedError("the client is closing");
  }

  private async slot(): Promise<void> {
    while (this.pending.size >= this.limits.maxInFlight) {
      if (this.closeError || this.closing) throw this.closeError ?? new NbdClosedError("closing");
      await new Promise<void>((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
    }
  }

  private async submit<T>(
    command: string,
    type: number,
    flags: number,
    offset: number,
    length: number,
    timeoutMs: number | undefined,
    make: (base: PendingBase, resolve: (v: T) => void) => Pending,
  ): Promise<T> {
    this.checkOpen();
    await this.slot();
    this.checkOpen();
    const handle = this.nextHandle++;
    const ms = timeoutMs ?? this.commandTimeoutMs;
    let resolveFn!: (v: T) => void;
    let rejectFn!: (e: Error) => void;
    const settled = new Promise<T>((res, rej) => {
      resolveFn = res;
      rejectFn = rej;
    });
    const timer = setTimeout(
      () => this.fail(new NbdTimeoutError(`${command} of ${offset}+${length} from ${this.label}`, ms)),
      ms,
    );
    const base: PendingBase = {
      handle,
      command,
      offset,
      length,
      chunks: 0,
      error: null,
      timer,
      settled: settled.catch(() => {}),
      reject: rejectFn,
    };
    this.pending.set(handle, make(base, resolveFn));
    this.sock.write(encodeRequest({ flags, type, handle, offset, length }));
    return settled;
  }

  private finish(p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(p.handle);
    this.slotWaiters.shift()?.resolve();
  }

  // ---- replies -----------------------------------------------------------------------------

  private async replyLoop(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.reader.read(4, "a reply's magic", { boundary: true })).readUInt32BE(0);
        if (magic === NBD_SIMPLE_REPLY_MAGIC) await this.onSimpleReply();
        else if (magic === NBD_STRUCTURED_REPLY_MAGIC) await this.onChunk();
        else throw new NbdProtocolError("bad-magic", `reply magic 0x${magic.toString(16).padStart(8, "0")}`);
      }
    } catch (e) {
      this.fail(e as NbdError);
    }
  }

  private lookup(handle: bigint, what: string): Pending {
    const p = this.pending.get(handle);
    if (!p)
      throw new NbdProtocolError("unknown-handle", `${what} for handle ${handle}, which is not in flight`);
    return p;
  }

  private async onSimpleReply(): Promise<void> {
    const { error, handle } = decodeSimpleReplyRest(
      await this.reader.read(SIMPLE_REPLY_REST_BYTES, "a simple reply header"),
    );
    const p = this.lookup(handle, "a simple reply");
    if (p.kind === "read" && this.info.structuredReplies)
      throw new NbdProtocolError(
        "unexpected-reply",
        "a simple reply to NBD_CMD_READ after structured replies",
      );
    if (error !== 0) {
      this.finish(p);
      this.commandFailed(p, new NbdCommandError(p.command, errnoName(error), ""));
      return;
    }
    if (p.kind === "status")
      throw new NbdProtocolError("unexpected-reply", "a successful simple reply to NBD_CMD_BLOCK_STATUS");
    // Without structured replies the data follows, exactly the length asked for (bounded).
    await this.reader.readInto(p.buf, 0, p.length, "read data");
    this.finish(p);
    p.resolve(p.buf);
  }

  private async onChunk(): Promise<void> {
    const h = decodeChunkHeaderRest(await this.reader.read(STRUCTURED_REPLY_REST_BYTES, "a chunk header"));
    if (!this.info.structuredReplies)
      throw new NbdProtocolError("unexpected-reply", "a structured reply chunk, never negotiated");
    const p = this.lookup(h.handle, chunkTypeName(h.type));
    if (++p.chunks > this.limits.maxChunksPerReply)
      throw new NbdProtocolError(
        "too-many",
        `more than ${this.limits.maxChunksPerReply} chunks in one reply`,
      );
    const type = chunkTypeName(h.type);
    const payload = async (n: number) => this.reader.read(n, `a ${type} payload`);

    if (h.type & NBD_REPLY_TYPE_FLAG_ERROR) {
      // Any error type (known or not) marks the reply failed; its message must fit.
      if (h.length < 6) throw new NbdProtocolError("bad-length", `${type} of ${h.length} bytes`);
      if (h.length > MAX_ERROR_CHUNK_BYTES)
        throw new NbdProtocolError(
          "too-large",
          `${type} of ${h.length} bytes (at most ${MAX_ERROR_CHUNK_BYTES})`,
        );
      const e = decodeErrorChunk(h.type, await payload(h.length));
      if (e.offset !== undefined && (e.offset < p.offset || e.offset >= p.offset + p.length))
        throw new NbdProtocolError(
          "out-of-range",
          `error offset ${e.offset} outside ${p.offset}+${p.length}`,
        );
      p.error ??= new NbdCommandError(p.command, errnoName(e.errno), e.message, e.offset);
    } else if (h.type === NBD_REPLY_TYPE_NONE) {
      if (h.length !== 0) throw new NbdProtocolError("bad-length", `${type} with ${h.length} bytes`);
      if (!(h.flags & NBD_REPLY_FLAG_DONE))
        throw new NbdProtocolError("unexpected-reply", `${type} without NBD_REPLY_FLAG_DONE`);
    } else if (h.type === NBD_REPLY_TYPE_OFFSET_DATA || h.type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      if (p.kind !== "read")
        throw new NbdProtocolError("unexpected-reply", `${type} in reply to ${p.command}`);
      if (h.type === NBD_REPLY_TYPE_OFFSET_DATA) {
        if (h.length < 9)
          throw new NbdProtocolError("bad-length", `${type} of ${h.length} bytes (at least 9)`);
        if (h.length - 8 > p.length)
          throw new NbdProtocolError(
            "out-of-range",
            `${h.length - 8} bytes of data for a read of ${p.length}`,
          );
        const at = decodeDataOffset(await payload(8));
        const n = h.length - 8;
        this.cover(p, at, n, type);
        await this.reader.readInto(p.buf, at - p.offset, n, `a ${type} payload`);
      } else {
        if (h.length !== 12)
          throw new NbdProtocolError("bad-length", `${type} of ${h.length} bytes (must be 12)`);
        const hole = decodeHole(await payload(12));
        this.cover(p, hole.offset, hole.length, type);
        p.buf.fill(0, hole.offset - p.offset, hole.offset - p.offset + hole.length);
      }
    } else if (h.type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      if (p.kind !== "status")
        throw new NbdProtocolError("unexpected-reply", `${type} in reply to ${p.command}`);
      if (h.length < 12 || (h.length - 4) % 8 !== 0)
        throw new NbdProtocolError("bad-length", `${type} of ${h.length} bytes (4 + a multiple of 8)`);
      if ((h.length - 4) / 8 > this.limits.maxExtentsPerChunk)
        throw new NbdProtocolError(
          "too-large",
          `${type} with ${(h.length - 4) / 8} extents (at most ${this.limits.maxExtentsPerChunk})`,
        );
      this.onStatus(p, decodeBlockStatus(await payload(h.length)));
    } else {
      throw new NbdProtocolError("unexpected-reply", `${type} in reply to ${p.command}`);
    }

    if (h.flags & NBD_REPLY_FLAG_DONE) this.complete(p);
  }

  /** Marks [at, at+n) of a read covered: inside the request and overlapping nothing before. */
  private cover(p: PendingRead, at: number, n: number, type: string): void {
    const start = at - p.offset;
    const end = start + n;
    if (at < p.offset || end > p.length)
      throw new NbdProtocolError(
        "out-of-range",
        `${type} ${at}+${n} outside the read ${p.offset}+${p.length}`,
      );
    const c = p.covered;
    // First range ending after `start`: it must begin at or after `end`.
    let lo = 0;
    let hi = c.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (c[mid][1] <= start) lo = mid + 1;
      else hi = mid;
    }
    if (lo < c.length && c[lo][0] < end)
      throw new NbdProtocolError("out-of-range", `${type} ${at}+${n} overlaps data already received`);
    // Insert, merging with touching neighbours so the list stays short.
    const touchesPrev = lo > 0 && c[lo - 1][1] === start;
    const touchesNext = lo < c.length && c[lo][0] === end;
    if (touchesPrev && touchesNext) {
      c[lo - 1][1] = c[lo][1];
      c.splice(lo, 1);
    } else if (touchesPrev) c[lo - 1][1] = end;
    else if (touchesNext) c[lo][0] = start;
    else c.splice(lo, 0, [start, end]);
    p.coveredBytes += n;
  }

  private onStatus(
    p: PendingStatus,
    s: { contextId: number; descriptors: { length: number; flags: number }[] },
  ) {
    if (!this.contextNames.has(s.contextId))
      throw new NbdProtocolError(
        "unexpected-reply",
        `block status for context id ${s.contextId}, never selected`,
      );
    if (p.seen.has(s.contextId))
      throw new NbdProtocolError("unexpected-reply", `two block status chunks for context id ${s.contextId}`);
    const d = s.descriptors;
    if (p.reqOne && (d.length !== 1 || d[0].length > p.length))
      throw new NbdProtocolError("out-of-range", `NBD_CMD_FLAG_REQ_ONE answered with ${d.length} extents`);
    const end = p.offset + p.length;
    const extents: Extent[] = [];
    let at = p.offset;
    for (let i = 0; i < d.length; i++) {
      // All but the last extent must end inside the request; the last may reach past it.
      if (at >= end)
        throw new NbdProtocolError("out-of-range", `block status extents reach past ${p.offset}+${p.length}`);
      extents.push({ offset: at, length: Math.min(d[i].length, end - at), flags: d[i].flags });
      at += d[i].length;
    }
    p.seen.set(s.contextId, extents);
  }

  /** The final chunk: checks the reply is whole (it stays in flight until then), settles it. */
  private complete(p: Pending): void {
    if (!p.error && p.kind === "read" && p.coveredBytes !== p.length)
      throw new NbdProtocolError(
        "unexpected-reply",
        `read of ${p.offset}+${p.length} done after only ${p.coveredBytes} bytes of data and holes`,
      );
    if (!p.error && p.kind === "status" && p.seen.size !== this.contextNames.size)
      throw new NbdProtocolError(
        "unexpected-reply",
        `block status done with ${p.seen.size} of ${this.contextNames.size} contexts`,
      );
    this.finish(p);
    if (p.error) this.commandFailed(p, p.error);
    else if (p.kind === "read") p.resolve(p.buf);
    else p.resolve(p.seen);
  }

  private commandFailed(p: Pending, e: NbdCommandError): void {
    p.reject(e);
    // The server is shutting down: it wants a soft disconnect.
    if (e.errno === errnoName(NBD_ESHUTDOWN)) void this.close();
  }

  // ---- shutdown ----------------------------------------------------------------------------

  /** A violation, a timeout or the connection's end: everything in flight fails with `err`. */
  private fail(err: NbdError): void {
    if (this.closeError) return;
    const reason =
      this.closing && err instanceof NbdClosedError ? new NbdClosedError("closed by the client") : err;
    this.shutdown(reason);
  }

  private shutdown(err: NbdError): void {
    if (this.closeError) return;
    this.closeError = err;
    this.reader.fail(err);
    this.sock.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const w of this.slotWaiters.splice(0)) w.reject(err);
    this.resolveClosed(err);
  }
}

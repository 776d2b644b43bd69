// Reads exact byte counts from a stream with bounded buffering. ByteQueue is pure (chunks in,
// exact slices out); StreamReader binds it to a stream: it pauses the stream while more than
// `highWater` bytes wait and nobody needs them, so a server that floods the connection
// cannot make the client buffer without bound. The consumer asks for one length at a time,
// and every length it asks for was checked against the client's bounds first.
import type { Duplex } from "node:stream";
import { NbdClosedError, type NbdError, NbdProtocolError } from "./errors.ts";

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.size += b.length;
  }

  /** Exactly n bytes (a copy when they span chunks), or null while fewer are queued. */
  take(n: number): Buffer | null {
    if (n > this.size) return null;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  /** Moves up to n queued bytes into target at `at`; returns how many. */
  takeInto(target: Buffer, at: number, n: number): number {
    let done = 0;
    while (done < n && this.size > 0) {
      const c = this.chunks[0];
      const k = Math.min(n - done, c.length - this.head);
      c.copy(target, at + done, this.head, this.head + k);
      done += k;
      this.advance(k);
    }
    return done;
  }

  private advance(n: number): void {
    this.head += n;
    this.size -= n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0].length) {
      this.head -= this.chunks[0].length;
      this.chunks.shift();
    }
  }
}

interface Waiter {
  n: number;
  what: string;
  boundary: boolean;
  /** readInto: where the bytes go as they arrive (no intermediate buffer), and how many are left. */
  into?: { target: Buffer; at: number; remaining: number };
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export interface ReadOptions {
  /** At a message boundary: the stream ending here with nothing queued is a clean close. */
  boundary?: boolean;
}

export class StreamReader {
  private readonly q = new ByteQueue();
  private waiter: Waiter | null = null;
  private ended: NbdError | null = null;
  private paused = false;
  /** The most bytes ever queued at once (tests check that flooding stays bounded). */
  maxQueued = 0;

  private readonly listeners = {
    data: (b: Buffer) => this.onData(b),
    end: () => this.onEnd(null),
    close: () => this.onEnd(null),
    error: (e: Error) => this.onEnd(e),
  };

  constructor(
    private readonly src: Duplex,
    private readonly highWater: number,
  ) {
    for (const [ev, f] of Object.entries(this.listeners)) src.on(ev, f);
  }

  /**
   * Lets go of the stream (NBD_OPT_STARTTLS: TLS takes the socket over). Nothing may be
   * queued: after the server's ACK the next bytes are TLS, so leftovers mean a broken server.
   */
  detach(): void {
    for (const [ev, f] of Object.entries(this.listeners)) this.src.off(ev, f);
    if (this.paused) this.src.resume();
    this.paused = false;
    if (this.q.length > 0)
      throw new NbdProtocolError(
        "unexpected-reply",
        `${this.q.length} bytes after the NBD_OPT_STARTTLS reply`,
      );
  }

  get queued(): number {
    return this.q.length;
  }

  /** Resolves with exactly n bytes; one read at a time. */
  read(n: number, what: string, opts: ReadOptions = {}): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error(`NBD reader: read of ${what} while another is pending`));
    const got = this.q.take(n);
    if (got) {
      this.flow();
      return Promise.resolve(got);
    }
    if (this.ended) return Promise.reject(this.endError(n, n - this.q.length, what, opts.boundary ?? false));
    return new Promise((resolve, reject) => {
      this.waiter = { n, what, boundary: opts.boundary ?? false, resolve, reject };
      this.flow();
    });
  }

  /** Reads exactly n bytes straight into target[at..at+n) (large payloads: no extra copy). */
  readInto(target: Buffer, at: number, n: number, what: string): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error(`NBD reader: read of ${what} while another is pending`));
    const got = this.q.takeInto(target, at, n);
    if (got === n) {
      this.flow();
      return Promise.resolve(target);
    }
    if (this.ended) return Promise.reject(this.endError(n, n - got, what, false));
    return new Promise((resolve, reject) => {
      this.waiter = {
        n,
        what,
        boundary: false,
        into: { target, at: at + got, remaining: n - got },
        resolve,
        reject,
      };
      this.flow();
    });
  }

  /** Rejects the pending read (if any) and every later one with `err`. */
  fail(err: NbdError): void {
    if (!this.ended) this.ended = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  private onData(b: Buffer): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w?.into) {
      const k = Math.min(w.into.remaining, b.length);
      b.copy(w.into.target, w.into.at, 0, k);
      w.into.at += k;
      w.into.remaining -= k;
      if (k < b.length) this.q.push(b.subarray(k));
      if (w.into.remaining === 0) {
        this.waiter = null;
        w.resolve(w.into.target);
      }
    } else {
      this.q.push(b);
      if (w) {
        const got = this.q.take(w.n);
        if (got) {
          this.waiter = null;
          w.resolve(got);
        }
      }
    }
    if (this.q.length > this.maxQueued) this.maxQueued = this.q.length;
    this.flow();
  }

  private onEnd(e: Error | null): void {
    if (this.ended) return;
    this.ended = e
      ? new NbdClosedError(`socket error: ${e.message}`)
      : new NbdClosedError("the server closed the connection");
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    w.reject(this.endError(w.n, w.into ? w.into.remaining : w.n - this.q.length, w.what, w.boundary));
  }

  /** The error for a read of n bytes that still missed `missing` of them when the stream ended. */
  private endError(n: number, missing: number, what: string, boundary: boolean): NbdError {
    if (boundary && missing === n) return this.ended as NbdError;
    if (this.ended instanceof NbdClosedError)
      return new NbdProtocolError(
        "truncated",
        `the connection ended after ${n - missing} of the ${n} bytes of ${what} (${this.ended.reason})`,
      );
    return this.ended as NbdError;
  }

  /** Pauses while enough is queued for whoever waits (or highWater when nobody waits). */
  private flow(): void {
    // A readInto waiter takes bytes as they come: only leftovers queue.
    const need = this.waiter?.into ? this.highWater : Math.max(this.highWater, this.waiter?.n ?? 0);
    if (this.q.length >= need && !this.paused) {
      this.paused = true;
      this.src.pause();
    } else if (this.q.length < need && this.paused) {
      this.paused = false;
      this.src.resume();
    }
  }
}

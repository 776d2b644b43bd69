// The disk monitor's link to one round's view (an NBD export of a point-in-time fleece). A
// remote link (TCP/TLS) can be cut mid-round; the view itself lives on in the target's QEMU
// until its owner closes it, and it is frozen, so reading it again over a new connection gives
// the same bytes. So a lost link is not a failed round: the reads in flight are retried over a
// new connection to the same export for a bounded time (`withinMs`), and the round finishes
// with its own dirty bitmap (incremental stays incremental). Only when the link does not come
// back in time (or the export is gone: refused, not retried) does the round fail, and the next
// one is full. The loss and the return are reported once each (onLost, onBack).
import type { ByteSource } from "./ext4/index.ts";
import {
  NbdClient,
  NbdClosedError,
  NbdProtocolError,
  NbdTimeoutError,
  type NbdTransport,
} from "./nbd/index.ts";

/** Errors that mean the connection is gone, not that the server refused or broke the protocol. */
export function isLinkLoss(e: unknown): boolean {
  if (e instanceof NbdClosedError) return !/closed by the client/.test(e.message);
  if (e instanceof NbdTimeoutError) return true;
  return e instanceof NbdProtocolError && e.code === "truncated";
}

export interface ViewLinkOptions {
  transport: NbdTransport;
  exportName: string;
  metaContexts: string[];
  /** How long a lost link is tried again before the round fails (default 30 s). */
  withinMs?: number;
  /** First pause between attempts, doubled up to 2 s (default 200 ms). */
  retryMs?: number;
  onLost?: (e: Error) => void;
  onBack?: (lostMs: number, attempts: number) => void;
  now?: () => number;
}

export class ViewLink {
  private client: NbdClient | null = null;
  /** The one reconnection under way (every failed read waits for the same one). */
  private reconnecting: Promise<NbdClient> | null = null;
  private lostAt: number | null = null;
  private closed = false;
  /** Links lost and won back during this round. */
  losses = 0;
  private readonly now: () => number;

  private constructor(private readonly o: ViewLinkOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Connects (a link down at the start is tried again like one lost later). */
  static async open(o: ViewLinkOptions): Promise<ViewLink> {
    const l = new ViewLink(o);
    await l.current();
    return l;
  }

  /** The export's size (known once connected: open() connects). */
  size = 0;

  /** Runs `f` on the current connection; a lost link is reconnected and `f` run again. */
  async use<T>(f: (c: NbdClient) => Promise<T>): Promise<T> {
    for (;;) {
      const c = await this.current();
      try {
        return await f(c);
      } catch (e) {
        if (this.closed || !isLinkLoss(e)) throw e;
        this.lose(c, e as Error);
      }
    }
  }

  /** The view's bytes, read through the link (reads above the client's maximum in pieces). */
  source(): ByteSource {
    return {
      size: this.size,
      read: (offset, length) =>
        this.use((c) => (length <= c.maxReadBytes ? c.read(offset, length) : c.readRange(offset, length))),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    await c?.close().catch(() => {});
  }

  private lose(c: NbdClient, e: Error): void {
    if (this.client !== c) return; // another read saw it first
    this.client = null;
    void c.close().catch(() => {});
    if (this.lostAt === null) {
      this.lostAt = this.now();
      this.losses++;
      this.o.onLost?.(e);
    }
  }

  private current(): Promise<NbdClient> {
    if (this.client) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new NbdClosedError("closed by the client"));
    this.reconnecting ??= this.connect().finally(() => {
      this.reconnecting = null;
    });
    return this.reconnecting;
  }

  private async connect(): Promise<NbdClient> {
    const start = this.lostAt ?? this.now();
    const within = this.o.withinMs ?? 30_000;
    let pause = this.o.retryMs ?? 200;
    let attempts = 0;
    for (;;) {
      attempts++;
      try {
        const c = await NbdClient.connect({
          transport: this.o.transport,
          exportName: this.o.exportName,
          metaContexts: this.o.metaContexts,
          handshakeTimeoutMs: Math.max(1000, Math.min(10_000, start + within - this.now())),
        });
        if (this.closed) {
          await c.close().catch(() => {});
          throw new NbdClosedError("closed by the client");
        }
        this.client = c;
        this.size = c.size;
        if (this.lostAt !== null) {
          const lostMs = this.now() - this.lostAt;
          this.lostAt = null;
          this.o.onBack?.(lostMs, attempts);
        }
        return c;
      } catch (e) {
        if (this.closed || !isLinkLoss(e) || this.now() + pause > start + within) throw e;
        if (this.lostAt === null && attempts === 1) {
          // Down at the start: the same bound, reported like a loss.
          this.lostAt = start;
          this.losses++;
          this.o.onLost?.(e as Error);
        }
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(pause * 2, 2000);
      }
    }
  }
}

// A link that tests can cut: a byte-for-byte proxy (TCP on 127.0.0.1, or a unix socket) in
// front of a real server (a page server, an NBD relay, a mirror receiver). TLS passes through
// it untouched. cut() resets every connection and refuses new ones (like a link that is down);
// restore() lets connections through again. It counts what it forwarded, so a test can cut
// in the middle of a transfer (afterBytes).
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";

/** A TCP reset where there is TCP; a plain close on a unix socket. */
function reset(s: Socket): void {
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

export type LinkEnd = { type: "tcp"; port: number; host?: string } | { type: "unix"; path: string };

export class CutLink {
  private server: Server | null = null;
  private readonly socks = new Set<Socket>();
  private down = false;
  /** Bytes forwarded in both directions, ever. */
  bytes = 0;
  /** Connections accepted through, and refused while cut. */
  readonly counts = { through: 0, refused: 0, cuts: 0 };
  port = 0;

  constructor(
    private readonly listenAt: LinkEnd,
    private readonly upstream: LinkEnd,
  ) {}

  async start(): Promise<this> {
    const s = createServer((c) => this.onConn(c));
    this.server = s;
    if (this.listenAt.type === "unix") rmSync(this.listenAt.path, { force: true });
    await new Promise<void>((res, rej) => {
      s.once("error", rej);
      if (this.listenAt.type === "unix") s.listen(this.listenAt.path, res);
      else s.listen(this.listenAt.port, this.listenAt.host ?? "127.0.0.1", res);
    });
    const a = s.address();
    if (a && typeof a === "object") this.port = a.port;
    return this;
  }

  private onConn(c: Socket): void {
    if (this.down) {
      this.counts.refused++;
      reset(c);
      return;
    }
    this.counts.through++;
    const u = this.upstream;
    const up = u.type === "unix" ? connect(u.path) : connect(u.port, u.host ?? "127.0.0.1");
    for (const [a, b] of [
      [c, up],
      [up, c],
    ] as const) {
      this.socks.add(a);
      a.on("data", (d: Buffer) => {
        this.bytes += d.length;
        if (!b.write(d)) {
          a.pause();
          b.once("drain", () => a.resume());
        }
      });
      a.on("error", () => {});
      a.on("close", () => {
        this.socks.delete(a);
        b.destroy();
      });
    }
  }

  /** Resets every connection and refuses new ones until restore(). */
  cut(): void {
    this.down = true;
    this.counts.cuts++;
    for (const s of this.socks) reset(s);
    this.socks.clear();
  }

  /** Cuts once `afterBytes` more bytes went through (mid-transfer); resolves at the cut. */
  async cutAfter(afterBytes: number, timeoutMs = 60_000): Promise<number> {
    const target = this.bytes + afterBytes;
    const end = Date.now() + timeoutMs;
    while (this.bytes < target) {
      if (Date.now() > end) throw new Error(`only ${this.bytes} of ${target} bytes went through`);
      await new Promise((r) => setTimeout(r, 2));
    }
    this.cut();
    return this.bytes;
  }

  restore(): void {
    this.down = false;
  }

  get isDown(): boolean {
    return this.down;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
    if (this.listenAt.type === "unix") rmSync(this.listenAt.path, { force: true });
  }
}

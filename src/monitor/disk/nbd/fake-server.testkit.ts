// A scripted NBD server for the client's tests: a unix socket whose first connection is
// handed to a script that reads what the client sends and writes whatever the test wants,
// well-formed or not (builders for greetings, option replies, simple replies and chunks).
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeRequest, REQUEST_BYTES, type Request } from "./codec.ts";
import {
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTS_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./protocol.ts";
import { ByteQueue } from "./reader.ts";
import { type NbdTransport, unixTransport } from "./transport.ts";

const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u64 = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

export interface HandshakeScript {
  size: number;
  /** Contexts the server grants when asked (name -> id); others asked for are ignored. */
  contexts?: Record<string, number>;
  structured?: boolean;
  blockSize?: [number, number, number];
  transmissionFlags?: number;
}

export class FakePeer {
  private readonly q = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  /** Every option the client sent, in order. */
  readonly options: number[] = [];
  /** The SET_META_CONTEXT queries the client sent. */
  queries: string[] = [];

  constructor(readonly sock: Socket) {
    sock.on("data", (b: Buffer) => {
      this.q.push(b);
      this.wake();
    });
    sock.on("close", () => {
      this.ended = true;
      this.wake();
    });
    sock.on("error", () => {});
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    const got = this.q.take(w.n);
    if (got) {
      this.waiter = null;
      w.resolve(got);
    } else if (this.ended) {
      this.waiter = null;
      w.reject(new Error(`fake server: client closed with ${this.q.length} of ${w.n} bytes`));
    }
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  /** Resolves true once the client has closed the connection. */
  closedByClient(): Promise<boolean> {
    return new Promise((r) => {
      if (this.ended || this.sock.destroyed) r(true);
      else this.sock.once("close", () => r(true));
    });
  }

  write(...parts: Buffer[]): boolean {
    return this.sock.write(Buffer.concat(parts));
  }

  greet(flags = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES): void {
    this.write(u64(NBD_INIT_MAGIC), u64(NBD_OPTS_MAGIC), u16(flags));
  }

  async clientFlags(): Promise<number> {
    return (await this.read(4)).readUInt32BE(0);
  }

  async option(): Promise<{ option: number; data: Buffer }> {
    const h = await this.read(16);
    if (h.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) throw new Error("fake server: bad option magic");
    const option = h.readUInt32BE(8);
    this.options.push(option);
    return { option, data: await this.read(h.readUInt32BE(12)) };
  }

  optionReply(
    option: number,
    type: number,
    payload: Buffer = Buffer.alloc(0),
    length = payload.length,
  ): void {
    this.write(u64(NBD_REP_MAGIC), u32(option), u32(type), u32(length), payload);
  }

  static info(size: number, flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY): Buffer {
    return Buffer.concat([u16(NBD_INFO_EXPORT), u64(size), u16(flags)]);
  }

  static metaContext(id: number, name: string): Buffer {
    return Buffer.concat([u32(id), Buffer.from(name)]);
  }

  /** Greeting through NBD_OPT_GO, answering like QEMU does (the script's choices). */
  async handshake(s: HandshakeScript): Promise<void> {
    this.greet();
    await this.clientFlags();
    for (;;) {
      const { option, data } = await this.option();
      if (option === NBD_OPT_STRUCTURED_REPLY) {
        this.optionReply(option, s.structured === false ? NBD_REP_ERR_UNSUP : NBD_REP_ACK);
      } else if (option === NBD_OPT_SET_META_CONTEXT) {
        const nameLen = data.readUInt32BE(0);
        let at = 4 + nameLen;
        const n = data.readUInt32BE(at);
        at += 4;
        this.queries = [];
        for (let i = 0; i < n; i++) {
          const len = data.readUInt32BE(at);
          this.queries.push(data.subarray(at + 4, at + 4 + len).toString());
          at += 4 + len;
        }
        for (const q of this.queries) {
          const id = s.contexts?.[q];
          if (id !== undefined) this.optionReply(option, NBD_REP_META_CONTEXT, FakePeer.metaContext(id, q));
        }
        this.optionReply(option, NBD_REP_ACK);
      } else if (option === NBD_OPT_GO) {
        this.optionReply(option, NBD_REP_INFO, FakePeer.info(s.size, s.transmissionFlags));
        if (s.blockSize) {
          const [a, b, c] = s.blockSize;
          this.optionReply(
            option,
            NBD_REP_INFO,
            Buffer.concat([u16(NBD_INFO_BLOCK_SIZE), u32(a), u32(b), u32(c)]),
          );
        }
        this.optionReply(option, NBD_REP_ACK);
        return;
      } else {
        this.optionReply(option, NBD_REP_ERR_UNSUP);
      }
    }
  }

  async request(): Promise<Request> {
    return decodeRequest(await this.read(REQUEST_BYTES));
  }

  simpleReply(handle: bigint, error: number, data: Buffer = Buffer.alloc(0)): void {
    this.write(u32(NBD_SIMPLE_REPLY_MAGIC), u32(error), u64(handle), data);
  }

  chunk(handle: bigint, type: number, flags: number, payload: Buffer, length = payload.length): void {
    this.write(u32(NBD_STRUCTURED_REPLY_MAGIC), u16(flags), u16(type), u64(handle), u32(length), payload);
  }

  data(handle: bigint, offset: number, data: Buffer, done = false): void {
    this.chunk(
      handle,
      NBD_REPLY_TYPE_OFFSET_DATA,
      done ? NBD_REPLY_FLAG_DONE : 0,
      Buffer.concat([u64(offset), data]),
    );
  }

  hole(handle: bigint, offset: number, length: number, done = false): void {
    this.chunk(
      handle,
      NBD_REPLY_TYPE_OFFSET_HOLE,
      done ? NBD_REPLY_FLAG_DONE : 0,
      Buffer.concat([u64(offset), u32(length)]),
    );
  }

  status(handle: bigint, contextId: number, extents: Array<[number, number]>, done = false): void {
    const body = extents.flatMap(([len, flags]) => [u32(len), u32(flags)]);
    this.chunk(
      handle,
      NBD_REPLY_TYPE_BLOCK_STATUS,
      done ? NBD_REPLY_FLAG_DONE : 0,
      Buffer.concat([u32(contextId), ...body]),
    );
  }

  error(handle: bigint, errno: number, message: string, done = true, offset?: number): void {
    const m = Buffer.from(message);
    const parts = [u32(errno), u16(m.length), m];
    if (offset !== undefined) parts.push(u64(offset));
    this.chunk(
      handle,
      offset === undefined ? NBD_REPLY_TYPE_ERROR : NBD_REPLY_TYPE_ERROR_OFFSET,
      done ? NBD_REPLY_FLAG_DONE : 0,
      Buffer.concat(parts),
    );
  }

  done(handle: bigint): void {
    this.chunk(handle, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE, Buffer.alloc(0));
  }
}

export const bytes = { u16, u32, u64 };

export interface FakeServer {
  transport: NbdTransport;
  /** Settles when the script ends (rejects with its error). */
  done: Promise<void>;
  close(): void;
}

let dir: string | null = null;
let n = 0;
const servers: Server[] = [];

/** Starts a server whose first connection runs `script`. */
export async function fakeServer(script: (peer: FakePeer) => Promise<void>): Promise<FakeServer> {
  dir ??= mkdtempSync(join(tmpdir(), "nc-nbd-test-"));
  const path = join(dir, `s${n++}.sock`);
  let resolveDone!: () => void;
  let rejectDone!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => {});
  const peers: Socket[] = [];
  const server = createServer((sock) => {
    peers.push(sock);
    if (peers.length > 1) return;
    script(new FakePeer(sock)).then(resolveDone, rejectDone);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return {
    transport: unixTransport(path),
    done,
    close: () => {
      for (const p of peers) p.destroy();
      server.close();
    },
  };
}

/** Closes every fake server and removes their folder (call from after()). */
export function closeFakeServers(): void {
  for (const s of servers.splice(0)) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
}

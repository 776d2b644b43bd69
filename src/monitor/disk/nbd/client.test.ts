// NbdClient against a scripted server (fake-server.testkit.ts): the handshake and commands
// as QEMU answers them, then a hostile server: every malformed reply (wrong magic, unknown
// handle, truncated, oversized, out of range, overlapping, incomplete, unexpected types)
// ends in a typed error naming the fault, without buffering what the server claims to send.
import assert from "node:assert/strict";
import { after, type TestContext, test } from "node:test";
import { NbdClient, type NbdConnectOptions } from "./client.ts";
import type { Request } from "./codec.ts";
import {
  NbdClosedError,
  NbdCommandError,
  NbdOptionError,
  NbdProtocolError,
  type NbdProtocolErrorCode,
  NbdTimeoutError,
  NbdUsageError,
} from "./errors.ts";
import { rangesWith } from "./extents.ts";
import {
  bytes,
  closeFakeServers,
  type FakePeer,
  fakeServer,
  type HandshakeScript,
} from "./fake-server.testkit.ts";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_FLAG_HAS_FLAGS,
  NBD_INFO_EXPORT,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./protocol.ts";

after(closeFakeServers);

const KiB = 1024;
const MiB = 1024 * KiB;
const ALLOC = "base:allocation";
const DIRTY = "qemu:dirty-bitmap:b0";
const QEMU_LIKE: HandshakeScript = {
  size: 1 * MiB,
  contexts: { [ALLOC]: 1, [DIRTY]: 2 },
  blockSize: [1, 4096, 32 * MiB],
};

type Handler = (r: Request, peer: FakePeer) => unknown;

/** Runs requests through `handler` until NBD_CMD_DISC; records every request. */
async function serve(peer: FakePeer, handler: Handler, seen: Request[]): Promise<void> {
  for (;;) {
    const r = await peer.request();
    seen.push(r);
    if (r.type === NBD_CMD_DISC) return;
    await handler(r, peer);
  }
}

async function session(
  t: TestContext,
  hs: HandshakeScript,
  handler: Handler,
  opts: Partial<NbdConnectOptions> = {},
): Promise<{ client: NbdClient; seen: Request[]; done: Promise<void> }> {
  const seen: Request[] = [];
  const srv = await fakeServer(async (peer) => {
    await peer.handshake(hs);
    await serve(peer, handler, seen);
  });
  t.after(() => srv.close());
  const client = await NbdClient.connect({
    transport: srv.transport,
    exportName: "d0",
    metaContexts: Object.keys(hs.contexts ?? {}),
    ...opts,
  });
  t.after(() => client.close());
  return { client, seen, done: srv.done };
}

async function rejectsWith(
  p: Promise<unknown>,
  code: NbdProtocolErrorCode,
  msg?: RegExp,
): Promise<NbdProtocolError> {
  let err: unknown;
  await assert.rejects(p, (e: unknown) => {
    err = e;
    assert.ok(e instanceof NbdProtocolError, `expected NbdProtocolError(${code}), got ${e}`);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  });
  return err as NbdProtocolError;
}

/** After a protocol error the connection is closed and refuses further commands. */
async function assertClosedBy(client: NbdClient, code: NbdProtocolErrorCode): Promise<void> {
  const why = await client.closed;
  assert.ok(why instanceof NbdProtocolError && why.code === code, `closed by ${why.message}`);
  assert.equal(client.isClosed, true);
  await assert.rejects(client.read(0, 512), NbdClosedError);
}

test("handshake like QEMU's, reads made of data and holes in any order, block status, soft disconnect", async (t) => {
  const image = Buffer.alloc(1 * MiB);
  image.fill(0x41, 0, 4096);
  image.fill(0x42, 12288, 16384);
  let peerRef: FakePeer | null = null;
  const { client, seen, done } = await session(t, QEMU_LIKE, (r, peer) => {
    peerRef = peer;
    if (r.type === NBD_CMD_READ) {
      // Reply pieces out of order: a hole in the middle, then the data around it.
      peer.hole(r.handle, r.offset + 4096, 8192);
      peer.data(r.handle, r.offset + 12288, image.subarray(r.offset + 12288, r.offset + 16384));
      peer.data(r.handle, r.offset, image.subarray(r.offset, r.offset + 4096));
      peer.done(r.handle);
    } else if (r.type === NBD_CMD_BLOCK_STATUS) {
      peer.status(r.handle, 2, [
        [64 * KiB, NBD_STATE_DIRTY],
        [r.length - 64 * KiB, 0],
      ]);
      // The last extent may reach past the request: the client clips it.
      peer.status(r.handle, 1, [
        [4096, 0],
        [2 * MiB, NBD_STATE_HOLE | NBD_STATE_ZERO],
      ]);
      peer.done(r.handle);
    }
  });
  assert.equal(client.size, 1 * MiB);
  assert.equal(client.info.readOnly, true);
  assert.equal(client.info.structuredReplies, true);
  assert.deepEqual(client.info.blockSize, { minimum: 1, preferred: 4096, maximum: 32 * MiB });
  assert.deepEqual(
    [...client.info.contexts],
    [
      [ALLOC, 1],
      [DIRTY, 2],
    ],
  );

  assert.deepEqual(await client.read(0, 16384), image.subarray(0, 16384));
  const status = await client.blockStatus(0, 1 * MiB);
  assert.deepEqual(status.get(ALLOC), [
    { offset: 0, length: 4096, flags: 0 },
    { offset: 4096, length: 1 * MiB - 4096, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
  ]);
  assert.deepEqual(rangesWith(status.get(DIRTY)!, NBD_STATE_DIRTY), [
    { offset: 0, length: 64 * KiB, flags: NBD_STATE_DIRTY },
  ]);
  assert.deepEqual(await client.extents(DIRTY), [
    { offset: 0, length: 64 * KiB, flags: NBD_STATE_DIRTY },
    { offset: 64 * KiB, length: 1 * MiB - 64 * KiB, flags: 0 },
  ]);
  await client.close();
  await done;
  assert.ok(peerRef, "the server answered");
  assert.deepEqual(
    seen.map((r) => r.type),
    [NBD_CMD_READ, NBD_CMD_BLOCK_STATUS, NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC],
  );
  assert.deepEqual(
    (peerRef as FakePeer).options,
    [NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT, NBD_OPT_GO],
    "options in order",
  );
  assert.deepEqual((peerRef as FakePeer).queries, [ALLOC, DIRTY]);
  assert.ok(client.maxQueuedBytes < 2 * MiB);
});

test("without structured replies: simple replies carry the data", async (t) => {
  const { client } = await session(t, { size: 64 * KiB, structured: false }, (r, peer) => {
    peer.simpleReply(r.handle, 0, Buffer.alloc(r.length, 0x33));
  });
  assert.equal(client.info.structuredReplies, false);
  assert.deepEqual(await client.read(512, 1024), Buffer.alloc(1024, 0x33));
  await assert.rejects(client.blockStatus(0, 512), NbdUsageError);
});

test("pipelined pieces answered out of order come back in order", async (t) => {
  const image = Buffer.alloc(256 * KiB);
  for (let i = 0; i < image.length; i++) image[i] = (i * 7) & 0xff;
  const held: Request[] = [];
  const { client } = await session(t, { size: image.length }, (r, peer) => {
    held.push(r);
    if (held.length < 4) return;
    for (const h of held.reverse())
      peer.data(h.handle, h.offset, image.subarray(h.offset, h.offset + h.length), true);
    held.length = 0;
  });
  assert.deepEqual(await client.readRange(0, image.length, { pieceBytes: 32 * KiB, window: 4 }), image);
});

test("options the server refuses: unknown export (soft disconnect), contexts not granted or never asked for", async (t) => {
  let abortSeen = false;
  const srv = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
    await peer.option();
    peer.optionReply(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, Buffer.from("export 'nope' not found\n"));
    abortSeen = (await peer.option()).option === NBD_OPT_ABORT;
  });
  t.after(() => srv.close());
  await assert.rejects(NbdClient.connect({ transport: srv.transport, exportName: "nope" }), (e: unknown) => {
    assert.ok(e instanceof NbdOptionError);
    assert.equal(e.reply, "NBD_REP_ERR_UNKNOWN");
    assert.equal(e.serverMessage, "export 'nope' not found?");
    return true;
  });
  await srv.done;
  assert.equal(abortSeen, true, "the client sent NBD_OPT_ABORT");

  const notGranted = await fakeServer((peer) => peer.handshake({ size: 4096, contexts: { [ALLOC]: 1 } }));
  t.after(() => notGranted.close());
  await assert.rejects(
    NbdClient.connect({
      transport: notGranted.transport,
      exportName: "d0",
      metaContexts: [ALLOC, "qemu:dirty-bitmap:b9"],
    }),
    (e: unknown) => e instanceof NbdOptionError && /has no qemu:dirty-bitmap:b9/.test(e.message),
  );

  const extra = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
    await peer.option();
    peer.optionReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, bytes.u32(9), 4);
  });
  t.after(() => extra.close());
  await rejectsWith(
    NbdClient.connect({ transport: extra.transport, exportName: "d0", metaContexts: [ALLOC] }),
    "bad-length",
  );

  const other = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
    await peer.option();
    peer.optionReply(
      NBD_OPT_SET_META_CONTEXT,
      NBD_REP_META_CONTEXT,
      Buffer.concat([bytes.u32(3), Buffer.from("qemu:dirty-bitmap:other")]),
    );
  });
  t.after(() => other.close());
  await rejectsWith(
    NbdClient.connect({ transport: other.transport, exportName: "d0", metaContexts: [ALLOC] }),
    "unexpected-reply",
    /never asked for/,
  );
  // Contexts need structured replies: a server without them cannot grant any.
  const noSr = await fakeServer((peer) => peer.handshake({ size: 4096, structured: false }));
  t.after(() => noSr.close());
  await assert.rejects(
    NbdClient.connect({ transport: noSr.transport, exportName: "d0", metaContexts: [ALLOC] }),
    (e: unknown) => e instanceof NbdOptionError && /need structured replies/.test(e.message),
  );
});

test("hostile handshakes: wrong magic, no fixed newstyle, oversized and endless option replies, silence", async (t) => {
  const badMagic = await fakeServer(async (peer) => {
    peer.write(bytes.u64(0x4e42444d41474944n), bytes.u64(0x49484156454f5054n), bytes.u16(1));
  });
  t.after(() => badMagic.close());
  await rejectsWith(NbdClient.connect({ transport: badMagic.transport }), "bad-magic", /NBDMAGIC/);

  const notFixed = await fakeServer(async (peer) => peer.greet(0));
  t.after(() => notFixed.close());
  await rejectsWith(NbdClient.connect({ transport: notFixed.transport }), "bad-value", /fixed newstyle/);

  // A reply header announcing 1 GiB, then a flood: refused from the header, never buffered.
  const huge = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, Buffer.alloc(0), 1 << 30);
    peer.write(Buffer.alloc(8 * MiB));
  });
  t.after(() => huge.close());
  const t0 = Date.now();
  await rejectsWith(NbdClient.connect({ transport: huge.transport }), "too-large", /1073741824 bytes/);
  assert.ok(Date.now() - t0 < 2000, "refused at once");

  const endless = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
    await peer.option();
    for (let i = 0; i < 100 && !peer.sock.destroyed; i++)
      peer.optionReply(NBD_OPT_GO, NBD_REP_INFO, Buffer.concat([bytes.u16(1), Buffer.from("name")]));
  });
  t.after(() => endless.close());
  await rejectsWith(
    NbdClient.connect({ transport: endless.transport, limits: { maxOptionReplies: 8 } }),
    "too-many",
    /more than 8 replies to NBD_OPT_GO/,
  );

  const wrongOption = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_GO, NBD_REP_ACK);
  });
  t.after(() => wrongOption.close());
  await rejectsWith(
    NbdClient.connect({ transport: wrongOption.transport }),
    "unexpected-reply",
    /NBD_OPT_GO/,
  );

  const noExport = await fakeServer(async (peer) => {
    peer.greet();
    await peer.clientFlags();
    await peer.option();
    peer.optionReply(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
    await peer.option();
    peer.optionReply(
      NBD_OPT_GO,
      NBD_REP_INFO,
      Buffer.concat([bytes.u16(NBD_INFO_EXPORT), bytes.u64(4096), bytes.u16(0)]),
    );
    peer.optionReply(NBD_OPT_GO, NBD_REP_ACK);
  });
  t.after(() => noExport.close());
  await rejectsWith(NbdClient.connect({ transport: noExport.transport }), "bad-value", /NBD_FLAG_HAS_FLAGS/);

  const silent = await fakeServer(() => new Promise(() => {}));
  t.after(() => silent.close());
  await assert.rejects(
    NbdClient.connect({ transport: silent.transport, handshakeTimeoutMs: 300 }),
    NbdTimeoutError,
  );
});

test("a reply for a handle not in flight closes the connection; everything in flight fails with it", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) => {
    if (r.offset === 0) return; // the first read stays pending
    peer.data(r.handle + 99n, r.offset, Buffer.alloc(r.length), true);
  });
  const first = client.read(0, 512);
  const second = client.read(4096, 512);
  await rejectsWith(second, "unknown-handle", /handle \d+, which is not in flight/);
  await rejectsWith(first, "unknown-handle");
  await assertClosedBy(client, "unknown-handle");
});

test("wrong reply magic, extended headers never negotiated", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (_r, peer) => {
    peer.write(bytes.u32(0x6e8a278c), Buffer.alloc(28));
  });
  await rejectsWith(client.read(0, 512), "bad-magic", /0x6e8a278c/);
  await assertClosedBy(client, "bad-magic");
});

test("a reply cut short by the server closing is 'truncated'", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.write(
      bytes.u32(0x668e33ef),
      bytes.u16(NBD_REPLY_FLAG_DONE),
      bytes.u16(NBD_REPLY_TYPE_OFFSET_DATA),
      bytes.u64(r.handle),
      bytes.u32(8 + r.length),
      bytes.u64(r.offset),
      Buffer.alloc(100),
    );
    peer.sock.end();
  });
  await rejectsWith(client.read(0, 4096), "truncated", /after 100 of the 4096 bytes/);
});

test("an oversized chunk is refused from its header: the claimed payload is never buffered", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.write(
      bytes.u32(0x668e33ef),
      bytes.u16(NBD_REPLY_FLAG_DONE),
      bytes.u16(NBD_REPLY_TYPE_OFFSET_DATA),
      bytes.u64(r.handle),
      bytes.u32(0xffffffff),
    );
    peer.write(Buffer.alloc(16 * MiB, 0x41));
  });
  await rejectsWith(client.read(0, 4096), "out-of-range", /4294967287 bytes of data for a read of 4096/);
  assert.ok(client.maxQueuedBytes < 2 * MiB, `client buffered ${client.maxQueuedBytes} bytes`);

  const { client: c2 } = await session(
    t,
    { size: 64 * KiB, contexts: { [ALLOC]: 1 } },
    (r, peer) => {
      peer.status(
        r.handle,
        1,
        Array.from({ length: 5 }, () => [512, 0] as [number, number]),
        true,
      );
    },
    { limits: { maxExtentsPerChunk: 4 } },
  );
  await rejectsWith(c2.blockStatus(0, 64 * KiB), "too-large", /5 extents \(at most 4\)/);

  const { client: c3 } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.chunk(r.handle, 0x8001, NBD_REPLY_FLAG_DONE, Buffer.alloc(0), 1 << 20);
  });
  await rejectsWith(c3.read(0, 512), "too-large", /NBD_REPLY_TYPE_ERROR of 1048576 bytes/);

  const { client: c4 } = await session(
    t,
    { size: 64 * KiB },
    (r, peer) => {
      for (let i = 0; i < 10; i++) peer.error(r.handle, 5, "again", false);
    },
    { limits: { maxChunksPerReply: 4 } },
  );
  await rejectsWith(c4.read(0, 512), "too-many", /more than 4 chunks/);
});

test("data outside the request, overlapping data and a reply done too early are refused", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.data(r.handle, r.offset + r.length - 256, Buffer.alloc(512), true);
  });
  await rejectsWith(client.read(4096, 4096), "out-of-range", /outside the read 4096\+4096/);

  const { client: c2 } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.data(r.handle, r.offset, Buffer.alloc(2048));
    peer.hole(r.handle, r.offset + 1024, 2048, true);
  });
  await rejectsWith(c2.read(0, 4096), "out-of-range", /overlaps data already received/);

  const { client: c3 } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.data(r.handle, r.offset, Buffer.alloc(1024));
    peer.done(r.handle);
  });
  await rejectsWith(c3.read(0, 4096), "unexpected-reply", /only 1024 bytes/);

  const { client: c4 } = await session(t, { size: 64 * KiB }, (r, peer) => {
    peer.chunk(r.handle, NBD_REPLY_TYPE_NONE, 0, Buffer.alloc(0));
  });
  await rejectsWith(c4.read(0, 4096), "unexpected-reply", /without NBD_REPLY_FLAG_DONE/);
});

test("unexpected reply types: a simple reply to a structured read, status for a read, unknown types", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) =>
    peer.simpleReply(r.handle, 0, Buffer.alloc(r.length)),
  );
  await rejectsWith(client.read(0, 512), "unexpected-reply", /simple reply to NBD_CMD_READ/);

  const { client: c2 } = await session(t, { size: 64 * KiB, contexts: { [ALLOC]: 1 } }, (r, peer) =>
    peer.status(r.handle, 1, [[512, 0]], true),
  );
  await rejectsWith(c2.read(0, 512), "unexpected-reply", /NBD_REPLY_TYPE_BLOCK_STATUS in reply to read/);

  const { client: c3 } = await session(t, { size: 64 * KiB }, (r, peer) =>
    peer.chunk(r.handle, 7, NBD_REPLY_FLAG_DONE, Buffer.alloc(4)),
  );
  await rejectsWith(c3.read(0, 512), "unexpected-reply", /chunk type 0x7/);

  // Structured chunks that were never negotiated.
  const { client: c4 } = await session(t, { size: 64 * KiB, structured: false }, (r, peer) =>
    peer.done(r.handle),
  );
  await rejectsWith(c4.read(0, 512), "unexpected-reply", /never negotiated/);
});

test("errors the server reports fail one command; the connection stays usable", async (t) => {
  let n = 0;
  const { client } = await session(t, { size: 64 * KiB }, (r, peer) => {
    n++;
    if (n === 1) peer.error(r.handle, 5, "disk \u001b[31mgone\nFAKE LINE");
    else if (n === 2) {
      peer.data(r.handle, r.offset, Buffer.alloc(512, 1));
      peer.error(r.handle, 22, "", true, r.offset + 512);
    } else if (n === 3)
      peer.chunk(r.handle, 0x8000 | 0x63, NBD_REPLY_FLAG_DONE, Buffer.concat([bytes.u32(95), bytes.u16(0)]));
    else peer.data(r.handle, r.offset, Buffer.alloc(r.length, 7), true);
  });
  await assert.rejects(client.read(0, 4096), (e: unknown) => {
    assert.ok(e instanceof NbdCommandError);
    assert.equal(e.errno, "EIO");
    assert.equal(e.serverMessage, "disk ?[31mgone?FAKE LINE");
    return true;
  });
  await assert.rejects(
    client.read(0, 4096),
    (e: unknown) => e instanceof NbdCommandError && e.errno === "EINVAL" && e.offset === 512,
  );
  await assert.rejects(
    client.read(0, 4096),
    (e: unknown) => e instanceof NbdCommandError && e.errno === "ENOTSUP",
  );
  assert.deepEqual(await client.read(0, 4096), Buffer.alloc(4096, 7));
  assert.equal(client.isClosed, false);

  const { client: c2 } = await session(t, { size: 64 * KiB }, (r, peer) =>
    peer.chunk(
      r.handle,
      0x8001,
      NBD_REPLY_FLAG_DONE,
      Buffer.concat([bytes.u32(5), bytes.u16(200), Buffer.from("short")]),
    ),
  );
  await rejectsWith(c2.read(0, 512), "bad-length", /error message of 200 bytes/);

  const { client: c3 } = await session(t, { size: 64 * KiB }, (r, peer) =>
    peer.error(r.handle, 5, "", true, 1 << 20),
  );
  await rejectsWith(c3.read(0, 512), "out-of-range", /error offset 1048576/);
});

test("block status: unknown or repeated contexts, missing ones, extents past the request, REQ_ONE", async (t) => {
  const hs = { size: 1 * MiB, contexts: { [ALLOC]: 1, [DIRTY]: 2 } };
  const cases: Array<[string, Handler, NbdProtocolErrorCode, RegExp]> = [
    [
      "unknown id",
      (r, p) => p.status(r.handle, 7, [[512, 0]], true),
      "unexpected-reply",
      /context id 7, never selected/,
    ],
    [
      "twice",
      (r, p) => {
        p.status(r.handle, 1, [[512, 0]]);
        p.status(r.handle, 1, [[512, 0]], true);
      },
      "unexpected-reply",
      /two block status chunks for context id 1/,
    ],
    [
      "missing",
      (r, p) => p.status(r.handle, 1, [[512, 0]], true),
      "unexpected-reply",
      /with 1 of 2 contexts/,
    ],
    [
      "past the request",
      (r, p) =>
        p.status(r.handle, 1, [
          [r.length, 0],
          [512, 1],
        ]),
      "out-of-range",
      /extents reach past/,
    ],
    [
      "REQ_ONE with two",
      (r, p) =>
        p.status(r.handle, 1, [
          [512, 0],
          [512, 1],
        ]),
      "out-of-range",
      /REQ_ONE answered with 2 extents/,
    ],
    ["zero-length extent", (r, p) => p.status(r.handle, 1, [[0, 0]], true), "bad-value", /length 0/],
  ];
  for (const [name, handler, code, msg] of cases) {
    const { client } = await session(t, hs, handler);
    await rejectsWith(client.blockStatus(0, 64 * KiB, { reqOne: name === "REQ_ONE with two" }), code, msg);
  }
  const { client, seen } = await session(t, hs, (r, p) => {
    p.status(r.handle, 1, [[512, 0]]);
    p.status(r.handle, 2, [[512, 1]], true);
  });
  assert.equal((await client.blockStatus(0, 64 * KiB, { reqOne: true })).get(DIRTY)?.[0].flags, 1);
  assert.equal(seen[0].flags, NBD_CMD_FLAG_REQ_ONE);
  assert.equal(NBD_REPLY_TYPE_BLOCK_STATUS, 5);
});

test("a silent server times the command out and the connection is closed", async (t) => {
  const { client } = await session(t, { size: 64 * KiB }, () => {}, { commandTimeoutMs: 200 });
  await assert.rejects(
    client.read(0, 512),
    (e: unknown) => e instanceof NbdTimeoutError && /read of 0\+512/.test(e.message),
  );
  assert.ok((await client.closed) instanceof NbdTimeoutError);
});

test("requests the export cannot serve are refused before anything is sent", async (t) => {
  const { client, seen } = await session(t, { size: 64 * KiB, blockSize: [512, 4096, 1 * MiB] }, (r, p) =>
    p.data(r.handle, r.offset, Buffer.alloc(r.length), true),
  );
  await assert.rejects(client.read(60 * KiB, 8 * KiB), /beyond the export's 65536 bytes/);
  await assert.rejects(client.read(100, 512), /not aligned to the minimum block size 512/);
  await assert.rejects(client.read(0, 2 * MiB), NbdUsageError);
  await assert.rejects(client.read(0, 0), NbdUsageError);
  await assert.rejects(client.blockStatus(0, 512), /needs metadata contexts/);
  await assert.rejects(client.extents(ALLOC), /was not selected/);
  assert.equal(client.maxReadBytes, 1 * MiB, "the server's maximum payload bounds reads");
  assert.equal((await client.read(0, 512)).length, 512);
  assert.equal(seen.length, 1);
  assert.equal(NBD_FLAG_HAS_FLAGS, 1);
});

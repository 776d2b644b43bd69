// ByteQueue slices exact lengths across chunks; StreamReader stops reading from a socket
// that floods it (bounded buffering) and tells a clean end from a truncated message.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { NbdClosedError, NbdProtocolError } from "./errors.ts";
import { ByteQueue, StreamReader } from "./reader.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-nbd-reader-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("ByteQueue returns exact slices across chunk boundaries", () => {
  const q = new ByteQueue();
  q.push(Buffer.from("abc"));
  q.push(Buffer.from(""));
  q.push(Buffer.from("defgh"));
  assert.equal(q.length, 8);
  assert.equal(q.take(9), null);
  assert.equal(q.take(2)?.toString(), "ab");
  assert.equal(q.take(4)?.toString(), "cdef");
  assert.equal(q.take(2)?.toString(), "gh");
  assert.equal(q.length, 0);
  assert.equal(q.take(0)?.length, 0);
});

/** A socket pair over a unix socket: the server end writes, the client end is read. */
async function pair(name: string): Promise<{ server: Socket; client: Socket; close(): void }> {
  const path = join(dir, name);
  let server!: Socket;
  const srv = createServer((s) => (server = s));
  await new Promise<void>((r) => srv.listen(path, r));
  const client = connect({ path });
  await new Promise<void>((r) => client.once("connect", r));
  while (!server) await new Promise((r) => setTimeout(r, 5));
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

test("a flooding peer is paused: the reader holds about highWater bytes, not the flood", async () => {
  const p = await pair("flood.sock");
  try {
    const highWater = 256 * 1024;
    const reader = new StreamReader(p.client, highWater);
    const flood = Buffer.alloc(32 * 1024 * 1024, 0x5a);
    let flushed = false;
    p.server.write(flood, () => (flushed = true));
    assert.equal((await reader.read(16, "a header")).length, 16);
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(reader.maxQueued < highWater + 512 * 1024, `queued at most ${reader.maxQueued} bytes`);
    assert.equal(flushed, false, "the server's 32 MiB write is still blocked by backpressure");
    // A read larger than highWater is still served (the reader resumes for it).
    assert.equal((await reader.read(4 * 1024 * 1024, "a big payload")).length, 4 * 1024 * 1024);
    assert.ok(reader.maxQueued <= 4 * 1024 * 1024 + 512 * 1024, `queued at most ${reader.maxQueued} bytes`);
  } finally {
    p.close();
  }
});

test("the peer closing: clean at a boundary, truncated inside a message", async () => {
  const p = await pair("end.sock");
  try {
    const reader = new StreamReader(p.client, 1024);
    p.server.end(Buffer.from("abcdef"));
    assert.equal((await reader.read(4, "x", { boundary: true })).toString(), "abcd");
    await assert.rejects(reader.read(8, "a chunk header"), (e: unknown) => {
      assert.ok(e instanceof NbdProtocolError);
      assert.equal(e.code, "truncated");
      assert.match(e.message, /after 2 of the 8 bytes of a chunk header/);
      return true;
    });
  } finally {
    p.close();
  }
  const q = await pair("end2.sock");
  try {
    const r2 = new StreamReader(q.client, 1024);
    q.server.end();
    await assert.rejects(r2.read(4, "a reply's magic", { boundary: true }), NbdClosedError);
  } finally {
    q.close();
  }
});

test("readInto fills the target as bytes arrive; what follows stays queued; a cut is 'truncated'", async () => {
  const p = await pair("into.sock");
  try {
    const reader = new StreamReader(p.client, 1024);
    const target = Buffer.alloc(10, 0x2e);
    const done = reader.readInto(target, 2, 6, "data");
    p.server.write("abc");
    await new Promise((r) => setTimeout(r, 50));
    p.server.write("defXY");
    assert.equal(await done, target);
    assert.equal(target.toString(), "..abcdef..");
    assert.equal((await reader.read(2, "next")).toString(), "XY");
    const cut = reader.readInto(Buffer.alloc(100), 0, 100, "a data payload");
    p.server.end("12345");
    await assert.rejects(cut, (e: unknown) => {
      assert.ok(e instanceof NbdProtocolError);
      assert.equal(e.code, "truncated");
      assert.match(e.message, /after 5 of the 100 bytes of a data payload/);
      return true;
    });
  } finally {
    p.close();
  }
});

// The mirror receiver over real sockets (a client standing in for QEMU's chardev): frames
// reach the queue over unix and TCP, listening or connecting; it keeps reading while nobody
// consumes (the writer is never held up: a stalled reader would freeze QEMU), dropping and
// counting instead; a garbage length closes that connection only; connections are bounded.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { encodeMirrorFrame, MIRROR_SKIP_MAX } from "./framing.ts";
import { FrameQueue } from "./queue.ts";
import { type MirrorAddress, MirrorReceiver, type ReceiverEvent } from "./receiver.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-mirror-rx-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const frame = (n: number, fill: number) => Buffer.alloc(n, fill);

function client(addr: MirrorAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = addr.type === "unix" ? connect(addr.path) : connect(addr.port, addr.host);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const write = (s: Socket, b: Buffer) =>
  new Promise<void>((resolve, reject) => s.write(b, (e) => (e ? reject(e) : resolve())));

test("frames from a unix client and a TCP client reach the queue in order", async () => {
  for (const addr of [
    { type: "unix", path: join(dir, "a.sock") },
    { type: "tcp", host: "127.0.0.1", port: 0 },
  ] as MirrorAddress[]) {
    const queue = new FrameQueue();
    const events: ReceiverEvent[] = [];
    const rx = new MirrorReceiver({ queue, onEvent: (e) => events.push(e) });
    const bound = await rx.listen(addr);
    const c = await client(bound);
    const frames = [frame(60, 1), frame(1514, 2), frame(42, 3)];
    await write(c, Buffer.concat(frames.map(encodeMirrorFrame)));
    await until("3 frames", () => queue.length === 3);
    assert.deepEqual([queue.shift(), queue.shift(), queue.shift()], frames);
    c.end();
    await until("closed", () => rx.counts().open === 0);
    assert.deepEqual(
      events.map((e) => e.type),
      ["connected", "closed"],
    );
    const n = rx.counts();
    assert.deepEqual([n.frames, n.connections, n.streamErrors, n.bytesRead], [3, 1, 0, 1616 + 12]);
    await rx.close();
  }
});

test("connects to a QEMU that listens (its chardev the server)", async () => {
  const path = join(dir, "qemu-server.sock");
  const fakeQemu = createServer((s) => s.end(encodeMirrorFrame(frame(64, 7))));
  await new Promise<void>((r) => fakeQemu.listen(path, r));
  const queue = new FrameQueue();
  const rx = new MirrorReceiver({ queue });
  await rx.connect({ type: "unix", path });
  await until("the frame", () => queue.length === 1);
  assert.deepEqual(queue.shift(), frame(64, 7));
  await rx.close();
  await new Promise((r) => fakeQemu.close(r));
});

test("keeps reading while nobody consumes: 48 MiB written without the writer waiting, the rest dropped and counted", async (t) => {
  const queue = new FrameQueue({ maxFrames: 128, maxBytes: 256 * 1024 });
  const rx = new MirrorReceiver({ queue });
  const addr = await rx.listen({ type: "unix", path: join(dir, "flood.sock") });
  const c = await client(addr);
  t.after(async () => {
    c.destroy();
    await rx.close();
  });
  const one = encodeMirrorFrame(frame(1514, 0x5a));
  const batch = Buffer.concat(Array.from({ length: 1024 }, () => one)); // 1.5 MiB
  const rounds = 32;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) await write(c, batch);
  await until("every byte read", () => rx.counts().bytesRead === rounds * batch.length, 20_000);
  const ms = performance.now() - t0;
  const n = rx.counts();
  const q = queue.counts();
  assert.equal(n.frames, rounds * 1024);
  assert.equal(q.accepted, 128, "the queue took what it holds");
  assert.equal(q.dropped, rounds * 1024 - 128, "everything else dropped, counted");
  assert.ok(q.peakBytes <= 128 * 1514, `queue peak ${q.peakBytes} within its bound`);
  assert.ok(ms < 15_000, `48 MiB read in ${ms.toFixed(0)} ms`);
  t.diagnostic(`48 MiB read in ${ms.toFixed(0)} ms with nobody consuming`);
});

test("a garbage length closes that connection only, counted and reported; a later frame on another is fine", async () => {
  const queue = new FrameQueue();
  const events: ReceiverEvent[] = [];
  const rx = new MirrorReceiver({ queue, onEvent: (e) => events.push(e) });
  const addr = await rx.listen({ type: "unix", path: join(dir, "bad.sock") });
  const good = await client(addr);
  const bad = await client(addr);
  const closed = new Promise((r) => bad.once("close", r));
  const h = Buffer.alloc(4);
  h.writeUInt32BE(MIRROR_SKIP_MAX + 1);
  bad.on("error", () => {});
  bad.write(Buffer.concat([encodeMirrorFrame(frame(20, 1)), h, Buffer.alloc(1000)]));
  await closed;
  await write(good, encodeMirrorFrame(frame(30, 2)));
  await until("both frames", () => queue.length === 2);
  const err = events.find((e) => e.type === "stream-error");
  assert.ok(
    err && err.type === "stream-error" && err.code === "bad-length" && err.length === MIRROR_SKIP_MAX + 1,
  );
  assert.deepEqual([rx.counts().streamErrors, rx.counts().open], [1, 1]);
  good.destroy();
  await rx.close();
});

test("connections beyond the bound are refused and counted; a path that is not a socket is left alone", async () => {
  const queue = new FrameQueue();
  const events: ReceiverEvent[] = [];
  const rx = new MirrorReceiver({ queue, maxConnections: 2, onEvent: (e) => events.push(e) });
  const addr = await rx.listen({ type: "unix", path: join(dir, "max.sock") });
  const cs = [await client(addr), await client(addr), await client(addr)];
  await until("a refusal", () => rx.counts().refused === 1);
  assert.equal(rx.counts().open, 2);
  assert.equal(events.filter((e) => e.type === "refused").length, 1);
  for (const c of cs) c.destroy();
  await rx.close();
  const file = join(dir, "not-a-socket");
  writeFileSync(file, "x");
  await assert.rejects(new MirrorReceiver({ queue }).listen({ type: "unix", path: file }), /not a socket/);
});

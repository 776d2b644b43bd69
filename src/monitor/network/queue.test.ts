// The bounded queue between receiver and IDS: full by frames or by bytes means dropped and
// counted (never queued past the bound), frames leave in order, a waiter wakes on a push.
import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameQueue } from "./queue.ts";

test("drops beyond the frame bound and the byte bound, counting them; never more queued than allowed", () => {
  const q = new FrameQueue({ maxFrames: 3, maxBytes: 1000 });
  assert.equal(q.push(Buffer.alloc(100, 1)), true);
  assert.equal(q.push(Buffer.alloc(100, 2)), true);
  assert.equal(q.push(Buffer.alloc(900, 3)), false, "over the bytes");
  assert.equal(q.push(Buffer.alloc(100, 4)), true);
  assert.equal(q.push(Buffer.alloc(10, 5)), false, "over the frames");
  assert.deepEqual(q.counts(), {
    queued: 3,
    queuedBytes: 300,
    accepted: 3,
    dropped: 2,
    droppedBytes: 910,
    peakBytes: 300,
  });
  assert.deepEqual([q.shift()?.[0], q.shift()?.[0], q.shift()?.[0], q.shift()], [1, 2, 4, undefined]);
  assert.equal(q.counts().queuedBytes, 0);
});

test("a long run through the queue keeps order and its bookkeeping", () => {
  const q = new FrameQueue({ maxFrames: 5000, maxBytes: 1 << 30 });
  let next = 0;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 3000; i++) q.push(Buffer.from([i & 0xff, (i >> 8) & 0xff]));
    for (let i = 0; i < 3000; i++) {
      const f = q.shift()!;
      assert.equal(f[0] | (f[1] << 8), next++ % 3000);
    }
  }
  assert.equal(q.length, 0);
  assert.equal(q.counts().queuedBytes, 0);
});

test("readable() waits for a push; clear() counts what it throws away and wakes the waiter", async () => {
  const q = new FrameQueue({ maxFrames: 10, maxBytes: 1000 });
  let woke = false;
  const w = q.readable().then(() => (woke = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(woke, false);
  q.push(Buffer.alloc(10));
  await w;
  assert.equal(woke, true);
  q.push(Buffer.alloc(10));
  const w2 = q.readable();
  q.clear();
  await w2;
  assert.deepEqual([q.length, q.counts().dropped, q.counts().droppedBytes], [0, 2, 20]);
});

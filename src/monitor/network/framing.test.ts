// The mirror stream's framing against hostile input: frames cut anywhere come out whole and
// as copies; runts and oversized frames are skipped in step without buffering them; a
// garbage length loses the stream (and everything after it); memory stays within one frame.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  encodeMirrorFrame,
  MIRROR_MAX_FRAME,
  MIRROR_SKIP_MAX,
  MirrorFrameParser,
  MirrorStreamError,
} from "./framing.ts";

const frame = (n: number, fill = 0xab) => Buffer.alloc(n, fill);
const header = (n: number) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n >>> 0);
  return h;
};

function collect() {
  const out: Buffer[] = [];
  const p = new MirrorFrameParser((f) => out.push(f));
  return { p, out };
}

test("frames cut at every byte come out whole, and as copies of the bytes", () => {
  const frames = [frame(60, 1), frame(1514, 2), frame(14, 3)];
  const stream = Buffer.concat(frames.map(encodeMirrorFrame));
  const { p, out } = collect();
  for (let i = 0; i < stream.length; i++) p.push(stream.subarray(i, i + 1));
  assert.deepEqual(out, frames);
  assert.ok(p.atBoundary);
  p.end();
  const again = collect();
  again.p.push(stream);
  stream.fill(0);
  assert.deepEqual(again.out, frames, "not views of the pushed chunk");
  assert.deepEqual(again.p.counts, {
    frames: 3,
    frameBytes: 1588,
    runts: 0,
    oversized: 0,
    oversizedBytes: 0,
  });
});

test("any chunking of any frames gives the same frames (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 14, maxLength: 300 }), { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }),
      (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeMirrorFrame(Buffer.from(f))));
        const { p, out } = collect();
        let o = 0;
        for (let i = 0; o < stream.length; i++) {
          const n = cuts[i % cuts.length];
          p.push(stream.subarray(o, o + n));
          o += n;
        }
        assert.deepEqual(
          out.map((b) => [...b]),
          frames.map((f) => [...f]),
        );
      },
    ),
    { numRuns: 200 },
  );
});

test("runts (shorter than an Ethernet header, 0 too) are skipped in step and counted", () => {
  const { p, out } = collect();
  p.push(
    Buffer.concat([
      header(0),
      header(1),
      Buffer.from([7]),
      header(13),
      frame(13),
      encodeMirrorFrame(frame(14)),
    ]),
  );
  assert.deepEqual(out, [frame(14)]);
  assert.equal(p.counts.runts, 3);
  assert.ok(p.atBoundary);
});

test("the largest frame passes; an oversized one streams by unbuffered, counted, and the next frame is whole", () => {
  const { p, out } = collect();
  p.push(encodeMirrorFrame(frame(MIRROR_MAX_FRAME, 5)));
  assert.equal(out.length, 1);
  assert.equal(out[0].length, MIRROR_MAX_FRAME);
  const big = 3 * 1024 * 1024;
  p.push(header(big));
  let peak = 0;
  const piece = frame(64 * 1024, 9);
  for (let sent = 0; sent < big; sent += piece.length) {
    p.push(piece.subarray(0, Math.min(piece.length, big - sent)));
    peak = Math.max(peak, p.bufferedBytes);
  }
  assert.equal(peak, 0, "nothing of the oversized frame is held");
  p.push(encodeMirrorFrame(frame(60, 6)));
  assert.deepEqual(out.slice(1), [frame(60, 6)]);
  assert.equal(p.counts.oversized, 1);
  assert.equal(p.counts.oversizedBytes, big);
  assert.ok(p.bufferedBytes <= MIRROR_MAX_FRAME + 4);
});

test("a garbage length loses the stream: MirrorStreamError, and nothing after it is parsed", () => {
  for (const len of [MIRROR_SKIP_MAX + 1, 0xffffffff]) {
    const { p, out } = collect();
    assert.throws(
      () => p.push(Buffer.concat([encodeMirrorFrame(frame(20)), header(len), encodeMirrorFrame(frame(20))])),
      (e: unknown) => e instanceof MirrorStreamError && e.code === "bad-length" && e.length === len,
    );
    assert.equal(out.length, 1, "the frame before it was delivered");
    assert.throws(() => p.push(encodeMirrorFrame(frame(20))), MirrorStreamError);
    assert.equal(out.length, 1);
  }
});

test("a stream ending inside a frame or a header is truncated; at a boundary it is clean", () => {
  const cut = collect();
  cut.p.push(encodeMirrorFrame(frame(100)).subarray(0, 50));
  assert.throws(
    () => cut.p.end(),
    (e: unknown) => e instanceof MirrorStreamError && e.code === "truncated",
  );
  const half = collect();
  half.p.push(Buffer.from([0, 0]));
  assert.throws(() => half.p.end(), MirrorStreamError);
  const clean = collect();
  clean.p.push(encodeMirrorFrame(frame(100)));
  clean.p.end();
});

// The framing of QEMU's filter-mirror stream (pure: no I/O): each frame is a 4-byte
// big-endian length, then the Ethernet frame. The writer is the target's QEMU, the frames'
// contents are the guest's: both are hostile here. Memory per stream is bounded by one frame
// (MIRROR_MAX_FRAME) plus the header, whatever arrives.
//
// Lengths:
// - up to MIRROR_MAX_FRAME: a frame, handed on (shorter than an Ethernet header: a runt,
//   skipped and counted; the stream is still in step);
// - above it, up to MIRROR_SKIP_MAX: an oversized frame a guest can make (virtio-net does not
//   cap what a driver submits), skipped as it streams by (never buffered) and counted, so a
//   guest cannot desynchronize or disconnect its monitor with one;
// - above MIRROR_SKIP_MAX: garbage (no QEMU writes that): the stream cannot be trusted any
//   more, a MirrorStreamError, and the connection is closed.

/** Ethernet header (14) + 802.1Q tag (4) + the largest IP packet (65535). */
export const MIRROR_MAX_FRAME = 65535 + 18;
/** Lengths above this are not frames at all: the stream is broken (or hostile). */
export const MIRROR_SKIP_MAX = 16 * 1024 * 1024;
/** Shorter than an Ethernet header. */
export const MIRROR_MIN_FRAME = 14;
export const MIRROR_HEADER_BYTES = 4;

export class MirrorStreamError extends Error {
  override name = "MirrorStreamError";
  constructor(
    readonly code: "bad-length" | "truncated",
    message: string,
    readonly length?: number,
  ) {
    super(message);
  }
}

export interface FramingCounts {
  frames: number;
  frameBytes: number;
  /** Frames shorter than an Ethernet header, skipped. */
  runts: number;
  /** Frames over MIRROR_MAX_FRAME, skipped unread. */
  oversized: number;
  oversizedBytes: number;
}

/**
 * Cuts a byte stream into frames. push() hands every complete frame to `onFrame` (a copy the
 * callee may keep: never a view of the caller's chunk) and throws MirrorStreamError on a
 * garbage length; after that the parser refuses everything (the stream is lost).
 */
export class MirrorFrameParser {
  readonly counts: FramingCounts = { frames: 0, frameBytes: 0, runts: 0, oversized: 0, oversizedBytes: 0 };
  private readonly header = Buffer.alloc(MIRROR_HEADER_BYTES);
  private headerFill = 0;
  /** The frame being filled, or null between frames and while skipping. */
  private frame: Buffer | null = null;
  private frameFill = 0;
  /** Bytes still to skip of an oversized frame. */
  private skipLeft = 0;
  private broken: MirrorStreamError | null = null;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  /** Bytes held for a frame not yet complete (bounded by MIRROR_MAX_FRAME + header). */
  get bufferedBytes(): number {
    return this.headerFill + (this.frame ? this.frame.length : 0);
  }

  /** True between frames (a connection may end here cleanly). */
  get atBoundary(): boolean {
    return this.headerFill === 0 && this.frame === null && this.skipLeft === 0;
  }

  push(chunk: Buffer): void {
    if (this.broken) throw this.broken;
    let o = 0;
    while (o < chunk.length) {
      if (this.skipLeft > 0) {
        const n = Math.min(this.skipLeft, chunk.length - o);
        this.skipLeft -= n;
        o += n;
        continue;
      }
      if (this.frame) {
        const n = Math.min(this.frame.length - this.frameFill, chunk.length - o);
        chunk.copy(this.frame, this.frameFill, o, o + n);
        this.frameFill += n;
        o += n;
        if (this.frameFill === this.frame.length) {
          const f = this.frame;
          this.frame = null;
          this.frameFill = 0;
          this.counts.frames++;
          this.counts.frameBytes += f.length;
          this.onFrame(f);
        }
        continue;
      }
      const n = Math.min(MIRROR_HEADER_BYTES - this.headerFill, chunk.length - o);
      chunk.copy(this.header, this.headerFill, o, o + n);
      this.headerFill += n;
      o += n;
      if (this.headerFill < MIRROR_HEADER_BYTES) continue;
      this.headerFill = 0;
      const len = this.header.readUInt32BE(0);
      if (len > MIRROR_SKIP_MAX) {
        this.broken = new MirrorStreamError(
          "bad-length",
          `mirror stream: frame length ${len} is not a frame (over ${MIRROR_SKIP_MAX}): stream lost`,
          len,
        );
        throw this.broken;
      }
      if (len > MIRROR_MAX_FRAME) {
        this.counts.oversized++;
        this.counts.oversizedBytes += len;
        this.skipLeft = len;
      } else if (len < MIRROR_MIN_FRAME) {
        this.counts.runts++;
        this.skipLeft = len;
      } else {
        this.frame = Buffer.allocUnsafe(len);
        this.frameFill = 0;
      }
    }
  }

  /** The stream ended: a frame cut short is a MirrorStreamError ("truncated"). */
  end(): void {
    if (this.broken || this.atBoundary) return;
    this.broken = new MirrorStreamError("truncated", "mirror stream ended inside a frame");
    this.frame = null;
    throw this.broken;
  }
}

/** One frame in the stream's framing (tests, and what the TAP writer reads). */
export function encodeMirrorFrame(frame: Buffer): Buffer {
  const h = Buffer.allocUnsafe(MIRROR_HEADER_BYTES);
  h.writeUInt32BE(frame.length, 0);
  return Buffer.concat([h, frame]);
}

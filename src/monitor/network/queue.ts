// The bounded queue between the mirror receiver (which must always read: a QEMU whose mirror
// peer stops reading freezes, see qemu/net-mirror.ts) and the consumer that feeds the IDS.
// When the consumer falls behind, new frames are dropped and counted, never queued without
// bound and never dropped silently (the network monitor reports the count as an alert).

export interface FrameQueueLimits {
  /** Frames queued at most (default 4096). */
  maxFrames: number;
  /** Bytes of frames queued at most (default 8 MiB). */
  maxBytes: number;
}

export const DEFAULT_FRAME_QUEUE_LIMITS: FrameQueueLimits = { maxFrames: 4096, maxBytes: 8 * 1024 * 1024 };

export interface FrameQueueCounts {
  queued: number;
  queuedBytes: number;
  /** Frames accepted into the queue, ever. */
  accepted: number;
  /** Frames dropped because the queue was full, ever. */
  dropped: number;
  droppedBytes: number;
  /** The most bytes ever queued at once. */
  peakBytes: number;
}

export class FrameQueue {
  readonly limits: FrameQueueLimits;
  private items: Buffer[] = [];
  /** Index of the head in `items` (compacted now and then: shift() is O(n) on big arrays). */
  private head = 0;
  private bytes = 0;
  private waiter: (() => void) | null = null;
  private readonly c = { accepted: 0, dropped: 0, droppedBytes: 0, peakBytes: 0 };

  constructor(limits: Partial<FrameQueueLimits> = {}) {
    this.limits = { ...DEFAULT_FRAME_QUEUE_LIMITS, ...limits };
    if (!(this.limits.maxFrames >= 1 && this.limits.maxBytes >= 1))
      throw new Error("queue limits must be >= 1");
  }

  get length(): number {
    return this.items.length - this.head;
  }

  counts(): FrameQueueCounts {
    return { queued: this.length, queuedBytes: this.bytes, ...this.c };
  }

  /** Queues a frame, or drops it (counted) when the queue is full. True when queued. */
  push(frame: Buffer): boolean {
    if (this.length >= this.limits.maxFrames || this.bytes + frame.length > this.limits.maxBytes) {
      this.c.dropped++;
      this.c.droppedBytes += frame.length;
      return false;
    }
    this.items.push(frame);
    this.bytes += frame.length;
    this.c.accepted++;
    if (this.bytes > this.c.peakBytes) this.c.peakBytes = this.bytes;
    const w = this.waiter;
    this.waiter = null;
    w?.();
    return true;
  }

  /** The oldest frame, or undefined when empty. */
  shift(): Buffer | undefined {
    if (this.head >= this.items.length) return undefined;
    const f = this.items[this.head];
    this.items[this.head++] = undefined as unknown as Buffer;
    this.bytes -= f.length;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return f;
  }

  /** Resolves when a frame is queued (at once if one is); one waiter at a time. */
  readable(): Promise<void> {
    if (this.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.waiter;
      this.waiter = () => {
        prev?.();
        resolve();
      };
    });
  }

  /** Wakes a waiter without a frame (a consumer that is stopping). */
  wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Empties the queue (frames counted as dropped) and wakes a waiter. */
  clear(): void {
    for (let f = this.shift(); f; f = this.shift()) {
      this.c.dropped++;
      this.c.droppedBytes += f.length;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

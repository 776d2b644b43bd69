/**
 * One monitored disk's rounds on its QEMU: each round a point-in-time view (bitmap rotation +
 * fleece + a read-only export under a fresh random name), the frozen bitmap of the writes since
 * the previous round exported with it. Whoever owns the target's QEMU runs this: the target's
 * agent for a security VM of another host VM (exports.ts).
 */
import { randomBytes } from "node:crypto";
import {
  type DiskView,
  listDirtyBitmaps,
  openDiskView,
  type QemuProcess,
  removeDirtyBitmap,
  stopFleece,
} from "../../qemu/index.ts";

export class DiskRounds {
  private seq = 0;
  /** The bitmap recording since the previous view. */
  private recording: string | null = null;
  private view: DiskView | null = null;

  constructor(
    private readonly qemu: QemuProcess,
    private readonly node: string,
    /** Names this owner's bitmaps (`<prefix>b<n>`) and exports (`<prefix>-<random>`). */
    private readonly prefix: string,
    private readonly fleeceFile: string,
  ) {}

  async open(): Promise<DiskView> {
    const q = this.qemu;
    if (!q.isRunning) throw new Error("the target's QEMU does not run");
    await this.close();
    const start = `${this.prefix}b${++this.seq}`;
    let freeze = this.recording ?? undefined;
    // A bitmap gone (the QEMU was restarted under us): the next view is a full one.
    if (freeze && !(await listDirtyBitmaps(q.qmp, this.node)).some((b) => b.name === freeze))
      freeze = undefined;
    this.view = await openDiskView(q.qmp, {
      node: this.node,
      exportId: `${this.prefix}-${randomBytes(8).toString("hex")}`,
      fleeceFile: this.fleeceFile,
      rotate: { freeze, start },
    });
    this.recording = start;
    return this.view;
  }

  async close(): Promise<void> {
    const v = this.view;
    this.view = null;
    if (v && this.qemu.isRunning) await v.close();
  }

  /**
   * Closes the view and removes every bitmap of this owner (its rounds end), and a fleece
   * left on the drive (a predecessor agent's round cut short: the next view's would collide).
   * Only for an owner that is the drive's sole monitor.
   */
  async clear(): Promise<void> {
    await this.close().catch(() => {});
    if (!this.qemu.isRunning) return;
    const fleece = `fleece-${this.node}`;
    await stopFleece(this.qemu.qmp, {
      source: this.node,
      node: fleece,
      jobId: fleece,
      file: this.fleeceFile,
    }).catch(() => {});
    for (const b of await listDirtyBitmaps(this.qemu.qmp, this.node).catch(() => []))
      if (b.name?.startsWith(`${this.prefix}b`))
        await removeDirtyBitmap(this.qemu.qmp, this.node, b.name).catch(() => {});
    this.recording = null;
  }
}

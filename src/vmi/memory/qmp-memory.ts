// The QMP fallback memory source, for guests without a shared RAM file: QEMU's `pmemsave`
// writes a guest-physical range to a file, which we read back. About 1-2 ms per call (three
// orders of magnitude slower than pread): fine for discovery and occasional queries.
//
// vmi does not depend on the qemu module: anything with QMP's execute() works (the qemu module's
// QmpClient does). pmemsave needs a path QEMU can write: we use a private temporary directory,
// so it must run on the same host as QEMU (and as a user QEMU can write for).

import { mkdtempSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryError } from "../errors.ts";
import { checkPhysRange, MAX_BATCH, type PhysicalMemory, type PhysRange } from "./memory.ts";
import { type MachineType, RamFileMemory, type RamLayout, ramLayout } from "./ram-layout.ts";

/** The part of a QMP client this source needs. */
export interface QmpExecutor {
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
}

const FOUR_GIB = 4 * 1024 * 1024 * 1024;

/**
 * RAM as QEMU lays it out in its RAM block (what a RAM file holds): offsets below `below4g` are
 * GPAs, the rest lives at 4 GiB and up. Wrapped in RamFileMemory, this gives guest-physical
 * memory with the same hole checks as the RAM-file source.
 */
class PmemsaveRam implements PhysicalMemory {
  readonly size: number;
  calls = 0;
  private seq = 0;

  constructor(
    private readonly qmp: QmpExecutor,
    private readonly layout: RamLayout,
    private readonly dir: string,
  ) {
    this.size = layout.ramSize;
  }

  async read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    if (ranges.length > MAX_BATCH) throw new MemoryError("MEM_BAD_REQUEST", "batch too large");
    const out: Uint8Array[] = [];
    for (const r of ranges) {
      checkPhysRange(r, this.size);
      if (r.len === 0) {
        out.push(new Uint8Array(0));
        continue;
      }
      const gpa = r.addr < this.layout.below4g ? r.addr : r.addr - this.layout.below4g + FOUR_GIB;
      const file = join(this.dir, `r${this.seq++}`);
      try {
        this.calls++;
        await this.qmp.execute("pmemsave", { val: gpa, size: r.len, filename: file });
        const data = readFileSync(file);
        if (data.length !== r.len)
          throw new MemoryError("MEM_READ_FAILED", `pmemsave wrote ${data.length} bytes`);
        out.push(new Uint8Array(data.buffer, data.byteOffset, data.length));
      } catch (e) {
        if (e instanceof MemoryError) throw e;
        throw new MemoryError(
          "MEM_READ_FAILED",
          `pmemsave at 0x${gpa.toString(16)}: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      } finally {
        try {
          unlinkSync(file);
        } catch {
          // not written
        }
      }
    }
    return out;
  }
}

export interface QmpMemoryOptions {
  readonly machine?: MachineType;
  /** Where pmemsave files go (a private directory is created inside). */
  readonly tmpDir?: string;
}

/** Guest-physical memory read over QMP. close() removes the temporary directory. */
export class QmpMemory extends RamFileMemory {
  private constructor(
    layout: RamLayout,
    private readonly ram: PmemsaveRam,
    private readonly dir: string,
  ) {
    super(layout, ram);
  }

  static async open(qmp: QmpExecutor, opts: QmpMemoryOptions = {}): Promise<QmpMemory> {
    let base: unknown;
    try {
      base = ((await qmp.execute("query-memory-size-summary")) as { "base-memory"?: unknown })["base-memory"];
    } catch (e) {
      throw new MemoryError("MEM_READ_FAILED", `query-memory-size-summary: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!Number.isSafeInteger(base) || (base as number) <= 0) {
      throw new MemoryError("MEM_READ_FAILED", "QEMU reported no base memory size");
    }
    const layout = ramLayout(opts.machine ?? "q35", base as number);
    const dir = mkdtempSync(join(opts.tmpDir ?? tmpdir(), "nc-vmi-qmp-"));
    return new QmpMemory(layout, new PmemsaveRam(qmp, layout, dir), dir);
  }

  /** pmemsave calls so far (each is one QMP round trip). */
  get calls(): number {
    return this.ram.calls;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

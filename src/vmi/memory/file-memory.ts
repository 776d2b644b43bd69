// The "direct" memory source: a guest's RAM backing file (QEMU memory-backend-file, share=on),
// read with pread(2). Reading the file while the guest runs is safe: QEMU maps it MAP_SHARED,
// so we see the guest's writes as they happen (no snapshot: callers cope with a moving target).
//
// Small reads use readSync: ~2 us per 4 KiB page, against ~20-50 us for a read through libuv's
// thread pool; a process list is hundreds of such reads, so this is where direct access gets its
// speed. Large reads (scans, BTF) go through the thread pool so that a server hosting this source
// keeps serving other connections meanwhile.

import { closeSync, fstatSync, openSync, read, readSync } from "node:fs";
import { MemoryError } from "../errors.ts";
import { checkPhysRange, MAX_BATCH, type PhysicalMemory, type PhysRange } from "./memory.ts";
import { type MachineType, RamFileMemory, type RamLayoutOptions, ramLayout } from "./ram-layout.ts";

/** Reads up to this size are done synchronously. */
const SYNC_READ_MAX = 256 * 1024;

export interface ReadStats {
  /** read() calls (batches). */
  calls: number;
  /** Ranges read. */
  ranges: number;
  bytes: number;
}

function readAsync(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** A file as PhysicalMemory: "addresses" are file offsets. */
export class FileMemory implements PhysicalMemory {
  readonly size: number;
  readonly stats: ReadStats = { calls: 0, ranges: 0, bytes: 0 };
  private fd: number | null;

  private constructor(
    fd: number,
    readonly path: string,
  ) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  /** Opens read-only. Throws MemoryError MEM_READ_FAILED when the file cannot be opened. */
  static open(path: string): FileMemory {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new MemoryError("MEM_READ_FAILED", `cannot open ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      return new FileMemory(fd, path);
    } catch (e) {
      closeSync(fd);
      throw new MemoryError("MEM_READ_FAILED", `cannot stat ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  async read(ranges: readonly PhysRange[]): Promise<Uint8Array[]> {
    const fd = this.fd;
    if (fd === null) throw new MemoryError("MEM_READ_FAILED", `${this.path} is closed`);
    if (ranges.length > MAX_BATCH) {
      throw new MemoryError("MEM_BAD_REQUEST", `batch of ${ranges.length} ranges exceeds ${MAX_BATCH}`);
    }
    for (const r of ranges) checkPhysRange(r, this.size);
    this.stats.calls++;
    const out: Uint8Array[] = [];
    for (const r of ranges) {
      const buf = new Uint8Array(r.len);
      let n: number;
      try {
        n = r.len <= SYNC_READ_MAX ? readSync(fd, buf, 0, r.len, r.addr) : await readAsync(fd, buf, r.addr);
      } catch (e) {
        throw new MemoryError("MEM_READ_FAILED", `pread ${this.path}: ${(e as Error).message}`, { cause: e });
      }
      // The file shrank under us (guest stopped and its pool file truncated?): not data.
      if (n !== r.len) throw new MemoryError("MEM_READ_FAILED", `short read from ${this.path} at ${r.addr}`);
      this.stats.ranges++;
      this.stats.bytes += n;
      out.push(buf);
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

export interface RamFileOptions extends RamLayoutOptions {
  /** Default q35 (what src/qemu starts). */
  readonly machine?: MachineType;
  /** Guest RAM size; default the file size (QEMU sizes the backend file exactly). */
  readonly ramSize?: number;
}

/** A guest's RAM file as guest-physical memory (q35/pc layout), plus its file for stats/close. */
export interface RamFile {
  readonly memory: RamFileMemory;
  readonly file: FileMemory;
  close(): void;
}

export function openRamFile(path: string, opts: RamFileOptions = {}): RamFile {
  const file = FileMemory.open(path);
  try {
    const layout = ramLayout(opts.machine ?? "q35", opts.ramSize ?? file.size, opts);
    const memory = new RamFileMemory(layout, file);
    return { memory, file, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Makes a pre-copy destination's RAM equal to its source's before the destination runs.
 * QEMU 7.2's TCG dirty tracking can let a guest write go untracked, so the page is never
 * sent again and the destination keeps an older copy (docs/qemu-tcg-lost-pages.md). Once the
 * source completed (postmigrate: vCPUs stopped) and the destination loaded everything but was
 * kept paused, both pool files are frozen and must be equal; every 4 KiB page that is not is
 * copied from the source's file into the destination's (QEMU maps it share=on, so the guest
 * sees the file's content).
 */
import { open } from "node:fs/promises";

const PAGE = 4096;
const CHUNK = 1024 * 1024;
/** Page numbers kept for the report; the count is always exact. */
const MAX_LISTED_PAGES = 64;

export interface RamRepair {
  /** 4 KiB pages that differed and were copied from the source. */
  repairedPages: number;
  /** The first of them, as guest-RAM page numbers (byte offset / 4096). */
  pages: number[];
  comparedBytes: number;
  ms: number;
}

export class RamRepairError extends Error {
  override name = "RamRepairError";
}

/** Compares `srcPath` with `dstPath` page by page and copies differing pages into `dstPath`. */
export async function repairRamFile(srcPath: string, dstPath: string): Promise<RamRepair> {
  const t0 = performance.now();
  const [src, dst] = [await open(srcPath, "r"), await open(dstPath, "r+")];
  try {
    const [ss, ds] = [(await src.stat()).size, (await dst.stat()).size];
    if (ss !== ds) throw new RamRepairError(`RAM files differ in size: ${srcPath} ${ss}, ${dstPath} ${ds}`);
    const [a, b] = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    const pages: number[] = [];
    let repairedPages = 0;
    for (let pos = 0; pos < ss; pos += CHUNK) {
      const n = Math.min(CHUNK, ss - pos);
      await readFully(src, a, n, pos, srcPath);
      await readFully(dst, b, n, pos, dstPath);
      if (a.subarray(0, n).equals(b.subarray(0, n))) continue;
      for (let off = 0; off < n; off += PAGE) {
        const end = Math.min(off + PAGE, n);
        if (a.subarray(off, end).equals(b.subarray(off, end))) continue;
        const { bytesWritten } = await dst.write(a, off, end - off, pos + off);
        if (bytesWritten !== end - off) throw new RamRepairError(`short write to ${dstPath} at ${pos + off}`);
        repairedPages++;
        if (pages.length < MAX_LISTED_PAGES) pages.push((pos + off) / PAGE);
      }
    }
    return { repairedPages, pages, comparedBytes: ss, ms: Math.round(performance.now() - t0) };
  } finally {
    await src.close();
    await dst.close();
  }
}

async function readFully(
  fh: Awaited<ReturnType<typeof open>>,
  buf: Buffer,
  n: number,
  pos: number,
  path: string,
): Promise<void> {
  let got = 0;
  while (got < n) {
    const { bytesRead } = await fh.read(buf, got, n - got, pos + got);
    if (bytesRead === 0) throw new RamRepairError(`${path} shrank while being compared (at ${pos + got})`);
    got += bytesRead;
  }
}

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { RamRepairError, repairRamFile } from "./ram-repair.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-ramrepair-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** 2 MiB + 8 KiB of pseudo-random bytes (the workaround's odd size: a short last chunk). */
function ram(): Buffer {
  const b = Buffer.alloc(2 * 1024 * 1024 + 8192);
  let x = 777;
  for (let i = 0; i < b.length; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

function file(name: string, b: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, b);
  return p;
}

test("equal RAM files: nothing copied, every byte compared", async () => {
  const r = await repairRamFile(file("s1", ram()), file("d1", ram()));
  assert.equal(r.repairedPages, 0);
  assert.deepEqual(r.pages, []);
  assert.equal(r.comparedBytes, 2 * 1024 * 1024 + 8192);
});

test("stale pages in the destination (one byte, a whole page, the short tail) are copied from the source, nothing else", async () => {
  const src = ram();
  const dst = Buffer.from(src);
  dst[5 * 4096 + 100] ^= 0xff; // one byte of page 5
  dst.fill(0, 300 * 4096, 301 * 4096); // page 300, zeroed
  dst[src.length - 1] ^= 1; // last byte of the last page (513), in the short last chunk
  const [s, d] = [file("s2", src), file("d2", dst)];
  const r = await repairRamFile(s, d);
  assert.equal(r.repairedPages, 3);
  assert.deepEqual(r.pages, [5, 300, 513]);
  assert.ok(readFileSync(d).equals(src), "destination now equals the source");
  assert.ok(readFileSync(s).equals(src), "source untouched");
  const again = await repairRamFile(s, d);
  assert.equal(again.repairedPages, 0, "a second pass finds nothing");
});

test("files of different sizes are refused, the destination untouched", async () => {
  const src = ram();
  const d = file("d3", src.subarray(0, 4096 * 10));
  await assert.rejects(repairRamFile(file("s3", src), d), RamRepairError);
  assert.equal(readFileSync(d).length, 4096 * 10);
});

import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { compareRamDigests, digestRamFile } from "./ram-digest.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-ramdigest-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** 3 MiB + 8 KiB of pseudo-random bytes (the workaround's odd size: a short last chunk). */
function ramFile(name: string): string {
  const b = Buffer.alloc(3 * 1024 * 1024 + 8192);
  let x = 12345;
  for (let i = 0; i < b.length; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    b.writeUInt32LE(x, i);
  }
  const p = join(dir, name);
  writeFileSync(p, b);
  return p;
}

test("two copies of the same RAM are equal, chunk by chunk, the short last chunk included", async () => {
  const [a, b] = await Promise.all([digestRamFile(ramFile("a")), digestRamFile(ramFile("b"))]);
  assert.equal(a.chunks.length, 4);
  assert.equal(a.sizeBytes, 3 * 1024 * 1024 + 8192);
  assert.deepEqual(compareRamDigests(a, b), { kind: "equal", chunks: 4 });
});

test("one byte flipped in one page is found, in its chunk", async () => {
  const a = ramFile("c");
  const b = ramFile("d");
  for (const [file, at] of [
    [b, 2 * 1024 * 1024 + 4096 * 7 + 100],
    [b, 3 * 1024 * 1024 + 4096 + 5],
  ] as const) {
    const fd = openSync(file, "r+");
    writeSync(fd, Buffer.from([0xa5]), 0, 1, at);
    closeSync(fd);
  }
  const cmp = compareRamDigests(await digestRamFile(a), await digestRamFile(b));
  assert.deepEqual(cmp, { kind: "different", chunks: 4, differing: [2, 3] });
});

test("RAM of different sizes or digests of different chunking are not compared", async () => {
  const a = await digestRamFile(ramFile("e"));
  const small = join(dir, "small");
  writeFileSync(small, Buffer.alloc(1024 * 1024));
  assert.equal(compareRamDigests(a, await digestRamFile(small)).kind, "incomparable");
  assert.equal(compareRamDigests(a, await digestRamFile(ramFile("f"), 64 * 1024)).kind, "incomparable");
  await assert.rejects(digestRamFile(small, 1000), RangeError);
});

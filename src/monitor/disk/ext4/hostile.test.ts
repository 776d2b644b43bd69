// A hostile guest owns every byte of its file system: corrupt images (truncated, bad
// superblocks, extent trees with loops, overlaps, excess entries or depth, directories that
// loop or whose records do not fit, block maps that point at themselves, a journal pointing
// outside) end in typed errors or reported problems, never in a hang, an exception of another
// kind, or memory that grows with what a field claims. Then seeded random corruption of the
// metadata: every open, walk and read finishes quickly with a result or an Ext4Error.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Ext4Error, type Ext4ErrorCode } from "./errors.ts";
import { Ext4 } from "./fs.ts";
import { debugfsScript, KiB, makeTree, mkfs, TempDir } from "./images.testkit.ts";
import { SUPERBLOCK_OFFSET } from "./layout.ts";
import { bufferSource } from "./source.ts";
import { walk } from "./walk.ts";

const tmp = new TempDir();
const srcDir = tmp.file("tree");
let good: Buffer;
let blockMapped: Buffer;
let journaled: Buffer;
const BS = 1024;

before(() => {
  makeTree(srcDir);
  const image = tmp.file("good.img");
  mkfs(image, 24, srcDir);
  good = readFileSync(image);
  const bm = tmp.file("blockmapped.img");
  mkfs(bm, 24, srcDir, { features: "^extent,^64bit,^metadata_csum" });
  blockMapped = readFileSync(bm);
  const j = tmp.file("journal.img");
  mkfs(j, 24, srcDir);
  debugfsScript(j, ["jo", `jw -b 20000 ${image}`, "jc"], tmp);
  journaled = readFileSync(j);
});
after(() => tmp.remove());

const open = (b: Buffer) => Ext4.open(bufferSource(b));

async function rejectsWith(p: Promise<unknown>, code: Ext4ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `an Ext4Error, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Where inode `ino` is in the image. */
async function inodeOffset(image: Buffer, path: string): Promise<{ offset: number; ino: number }> {
  const fs = await open(image);
  const ino = (await fs.lookup(path)).ino;
  const { block, offset } = fs.inodeLocation(ino);
  return { offset: block * BS + offset, ino };
}

/** Opens, walks everything and reads every file and link, within `ms`; returns problem codes. */
async function readAll(image: Buffer, ms = 5000): Promise<string[]> {
  const deadline = Date.now() + ms;
  const codes: string[] = [];
  const fs = await open(image);
  for await (const e of walk(fs)) {
    assert.ok(Date.now() < deadline, "the walk ends in time");
    if (e.kind === "problem") {
      assert.ok(e.error instanceof Ext4Error);
      codes.push(`${e.path}:${e.error.code}`);
      continue;
    }
    try {
      if (e.inode.type === "file") await fs.readWhole(e.inode);
      else if (e.inode.type === "symlink") await fs.readLink(e.inode);
    } catch (err) {
      assert.ok(err instanceof Ext4Error, `reading ${e.path}: ${err}`);
      codes.push(`${e.path}:${err.code}`);
    }
  }
  return codes;
}

describe("truncated and bad superblocks", () => {
  test("a device cut anywhere is 'truncated'", async () => {
    for (const length of [0, 1500, 2048, 3 * KiB, good.length / 2, good.length - 1])
      await rejectsWith(open(good.subarray(0, length)), "truncated");
  });

  const patched = (f: (sb: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024));
    return b;
  };

  test("magic, block size, counts, features", async () => {
    await rejectsWith(open(patched((sb) => sb.writeUInt16LE(0x1234, 0x38))), "bad-magic");
    await rejectsWith(open(patched((sb) => sb.writeUInt32LE(7, 0x18))), "bad-value", /s_log_block_size/);
    await rejectsWith(open(patched((sb) => sb.writeUInt32LE(0, 0x20))), "bad-value", /s_blocks_per_group/);
    await rejectsWith(open(patched((sb) => sb.writeUInt32LE(0, 0x28))), "bad-value", /s_inodes_per_group/);
    await rejectsWith(open(patched((sb) => sb.writeUInt32LE(999, 0x0))), "bad-value", /s_inodes_count/);
    await rejectsWith(open(patched((sb) => sb.writeUInt16LE(100, 0x58))), "bad-value", /s_inode_size/);
    await rejectsWith(open(patched((sb) => sb.writeUInt16LE(48, 0xfe))), "bad-value", /s_desc_size/);
    // 2^49 blocks claimed: refused before anything is allocated for them.
    await rejectsWith(
      open(
        patched((sb) => {
          sb.writeUInt32LE(0, 0x4);
          sb.writeUInt32LE(0x20000, 0x150);
        }),
      ),
      "bad-value",
      /s_blocks_count/,
    );
    // 2^48 - 1 blocks: their groups do not match the inode count.
    await rejectsWith(
      open(
        patched((sb) => {
          sb.writeUInt32LE(0xffffffff, 0x4);
          sb.writeUInt32LE(0xffff, 0x150);
        }),
      ),
      "bad-value",
      /s_inodes_count/,
    );
    await rejectsWith(
      open(patched((sb) => sb.writeUInt32LE(sb.readUInt32LE(0x60) | 0x1, 0x60))),
      "unsupported",
      /compression/,
    );
    await rejectsWith(
      open(patched((sb) => sb.writeUInt32LE((sb.readUInt32LE(0x60) | 0x80000000) >>> 0, 0x60))),
      "unsupported",
    );
  });

  test("an inode table placed outside the file system", async () => {
    const b = Buffer.from(good);
    b.writeUInt32LE(0x7fffffff, 2 * BS + 0x8); // group 0's bg_inode_table_lo
    await rejectsWith(open(b), "out-of-range", /inode table/);
  });
});

describe("extent trees", () => {
  /** A copy with the extent root of `path` edited. */
  const edit = async (path: string, f: (root: Buffer, fs: Ext4) => unknown) => {
    const b = Buffer.from(good);
    const { offset } = await inodeOffset(b, path);
    await f(b.subarray(offset + 0x28, offset + 0x28 + 60), await open(good));
    return b;
  };
  const read = async (b: Buffer, path: string) => {
    const fs = await open(b);
    return fs.readWhole(await fs.lookup(path));
  };

  test("entries above max, max above the room, depth above 5, bad magic", async () => {
    await rejectsWith(read(await edit("/etc/motd", (r) => r.writeUInt16LE(5, 2)), "/etc/motd"), "bad-value");
    await rejectsWith(
      read(await edit("/etc/motd", (r) => r.writeUInt16LE(200, 4)), "/etc/motd"),
      "bad-value",
    );
    await rejectsWith(read(await edit("/etc/motd", (r) => r.writeUInt16LE(6, 6)), "/etc/motd"), "too-deep");
    await rejectsWith(
      read(await edit("/etc/motd", (r) => r.writeUInt16LE(0xbeef, 0)), "/etc/motd"),
      "bad-magic",
    );
  });

  test("an extent outside the file system, overlapping extents, a zero-length extent", async () => {
    await rejectsWith(
      read(await edit("/etc/motd", (r) => r.writeUInt32LE(0x7fffffff, 12 + 8)), "/etc/motd"),
      "out-of-range",
    );
    // /bin/busybox: make its root two overlapping leaves.
    const overlap = await edit("/bin/busybox", (r) => {
      r.writeUInt16LE(2, 2);
      r.copy(r, 24, 12, 24);
    });
    await rejectsWith(read(overlap, "/bin/busybox"), "bad-value", /overlaps/);
    await rejectsWith(
      read(await edit("/etc/motd", (r) => r.writeUInt16LE(0, 12 + 4)), "/etc/motd"),
      "bad-value",
    );
  });

  test("an index node pointing at itself, two indexes at one node: no endless descent", async () => {
    // sparse.bin's tree has index nodes (400 extents).
    const fs = await open(good);
    const inode = await fs.lookup("/usr/lib/sparse.bin");
    const { mapBlocks } = await fs.map(inode);
    assert.ok(mapBlocks.length >= 1);
    const { offset } = await inodeOffset(good, "/usr/lib/sparse.bin");
    const root = good.subarray(offset + 0x28, offset + 0x28 + 60);
    assert.ok(root.readUInt16LE(6) >= 1, "the root is an index node");

    // Self: a child node whose depth says it is an index node pointing at itself.
    const self = Buffer.from(good);
    const node = mapBlocks[0];
    const n = self.subarray(node * BS, (node + 1) * BS);
    n.writeUInt16LE(root.readUInt16LE(6), 6); // same depth as the root
    n.writeUInt16LE(1, 2);
    n.writeUInt32LE(0, 12);
    n.writeUInt32LE(node, 16);
    n.writeUInt16LE(0, 20);
    await rejectsWith(read(self, "/usr/lib/sparse.bin"), "bad-value", /depth/);

    // Twice: the root's two indexes name the same node.
    const twice = Buffer.from(good);
    const r = twice.subarray(offset + 0x28, offset + 0x28 + 60);
    r.writeUInt16LE(2, 2);
    r.writeUInt16LE(Math.max(2, r.readUInt16LE(4)), 4);
    r.writeUInt32LE(0xfffff000, 24); // past the first subtree: only the shared node is wrong
    r.writeUInt32LE(r.readUInt32LE(16), 28);
    r.writeUInt16LE(r.readUInt16LE(20), 32);
    await rejectsWith(read(twice, "/usr/lib/sparse.bin"), "loop");
  });

  test("more extents than the reader's bound", async () => {
    const fs = await Ext4.open(bufferSource(good), { limits: { maxExtentsPerFile: 100 } });
    await rejectsWith(fs.map(await fs.lookup("/usr/lib/sparse.bin")), "too-many");
  });
});

describe("directories", () => {
  /** The block and entries of directory `dir`'s first block. */
  const firstDirBlock = async (image: Buffer, dir: string) => {
    const fs = await open(image);
    const { runs } = await fs.map(await fs.lookup(dir));
    return runs[0].physical;
  };

  test("an entry pointing at an ancestor is a loop; the walk ends", async () => {
    const b = Buffer.from(good);
    const fs = await open(b);
    const a = (await fs.lookup("/a")).ino;
    const block = await firstDirBlock(b, "/a/b/c/d");
    // The "e" entry (third, after . and ..) now names /a.
    const dirent = b.subarray(block * BS, (block + 1) * BS);
    let o = 0;
    for (let i = 0; i < 2; i++) o += dirent.readUInt16LE(o + 4);
    assert.equal(dirent.toString("latin1", o + 8, o + 8 + dirent[o + 6]), "e");
    dirent.writeUInt32LE(a, o);
    const codes = await readAll(b);
    assert.deepEqual(codes, ["/a/b/c/d/e:loop"]);
  });

  test("records that do not fit: rec_len 0, past the block, name longer than the record", async () => {
    for (const [at, value] of [
      [4, 0], // rec_len 0 (would loop forever)
      [4, 4000], // past the block
      [4, 10], // not a multiple of 4
    ] as const) {
      const b = Buffer.from(good);
      const block = await firstDirBlock(b, "/etc");
      b.writeUInt16LE(value, block * BS + at);
      assert.deepEqual(await readAll(b), ["/etc:bad-value"], `rec_len ${value}`);
    }
    const b = Buffer.from(good);
    const block = await firstDirBlock(b, "/etc");
    b[block * BS + 6] = 200; // "."'s name_len
    assert.deepEqual(await readAll(b), ["/etc:bad-value"]);
  });

  test("an entry naming an inode beyond the file system, a slash in a name", async () => {
    const b = Buffer.from(good);
    const block = await firstDirBlock(b, "/etc");
    const d = b.subarray(block * BS, (block + 1) * BS);
    const third = d.readUInt16LE(4) + d.readUInt16LE(d.readUInt16LE(4) + 4);
    d.writeUInt32LE(0x7fffffff, third);
    assert.deepEqual(await readAll(b), ["/etc:out-of-range"]);
    const s = Buffer.from(good);
    s[block * BS + third + 8] = 0x2f;
    assert.deepEqual(await readAll(s), ["/etc:bad-value"]);
  });

  test("a directory larger than the reader's bound", async () => {
    const fs = await Ext4.open(bufferSource(good), { limits: { maxDirBytes: 2 * KiB } });
    await rejectsWith(fs.readDir(await fs.lookup("/data/many")), "too-many");
  });
});

describe("block maps (ext2/3 style)", () => {
  test("an indirect block pointing at itself ends; a huge size is refused", async () => {
    const fs = await open(blockMapped);
    const inode = await fs.lookup("/bin/busybox");
    const { offset } = (() => {
      const l = fs.inodeLocation(inode.ino);
      return { offset: l.block * BS + l.offset };
    })();
    const b = Buffer.from(blockMapped);
    const ind = b.readUInt32LE(offset + 0x28 + 48);
    assert.ok(ind > 0, "busybox (300 KiB) has an indirect block");
    for (let i = 0; i < BS / 4; i++) b.writeUInt32LE(ind, ind * BS + i * 4);
    const t0 = Date.now();
    const data = await (await open(b)).readWhole(inode);
    assert.equal(data.length, inode.size);
    assert.ok(Date.now() - t0 < 2000);
    const huge = Buffer.from(blockMapped);
    huge.writeUInt32LE(0xffff, offset + 0x6c); // i_size_high: 2^48 bytes
    const f2 = await open(huge);
    await rejectsWith(f2.map(await f2.inode(inode.ino)), "too-many");
  });
});

describe("the journal", () => {
  test("a log start outside the journal, a logged block outside the file system", async () => {
    const fs = await Ext4.open(bufferSource(journaled), { journal: false });
    const j = await fs.map(await fs.inode(8));
    const jsb = j.runs[0].physical * BS;
    assert.equal(journaled.readUInt32BE(jsb), 0xc03b3998);
    assert.notEqual(journaled.readUInt32BE(jsb + 0x1c), 0, "the journal needs recovery");
    const start = Buffer.from(journaled);
    start.writeUInt32BE(0x7fffffff, jsb + 0x1c);
    await rejectsWith(open(start), "bad-value", /log start/);
    // The descriptor's first tag (at 12) names block 20000: make it 2^31.
    const desc = Buffer.from(journaled);
    const first = desc.readUInt32BE(jsb + 0x1c);
    const d = (j.runs[0].physical + first) * BS;
    assert.equal(desc.readUInt32BE(d + 12), 20000);
    desc.writeUInt32BE(0x7fffffff, d + 12);
    await rejectsWith(open(desc), "out-of-range", /logs block/);
  });

  test("a log that never ends is scanned at most once round", async () => {
    // Every block of the log a descriptor of the expected sequence with no tags: the scan
    // must stop after the log's length, not cycle.
    const b = Buffer.from(journaled);
    const fs = await Ext4.open(bufferSource(b), { journal: false });
    const j = await fs.map(await fs.inode(8));
    const jsb = j.runs[0].physical * BS;
    const seq = b.readUInt32BE(jsb + 0x18);
    const maxLen = b.readUInt32BE(jsb + 0x10);
    const logical = (n: number) => {
      const r = j.runs.find((x) => n >= x.logical && n < x.logical + x.length)!;
      return (r.physical + n - r.logical) * BS;
    };
    for (let n = 1; n < maxLen; n++) {
      const o = logical(n);
      b.fill(0, o, o + BS);
      b.writeUInt32BE(0xc03b3998, o);
      b.writeUInt32BE(1, o + 4);
      b.writeUInt32BE(seq, o + 8);
      b.writeUInt32BE(0, o + 12); // a tag for block 0...
      b.writeUInt32BE(8, o + 16 + 4); // ...flags: LAST_TAG (v3 layout is 16 bytes; v2: at +6)
    }
    const t0 = Date.now();
    try {
      const opened = await open(b);
      assert.equal(opened.journal!.transactions, 0);
    } catch (e) {
      assert.ok(e instanceof Ext4Error, String(e));
    }
    assert.ok(Date.now() - t0 < 5000, "bounded");
  });
});

test("seeded random corruption of metadata: a result or an Ext4Error, quickly, with bounded memory", async (t) => {
  // The metadata of the good image: superblock, descriptors, inode tables, directories, extent nodes.
  const fs = await open(good);
  const regions: Array<[number, number]> = [[SUPERBLOCK_OFFSET, 1024]];
  regions.push([2 * BS, BS]);
  for (const [first] of fs.inodeTables()) regions.push([first * BS, 64 * BS]);
  for await (const e of walk(fs)) {
    if (e.kind !== "entry") continue;
    const m = await fs.map(e.inode).catch(() => null);
    if (!m) continue;
    for (const n of m.mapBlocks) regions.push([n * BS, BS]);
    if (e.inode.type === "dir") for (const r of m.runs) regions.push([r.physical * BS, r.length * BS]);
  }
  let x = 12345;
  const rand = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x % n;
  };
  const heap0 = process.memoryUsage().heapUsed;
  const outcomes = new Map<string, number>();
  for (let round = 0; round < 80; round++) {
    const b = Buffer.from(good);
    for (let k = 0; k < 1 + rand(24); k++) {
      const [start, len] = regions[rand(regions.length)];
      const at = start + rand(len);
      b[at] = rand(4) === 0 ? 0xff : rand(256);
    }
    let outcome = "ok";
    try {
      const codes = await readAll(b, 3000);
      if (codes.length > 0) outcome = `problems:${codes[0].split(":").pop()}`;
    } catch (e) {
      assert.ok(e instanceof Ext4Error, `round ${round}: ${(e as Error).stack}`);
      outcome = `error:${e.code}`;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  const grown = process.memoryUsage().heapUsed - heap0;
  t.diagnostic(
    `outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}; heap grew ${(grown / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.ok(grown < 256 * 2 ** 20, "memory stays bounded");
  assert.ok(outcomes.size > 2, "the corruption was noticed in several ways");
});

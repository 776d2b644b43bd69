// The journal applied in memory, checked against e2fsprogs: an image whose newest metadata is
// only in its journal (written with debugfs' journal_write, with and without checksums v3)
// reads like the image where the change was made directly; revoked blocks, later copies,
// escaped blocks and an uncommitted transaction behave as e2fsck's replay
// (`e2fsck -E journal_only`) makes them; nothing is written to the image.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Ext4, nameToString } from "./fs.ts";
import { debugfs, debugfsScript, makeTree, mkfs, pseudoRandom, TempDir } from "./images.testkit.ts";
import { JBD2_MAGIC, SUPERBLOCK_OFFSET } from "./layout.ts";
import { fileSource } from "./source.ts";
import { walk } from "./walk.ts";

const tmp = new TempDir();
const srcDir = tmp.file("tree");
const BS = 1024;
let base: string;

before(() => {
  makeTree(srcDir);
  base = tmp.file("base.img");
  mkfs(base, 24, srcDir);
});
after(() => tmp.remove());

async function withFs<T>(image: string, f: (fs: Ext4) => Promise<T>, journal = true): Promise<T> {
  const src = await fileSource(image);
  try {
    return await f(await Ext4.open(src, { journal }));
  } finally {
    await src.close();
  }
}

/** Every path with its type, mode, size and contents (or link target), as one comparable list. */
async function snapshot(fs: Ext4): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(fs)) {
    if (e.kind === "problem") {
      out.push(`${e.path} PROBLEM ${e.error.message}`);
      continue;
    }
    const i = e.inode;
    let content = "";
    if (i.type === "file") content = (await fs.readWhole(i)).toString("base64");
    else if (i.type === "symlink") content = (await fs.readLink(i)).toString("latin1");
    else if (i.type === "dir")
      content = (await fs.readDir(i))
        .map((d) => nameToString(d.name))
        .sort()
        .join(",");
    out.push(`${e.path} ${i.type} ${i.mode.toString(8)} ${i.size} ${i.ino} ${content}`);
  }
  return out.sort();
}

/** Blocks that differ between two images of the same size. */
function changedBlocks(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let n = 0; n * BS < a.length; n++)
    if (!a.subarray(n * BS, (n + 1) * BS).equals(b.subarray(n * BS, (n + 1) * BS))) out.push(n);
  return out;
}

/** The blocks of a file in an image, as debugfs lists them. */
function fileBlocks(image: string, path: string): number[] {
  return debugfs(image, `blocks ${path}`).toString().trim().split(/\s+/).filter(Boolean).map(Number);
}

/** e2fsck's replay of the journal into a copy of the image. */
function replayed(image: string): Buffer {
  const copy = `${image}.replayed`;
  copyFileSync(image, copy);
  execFileSync("e2fsck", ["-E", "journal_only", "-y", copy], { stdio: "ignore" });
  return readFileSync(copy);
}

const superblockBlock = Math.floor(SUPERBLOCK_OFFSET / BS);

for (const checksums of [false, true]) {
  describe(`a change kept in the journal (${checksums ? "checksums v3" : "no checksums"})`, () => {
    const direct = tmp.file(`direct-${checksums}.img`);
    const journaled = tmp.file(`journaled-${checksums}.img`);

    before(() => {
      // The change, made directly: a replaced binary and a new file in /etc.
      copyFileSync(base, direct);
      writeFileSync(tmp.file("new-busybox"), pseudoRandom(150 * 1024 + 7, 99));
      writeFileSync(tmp.file("motd2"), "a new file\n");
      debugfsScript(
        direct,
        [
          "rm /bin/busybox",
          `write ${tmp.file("new-busybox")} /bin/busybox`,
          "sif /bin/busybox mode 0104755",
          `write ${tmp.file("motd2")} /etc/motd2`,
        ],
        tmp,
      );
      // The same change as ext4 leaves it while mounted (data=ordered): file data written home,
      // metadata only in the journal.
      const before = readFileSync(base);
      const after = readFileSync(direct);
      const data = new Set([...fileBlocks(direct, "/bin/busybox"), ...fileBlocks(direct, "/etc/motd2")]);
      const image = Buffer.from(before);
      const metadata: number[] = [];
      for (const n of changedBlocks(before, after)) {
        if (data.has(n)) after.copy(image, n * BS, n * BS, (n + 1) * BS);
        else if (n !== superblockBlock) metadata.push(n);
      }
      writeFileSync(journaled, image);
      assert.ok(metadata.length >= 4, `metadata blocks changed: ${metadata}`);
      writeFileSync(
        tmp.file("logged.bin"),
        Buffer.concat(metadata.map((n) => after.subarray(n * BS, (n + 1) * BS))),
      );
      debugfsScript(
        journaled,
        [checksums ? "jo -c" : "jo", `jw -b ${metadata.join(",")} ${tmp.file("logged.bin")}`, "jc"],
        tmp,
      );
      const features = execFileSync("dumpe2fs", ["-h", journaled], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      assert.match(features, /needs_recovery/);
      if (checksums) assert.match(features, /journal_checksum_v3/);
    });

    test("read with its journal, the image is the directly changed one", async () => {
      const want = await withFs(direct, snapshot);
      const got = await withFs(journaled, async (fs) => {
        assert.equal(fs.journal!.transactions, 1);
        assert.ok(fs.journal!.blocks.size >= 4);
        return snapshot(fs);
      });
      assert.deepEqual(got, want);
      await withFs(journaled, async (fs) => {
        const busybox = await fs.lookup("/bin/busybox");
        assert.equal(busybox.mode, 0o104755);
        assert.ok((await fs.readWhole(busybox)).equals(pseudoRandom(150 * 1024 + 7, 99)));
        assert.equal((await fs.readWhole(await fs.lookup("/etc/motd2"))).toString(), "a new file\n");
      });
    });

    test("without the journal the reader sees the old metadata (why it is applied)", async () => {
      await withFs(
        journaled,
        async (fs) => {
          await assert.rejects(fs.lookup("/etc/motd2"), /not-found/);
          assert.equal((await fs.lookup("/bin/busybox")).size, 300 * 1024 + 123);
        },
        false,
      );
    });

    test("the logged blocks read as e2fsck replays them; the image is not written", async () => {
      const image = readFileSync(journaled);
      const fixed = replayed(journaled);
      await withFs(journaled, async (fs) => {
        for (const n of fs.journal!.blocks.keys())
          if (n !== superblockBlock)
            assert.ok((await fs.readBlock(n)).equals(fixed.subarray(n * BS, (n + 1) * BS)), `block ${n}`);
      });
      assert.ok(readFileSync(journaled).equals(image), "read-only");
    });
  });
}

describe("revokes, later copies, escaped blocks, an uncommitted tail", () => {
  const image = tmp.file("tx.img");
  const tail = tmp.file("tail.img");
  const X = 20_000;
  const Y = 20_001;
  const Z = 20_002;
  const W = 20_003;
  const v = (seed: number) => pseudoRandom(BS, seed);
  const escaped = Buffer.concat([Buffer.from([0xc0, 0x3b, 0x39, 0x98]), pseudoRandom(BS - 4, 5)]);
  const block = (b: Buffer, n: number) => b.subarray(n * BS, (n + 1) * BS);

  before(() => {
    const f = (name: string, b: Buffer) => {
      writeFileSync(tmp.file(name), b);
      return tmp.file(name);
    };
    copyFileSync(base, image);
    // (debugfs 1.47 overwrites the commit block of a transaction with a revoke by the next
    // transaction's descriptor: the revoke comes last.)
    debugfsScript(
      image,
      [
        "jo -c",
        // 1: X=v1, Y=v1, Z=v1
        `jw -b ${X},${Y},${Z} ${f("t1", Buffer.concat([v(1), v(1), v(1)]))}`,
        // 2: W starts with the journal's magic (escaped in the log)
        `jw -b ${W} ${f("t2", escaped)}`,
        // 3: X=v2 (the later copy wins)
        `jw -b ${X} ${f("t3", v(2))}`,
        // 4: Y revoked: its copy from 1 must not be applied
        "jw -r 20001 /dev/null",
        "jc",
      ],
      tmp,
    );
    copyFileSync(base, tail);
    // 1: Z=v1; 2, not committed: Z=v4 must not be applied.
    debugfsScript(
      tail,
      ["jo -c", `jw -b ${Z} ${f("u1", v(1))}`, `jw -b ${Z} -c ${f("u2", v(4))}`, "jc"],
      tmp,
    );
  });

  test("as e2fsck replays them", async () => {
    const original = readFileSync(base);
    const fixed = replayed(image);
    assert.ok(block(fixed, X).equals(v(2)), "e2fsck: the later copy");
    assert.ok(block(fixed, Y).equals(block(original, Y)), "e2fsck: revoked");
    assert.ok(block(fixed, Z).equals(v(1)), "e2fsck: not revoked");
    assert.ok(block(fixed, W).equals(escaped), "e2fsck: unescaped");
    await withFs(image, async (fs) => {
      assert.equal(fs.journal!.transactions, 4);
      assert.deepEqual([...fs.journal!.blocks.keys()].sort(), [X, Z, W]);
      for (const n of [X, Y, Z, W]) assert.ok((await fs.readBlock(n)).equals(block(fixed, n)), `block ${n}`);
      assert.equal((await fs.readBlock(W)).readUInt32BE(0), JBD2_MAGIC);
    });
  });

  test("data read ahead in one request reads as without it: journaled copies applied, past the budget read as asked", async () => {
    const fixed = replayed(image);
    const src = await fileSource(image);
    let requests = 0;
    const counted = {
      size: src.size,
      read: (o: number, l: number) => {
        requests++;
        return src.read(o, l);
      },
    };
    try {
      const fs = await Ext4.open(counted);
      for (const n of [X, Z, W]) await fs.readBlock(n); // their logged copies cached: not counted below
      const before = requests;
      // [X-4, X+8) holds the journaled X, Z and W (Y revoked: its home copy).
      assert.equal(
        await fs.prefetchData(
          [
            [X - 4, 12],
            [X + 100, 4],
          ],
          12 * BS,
        ),
        12 * BS,
        "the second range is over budget",
      );
      assert.equal(requests - before, 1, "one request for the range");
      const got = await fs.readData(X - 4, 12);
      assert.equal(requests - before, 1, "readData served from the prefetched blocks");
      assert.ok(got.equals(fixed.subarray((X - 4) * BS, (X + 8) * BS)), "as e2fsck replays them");
      assert.equal(got.readUInt32BE((W - X + 4) * BS), JBD2_MAGIC, "the escaped block unescaped");
      // A second read of the same blocks is a fresh copy: the overlay did not write into the prefetch.
      assert.ok((await fs.readData(X, 1)).equals(v(2)), "X: the later copy, again");
      const past = await fs.readData(X + 100, 4);
      assert.equal(requests - before, 2, "the range past the budget is read when asked for");
      assert.ok(past.equals(fixed.subarray((X + 100) * BS, (X + 104) * BS)), "past the budget");
      await assert.rejects(fs.prefetchData([[fs.sb.blocksCount - 1, 2]], 1 << 20), /out-of-range/);
    } finally {
      await src.close();
    }
  });

  test("the log is scanned in a few requests with read-ahead, to the same overlay as block by block", async () => {
    const src = await fileSource(image);
    try {
      const open = async (readaheadBlocks: number) => {
        let requests = 0;
        const counted = {
          size: src.size,
          read: (o: number, l: number) => {
            requests++;
            return src.read(o, l);
          },
        };
        const fs = await Ext4.open(counted, { limits: { readaheadBlocks } });
        const blocks = [...fs.journal!.blocks].map(
          ([n, l]) => `${n}:${l.location}:${l.escaped}:${l.sequence}`,
        );
        // The logged copies come with the scan's read-ahead.
        for (const n of [X, Z, W]) await fs.readBlock(n);
        return { blocks, requests, scanned: fs.journal!.scanned };
      };
      const one = await open(1);
      const ahead = await open(32);
      assert.deepEqual(ahead.blocks, one.blocks, "the same overlay");
      assert.equal(ahead.scanned, one.scanned);
      assert.ok(one.scanned >= 10, `${one.scanned} log blocks scanned`);
      assert.ok(
        ahead.requests + one.scanned / 2 <= one.requests,
        `${ahead.requests} requests with read-ahead, ${one.requests} without (${one.scanned} log blocks)`,
      );
    } finally {
      await src.close();
    }
  });

  test("an uncommitted transaction is ignored, as e2fsck does", async () => {
    const fixed = replayed(tail);
    assert.ok(block(fixed, Z).equals(v(1)));
    await withFs(tail, async (fs) => {
      assert.equal(fs.journal!.transactions, 1);
      assert.ok((await fs.readBlock(Z)).equals(v(1)));
    });
  });
});

// The ext4 reader against images made by mkfs.ext4 -d (e2fsprogs) from a known tree, in
// several layouts (1 KiB and 4 KiB blocks, 32- and 64-byte group descriptors, with and without
// metadata_csum, 128-byte inodes, meta_bg, block-mapped files without extents, ext2, htree
// directories from e2fsck -D): every file, directory and symlink reads as the source tree has
// it, and as e2fsprogs' debugfs reads it (cat, dump_extents, stat).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { Ext4Error } from "./errors.ts";
import { Ext4, nameToString } from "./fs.ts";
import {
  debugfs,
  KiB,
  type MkfsOptions,
  makeTree,
  mkfs,
  readTree,
  sparseBytes,
  TempDir,
  type TreeFile,
} from "./images.testkit.ts";
import { EXT4_EXTENTS_FL, EXT4_INDEX_FL } from "./layout.ts";
import { BlockCache, fileSource } from "./source.ts";
import { walk } from "./walk.ts";

const tmp = new TempDir();
const srcDir = tmp.file("tree");
let expected: Map<string, TreeFile>;

before(() => {
  makeTree(srcDir);
  expected = readTree(srcDir, nameToString);
});
after(() => tmp.remove());

interface Variant {
  name: string;
  sizeMiB: number;
  mkfs: MkfsOptions;
  /** After mkfs: e2fsck -fyD (indexes directories: htree). */
  htree?: boolean;
  blockSize: number;
  descSize: number;
  extents: boolean;
}

const VARIANTS: Variant[] = [
  {
    name: "default (1 KiB blocks, 64bit, metadata_csum)",
    sizeMiB: 24,
    mkfs: {},
    blockSize: 1024,
    descSize: 64,
    extents: true,
  },
  {
    name: "4 KiB blocks",
    sizeMiB: 24,
    mkfs: { blockSize: 4096, extra: ["-g", "2048"] },
    blockSize: 4096,
    descSize: 64,
    extents: true,
  },
  {
    name: "no metadata_csum, no 64bit (32-byte descriptors)",
    sizeMiB: 24,
    mkfs: { features: "^metadata_csum,^64bit" },
    blockSize: 1024,
    descSize: 32,
    extents: true,
  },
  {
    name: "128-byte inodes, 2 KiB blocks",
    sizeMiB: 24,
    mkfs: { inodeSize: 128, blockSize: 2048, extra: ["-g", "4096"] },
    blockSize: 2048,
    descSize: 64,
    extents: true,
  },
  {
    name: "meta_bg (descriptors spread over the groups)",
    sizeMiB: 40,
    mkfs: { features: "meta_bg,^resize_inode", extra: ["-g", "1024", "-N", "4096"] },
    blockSize: 1024,
    descSize: 64,
    extents: true,
  },
  {
    name: "block-mapped files (no extent feature)",
    sizeMiB: 24,
    mkfs: { features: "^extent,^64bit,^metadata_csum" },
    blockSize: 1024,
    descSize: 32,
    extents: false,
  },
  {
    name: "ext2",
    sizeMiB: 24,
    mkfs: { type: "ext2", blockSize: 4096, extra: ["-g", "2048"] },
    blockSize: 4096,
    descSize: 32,
    extents: false,
  },
  {
    name: "htree directories (e2fsck -D)",
    sizeMiB: 24,
    mkfs: { features: "^metadata_csum" },
    htree: true,
    blockSize: 1024,
    descSize: 64,
    extents: true,
  },
];

/** debugfs dump_extents: the leaf extents as [logical, physical, length, uninit]. */
function debugfsExtents(image: string, path: string): Array<[number, number, number, boolean]> {
  const out: Array<[number, number, number, boolean]> = [];
  for (const line of debugfs(image, `dump_extents ${path}`).toString().split("\n")) {
    const m =
      /^\s*(\d+)\/\s*(\d+)\s+\d+\/\s*\d+\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s*(\S*)/.exec(line);
    if (m && m[1] === m[2]) out.push([Number(m[3]), Number(m[5]), Number(m[7]), m[8] === "Uninit"]);
  }
  return out;
}

for (const v of VARIANTS) {
  describe(v.name, () => {
    const image = tmp.file(`${v.name.replace(/[^a-z0-9]+/gi, "-")}.img`);
    let src: Awaited<ReturnType<typeof fileSource>>;
    let fs: Ext4;

    before(async () => {
      mkfs(image, v.sizeMiB, srcDir, v.mkfs);
      if (v.htree) {
        try {
          execFileSync("e2fsck", ["-fyD", image], { stdio: "ignore" });
        } catch (e) {
          // Exit code 1: the file system was changed (directories optimized), as asked.
          if ((e as { status?: number }).status !== 1) throw e;
        }
      }
      src = await fileSource(image);
      fs = await Ext4.open(src);
    });
    after(() => src?.close());

    test("superblock and descriptors", () => {
      assert.equal(fs.sb.blockSize, v.blockSize);
      assert.equal(fs.sb.descSize, v.descSize);
      assert.equal(fs.sb.uuid, "6e657374-636c-6f75-6400-000000000001");
      const dumpe2fs = execFileSync("dumpe2fs", ["-h", image], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      assert.equal(fs.sb.blocksCount, Number(/Block count:\s+(\d+)/.exec(dumpe2fs)![1]));
      assert.equal(fs.sb.inodesCount, Number(/Inode count:\s+(\d+)/.exec(dumpe2fs)![1]));
      assert.equal(fs.sb.inodeSize, Number(/Inode size:\s+(\d+)/.exec(dumpe2fs)![1]));
      assert.equal(fs.sb.groupCount > 1, true, "several block groups");
      // The inode tables where dumpe2fs puts them.
      const full = execFileSync("dumpe2fs", [image], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      const tables = [...full.matchAll(/Inode table at (\d+)-/g)].map((m) => Number(m[1]));
      assert.deepEqual(
        fs.inodeTables().map(([first]) => first),
        tables,
      );
    });

    test("the walk finds the source tree, every file's bytes and every link's target", async () => {
      const seen = new Map<string, string>();
      const problems: string[] = [];
      for await (const e of walk(fs)) {
        if (e.kind === "problem") {
          problems.push(`${e.path}: ${e.error.message}`);
          continue;
        }
        seen.set(e.path, e.inode.type);
        if (e.path === "/lost+found" || e.path.startsWith("/lost+found/")) continue;
        const want = expected.get(e.path);
        assert.ok(want, `${e.path} is in the source tree`);
        assert.equal(e.inode.type, want.type, `${e.path}: type`);
        if (want.type === "file") {
          const data = await fs.readWhole(e.inode);
          assert.ok(
            data.equals(want.data!),
            `${e.path}: ${data.length} bytes read, ${want.data!.length} expected`,
          );
          assert.equal(e.inode.size, want.data!.length);
        } else if (want.type === "symlink") {
          assert.equal(
            (await fs.readLink(e.inode)).toString("latin1"),
            want.data!.toString("latin1"),
            e.path,
          );
        } else if (want.type === "dir") {
          const names = (await fs.readDir(e.inode))
            .map((d) => d.name.toString("latin1"))
            .filter((n) => n !== "." && n !== ".." && !(e.path === "/" && n === "lost+found"))
            .sort();
          assert.deepEqual(names, want.names, `${e.path}: entries`);
        }
      }
      assert.deepEqual(problems, []);
      for (const p of expected.keys()) assert.ok(seen.has(p), `${p} was walked`);
      assert.equal(seen.get("/lost+found"), "dir");
    });

    test("files read like debugfs cat; hard links share an inode", async () => {
      for (const path of [
        "/bin/busybox",
        "/usr/lib/sparse.bin",
        "/usr/lib/big.bin",
        "/data/many/file-123",
        "/etc/empty",
      ]) {
        const inode = await fs.lookup(path);
        assert.ok(
          (await fs.readWhole(inode)).equals(debugfs(image, `cat ${path}`)),
          `${path} as debugfs reads it`,
        );
      }
      assert.equal((await fs.lookup("/data/motd-hardlink")).ino, (await fs.lookup("/etc/motd")).ino);
      assert.equal((await fs.lookup("/etc/motd")).linksCount, 2);
      const stat = debugfs(image, "stat /bin/busybox").toString();
      const inode = await fs.lookup("/bin/busybox");
      assert.equal(inode.ino, Number(/Inode: (\d+)/.exec(stat)![1]));
      assert.equal(inode.mode & 0o7777, Number.parseInt(/Mode:\s+(\d+)/.exec(stat)![1], 8));
      assert.equal(inode.mtime.sec, Number.parseInt(/mtime: 0x([0-9a-f]+)/.exec(stat)![1], 16));
    });

    test("block maps as debugfs sees them", async () => {
      const inode = await fs.lookup("/usr/lib/sparse.bin");
      const map = await fs.map(inode);
      if (v.extents) {
        assert.ok(inode.flags & EXT4_EXTENTS_FL);
        const want = debugfsExtents(image, "/usr/lib/sparse.bin");
        assert.deepEqual(
          map.runs.map((r) => [r.logical, r.physical, r.length, r.uninit]),
          want,
        );
        assert.ok(map.mapBlocks.length >= 1, "400 extents need extent tree nodes outside the inode");
      } else {
        assert.equal(inode.flags & EXT4_EXTENTS_FL, 0);
        assert.ok(map.mapBlocks.length >= 1, "indirect blocks");
      }
      // Holes: 400 pieces of 4 KiB of data, each followed by a 4 KiB hole.
      const dataBlocks = map.runs.reduce((s, r) => s + r.length, 0);
      assert.equal(dataBlocks * v.blockSize, 400 * 4 * KiB);
      // At least one extent per piece (mkfs splits some at group boundaries).
      if (v.extents) assert.ok(map.runs.length >= 400, `${map.runs.length} extents`);
      assert.ok((await fs.readWhole(inode)).equals(sparseBytes(400)));
    });

    if (v.htree)
      test("htree directories read linearly", async () => {
        const many = await fs.lookup("/data/many");
        assert.ok(many.flags & EXT4_INDEX_FL, "e2fsck -D indexed the directory");
        const names = (await fs.readDir(many))
          .map((e) => e.name.toString())
          .filter((n) => n.startsWith("file-"));
        assert.equal(names.length, 300);
        assert.equal(new Set(names).size, 300);
      });
  });
}

test("lookups: missing paths and files in the way are typed errors", async () => {
  const image = tmp.file("lookup.img");
  mkfs(image, 24, srcDir);
  const src = await fileSource(image);
  try {
    const fs = await Ext4.open(src);
    await assert.rejects(
      fs.lookup("/etc/nope"),
      (e: Ext4Error) => e instanceof Ext4Error && e.code === "not-found",
    );
    await assert.rejects(fs.lookup("/etc/motd/x"), (e: Ext4Error) => e.code === "not-a-directory");
    await assert.rejects(
      fs.readDir(await fs.lookup("/etc/motd")),
      (e: Ext4Error) => e.code === "not-a-directory",
    );
    await assert.rejects(fs.inode(fs.sb.inodesCount + 1), (e: Ext4Error) => e.code === "out-of-range");
    assert.equal((await fs.lookup("/")).ino, 2);
  } finally {
    await src.close();
  }
});

test("walk limits: entries, depth and bytes are reported, not silently dropped", async () => {
  const image = tmp.file("limits.img");
  mkfs(image, 24, srcDir);
  const src = await fileSource(image);
  try {
    const fs = await Ext4.open(src);
    const run = async (limits: Parameters<typeof walk>[1]) => {
      const entries: string[] = [];
      const problems: Array<[string, string]> = [];
      for await (const e of walk(fs, limits))
        if (e.kind === "entry") entries.push(e.path);
        else if (e.kind === "problem") problems.push([e.path, e.error.code]);
      return { entries, problems };
    };
    const few = await run({ limits: { maxEntries: 10 } });
    assert.equal(few.entries.length, 10);
    assert.equal(few.problems.length, 1);
    assert.equal(few.problems[0][1], "too-many");

    const shallow = await run({ limits: { maxDepth: 2 } });
    assert.ok(shallow.entries.includes("/a/b"));
    assert.ok(!shallow.entries.includes("/a/b/c"));
    assert.deepEqual(shallow.problems.map(([p, c]) => `${p} ${c}`).sort(), [
      "/a/b too-deep",
      "/data/many too-deep",
      "/etc/ssh too-deep",
      "/usr/lib too-deep",
    ]);

    const under = await run({ root: "/usr", limits: { maxBytes: 2560 * KiB } });
    assert.deepEqual(under.entries.sort(), ["/usr", "/usr/lib", "/usr/lib/big.bin", "/usr/lib/sparse.bin"]);
    assert.deepEqual(under.problems, [["/usr/lib/sparse.bin", "too-many"]]);
  } finally {
    await src.close();
  }
});

test("a cache kept between opens serves metadata; invalidation drops exactly the range", async () => {
  const image = tmp.file("cache.img");
  mkfs(image, 24, srcDir, { blockSize: 4096 });
  const src = await fileSource(image);
  const stats = { bytes: 0, requests: 0 };
  const counted = {
    size: src.size,
    read: (o: number, l: number) => {
      stats.bytes += l;
      stats.requests++;
      return src.read(o, l);
    },
  };
  try {
    const cache = new BlockCache();
    const first = await Ext4.open(counted, { cache });
    for await (const _ of walk(first));
    const cold = stats.bytes;
    const again = await Ext4.open(counted, { cache });
    for await (const _ of walk(again));
    // The second walk reads only the superblock (always from the device).
    assert.equal(stats.bytes - cold, 1024);
    const { block } = again.inodeLocation((await again.lookup("/etc/motd")).ino);
    assert.equal(cache.invalidate(block * 4096 + 100, 1), 1);
    assert.equal(cache.invalidate(block * 4096, 4096), 0);
    // Read again, then dropped into a map: the bytes the reader had (to compare with the new ones).
    await again.lookup("/etc/motd");
    const dropped = new Map<number, Buffer>();
    assert.equal(cache.invalidate(block * 4096, 1, dropped), 1);
    assert.deepEqual([...dropped.keys()], [block]);
    assert.ok(dropped.get(block)!.equals(await src.read(block * 4096, 4096)), "the dropped block's bytes");
  } finally {
    await src.close();
  }
});

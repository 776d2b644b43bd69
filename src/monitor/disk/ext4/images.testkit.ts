// Test images for the ext4 reader: a tree of known files (text, binary, sparse with hundreds
// of extents, empty, hard links, fast and slow symlinks, a fifo, odd names, a directory of
// many blocks, a deep chain) made into ext4 images with mkfs.ext4 -d (e2fsprogs) in a temp
// folder, and e2fsprogs' own view of them (debugfs) to cross-check the reader.
import { execFileSync } from "node:child_process";
import {
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Deterministic bytes (an LCG). */
export function pseudoRandom(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = (x >>> 24) | 1; // never 0: no block of it is skipped as a hole
  }
  return b;
}

export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), "nc-ext4-"));
  file(name: string): string {
    return join(this.path, name);
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Bytes of a sparse file: `n` pieces of 4 KiB of data, each followed by a 4 KiB hole. */
export function sparseBytes(n: number): Buffer {
  const b = Buffer.alloc(n * 8 * KiB);
  for (let i = 0; i < n; i++) pseudoRandom(4 * KiB, 1000 + i).copy(b, i * 8 * KiB);
  return b;
}

/** Writes the reference tree under `root`; returns nothing (read it back from disk). */
export function makeTree(root: string): void {
  const d = (p: string) => mkdirSync(join(root, p), { recursive: true });
  const f = (p: string, data: string | Buffer) => writeFileSync(join(root, p), data);
  d("bin");
  d("etc/ssh");
  d("usr/lib");
  d("data/many");
  d("a/b/c/d/e/f");
  f("bin/busybox", pseudoRandom(300 * KiB + 123, 1));
  f("bin/tiny", "#!/bin/sh\necho hi\n");
  f("etc/motd", "Welcome to the nestcloud test image\n");
  f("etc/ssh/sshd_config", "PermitRootLogin no\n".repeat(200));
  f("etc/empty", "");
  f("usr/lib/sparse.bin", sparseBytes(400));
  f("usr/lib/big.bin", pseudoRandom(2 * MiB + 17, 2));
  f("a/b/c/d/e/f/deep.txt", "deep\n");
  for (let i = 0; i < 300; i++) f(`data/many/file-${i.toString().padStart(3, "0")}`, `${i}\n`);
  f("data/name with spaces", "spaces\n");
  f("data/ünïcödé", "utf8\n");
  f("data/back\\slash", "backslash\n");
  writeFileSync(Buffer.concat([Buffer.from(join(root, "data/latin1-")), Buffer.from([0xe9])]), "latin1\n");
  linkSync(join(root, "etc/motd"), join(root, "data/motd-hardlink"));
  symlinkSync("../etc/motd", join(root, "bin/motd-link"));
  symlinkSync(`/${"long-target/".repeat(10)}end`, join(root, "bin/long-link"));
  execFileSync("mkfifo", [join(root, "data/fifo")]);
}

export interface MkfsOptions {
  /** mkfs.ext4 -b */
  blockSize?: number;
  /** mkfs.ext4 -O (comma-separated, ^ to remove) */
  features?: string;
  /** mkfs.ext4 -I */
  inodeSize?: number;
  /** mkfs -t (default ext4) */
  type?: string;
  /** More arguments. */
  extra?: string[];
}

/** mkfs.ext4 -d `src` into a fresh image of `sizeMiB` MiB. */
export function mkfs(image: string, sizeMiB: number, src: string, o: MkfsOptions = {}): void {
  rmSync(image, { force: true });
  execFileSync("truncate", ["-s", `${sizeMiB}M`, image]);
  const args = ["-q", "-F", "-t", o.type ?? "ext4", "-d", src, "-U", "6e657374-636c-6f75-6400-000000000001"];
  if (o.blockSize) args.push("-b", String(o.blockSize));
  if (o.features) args.push("-O", o.features);
  if (o.inodeSize) args.push("-I", String(o.inodeSize));
  args.push(...(o.extra ?? []), image);
  execFileSync("mke2fs", args);
}

/** debugfs -R <request> on an image (stdout; its banner goes to stderr). */
export function debugfs(image: string, request: string, write = false): Buffer {
  return execFileSync("debugfs", [...(write ? ["-w"] : []), "-R", request, image], {
    maxBuffer: 64 * MiB,
    stdio: ["ignore", "pipe", "ignore"],
  });
}

/** debugfs -f <commands> on an image. */
export function debugfsScript(image: string, commands: string[], dir: TempDir): string {
  const f = dir.file(`cmds-${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, `${commands.join("\n")}\n`);
  return execFileSync("debugfs", ["-w", "-f", f, image], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export interface TreeFile {
  path: string;
  type: "file" | "dir" | "symlink" | "fifo";
  /** File contents, or a symlink's target. */
  data?: Buffer;
  /** A directory's names (raw bytes as latin1 strings). */
  names?: string[];
}

/** The source tree as the reader should see it, paths escaped like nameToString (lost+found aside). */
export function readTree(root: string, toName: (name: Buffer) => string): Map<string, TreeFile> {
  const out = new Map<string, TreeFile>();
  const visit = (abs: Buffer, path: string) => {
    const names = readdirSync(abs, { encoding: "buffer" });
    out.set(path, { path, type: "dir", names: names.map((n) => n.toString("latin1")).sort() });
    for (const n of names) {
      const a = Buffer.concat([abs, Buffer.from("/"), n]);
      const p = path === "/" ? `/${toName(n)}` : `${path}/${toName(n)}`;
      const st = lstatSync(a);
      if (st.isDirectory()) visit(a, p);
      else if (st.isSymbolicLink())
        out.set(p, { path: p, type: "symlink", data: readlinkSync(a, { encoding: "buffer" }) });
      else if (st.isFIFO()) out.set(p, { path: p, type: "fifo" });
      else out.set(p, { path: p, type: "file", data: readFileSync(a) });
    }
  };
  visit(Buffer.from(root), "/");
  return out;
}

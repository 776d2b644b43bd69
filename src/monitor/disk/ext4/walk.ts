// A walk over an ext4 tree with limits: entries visited, depth, and the bytes of regular
// files it hands out for reading. A directory reached twice (a hard-linked directory, an
// entry pointing at an ancestor) is a loop and is not entered again; whatever cannot be read
// or is left out by a limit is reported as a problem, never skipped silently.
import { Ext4Error } from "./errors.ts";
import { type Ext4, nameToString } from "./fs.ts";
import { type DirEntry, type Inode, ROOT_INO } from "./layout.ts";

export interface WalkLimits {
  /** Entries yielded (files, directories, links...). */
  maxEntries: number;
  /** Levels below the walk's root that entries may have (deeper directories are not entered). */
  maxDepth: number;
  /** Sum of the sizes of the regular files marked for reading. */
  maxBytes: number;
}

export const DEFAULT_WALK_LIMITS: Readonly<WalkLimits> = {
  maxEntries: 200_000,
  maxDepth: 64,
  maxBytes: 16 * 1024 * 1024 * 1024,
};

export interface WalkEntry {
  kind: "entry";
  path: string;
  inode: Inode;
  /** Levels below the walk's root (the root is 0). */
  depth: number;
  /** A regular file past the bytes budget: listed, not to be read. */
  overBudget: boolean;
}

/** A directory's entries as read (with `listings: true`), before its children are yielded. */
export interface WalkListing {
  kind: "listing";
  path: string;
  inode: Inode;
  entries: DirEntry[];
  depth: number;
}

export interface WalkProblem {
  kind: "problem";
  path: string;
  error: Ext4Error;
  /** Set when a walk limit (not the file system) is the problem. */
  limit?: "entries" | "depth" | "bytes";
}

export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

function asExt4Error(e: unknown): Ext4Error {
  if (e instanceof Ext4Error) return e;
  if (e instanceof RangeError) return new Ext4Error("out-of-range", e.message);
  throw e;
}

export interface WalkOptions {
  /** The walk's root path (default "/"). */
  root?: string;
  /** The root's inode, when the caller has it (then `root` is only its path). */
  rootInode?: Inode;
  limits?: Partial<WalkLimits>;
  /** Yield each directory's entries too (kind "listing"). */
  listings?: boolean;
  /** Directories not to enter (already seen elsewhere): reaching one is a loop. */
  visited?: Set<number>;
}

/**
 * Walks from `root` (a directory path, default "/") depth first. The root itself is the first
 * entry. Errors reading one directory or inode become problems; the walk goes on.
 */
export async function* walk(
  fs: Ext4,
  opts: WalkOptions = {},
): AsyncGenerator<WalkEntry | WalkListing | WalkProblem> {
  const limits = { ...DEFAULT_WALK_LIMITS, ...opts.limits };
  const rootPath = opts.root ?? "/";
  let rootInode: Inode;
  try {
    rootInode = opts.rootInode ?? (rootPath === "/" ? await fs.inode(ROOT_INO) : await fs.lookup(rootPath));
  } catch (e) {
    yield { kind: "problem", path: rootPath, error: asExt4Error(e) };
    return;
  }
  let entries = 0;
  let bytes = 0;
  const visited = opts.visited ?? new Set<number>();
  const stack: Array<{ inode: Inode; path: string; depth: number }> = [];
  const emit = (path: string, inode: Inode, depth: number): WalkEntry => {
    entries++;
    let overBudget = false;
    if (inode.type === "file") {
      if (bytes + inode.size > limits.maxBytes) overBudget = true;
      else bytes += inode.size;
    }
    return { kind: "entry", path, inode, depth, overBudget };
  };
  yield emit(rootPath, rootInode, 0);
  if (rootInode.type === "dir") {
    visited.add(rootInode.ino);
    stack.push({ inode: rootInode, path: rootPath, depth: 0 });
  }
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let list: Awaited<ReturnType<Ext4["readDir"]>>;
    try {
      list = await fs.readDir(dir.inode);
    } catch (e) {
      yield { kind: "problem", path: dir.path, error: asExt4Error(e) };
      continue;
    }
    if (opts.listings)
      yield { kind: "listing", path: dir.path, inode: dir.inode, entries: list, depth: dir.depth };
    const subdirs: Array<{ inode: Inode; path: string; depth: number }> = [];
    for (const e of list) {
      const name = nameToString(e.name);
      if (name === "." || name === "..") continue;
      const path = childPath(dir.path, name);
      if (entries >= limits.maxEntries) {
        yield {
          kind: "problem",
          path,
          error: new Ext4Error("too-many", `more than ${limits.maxEntries} entries: the walk stops here`),
          limit: "entries",
        };
        return;
      }
      let inode: Inode;
      try {
        inode = await fs.inode(e.ino);
      } catch (err) {
        yield { kind: "problem", path, error: asExt4Error(err) };
        continue;
      }
      const entry = emit(path, inode, dir.depth + 1);
      yield entry;
      if (entry.overBudget)
        yield {
          kind: "problem",
          path,
          error: new Ext4Error(
            "too-many",
            `${inode.size} bytes would pass the walk's ${limits.maxBytes} bytes`,
          ),
          limit: "bytes",
        };
      if (inode.type !== "dir") continue;
      if (visited.has(inode.ino)) {
        yield {
          kind: "problem",
          path,
          error: new Ext4Error("loop", `directory inode ${inode.ino} reached again`),
        };
        continue;
      }
      if (dir.depth + 1 >= limits.maxDepth) {
        yield {
          kind: "problem",
          path,
          error: new Ext4Error("too-deep", `deeper than ${limits.maxDepth} levels: not entered`),
          limit: "depth",
        };
        continue;
      }
      visited.add(inode.ino);
      subdirs.push({ inode, path, depth: dir.depth + 1 });
    }
    // Depth first, in directory order.
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
}

// Kernel module helpers for the guest image: read a module's .modinfo section (the
// "depends=" list) straight from the ELF file, and order a module set so that every module
// comes after its dependencies. The Debian kernel package ships no modules.dep (depmod runs
// at install time) and the host may not have kmod, so we do it ourselves.
// Newer kernel packages compress their modules (Debian's 6.12: .ko.xz): those are
// decompressed here (xz from xz-utils, zstd, gzip via zlib) so that the guest gets plain .ko
// files that busybox insmod loads. Modules built into the kernel (modules.builtin) are skipped.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { gunzipSync } from "node:zlib";

/** Largest module accepted after decompression (Debian's biggest are ~20 MB). */
export const MAX_MODULE_BYTES = 256 * 1024 * 1024;

const MODULE_FILE = /\.ko(\.xz|\.zst|\.gz)?$/;

/** Decompressors by suffix: command and the Debian package that provides it. */
const DECOMPRESS: Record<string, { cmd: string; args: string[]; pkg: string }> = {
  ".xz": { cmd: "xz", args: ["-d", "-c", "-q"], pkg: "xz-utils" },
  ".zst": { cmd: "zstd", args: ["-d", "-c", "-q"], pkg: "zstd" },
};

/** A module file's ELF bytes: .ko as is; .ko.xz, .ko.zst and .ko.gz decompressed. */
export function readModuleFile(path: string): Buffer {
  const m = MODULE_FILE.exec(path);
  if (!m) throw new Error(`not a kernel module file: ${path}`);
  const suffix = m[1];
  if (suffix === undefined) return readFileSync(path);
  if (suffix === ".gz") return gunzipSync(readFileSync(path), { maxOutputLength: MAX_MODULE_BYTES });
  const d = DECOMPRESS[suffix];
  const r = spawnSync(d.cmd, [...d.args, "--", path], { maxBuffer: MAX_MODULE_BYTES, timeout: 120_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new Error(
        `${basename(path)} is ${suffix.slice(1)}-compressed and ${d.cmd} is not installed (apt-get install ${d.pkg})`,
      );
    }
    throw new Error(`${d.cmd} failed on ${basename(path)}: ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new Error(
      `${d.cmd} failed on ${basename(path)} (exit ${r.status}): ${r.stderr.toString().trim().slice(0, 300)}`,
    );
  }
  return r.stdout;
}

/** Parses the NUL-separated key=value strings of the ELF64 section ".modinfo". */
export function readModinfo(elf: Buffer): Map<string, string[]> {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error("not an ELF file");
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error("only little-endian ELF64 modules are supported");
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      name: elf.readUInt32LE(o),
      offset: Number(elf.readBigUInt64LE(o + 0x18)),
      size: Number(elf.readBigUInt64LE(o + 0x20)),
    };
  };
  const strtab = section(shstrndx);
  const out = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = elf.indexOf(0, strtab.offset + s.name);
    if (elf.toString("latin1", strtab.offset + s.name, nameEnd) !== ".modinfo") continue;
    for (const kv of elf.toString("utf8", s.offset, s.offset + s.size).split("\0")) {
      const eq = kv.indexOf("=");
      if (eq <= 0) continue;
      const key = kv.slice(0, eq);
      out.set(key, [...(out.get(key) ?? []), kv.slice(eq + 1)]);
    }
  }
  return out;
}

/** Module name as the kernel spells it: file name without .ko, dashes as underscores. */
export function moduleName(file: string): string {
  return basename(file)
    .replace(/\.ko(\.xz|\.zst|\.gz)?$/, "")
    .replaceAll("-", "_");
}

/**
 * Maps module name -> absolute path for every module under modulesDir (.ko, .ko.xz, .ko.zst,
 * .ko.gz; a plain .ko wins over a compressed copy of the same module).
 */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (MODULE_FILE.test(name)) {
        const mod = moduleName(name);
        const had = index.get(mod);
        if (had === undefined || (!had.endsWith(".ko") && name.endsWith(".ko"))) index.set(mod, p);
      }
    }
  };
  walk(modulesDir);
  return index;
}

/** Names of the modules built into the kernel (modules.builtin; absent: none). */
export function readBuiltinModules(modulesDir: string): Set<string> {
  const file = join(modulesDir, "modules.builtin");
  if (!existsSync(file)) return new Set();
  return new Set(
    readFileSync(file, "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => MODULE_FILE.test(l))
      .map(moduleName),
  );
}

export interface ResolvedModule {
  /** Kernel name (underscores). */
  readonly name: string;
  /** File in the kernel package (maybe compressed). */
  readonly path: string;
  /** Uncompressed ELF bytes. */
  readonly data: Buffer;
  /** File name for the guest: always plain .ko. */
  readonly fileName: string;
}

/**
 * Returns the modules needed to load `wanted`, dependencies first (insmod order), with their
 * uncompressed bytes, and the wanted modules (or dependencies) skipped because the kernel has
 * them built in. Throws if a module or one of its dependencies is in neither place.
 */
export function resolveModules(
  wanted: readonly string[],
  index: Map<string, string>,
  builtin: ReadonlySet<string> = new Set(),
  read: (path: string) => Buffer = readModuleFile,
): { modules: ResolvedModule[]; builtin: string[] } {
  const order: ResolvedModule[] = [];
  const skipped: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, chain: string[]) => {
    const st = state.get(name);
    if (st === "done") return;
    if (st === "visiting") throw new Error(`module dependency cycle: ${[...chain, name].join(" -> ")}`);
    const path = index.get(name);
    if (!path) {
      if (builtin.has(name)) {
        state.set(name, "done");
        skipped.push(name);
        return;
      }
      const via = chain.length ? ` (needed by ${chain.join(" -> ")})` : "";
      throw new Error(
        `kernel module ${name} not found in the kernel package (neither a module nor built in)${via}`,
      );
    }
    state.set(name, "visiting");
    const data = read(path);
    const deps = (readModinfo(data).get("depends") ?? [])
      .flatMap((d) => d.split(","))
      .filter((d) => d !== "");
    for (const d of deps) visit(d, [...chain, name]);
    state.set(name, "done");
    order.push({ name, path, data, fileName: basename(path).replace(MODULE_FILE, ".ko") });
  };
  for (const w of wanted) visit(w.replaceAll("-", "_"), []);
  return { modules: order, builtin: skipped };
}

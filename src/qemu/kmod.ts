// Kernel module helpers for the guest image: read a module's .modinfo section (the
// "depends=" list) straight from the ELF file, and order a module set so that every module
// comes after its dependencies. The Debian kernel package ships no modules.dep (depmod runs
// at install time) and the host may not have kmod, so we do it ourselves.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";

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

/** Maps module name -> absolute .ko path for every module under modulesDir. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".ko")) index.set(moduleName(name), p);
    }
  };
  walk(modulesDir);
  return index;
}

/**
 * Returns the .ko paths needed to load `wanted`, dependencies first (insmod order).
 * Throws if a module or one of its dependencies is missing or compressed.
 */
export function resolveModules(wanted: readonly string[], index: Map<string, string>): string[] {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, chain: string[]) => {
    const st = state.get(name);
    if (st === "done") return;
    if (st === "visiting") throw new Error(`module dependency cycle: ${[...chain, name].join(" -> ")}`);
    const path = index.get(name);
    if (!path) {
      const via = chain.length ? ` (needed by ${chain.join(" -> ")})` : "";
      throw new Error(`kernel module ${name} not found in the kernel package${via}`);
    }
    state.set(name, "visiting");
    const deps = (readModinfo(readFileSync(path)).get("depends") ?? [])
      .flatMap((d) => d.split(","))
      .filter((d) => d !== "");
    for (const d of deps) visit(d, [...chain, name]);
    state.set(name, "done");
    order.push(path);
  };
  for (const w of wanted) visit(w.replaceAll("-", "_"), []);
  return order;
}

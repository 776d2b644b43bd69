// Guest image builder: a Debian distribution kernel plus a busybox initramfs carrying the
// nestcloud init, the workload program and a few kernel modules.
//
// Images are cached under <cacheDir>/<key>, the key naming every input (kernel package
// version, busybox version, a hash of the guest sources and of the builder's choices), so a
// changed input gives a new directory instead of a stale hit. A build happens in a private
// temporary directory next to the cache entry and is published with one rename(2), which is
// atomic: concurrent builders never see or produce a half-written entry; the loser of a race
// discards its copy and uses the winner's.
//
// Extension point: `GuestImage.format` is "initramfs" today; a disk image variant would add
// a step producing a root filesystem file from the same entry list and a different format.
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { type CpioEntry, writeNewc } from "./cpio.ts";
import { execFileText } from "./exec.ts";
import { indexModules, readBuiltinModules, resolveModules } from "./kmod.ts";

/** Bumped whenever the builder's output layout changes, so old cache entries are not reused. */
const BUILDER_FORMAT = 2;

/**
 * Modules put into every guest, loaded at boot (dependencies resolved from .modinfo):
 * virtio-pci/-net/-blk so the optional NIC and disk work, and crc7, a tiny module without
 * dependencies that the introspection work can look for in the guest's module list, and
 * pvpanic_mmio (with pvpanic) so that a kernel panic reaches QEMU as GUEST_PANICKED (the
 * agents give every guest a pvpanic device: the virtual AMT's event log records panics).
 */
export const DEFAULT_GUEST_MODULES: readonly string[] = [
  "virtio_pci",
  "virtio_net",
  "virtio_blk",
  "crc7",
  "pvpanic_mmio",
];

/** Kernel command line every nestcloud guest needs (serial console, quiet, no reboot loops). */
export const GUEST_BASE_APPEND = "console=ttyS0,115200 quiet loglevel=1 panic=-1";

export interface GuestImage {
  format: "initramfs";
  dir: string;
  kernel: string;
  initrd: string;
  key: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelRelease: string;
  busyboxVersion: string;
  sourceHash: string;
  /** Module names in load order (dependencies first). */
  modules: string[];
  /** Requested modules (or dependencies) not put in because the kernel has them built in. */
  builtinModules: string[];
  append: string;
  builtAt: string;
}

export interface BuildGuestImageOptions {
  /** Default: ~/.cache/nestcloud/images */
  cacheDir?: string;
  modules?: readonly string[];
  /**
   * Which kernel: "default" (what `apt-cache depends linux-image-amd64` names), "backports"
   * (what bookworm-backports' linux-image-amd64 names; scripts/ensure-backports.sh adds that
   * archive) or a package name (linux-image-<release>-amd64). Default "default".
   */
  kernel?: string;
  /** A kernel package name; overrides `kernel`. */
  kernelPackage?: string;
  /** Folder with init, nc-wl and workload.c. Default: scripts/guest of this repository. */
  guestSourceDir?: string;
  busyboxPath?: string;
  log?: (msg: string) => void;
}

export class ImageBuildError extends Error {
  override name = "ImageBuildError";
}

export function defaultImageCacheDir(): string {
  return join(homedir(), ".cache", "nestcloud", "images");
}

export function defaultGuestSourceDir(): string {
  return resolve(import.meta.dirname, "..", "..", "scripts", "guest");
}

const GUEST_SOURCES = ["init", "nc-wl", "workload.c"] as const;

const BACKPORTS = "bookworm-backports";

async function aptDependsKernel(meta = "linux-image-amd64"): Promise<string | null> {
  try {
    const { stdout } = await execFileText("apt-cache", ["depends", meta], {
      timeoutMs: 60_000,
    });
    return /Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b/.exec(stdout)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** The kernel ABI package bookworm-backports' linux-image-amd64 depends on (its newest kernel). */
export async function backportsKernelPackage(): Promise<string> {
  const pkg = await aptDependsKernel(`linux-image-amd64/${BACKPORTS}`);
  if (!pkg) {
    throw new ImageBuildError(
      `apt knows no linux-image-amd64 in ${BACKPORTS}: run scripts/ensure-backports.sh (adds the archive and runs apt-get update)`,
    );
  }
  return pkg;
}

/** The package for a kernel choice: "default", "backports" or a package name. */
export async function resolveKernelPackage(kernel: string | undefined): Promise<string> {
  if (kernel === undefined || kernel === "" || kernel === "default") return currentKernelPackage();
  if (kernel === "backports") return backportsKernelPackage();
  if (!/^linux-image-[0-9][a-z0-9.+-]*-amd64$/.test(kernel)) {
    throw new ImageBuildError(
      `kernel ${JSON.stringify(kernel)}: expected default, backports or a package name like linux-image-6.1.0-57-amd64`,
    );
  }
  return kernel;
}

/** Picks the kernel ABI package the metapackage currently depends on. */
export async function currentKernelPackage(): Promise<string> {
  let pkg = await aptDependsKernel();
  if (!pkg && process.getuid?.() === 0) {
    // A fresh machine has no package lists yet; as root we can fetch them ourselves.
    await execFileText("apt-get", ["update", "-qq"], { timeoutMs: 300_000 });
    pkg = await aptDependsKernel();
  }
  if (!pkg) {
    throw new ImageBuildError(
      "apt-cache names no linux-image-*-amd64 dependency of linux-image-amd64; run `apt-get update` first",
    );
  }
  return pkg;
}

async function packageVersion(pkg: string): Promise<string> {
  const { stdout } = await execFileText("apt-cache", ["show", "--no-all-versions", pkg], {
    timeoutMs: 60_000,
  });
  const m = /^Version:\s*(\S+)/m.exec(stdout);
  if (!m) throw new ImageBuildError(`apt-cache show ${pkg} gave no Version; run \`apt-get update\` first`);
  return m[1];
}

async function installedVersion(pkg: string): Promise<string> {
  try {
    // "${Version}" is dpkg-query's own format syntax, not a template placeholder.
    const format = "-f=$" + "{Version}";
    const { stdout } = await execFileText("dpkg-query", ["-W", format, pkg], { timeoutMs: 30_000 });
    return stdout.trim();
  } catch {
    throw new ImageBuildError(`${pkg} is not installed (apt-get install -y ${pkg})`);
  }
}

/** True if the ELF file has no PT_INTERP header, i.e. needs no dynamic loader. */
export function isStaticElf(buf: Buffer): boolean {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2) return false;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (buf.readUInt32LE(phoff + i * phentsize) === 3) return false;
  }
  return true;
}

function safeKey(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_");
}

function hashSources(dir: string, extra: string): string {
  const h = createHash("sha256");
  h.update(`format=${BUILDER_FORMAT}\n${extra}\n`);
  for (const name of GUEST_SOURCES) {
    const p = join(dir, name);
    if (!existsSync(p)) throw new ImageBuildError(`guest source missing: ${p}`);
    h.update(`${name}\n`);
    h.update(readFileSync(p));
  }
  return h.digest("hex").slice(0, 16);
}

function readManifest(dir: string): GuestImage | null {
  const p = join(dir, "manifest.json");
  if (!existsSync(p)) return null;
  const m = JSON.parse(readFileSync(p, "utf8")) as GuestImage;
  // Paths are stored relative so a cache folder can be moved; re-anchor them here.
  return { ...m, dir, kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.gz") };
}

/** Removes build folders left by builders that died (older than an hour). */
function sweepStaleBuilds(cacheDir: string): void {
  for (const name of readdirSync(cacheDir)) {
    if (!name.startsWith(".build-")) continue;
    const p = join(cacheDir, name);
    try {
      if (Date.now() - statSync(p).mtimeMs > 3_600_000) rmSync(p, { recursive: true, force: true });
    } catch {
      // Another process may be sweeping the same folder: not our problem.
    }
  }
}

export async function buildGuestImage(opts: BuildGuestImageOptions = {}): Promise<GuestImage> {
  const log = opts.log ?? (() => {});
  const cacheDir = opts.cacheDir ?? defaultImageCacheDir();
  const srcDir = opts.guestSourceDir ?? defaultGuestSourceDir();
  const busybox = opts.busyboxPath ?? "/bin/busybox";
  const modules = [...(opts.modules ?? DEFAULT_GUEST_MODULES)];

  const kernelPackage = opts.kernelPackage ?? (await resolveKernelPackage(opts.kernel));
  if (!/^linux-image-[0-9][a-z0-9.+-]*-amd64$/.test(kernelPackage)) {
    throw new ImageBuildError(`unexpected kernel package name: ${kernelPackage}`);
  }
  const kernelRelease = kernelPackage.replace(/^linux-image-/, "");
  const kernelPackageVersion = await packageVersion(kernelPackage);
  const busyboxVersion = await installedVersion("busybox-static");
  const { stdout: gccVersion } = await execFileText("gcc", ["-dumpfullversion"], { timeoutMs: 30_000 });
  const sourceHash = hashSources(srcDir, `modules=${modules.join(",")}\ngcc=${gccVersion.trim()}`);
  const key = safeKey(`${kernelRelease}_${kernelPackageVersion}-busybox_${busyboxVersion}-${sourceHash}`);
  const finalDir = join(cacheDir, key);

  const cached = readManifest(finalDir);
  if (cached) {
    log(`guest image cached: ${finalDir}`);
    return cached;
  }

  mkdirSync(cacheDir, { recursive: true });
  sweepStaleBuilds(cacheDir);
  const work = join(cacheDir, `.build-${key}-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(work);
  try {
    await buildInto(work, {
      kernelPackage,
      kernelPackageVersion,
      kernelRelease,
      busybox,
      busyboxVersion,
      srcDir,
      modules,
      key,
      sourceHash,
      log,
    });
    try {
      renameSync(work, finalDir);
      log(`guest image built: ${finalDir}`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
      // Another builder published the same key first; its content is equivalent.
      log(`guest image ${key} was published concurrently; using that one`);
    }
    const published = readManifest(finalDir);
    if (!published) throw new ImageBuildError(`cache entry ${finalDir} has no manifest after publishing`);
    return published;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

interface BuildInputs {
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelRelease: string;
  busybox: string;
  busyboxVersion: string;
  srcDir: string;
  modules: string[];
  key: string;
  sourceHash: string;
  log: (msg: string) => void;
}

async function fetchKernel(work: string, inp: BuildInputs): Promise<string> {
  const dl = join(work, "deb");
  mkdirSync(dl);
  inp.log(`downloading ${inp.kernelPackage} ${inp.kernelPackageVersion}`);
  // As root, apt drops to the _apt user for downloads, which cannot write into our private
  // folder; downloading as root into a folder only we use is fine.
  const aptArgs = process.getuid?.() === 0 ? ["-o", "APT::Sandbox::User=root"] : [];
  await execFileText(
    "apt-get",
    [...aptArgs, "download", `${inp.kernelPackage}=${inp.kernelPackageVersion}`],
    {
      cwd: dl,
      timeoutMs: 600_000,
    },
  );
  const deb = readdirSync(dl).find((f) => f.endsWith(".deb"));
  if (!deb) throw new ImageBuildError(`apt-get download ${inp.kernelPackage} produced no .deb`);
  const root = join(work, "kernel-root");
  mkdirSync(root);
  await execFileText("dpkg-deb", ["-x", join(dl, deb), root], { timeoutMs: 300_000 });
  rmSync(dl, { recursive: true, force: true });
  return root;
}

async function buildInto(work: string, inp: BuildInputs): Promise<GuestImage> {
  const bb = readFileSync(inp.busybox);
  if (!isStaticElf(bb)) {
    throw new ImageBuildError(`${inp.busybox} is dynamically linked; install busybox-static`);
  }
  const kroot = await fetchKernel(work, inp);
  const vmlinuz = join(kroot, "boot", `vmlinuz-${inp.kernelRelease}`);
  if (!existsSync(vmlinuz)) throw new ImageBuildError(`kernel package has no ${vmlinuz}`);
  writeFileSync(join(work, "vmlinuz"), readFileSync(vmlinuz));

  const modDirs = [
    join(kroot, "lib", "modules", inp.kernelRelease),
    join(kroot, "usr", "lib", "modules", inp.kernelRelease),
  ];
  const modDir = modDirs.find((d) => existsSync(d));
  if (!modDir) throw new ImageBuildError(`kernel package has no lib/modules/${inp.kernelRelease}`);
  let resolved: ReturnType<typeof resolveModules>;
  try {
    resolved = resolveModules(inp.modules, indexModules(modDir), readBuiltinModules(modDir));
  } catch (e) {
    throw new ImageBuildError(`${inp.kernelPackage}: ${(e as Error).message}`);
  }
  if (resolved.builtin.length > 0) inp.log(`built into the kernel (skipped): ${resolved.builtin.join(", ")}`);

  inp.log("compiling workload (gcc -static -O2)");
  const workloadBin = join(work, "nc-workload");
  await execFileText("gcc", ["-static", "-O2", "-Wall", "-o", workloadBin, join(inp.srcDir, "workload.c")], {
    timeoutMs: 300_000,
  });

  const guestModDir = `lib/modules/${inp.kernelRelease}`;
  const entries: CpioEntry[] = [];
  for (const d of [
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "root",
    "etc",
  ]) {
    entries.push({ kind: "dir", path: d, mode: d === "tmp" ? 0o1777 : 0o755 });
  }
  entries.push({ kind: "dir", path: "etc/nestcloud" });
  entries.push(
    { kind: "dir", path: "lib" },
    { kind: "dir", path: "lib/modules" },
    { kind: "dir", path: guestModDir },
  );
  // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
  entries.push({ kind: "chardev", path: "dev/console", major: 5, minor: 1 });
  entries.push({ kind: "file", path: "bin/busybox", data: bb, mode: 0o755 });
  entries.push({ kind: "symlink", path: "bin/sh", target: "busybox" });
  entries.push({ kind: "file", path: "init", data: readFileSync(join(inp.srcDir, "init")), mode: 0o755 });
  entries.push({
    kind: "file",
    path: "bin/nc-wl",
    data: readFileSync(join(inp.srcDir, "nc-wl")),
    mode: 0o755,
  });
  entries.push({ kind: "file", path: "bin/nc-workload", data: readFileSync(workloadBin), mode: 0o755 });
  const loadList: string[] = [];
  // Plain .ko files (decompressed here): busybox insmod need not know the compression.
  for (const m of resolved.modules) {
    const guestPath = `${guestModDir}/${m.fileName}`;
    entries.push({ kind: "file", path: guestPath, data: m.data, mode: 0o644 });
    loadList.push(`/${guestPath}`);
  }
  entries.push({
    kind: "file",
    path: "etc/nestcloud/modules",
    data: Buffer.from(loadList.map((l) => `${l}\n`).join("")),
  });
  const version = `kernel=${inp.kernelPackage} ${inp.kernelPackageVersion}\nbusybox=${inp.busyboxVersion}\nkey=${inp.key}\n`;
  entries.push({ kind: "file", path: "etc/nestcloud/version", data: Buffer.from(version) });

  writeFileSync(join(work, "initrd.gz"), gzipSync(writeNewc(entries), { level: 6 }));
  rmSync(kroot, { recursive: true, force: true });
  rmSync(workloadBin, { force: true });

  const image: GuestImage = {
    format: "initramfs",
    dir: work,
    kernel: "vmlinuz",
    initrd: "initrd.gz",
    key: inp.key,
    kernelPackage: inp.kernelPackage,
    kernelPackageVersion: inp.kernelPackageVersion,
    kernelRelease: inp.kernelRelease,
    busyboxVersion: inp.busyboxVersion,
    sourceHash: inp.sourceHash,
    modules: resolved.modules.map((m) => m.name),
    builtinModules: resolved.builtin,
    append: GUEST_BASE_APPEND,
    builtAt: new Date().toISOString(),
  };
  writeFileSync(join(work, "manifest.json"), `${JSON.stringify(image, null, 2)}\n`);
  chmodSync(work, 0o755);
  return image;
}

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { writeNewc } from "./cpio.ts";
import { isStaticElf } from "./image.ts";
import { indexModules, moduleName, readBuiltinModules, readModuleFile, resolveModules } from "./kmod.ts";

test("writeNewc output is a valid newc archive (checked with GNU cpio)", () => {
  const archive = writeNewc([
    { kind: "dir", path: "bin" },
    { kind: "file", path: "bin/hello", data: Buffer.from("hi\n"), mode: 0o755 },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
    { kind: "dir", path: "dev" },
    { kind: "chardev", path: "dev/console", major: 5, minor: 1 },
  ]);
  assert.equal(archive.length % 4, 0);
  const r = spawnSync("cpio", ["-t", "-v", "--quiet"], { input: archive });
  if (r.error) return; // cpio not installed: the format checks below still ran
  assert.equal(r.status, 0, r.stderr.toString());
  const out = r.stdout.toString();
  for (const name of ["bin/hello", "bin/sh -> busybox", "dev/console"]) assert.ok(out.includes(name), out);
  assert.match(out, /^c.* 5,\s+1 .*dev\/console$/m);
});

test("writeNewc refuses path traversal", () => {
  assert.throws(() => writeNewc([{ kind: "dir", path: "../etc" }]), /bad cpio path/);
});

test("isStaticElf tells static from dynamic binaries", () => {
  assert.equal(isStaticElf(readFileSync(process.execPath)), false);
  assert.equal(isStaticElf(Buffer.from("#!/bin/sh\n")), false);
});

test("moduleName normalizes file names the way the kernel names modules", () => {
  assert.equal(moduleName("/x/crc-itu-t.ko"), "crc_itu_t");
  assert.equal(moduleName("virtio_net.ko.xz"), "virtio_net");
});

/** A minimal ELF64 LE relocatable with a .modinfo section, shaped like a kernel module. */
function fakeModule(modinfo: string[]): Buffer {
  const info = Buffer.from(modinfo.map((kv) => `${kv}\0`).join(""), "utf8");
  const shstr = Buffer.from("\0.shstrtab\0.modinfo\0", "latin1");
  const infoOff = 64;
  const shstrOff = infoOff + info.length;
  const shoff = Math.ceil((shstrOff + shstr.length) / 8) * 8;
  const elf = Buffer.alloc(shoff + 3 * 64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELFCLASS64
  elf[5] = 1; // little-endian
  elf[6] = 1;
  elf.writeUInt16LE(1, 0x10); // ET_REL
  elf.writeUInt16LE(62, 0x12); // x86-64
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(1, 0x3e); // .shstrtab is section 1
  info.copy(elf, infoOff);
  shstr.copy(elf, shstrOff);
  const sh = (i: number, name: number, type: number, off: number, size: number) => {
    const o = shoff + i * 64;
    elf.writeUInt32LE(name, o);
    elf.writeUInt32LE(type, o + 4);
    elf.writeBigUInt64LE(BigInt(off), o + 0x18);
    elf.writeBigUInt64LE(BigInt(size), o + 0x20);
  };
  sh(1, 1, 3, shstrOff, shstr.length);
  sh(2, 11, 1, infoOff, info.length);
  return elf;
}

test("modules: .ko.xz and .ko.zst are decompressed (real xz, zstd), built-in ones skipped", (t) => {
  for (const tool of ["xz", "zstd"]) {
    if (spawnSync(tool, ["--version"]).error) {
      t.skip(`${tool} not installed (scripts/ensure-deps.sh installs it)`);
      return;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "nc-kmod-"));
  try {
    const kdir = join(dir, "kernel", "drivers");
    mkdirSync(kdir, { recursive: true });
    const mods = {
      virtio_net: fakeModule(["license=GPL", "depends=net_failover", "name=virtio_net"]),
      net_failover: fakeModule(["depends=failover", "name=net_failover"]),
      failover: fakeModule(["depends=", "name=failover"]),
      crc7: fakeModule(["depends=", "name=crc7"]),
    };
    writeFileSync(join(kdir, "virtio_net.ko"), mods.virtio_net);
    spawnSync("xz", ["-z", join(kdir, "virtio_net.ko")]); // -> virtio_net.ko.xz
    writeFileSync(join(kdir, "net_failover.ko"), mods.net_failover);
    spawnSync("zstd", ["-q", "--rm", join(kdir, "net_failover.ko")]); // -> .ko.zst
    writeFileSync(join(kdir, "failover.ko.gz"), gzipSync(mods.failover));
    writeFileSync(join(kdir, "crc7.ko"), mods.crc7);
    writeFileSync(
      join(dir, "modules.builtin"),
      "kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/virtio/virtio_pci_modern_dev.ko\n",
    );
    const index = indexModules(dir);
    assert.deepEqual([...index.keys()].sort(), ["crc7", "failover", "net_failover", "virtio_net"]);
    assert.match(index.get("virtio_net") ?? "", /virtio_net\.ko\.xz$/);
    assert.deepEqual(readModuleFile(index.get("net_failover") as string), mods.net_failover);
    const builtin = readBuiltinModules(dir);
    assert.deepEqual([...builtin].sort(), ["virtio_pci", "virtio_pci_modern_dev"]);
    const r = resolveModules(["virtio_pci", "virtio_net", "crc7"], index, builtin);
    assert.deepEqual(
      r.modules.map((m) => [m.name, m.fileName]),
      [
        ["failover", "failover.ko"],
        ["net_failover", "net_failover.ko"],
        ["virtio_net", "virtio_net.ko"],
        ["crc7", "crc7.ko"],
      ],
    );
    assert.deepEqual(r.modules[2].data, mods.virtio_net);
    assert.deepEqual(r.builtin, ["virtio_pci"]);
    // Neither a module nor built in: a clear error naming who needed it.
    assert.throws(
      () =>
        resolveModules(["virtio_net"], new Map([["virtio_net", index.get("virtio_net") as string]]), builtin),
      /kernel module net_failover not found in the kernel package \(neither a module nor built in\) \(needed by virtio_net\)/,
    );
    // A corrupt compressed module: the decompressor's failure, named.
    writeFileSync(join(kdir, "bad.ko.xz"), Buffer.from("not xz at all"));
    assert.throws(() => readModuleFile(join(kdir, "bad.ko.xz")), /xz failed on bad\.ko\.xz \(exit 1\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { writeNewc } from "./cpio.ts";
import { isStaticElf } from "./image.ts";
import { moduleName } from "./kmod.ts";

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

// `nestcloud testbed` user errors: one line, exit code 2, nothing started.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";

const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-tb-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("bad testbed files are one line naming the field, exit 2", () => {
  const f = join(dir, "bad.yaml");
  writeFileSync(f, "servers:\n  - name: s1\n    hostVms: [{ name: h1, memoryMiB: 64 }]\n");
  const r = run("testbed", "up", f, "--root", join(dir, "tb"));
  assert.equal(r.code, 2);
  assert.match(r.err, /^nestcloud: .*bad\.yaml: servers\[0\]\.hostVms\[0\]\.memoryMiB: .*\n$/);
  const missing = run("testbed", "up", join(dir, "nope.yaml"), "--root", join(dir, "tb"));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /nope\.yaml: cannot read/);
});

test("down and status of testbeds that do not exist", () => {
  const empty = join(dir, "empty");
  let r = run("testbed", "down", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /^nestcloud: no testbed under .*empty\n$/);
  r = run("testbed", "down", "abc", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /no testbed abc under/);
  r = run("testbed", "status", "--root", empty);
  assert.equal(r.code, 0);
  assert.match(r.out, /no testbed under/);
  r = run("testbed", "status", "--output", "yaml", "--root", empty);
  assert.equal(r.code, 2);
  assert.match(r.err, /--output yaml: expected table or json/);
  r = run("testbed", "status", "--output", "json", "--root", empty);
  assert.deepEqual(JSON.parse(r.out), []);
});

// The built JavaScript (dist/) runs only while it is fresh: bin/freshness.js's rule on a
// scratch package, and bin/nestcloud.js and bin/nestcloud-agent.js choosing between dist/
// and the sources in a copy of this package whose dist/ says which one ran.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { STAMP, sourceState, staleReason } from "../bin/freshness.js";

const root = resolve(import.meta.dirname, "..");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-build-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes the stamp a build would write for the package's current state. */
function stamp(pkg: string): void {
  mkdirSync(join(pkg, "dist"), { recursive: true });
  writeFileSync(join(pkg, STAMP), JSON.stringify(sourceState(pkg)));
}

/** File times come from a coarse clock: let it tick before the next change. */
const tick = () => sleep(30);

describe("freshness rule", () => {
  const pkg = join(dir, "rule");
  mkdirSync(join(pkg, "src/sim"), { recursive: true });
  writeFileSync(join(pkg, "src/sim/a.ts"), "export const a = 1;\n");
  writeFileSync(join(pkg, "src/sim/b.ts"), "export const b = 1;\n");
  writeFileSync(join(pkg, "package-lock.json"), "{}\n");

  test("not built, then fresh after a build", async () => {
    assert.equal(staleReason(pkg), "not built");
    stamp(pkg);
    assert.equal(staleReason(pkg), null);
    await tick();
  });

  test("an edited source makes it stale; a rebuild makes it fresh", async () => {
    writeFileSync(join(pkg, "src/sim/a.ts"), "export const a = 2;\n");
    assert.equal(staleReason(pkg), "sources changed since the build");
    stamp(pkg);
    assert.equal(staleReason(pkg), null);
    await tick();
  });

  test("tests are not build inputs", async () => {
    writeFileSync(join(pkg, "src/sim/a.test.ts"), "// a test\n");
    assert.equal(staleReason(pkg), null);
    await tick();
  });

  test("a source added, removed or renamed makes it stale", async () => {
    writeFileSync(join(pkg, "src/sim/c.ts"), "export const c = 1;\n");
    assert.match(staleReason(pkg) ?? "", /build inputs/);
    stamp(pkg);
    await tick();
    unlinkSync(join(pkg, "src/sim/c.ts"));
    assert.match(staleReason(pkg) ?? "", /3 build inputs, the build saw 4/);
    stamp(pkg);
    await tick();
    renameSync(join(pkg, "src/sim/b.ts"), join(pkg, "src/sim/d.ts"));
    assert.equal(staleReason(pkg), "sources changed since the build");
    stamp(pkg);
    await tick();
  });

  test("a changed lock file makes it stale (packages are bundled)", async () => {
    writeFileSync(join(pkg, "package-lock.json"), '{"x":1}\n');
    assert.equal(staleReason(pkg), "sources changed since the build");
  });

  test("an unreadable stamp counts as not built", () => {
    writeFileSync(join(pkg, STAMP), "{");
    assert.equal(staleReason(pkg), "not built");
  });
});

describe("the launchers run dist/ only while it is fresh", () => {
  // A copy of this package (sources, launchers, packages linked) whose dist/ holds stand-ins
  // that say they ran.
  const pkg = join(dir, "pkg");
  mkdirSync(pkg);
  cpSync(join(root, "src"), join(pkg, "src"), { recursive: true });
  cpSync(join(root, "bin"), join(pkg, "bin"), { recursive: true });
  cpSync(join(root, "package.json"), join(pkg, "package.json"));
  cpSync(join(root, "package-lock.json"), join(pkg, "package-lock.json"));
  symlinkSync(join(root, "node_modules"), join(pkg, "node_modules"));
  const built = () => {
    mkdirSync(join(pkg, "dist/cli"), { recursive: true });
    mkdirSync(join(pkg, "dist/agent"), { recursive: true });
    writeFileSync(
      join(pkg, "dist/cli/main.js"),
      'export async function main(argv) { process.stdout.write(`dist ${argv.slice(2).join(" ")}\\n`); return 0; }\n',
    );
    writeFileSync(join(pkg, "dist/agent/main.js"), 'process.stdout.write("dist agent\\n");\n');
    stamp(pkg);
  };
  const run = (script: string, args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [join(pkg, "bin", script), ...args], {
      cwd: pkg,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, NESTCLOUD_NO_DIST: "", ...env },
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  test("nestcloud: fresh dist/ runs; stale or forced off, the sources run", async () => {
    built();
    let r = run("nestcloud.js", ["--version"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "dist --version\n");
    r = run("nestcloud.js", ["--version"], { NESTCLOUD_NO_DIST: "1" });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "0.1.0\n");
    await tick();
    writeFileSync(join(pkg, "src/cli/usage.ts"), "// edited\n", { flag: "a" });
    r = run("nestcloud.js", ["--version"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "0.1.0\n", "stale dist/ must not run");
    assert.equal(r.err, "", "the fallback is silent");
  });

  test("nestcloud-agent: fresh dist/ runs its agent; stale, the sources' agent runs", async () => {
    built();
    let r = run("nestcloud-agent.js", []);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "dist agent\n");
    await tick();
    writeFileSync(join(pkg, "src/agent/token.ts"), "// edited\n", { flag: "a" });
    r = run("nestcloud-agent.js", []);
    assert.equal(r.code, 1);
    assert.match(r.err, /usage: main\.ts --config/, "the sources' agent, asking for its config");
  });
});

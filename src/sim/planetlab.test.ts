// The PlanetLab loader on the synthetic day shipped in test/fixtures/planetlab/20000101 (the
// real format: one file per VM, one integer CPU percent per line, 288 lines of 300 s), and
// on folders made here for the edge cases.
import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { TraceError } from "./errors.ts";
import {
  loadPlanetlabFolder,
  PLANETLAB_INTERVAL_SECONDS,
  PLANETLAB_SAMPLES,
  planetlabDays,
  planetlabRoots,
  resolvePlanetlabFolder,
} from "./planetlab.ts";
import { realPlanetlabDays } from "./planetlab-testkit.ts";
import { utilizationAt } from "./trace.ts";

const root = resolve(import.meta.dirname, "../..");
const fixtures = join(root, "test/fixtures/planetlab");
const fixtureDay = join(fixtures, "20000101");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-planetlab-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs fn with NESTCLOUD_PLANETLAB_DIR / NESTCLOUD_REQUIRE_PLANETLAB set (undefined: unset). */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (k: string, v: string | undefined) => {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  };
  for (const [k, v] of Object.entries(vars)) set(k, v);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) set(k, v);
  }
}

function folder(name: string, files: Record<string, string>): string {
  const f = join(dir, name);
  mkdirSync(f, { recursive: true });
  for (const [n, text] of Object.entries(files)) writeFileSync(join(f, n), text);
  return f;
}

describe("PlanetLab loader on the fixture day", () => {
  test("one guest per file, in byte order of the names, 288 samples of 300 s, values as written", () => {
    const trace = loadPlanetlabFolder(fixtureDay);
    const files = readdirSync(fixtureDay).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.equal(files.length, 24);
    assert.deepEqual(trace.names, files);
    assert.equal(trace.samples, PLANETLAB_SAMPLES);
    assert.equal(trace.intervalSeconds, PLANETLAB_INTERVAL_SECONDS);
    assert.equal(trace.source, `planetlab:${fixtureDay}`);
    assert.equal(trace.data.length, 24 * 288);
    files.forEach((f, g) => {
      const values = readFileSync(join(fixtureDay, f), "utf8").trim().split("\n").map(Number);
      assert.equal(values.length, 288, f);
      assert.deepEqual(Array.from(trace.data.subarray(g * 288, (g + 1) * 288)), values, f);
    });
  });

  test("a file linked into the folder counts as a file; a linked folder does not", () => {
    const f = folder("links", { "a.txt": "1\n2\n" });
    symlinkSync(join(fixtureDay, readdirSync(fixtureDay).sort()[0]), join(f, "b.txt"));
    mkdirSync(join(dir, "elsewhere"), { recursive: true });
    symlinkSync(join(dir, "elsewhere"), join(f, "c"));
    assert.deepEqual(loadPlanetlabFolder(f).names, ["a.txt", "b.txt"]);
  });

  test("demand between two samples is interpolated, and the last sample holds after the day", () => {
    const trace = loadPlanetlabFolder(fixtureDay);
    const at = (g: number, k: number) => trace.data[g * 288 + k] / 100;
    assert.equal(utilizationAt(trace, 3, 600), at(3, 2));
    assert.ok(Math.abs(utilizationAt(trace, 3, 750) - (at(3, 2) + at(3, 3)) / 2) < 1e-12);
    assert.equal(utilizationAt(trace, 3, 86_400 * 2), at(3, 287));
  });

  test("a bare day name is found under NESTCLOUD_PLANETLAB_DIR, which is searched first", () => {
    withEnv({ NESTCLOUD_PLANETLAB_DIR: fixtures }, () => {
      assert.equal(planetlabRoots()[0], fixtures);
      assert.equal(resolvePlanetlabFolder("20000101"), fixtureDay);
      assert.deepEqual(planetlabDays(join(dir, "nowhere")), ["20000101"]);
    });
  });

  test("a missing day names every folder searched and how to point at the days", () => {
    withEnv({ NESTCLOUD_PLANETLAB_DIR: fixtures }, () => {
      assert.throws(
        () => resolvePlanetlabFolder("19991231", dir),
        (e: Error) =>
          e instanceof TraceError &&
          e.message.includes(`PlanetLab day 19991231 not found under ${fixtures}, `) &&
          e.message.includes(join(dir, "../shared/data/planetlab")) &&
          e.message.includes("set NESTCLOUD_PLANETLAB_DIR"),
      );
    });
  });
});

describe("PlanetLab loader edge cases", () => {
  test("short files hold their last value; CRLF, blank lines and hidden files are accepted", () => {
    const f = folder("edge", { b: "5\r\n\r\n7\r\n", a: "1\n2\n3\n", ".hidden": "not a trace\n" });
    const trace = loadPlanetlabFolder(f);
    assert.deepEqual(trace.names, ["a", "b"]);
    assert.deepEqual(Array.from(trace.data.subarray(0, 4)), [1, 2, 3, 3]);
    assert.equal(trace.data[287], 3);
    assert.deepEqual(Array.from(trace.data.subarray(288, 291)), [5, 7, 7]);
    assert.equal(trace.data[2 * 288 - 1], 7);
  });

  test("names are ordered by bytes, not by locale", () => {
    const trace = loadPlanetlabFolder(folder("order", { b: "1\n", B: "2\n", a: "3\n", _x: "4\n" }));
    assert.deepEqual(trace.names, ["B", "_x", "a", "b"]);
  });

  test("lines past the 288th are ignored", () => {
    const trace = loadPlanetlabFolder(folder("long", { a: `${"9\n".repeat(288)}${"50\n".repeat(10)}` }));
    assert.equal(trace.data.length, 288);
    assert.ok(trace.data.every((v) => v === 9));
  });

  test("bad values name the file and line", () => {
    for (const [text, bad] of [
      ["10\n101\n", "101"],
      ["10\n-1\n", "-1"],
      ["10\n2.5\n", "2.5"],
      ["10\nabc\n", "abc"],
    ]) {
      const f = folder(`bad-${bad}`, { vm1: text });
      assert.throws(
        () => loadPlanetlabFolder(f),
        (e: Error) =>
          e instanceof TraceError &&
          e.message === `${join(f, "vm1")}:2: expected an integer CPU percent 0..100, got "${bad}"`,
      );
    }
  });

  test("empty files and empty folders are errors", () => {
    const empty = folder("empty-file", { vm1: "\n\n" });
    assert.throws(
      () => loadPlanetlabFolder(empty),
      new TraceError(`${join(empty, "vm1")}: empty trace file`),
    );
    const none = folder("no-files", { ".only-hidden": "1\n" });
    assert.throws(
      () => loadPlanetlabFolder(none),
      new TraceError(`trace folder ${none} holds no trace files`),
    );
  });
});

describe("real PlanetLab days for tests (planetlab-testkit)", () => {
  test("a day that is there runs; its folder is given", () => {
    withEnv({ NESTCLOUD_PLANETLAB_DIR: fixtures, NESTCLOUD_REQUIRE_PLANETLAB: undefined }, () => {
      const real = realPlanetlabDays("20000101");
      assert.equal(real.skip, undefined);
      assert.deepEqual(real.folders, { "20000101": fixtureDay });
      real.assertPresent();
    });
  });

  test("a day that is absent skips the test with the reason", () => {
    withEnv({ NESTCLOUD_PLANETLAB_DIR: fixtures, NESTCLOUD_REQUIRE_PLANETLAB: undefined }, () => {
      const real = realPlanetlabDays("20000101", "19991231");
      assert.match(real.skip ?? "", /^PlanetLab day 19991231 not found under .*set NESTCLOUD_PLANETLAB_DIR/);
      assert.ok(real.skip?.includes(fixtures));
      assert.deepEqual(real.folders, { "20000101": fixtureDay });
    });
  });

  test("with NESTCLOUD_REQUIRE_PLANETLAB=1 an absent day fails the test instead", () => {
    withEnv({ NESTCLOUD_PLANETLAB_DIR: fixtures, NESTCLOUD_REQUIRE_PLANETLAB: "1" }, () => {
      const real = realPlanetlabDays("19991231", "19991230");
      assert.equal(real.skip, undefined);
      assert.throws(
        () => real.assertPresent(),
        /^Error: NESTCLOUD_REQUIRE_PLANETLAB=1 and PlanetLab days 19991231, 19991230 not found under /,
      );
    });
  });
});

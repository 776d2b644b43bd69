// The nestcloud command as users run it: real processes, real files.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { ADMIN_TOKEN_FILE } from "../controller/index.ts";
import { ADMIN_TOKEN_FILE as CLIENT_ADMIN_TOKEN_FILE } from "./client.ts";

const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const good = readFileSync(join(root, "scenarios/synthetic-nested.yaml"), "utf8")
  // The copy lives in a temporary folder: point its calibration at the repository's file.
  .replace("../calibration/migration.json", join(root, "calibration/migration.json"))
  .replace("guests: 2000, seed: 42", "guests: 200, seed: 42")
  .replace("durationSeconds: 86400", "durationSeconds: 7200");

/** Nine levels of nine aliases: 9^9 strings if expanded. */
function aliasBomb(): string {
  const names = "abcdefghi";
  let text = `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n`;
  for (let i = 1; i < names.length; i++)
    text += `${names[i]}: &${names[i]} [${Array(9)
      .fill(`*${names[i - 1]}`)
      .join(",")}]\n`;
  return text;
}

/** A file of `bytes` that takes no disk (a hole). */
function sparse(name: string, bytes: number): string {
  const p = join(dir, name);
  writeFileSync(p, "");
  truncateSync(p, bytes);
  return p;
}

/** A PlanetLab-format folder whose second file is far too large. */
function traceFolder(): string {
  const f = join(dir, "trace-day");
  mkdirSync(f, { recursive: true });
  writeFileSync(join(f, "a"), "10\n".repeat(288));
  writeFileSync(join(f, "b"), "10\n".repeat(40_000));
  return f;
}

function scenario(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe("user errors: one clear line, exit code 2, no stack trace", () => {
  const cases: Array<[string, string[], RegExp]> = [
    ["malformed YAML", ["simulate", scenario("bad.yaml", "name: [x\n")], /bad\.yaml:\d+:\d+: malformed YAML/],
    [
      "unknown field",
      ["simulate", scenario("unk.yaml", good.replace("seed: 42\n", "seed: 42\nsed: 1\n"))],
      /unk\.yaml: unknown field sed/,
    ],
    [
      "missing trace folder",
      ["simulate", scenario("t.yaml", good), "--trace", "planetlab:/nonexistent/day"],
      /trace folder \/nonexistent\/day does not exist/,
    ],
    [
      "unknown policy",
      ["simulate", scenario("p.yaml", good), "--policy", "best-fit-ever"],
      /unknown policy best-fit-ever/,
    ],
    [
      "impossible scenario",
      [
        "simulate",
        scenario(
          "big.yaml",
          good.replace("memoryMiB: 1740, dirtyRateMiBps: 60", "memoryMiB: 400000, dirtyRateMiBps: 60"),
        ),
      ],
      /big\.yaml: guests\.types\[1\]: guest type extra-large .* fits in no host VM type/,
    ],
    [
      "missing scenario file",
      ["simulate", join(dir, "nope.yaml")],
      /nope\.yaml: cannot read scenario \(ENOENT\)/,
    ],
    ["bad seed", ["simulate", scenario("s.yaml", good), "--seed", "x"], /--seed x: expected an integer/],
    [
      "YAML alias bomb (billion laughs)",
      ["simulate", scenario("bomb.yaml", aliasBomb())],
      /bomb\.yaml: YAML aliases expand too far/,
    ],
    [
      "a scenario over the size limit (107 MB, sparse)",
      ["simulate", sparse("huge.yaml", 107_000_000)],
      /huge\.yaml: scenario too large \(102\.0 MiB; at most 1\.0 MiB\)/,
    ],
    [
      "a trace file over the size limit",
      ["simulate", scenario("tr.yaml", good), "--trace", `planetlab:${traceFolder()}`],
      /trace file too large .*at most 64 KiB/,
    ],
    [
      "a synthetic trace beyond the guest limit",
      ["simulate", scenario("syn.yaml", good), "--trace", "synthetic:99999999999"],
      /guest count must be an integer from 1 to 10,000,000/,
    ],
  ];
  for (const [name, args, pattern] of cases) {
    test(name, () => {
      const r = run(...args, "--quiet");
      assert.equal(r.code, 2, r.err);
      const lines = r.err.trim().split("\n");
      assert.equal(lines.length, 1, `one line, got: ${r.err}`);
      assert.match(lines[0], /^nestcloud: /);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(r.err, /\n\s+at /);
    });
  }
});

describe("up: clear errors before anything starts", () => {
  const data = join(dir, "up-data");
  const cases: Array<[string, string[], number, RegExp]> = [
    ["testbed provider without a testbed", ["--provider", "testbed"], 2, /needs --testbed <id or folder>/],
    ["a testbed without the testbed provider", ["--testbed", "x"], 2, /go with --provider testbed/],
    ["malformed policy parameter", ["--policy-param", "overloadUtilization=x"], 2, /expected name=number/],
    [
      "a testbed that is not up",
      ["--provider", "testbed", "--testbed", "nope", "--testbed-root", join(dir, "tb"), "--port", "0"],
      1,
      /no testbed nope is up .*nestcloud testbed up/,
    ],
  ];
  for (const [name, args, code, pattern] of cases) {
    test(name, () => {
      const r = run("up", ...args, "--data-dir", data);
      assert.equal(r.code, code, r.err);
      const lines = r.err.trim().split("\n");
      assert.equal(lines.length, 1, `one line, got: ${r.err}`);
      assert.match(lines[0], /^nestcloud: /);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(r.err, /\n\s+at /);
    });
  }
});

describe("simulate and compare", () => {
  test("simulate writes results.json, timing.json and report.html; same seed gives the same bytes", () => {
    const file = scenario("ok.yaml", good);
    const a = run("simulate", file, "--out", join(dir, "a"), "--quiet");
    const b = run("simulate", file, "--out", join(dir, "b"), "--quiet");
    assert.equal(a.code, 0, a.err);
    assert.equal(b.code, 0, b.err);
    assert.match(a.out, /host-VM hours/);
    const ra = readFileSync(join(dir, "a/results.json"));
    assert.ok(ra.equals(readFileSync(join(dir, "b/results.json"))), "byte-identical results.json");
    const report = readFileSync(join(dir, "a/report.html"), "utf8");
    assert.match(report, /<svg/);
    assert.equal(JSON.parse(ra.toString()).policy, "nestcloud");
  });

  test("compare --json prints one object per policy with the documented fields", () => {
    const r = run("compare", scenario("c.yaml", good), "--policies", "nestcloud,lr-mmt-1.2", "--json");
    assert.equal(r.code, 0, r.err);
    const rows = JSON.parse(r.out) as Array<Record<string, unknown>>;
    assert.deepEqual(
      rows.map((x) => x.policy),
      ["nestcloud", "lr-mmt-1.2"],
    );
    for (const row of rows) {
      for (const k of ["hostVmHours", "energyKWh", "slatah", "pdm", "slav", "esv", "wallSeconds"])
        assert.equal(typeof row[k], "number", k);
      assert.deepEqual(Object.keys(row.migrations as object).sort(), [
        "instant",
        "postcopy",
        "precopy",
        "total",
      ]);
    }
  });
});

test("the API client looks for the admin token where the controller keeps it", () => {
  // client.ts names the file itself so that `nestcloud vms` need not load the controller.
  assert.equal(CLIENT_ADMIN_TOKEN_FILE, ADMIN_TOKEN_FILE);
});

test("--version and --help answer without running anything", () => {
  const v = run("--version");
  assert.equal(v.code, 0, v.err);
  assert.equal(v.out.trim(), "0.1.0");
  const h = run("--help");
  assert.equal(h.code, 0, h.err);
  for (const c of ["simulate", "compare", "up", "servers", "vms", "plans", "token", "vmi", "testbed"])
    assert.match(h.out, new RegExp(`^  ${c}\\b`, "m"), c);
});

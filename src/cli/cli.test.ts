// The nestcloud command as users run it: real processes, real files.
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import * as controller from "../controller/index.ts";
import { ADMIN_TOKEN_FILE, type RunningController, runController } from "../controller/index.ts";
import * as choices from "./choices.ts";
import { ADMIN_TOKEN_FILE as CLIENT_ADMIN_TOKEN_FILE } from "./client.ts";

const root = resolve(import.meta.dirname, "../..");
const bin = join(root, "bin/nestcloud.js");
const dir = mkdtempSync(join(tmpdir(), "nestcloud-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** As run(), without blocking this process (for a controller running in it). */
function runAsync(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { cwd: root, encoding: "utf8", timeout: 120_000 },
      (e, out, err) => done({ code: e ? (typeof e.code === "number" ? e.code : null) : 0, out, err }),
    );
  });
}

/** The lines of stderr that name written files. */
const written = (err: string) =>
  err
    .split("\n")
    .filter((l) => l.startsWith("wrote "))
    .map((l) => l.slice("wrote ".length));

/** Bare metal (no nesting): each physical server is one bin, nothing is rented. */
const bareMetal = `
name: bare-small
nesting: none
durationSeconds: 7200
servers:
  - { prefix: g4, count: 20, cores: 2, mipsPerCore: 1860, memoryMiB: 4096, networkMbps: 1000, power: hp-ml110-g4 }
  - { prefix: g5, count: 20, cores: 2, mipsPerCore: 2660, memoryMiB: 4096, networkMbps: 1000, power: hp-ml110-g5 }
guests:
  types:
    - { name: high-cpu, mipsPerVcpu: 2500, memoryMiB: 870 }
    - { name: micro, mipsPerVcpu: 500, memoryMiB: 613 }
trace: { kind: synthetic, guests: 40 }
migration: { model: cloudsim }
policy: { name: lr-mmt-1.2 }
`;

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
      "a bad scenario enum lists the allowed values",
      ["simulate", scenario("enum.yaml", good.replace("nesting: nested", "nesting: nest"))],
      /enum\.yaml: nesting: must be one of none, nested$/,
    ],
    [
      "an unknown policy among several is refused before any runs",
      ["compare", scenario("pp.yaml", good), "--policies", "nestcloud,lr-mmt-1.2,best-fit"],
      /--policies: unknown policy best-fit \(known: .*nestcloud.*<thr\|iqr\|mad\|lr\|lrr>-<mmt\|rs\|mc\|mu>-<parameter>, with modifiers \+billing, \+hostvm, \+react\)$/,
    ],
    [
      "an unknown modifier names the allowed ones",
      ["compare", scenario("pm.yaml", good), "--policies", "nestcloud,lr-mmt-1.2+bill"],
      /--policies: lr-mmt-1\.2\+bill: unknown modifier \+bill \(known: \+billing, \+hostvm, \+react\)$/,
    ],
    [
      "an unknown --policy-param names the policy's parameters",
      [
        "compare",
        scenario("pq.yaml", good),
        "--policies",
        "lr-mmt-1.2+billing",
        "--policy-param",
        "lr-mmt-1.2+billing:spares=1",
      ],
      /--policy-param lr-mmt-1\.2\+billing:spares: unknown parameter of lr-mmt-1\.2\+billing \(known: drainBeforeBillingSeconds, spareHostVms; \+hostvm adds memoryBalance; \+react adds/,
    ],
    [
      "a --policy-param for a policy not run",
      ["simulate", scenario("pr.yaml", good), "--policy-param", "lr-mmt-1.2:spareHostVms=1"],
      /--policy-param lr-mmt-1\.2:spareHostVms=1: lr-mmt-1\.2 is not a policy of this run \(nestcloud\)$/,
    ],
    [
      "a malformed --policy-param",
      ["simulate", scenario("ps.yaml", good), "--policy-param", "nestcloud:=1"],
      /--policy-param nestcloud:=1: expected <policy>:<name>=<value>$/,
    ],
    [
      "a --policy-param without its policy when several run",
      [
        "compare",
        scenario("pt.yaml", good),
        "--policies",
        "nestcloud,lr-mmt-1.2",
        "--policy-param",
        "window=3",
      ],
      /--policy-param window=3: several policies run \(nestcloud, lr-mmt-1\.2\): say which, <policy>:<name>=<value>$/,
    ],
    [
      "a malformed --trace is refused before the scenario runs",
      ["compare", scenario("tt.yaml", good), "--policies", "nestcloud", "--trace", "azure:1"],
      /--trace azure:1: expected planetlab:<day-or-folder> or synthetic:<guests>\[:<seed>\]$/,
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

describe("flags with fixed values: one line listing them, before anything is asked", () => {
  // Nothing listens on port 9: the errors must come before any request.
  const away = ["--url", "http://127.0.0.1:9", "--token", "nc_x"];
  const cases: Array<[string[], string]> = [
    [
      ["vms", "migrate", "vm-1", "--mechanism", "bogus", ...away],
      "--mechanism bogus: expected one of auto, instant, precopy, postcopy",
    ],
    [["servers", "-o", "yaml", ...away], "--output yaml: expected one of table, json"],
    [["vms", "migrate", "vm-1", "--output", "yaml", ...away], "--output yaml: expected one of table, json"],
    [
      ["plans", "--status", "done", ...away],
      "--status done: expected one of proposed, approved, applying, applied, failed, cancelled, superseded",
    ],
    [
      ["migrations", "--status", "done", ...away],
      "--status done: expected one of running, completed, failed, cancelled",
    ],
    [["token", "create", "--role", "root", ...away], "--role root: expected one of admin, tenant, metrics"],
    [
      ["up", "--provider", "aws", "--data-dir", join(dir, "up-enum")],
      "--provider aws: expected one of sim, testbed, openstack",
    ],
  ];
  for (const [args, message] of cases) {
    test(args.slice(0, 4).join(" "), () => {
      const r = run(...args);
      assert.equal(r.code, 2, r.err);
      assert.equal(r.err, `nestcloud: ${message}\n`);
    });
  }
});

describe("up: clear errors before anything starts", () => {
  const data = join(dir, "up-data");
  const cases: Array<[string, string[], number, RegExp]> = [
    ["testbed provider without a testbed", ["--provider", "testbed"], 2, /needs --testbed <id or folder>/],
    ["a testbed without the testbed provider", ["--testbed", "x"], 2, /go with --provider testbed/],
    [
      "openstack settings without the openstack provider",
      ["--os-project", "x", "--agent-token-file", "/t"],
      2,
      /--os-auth-url, --os-project, .* go with --provider openstack/,
    ],
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

describe("up: logs a terminal can read, JSON for machines, one line on shutdown", () => {
  /** Starts `up`, waits for its token line, stops it with SIGTERM; everything it printed. */
  async function upAndDown(...args: string[]): Promise<{ out: string; err: string; code: number | null }> {
    const child = spawn(
      process.execPath,
      [bin, "up", "--port", "0", "--data-dir", join(dir, `logs-${args.join("")}`), ...args],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NESTCLOUD_LOG: "info" } },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const deadline = Date.now() + 90_000;
    while (!/admin token:/.test(out) && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 100));
    const errBefore = err.length;
    child.kill("SIGTERM");
    const code = await exited;
    // What it said on stderr from the signal on (before: `wrote <file>` lines).
    return { out, err: err.slice(errBefore), code };
  }

  test("--log-format pretty: human lines; json: one JSON object per line", async () => {
    const pretty = await upAndDown("--log-format", "pretty");
    assert.equal(pretty.code, 0, pretty.err);
    assert.match(pretty.out, /^\[\d\d:\d\d:\d\d\] INFO: leading/m);
    assert.doesNotMatch(pretty.out, /^\{"level"/m);
    const json = await upAndDown("--log-format", "json");
    assert.equal(json.code, 0, json.err);
    const logLines = json.out.split("\n").filter((l) => l.startsWith("{"));
    assert.ok(logLines.length >= 2, json.out);
    for (const l of logLines) assert.equal(typeof JSON.parse(l).msg, "string");
    // Shutdown: exactly one line, on stderr.
    for (const r of [pretty, json]) {
      const lines = r.err.trim().split("\n");
      assert.equal(lines.length, 1, r.err);
      assert.match(lines[0], /^nestcloud: controller stopped \(SIGTERM\) after \d+ s; its state is in /);
    }
  });

  test("not a terminal and no flag: JSON; a bad format names the allowed ones", async () => {
    const auto = await upAndDown();
    assert.match(auto.out, /^\{"level":30,.*"msg":"leading"/m);
    const bad = run("up", "--log-format", "xml", "--data-dir", join(dir, "bad-log"));
    assert.equal(bad.code, 2);
    assert.equal(bad.err.trim(), "nestcloud: --log-format xml: expected one of auto, pretty, json");
  });
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
    // Every file written is named on stderr; stdout is the table alone.
    assert.deepEqual(
      written(a.err),
      ["results.json", "timing.json", "report.html"].map((f) => join(dir, "a", f)),
    );
    assert.doesNotMatch(a.out, /results\.json|report\.html/);
  });

  test("compare: a nested cloud shows what it rents; --out names the files it wrote", () => {
    const out = join(dir, "cmp");
    const r = run(
      "compare",
      scenario("cn.yaml", good),
      "--policies",
      "nestcloud,lr-mmt-1.2",
      "--out",
      out,
      "-q",
    );
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(written(r.err), [join(out, "results.json"), join(out, "report.html")]);
    for (const row of [
      /^│ host-VM hours +│ \d/m,
      /^│ {3}x lower bound +│ \d+\.\d\d \(of \d+\.\d\) +│/m,
      /^│ cost \(\$\) +│ \d/m,
      /^│ {3}instant +│ \d/m,
      /^│ energy \(kWh\)/m,
    ])
      assert.match(r.out, row);
  });

  test("compare on bare metal leaves out what does not apply (rentals, cost, instant moves)", () => {
    const r = run("compare", scenario("bare.yaml", bareMetal), "--policies", "lr-mmt-1.2,thr-mmt-0.8", "-q");
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.out, /host-VM hours|lower bound|cost|instant/);
    for (const row of [
      /^│ energy \(kWh\) +│ \d/m,
      /^│ migrations +│ \d/m,
      /^│ {3}pre-copy +│ \d/m,
      /^│ SLATAH +│ \d/m,
    ])
      assert.match(r.out, row);
    assert.equal(written(r.err).length, 0, "no --out: nothing written");
    const json = run("compare", scenario("bare.yaml", bareMetal), "--policies", "lr-mmt-1.2", "--json");
    assert.equal((JSON.parse(json.out) as Array<{ nesting: string }>)[0].nesting, "none");
  });

  test("--policy-param reaches the policy it names, and only that one", () => {
    const file = scenario("pp-ok.yaml", good);
    const hours = (...extra: string[]) => {
      const r = run("compare", file, "--policies", "nestcloud,lr-mmt-1.2+billing", "--json", ...extra);
      assert.equal(r.code, 0, r.err);
      return (JSON.parse(r.out) as Array<{ hostVmHours: number }>).map((x) => x.hostVmHours);
    };
    const [nestcloud, baseline] = hours();
    const [looser, same] = hours("--policy-param", "nestcloud:targetUtilization=0.6");
    assert.equal(same, baseline, "the other policy's run is unchanged");
    assert.ok(looser > nestcloud, `packing to 60 % rents more: ${looser} vs ${nestcloud} h`);
    const single = run(
      "simulate",
      file,
      "--policy-param",
      "targetUtilization=0.6",
      "--out",
      join(dir, "pp"),
      "-q",
    );
    assert.equal(single.code, 0, single.err);
    assert.equal(JSON.parse(readFileSync(join(dir, "pp/results.json"), "utf8")).hostVmHours, looser);
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
      for (const k of [
        "hostVmHours",
        "lowerBoundHostVmHours",
        "hostVmHoursToLowerBound",
        "energyKWh",
        "slatah",
        "pdm",
        "slav",
        "esv",
        "wallSeconds",
      ])
        assert.equal(typeof row[k], "number", k);
      // The bound is the day's, the same for every policy; each uses more than it.
      assert.equal(row.lowerBoundHostVmHours, rows[0].lowerBoundHostVmHours);
      assert.equal(
        row.hostVmHoursToLowerBound,
        (row.hostVmHours as number) / (row.lowerBoundHostVmHours as number),
      );
      assert.ok((row.hostVmHoursToLowerBound as number) >= 1);
      assert.deepEqual(Object.keys(row.migrations as object).sort(), [
        "instant",
        "postcopy",
        "precopy",
        "total",
      ]);
    }
  });
});

describe("commands against a controller (simulated cloud)", () => {
  let c: RunningController;
  const data = join(dir, "ctl");
  let to: string[];
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(c.url + path, {
      method,
      headers: { authorization: `Bearer ${c.adminToken}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await res.json()) as any;
  };

  before(async () => {
    c = await runController({
      provider: "sim",
      port: 0,
      dataDir: data,
      speed: 240,
      log: pino({ level: "silent" }),
    });
    to = ["--url", c.url, "--token", c.adminToken];
    // Guests move only when asked.
    await api("PUT", "/api/settings", { automation: "manual" });
    const end = Date.now() + 30_000;
    while ((await api("GET", "/api/vms")).length === 0 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 200));
  });
  after(() => c.close());

  test("the overview says the provider's clock is simulated", async () => {
    assert.equal((await api("GET", "/api/overview")).clock, "simulated");
  });

  test("vms migrate --mechanism bogus is refused before the controller sees it", async () => {
    const guest = (await api("GET", "/api/vms"))[0].id as string;
    // The controller's first round may have moved it before automation became manual.
    const movesOf = async () =>
      (await api("GET", "/api/migrations")).filter((m: { guest: string }) => m.guest === guest).length;
    // ...and its plan may still be applying: wait until it settled.
    const end = Date.now() + 30_000;
    while ((await api("GET", "/api/plans?status=applying")).length > 0 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 200));
    const before = await movesOf();
    const r = await runAsync("vms", "migrate", guest, "--mechanism", "bogus", ...to);
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err, "nestcloud: --mechanism bogus: expected one of auto, instant, precopy, postcopy\n");
    assert.equal(await movesOf(), before, "no migration was asked for");
  });

  test("plans and migrations tables: simulated times as day and time, progress in percent", async () => {
    const guest = (await api("GET", "/api/vms"))[1].id as string;
    const moved = await runAsync("vms", "migrate", guest, "--mechanism", "auto", ...to);
    assert.equal(moved.code, 0, moved.err);
    assert.match(moved.out, new RegExp(`^${guest} now runs on \\S+ \\((instant|precopy|postcopy)\\)\\n$`));

    const migrations = await runAsync("migrations", "--status", "completed", ...to);
    assert.equal(migrations.code, 0, migrations.err);
    const row = migrations.out.split("\n").find((l) => l.includes(` ${guest} `));
    assert.ok(row, migrations.out);
    const cells = row.split("│").map((s) => s.trim());
    // id, guest, from, to, mechanism, status, progress, started
    assert.equal(cells[6], "completed");
    assert.equal(cells[7], "100 %");
    assert.match(cells[8], /^day \d+ \d\d:\d\d:\d\d$/);
    // JSON keeps the API's numbers.
    const json = JSON.parse((await runAsync("migrations", "-o", "json", ...to)).out) as Array<{
      guest: string;
      progress: number;
      startedAt: number;
    }>;
    const m = json.find((x) => x.guest === guest)!;
    assert.equal(m.progress, 1);
    assert.equal(typeof m.startedAt, "number");
    // The table's day and time is that number of simulated seconds.
    const s = Math.floor(m.startedAt);
    const hms = [Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60]
      .map((n) => String(n).padStart(2, "0"))
      .join(":");
    assert.equal(cells[8], `day ${Math.floor(s / 86400) + 1} ${hms}`);

    const plans = await runAsync("plans", ...to);
    assert.equal(plans.code, 0, plans.err);
    assert.match(plans.out, /│ created +│/);
    assert.match(plans.out, /│ \d+ +│ \w+ +│ api +│ \d+ +│ day \d+ \d\d:\d\d:\d\d │/);
    assert.doesNotMatch(plans.out, /createdAt|\d{5}\.\d/);
  });
});

test("the API client looks for the admin token where the controller keeps it", () => {
  // client.ts names the file itself so that `nestcloud vms` need not load the controller.
  assert.equal(CLIENT_ADMIN_TOKEN_FILE, ADMIN_TOKEN_FILE);
});

test("the CLI checks flags against the API's own lists of fixed values", () => {
  // choices.ts names them itself so that registering the commands need not load the controller.
  for (const name of [
    "AUTOMATION_LEVELS",
    "MIGRATION_MECHANISMS",
    "MIGRATION_STATUSES",
    "PLAN_STATUSES",
    "POWER_ACTIONS",
    "REJUVENATION_MODES",
    "TOKEN_ROLES",
  ] as const)
    assert.deepEqual(choices[name], controller[name], name);
});

test("--version and --help answer without running anything", () => {
  const v = run("--version");
  assert.equal(v.code, 0, v.err);
  assert.equal(v.out.trim(), "0.1.0");
  const h = run("--help");
  assert.equal(h.code, 0, h.err);
  for (const c of [
    "simulate",
    "compare",
    "up",
    "servers",
    "vms",
    "plans",
    "settings",
    "token",
    "vmi",
    "testbed",
  ])
    assert.match(h.out, new RegExp(`^  ${c}\\b`, "m"), c);
});

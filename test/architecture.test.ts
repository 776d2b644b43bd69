// Enforces the module table of docs/architecture.md: which module may import which, and that
// modules reach each other only through their public entry (index.ts).
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "..");
const src = join(root, "src");

/** module -> modules it may import (besides itself and node built-ins). */
export const allowedImports: Record<string, readonly string[]> = {
  model: [],
  // TypeBox errors as one line naming the field (scenario and testbed files, agent configs).
  schema: [],
  // Plans carry each move's mechanism and cost: the (pure) migration models are inputs.
  planner: ["model", "migration"],
  migration: ["model"],
  sim: ["model", "planner", "migration", "schema"],
  qemu: [],
  vmi: [],
  monitor: ["vmi", "model"],
  testbed: ["qemu", "schema"],
  agent: ["qemu", "vmi", "monitor", "testbed", "migration", "model", "schema"],
  // The simulated provider replays traces (sim) with the cost models (migration); the
  // testbed provider drives a running testbed (testbed: its state file) through its agents
  // (agent: clients and the migration orchestrator). Neither imports providers: no cycle.
  providers: ["model", "migration", "sim", "agent", "testbed"],
  controller: ["model", "planner", "migration", "providers", "agent"],
  console: ["qemu"],
  cli: [
    "controller",
    "sim",
    "model",
    "planner",
    "migration",
    "qemu",
    "testbed",
    "agent",
    "vmi",
    "monitor",
    "console",
  ],
};

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

const importRe =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

test("every src module is declared in the import table", () => {
  for (const mod of readdirSync(src)) {
    if (statSync(join(src, mod)).isDirectory()) {
      assert.ok(mod in allowedImports, `src/${mod} is not in the module table (test/architecture.test.ts)`);
    }
  }
});

test("modules import only what the architecture allows, and only through index.ts", () => {
  const problems: string[] = [];
  for (const file of tsFiles(src)) {
    const mod = relative(src, file).split(sep)[0];
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(importRe)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      const rel = relative(src, target);
      if (rel.startsWith("..")) {
        problems.push(`${relative(root, file)} imports ${spec} outside src/`);
        continue;
      }
      const [targetMod, ...rest] = rel.split(sep);
      if (targetMod === mod) continue;
      if (!allowedImports[mod]?.includes(targetMod)) {
        problems.push(`${relative(root, file)}: module ${mod} may not import ${targetMod}`);
      }
      if (rest.join("/") !== "index.ts") {
        problems.push(`${relative(root, file)}: deep import ${spec} (use ../${targetMod}/index.ts)`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test("pure modules do no I/O", () => {
  const pure = ["model", "planner", "migration"];
  const io = /from\s+["'](node:)?(fs|fs\/promises|net|child_process|http|https|dgram|os)["']/;
  const offenders = pure.flatMap((m) =>
    tsFiles(join(src, m))
      .filter((f) => !f.endsWith(".test.ts") && io.test(readFileSync(f, "utf8")))
      .map((f) => relative(root, f)),
  );
  assert.deepEqual(offenders, []);
});

test("providers: a rental knows no data plane, a data plane no rental; only provider.ts composes them", () => {
  const dir = join(src, "providers");
  const rel = (f: string) => relative(dir, f).split(sep).join("/");
  // Rentals: renting host VMs (and their state). Data planes: running guests on them.
  const isRental = (f: string) => /(^|\/)rental\.ts$/.test(f) || f === "testbed/world.ts";
  const isPlane = (f: string) =>
    (f.startsWith("agents/") && f !== "agents/directory.ts") || /(^|\/)plane\.ts$/.test(f);
  const problems: string[] = [];
  for (const file of tsFiles(dir)) {
    if (file.endsWith(".test.ts")) continue;
    const from = rel(file);
    for (const m of readFileSync(file, "utf8").matchAll(importRe)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith(".")) continue;
      const to = rel(resolve(dirname(file), spec));
      if (isRental(from) && isPlane(to)) problems.push(`${from} (a rental) imports ${to} (a data plane)`);
      if (isPlane(from) && isRental(to)) problems.push(`${from} (a data plane) imports ${to} (a rental)`);
      if (from.startsWith("agents/") && /^(sim|testbed)\//.test(to))
        problems.push(`${from}: the agent data plane serves any rental, not ${to}`);
    }
  }
  assert.deepEqual(problems, []);
  // The agent data plane lives apart from the testbed: any rental whose host VMs run the agent reuses it.
  assert.ok(readdirSync(join(dir, "agents")).includes("plane.ts"));
  assert.ok(!readdirSync(join(dir, "testbed")).some((f) => /migrations|load|agents/.test(f)));
});

test("controller: only src/controller/store/ builds SQL; the API's route plugins reach the store through repositories", () => {
  const store = join(src, "controller", "store");
  const api = join(src, "controller", "api");
  const inside = (dir: string, f: string) => !relative(dir, f).startsWith("..");
  // Query building: kysely (or a driver) imported, a query begun, or raw SQL.
  const sql =
    /from\s+["'](kysely|better-sqlite3|pg|node:sqlite)["']|\.(selectFrom|insertInto|updateTable|deleteFrom|replaceInto|mergeInto|selectNoFrom)\(|\bsql(`|\.(raw|ref|lit|id|table|join|val)\()/;
  const problems: string[] = [];
  for (const file of tsFiles(src)) {
    if (inside(store, file)) continue;
    const text = readFileSync(file, "utf8");
    const m = sql.exec(text);
    if (m) problems.push(`${relative(root, file)} builds SQL (${m[0]}): move it into a repository`);
  }
  // The route plugins see repositories (c.repos, a transaction's tx), never the connection.
  for (const file of tsFiles(api)) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(importRe)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith(".")) continue;
      const to = resolve(dirname(file), spec);
      if (inside(store, to) && relative(store, to).split(sep).join("/") !== "repositories/index.ts")
        problems.push(
          `${relative(root, file)} imports ${spec} (the API imports store/repositories/index.ts only)`,
        );
    }
    if (/\.db\b/.test(text)) problems.push(`${relative(root, file)} reaches the store's connection (.db)`);
  }
  assert.deepEqual(problems, []);
  // The rule sees SQL where there is some: every repository builds its own.
  const repos = tsFiles(join(store, "repositories")).filter(
    (f) => !f.endsWith(".test.ts") && !f.endsWith("index.ts"),
  );
  assert.ok(repos.length >= 10);
  assert.deepEqual(
    repos.filter((f) => !sql.test(readFileSync(f, "utf8"))).map((f) => relative(root, f)),
    [],
    "each repository builds SQL",
  );
  // Each resource of the API is a route plugin of its own.
  for (const r of ["vms", "hostvms", "security-vms", "plans", "migrations", "settings", "tokens", "events"])
    assert.ok(readdirSync(join(api, "routes")).includes(`${r}.ts`), `src/controller/api/routes/${r}.ts`);
});

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

// docs/architecture.md, "Two sets of simulation rules": every difference between the rule sets
// is a member of SimulationRules, implemented in src/sim/rules/. The rest of src/sim asks the
// rules and never tests which set runs (by name, by the scenario's compat, or by comparing
// with a set's literal).
const ruleBranches: readonly RegExp[] = [
  /\brules?\s*[!=]==|[!=]==\s*(?:this\.)?rules?\b/,
  /\.name\s*[!=]==\s*["'](?:nested|cloudsim)["']|["'](?:nested|cloudsim)["']\s*[!=]==\s*[\w.]*\.name\b/,
  /\bcompat\s*(?:[!=]==|\?)|[!=]==\s*[\w.]*\bcompat\b|\bcloudsimCompat\b/,
  /[!=]==\s*["']cloudsim(?:-3\.0\.3)?["']|["']cloudsim(?:-3\.0\.3)?["']\s*[!=]==/,
  /(?<!nesting\s*)[!=]==\s*["']nested["']|["']nested["']\s*[!=]==/,
  /\bcase\s+["'](?:nested|cloudsim(?:-3\.0\.3)?)["']/,
];
/** Blanks comments out, keeping line numbers. */
const withoutComments = (text: string) =>
  text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, (c) => c.replace(/[^\n]/g, ""));
const branchesOn = (code: string) => ruleBranches.filter((re) => re.test(code));

test("the simulator branches on its rule set only inside src/sim/rules/", () => {
  // The check itself: it sees the forms such branches took, and lets the nesting field be.
  for (const old of [
    'if (this.rule === "cloudsim") x();',
    'const r = scenario.cloudsimCompat ? "cloudsim" : "nested";',
    'return doc.compat === "cloudsim-3.0.3";',
    'if (this.rules.name === "nested") x();',
    'const on = kind === "cloudsim" ? a : b;',
    'switch (set) { case "nested": break; }',
  ])
    assert.ok(branchesOn(old).length > 0, `not caught: ${old}`);
  assert.deepEqual(branchesOn('const nested = doc.nesting === "nested";'), []);

  const rules = join(src, "sim", "rules") + sep;
  const offenders = tsFiles(join(src, "sim"))
    .filter((f) => !f.startsWith(rules) && !f.endsWith(".test.ts"))
    .flatMap((f) =>
      withoutComments(readFileSync(f, "utf8"))
        .split("\n")
        .flatMap((line, i) =>
          branchesOn(line).length > 0 ? [`${relative(root, f)}:${i + 1}: ${line.trim()}`] : [],
        ),
    );
  assert.deepEqual(offenders, [], "move the difference into SimulationRules (src/sim/rules/)");
});

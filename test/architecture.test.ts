// Enforces the module table of docs/architecture.md (and that the table there says what this
// one says): which module may import which, and that modules reach each other only through
// their public entry (index.ts); that the pure modules do no I/O; the layers inside src/vmi;
// the providers' rentals apart from their data planes; SQL only in the controller's store;
// the simulator's rule sets only in src/sim/rules; and that no module's files import each
// other in a cycle.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
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
  // The console's protocol (console) is spoken by the agent (the serial port's end), the
  // controller (the relay) and the CLI (the client).
  agent: ["qemu", "vmi", "monitor", "testbed", "migration", "model", "schema", "console"],
  // The simulated provider replays traces (sim) with the cost models (migration); the
  // testbed provider drives a running testbed (testbed: its state file) through its agents
  // (agent: clients and the migration orchestrator). Neither imports providers: no cycle.
  // Both take the monitors' one alert shape and the channel decision (monitor) for security VMs.
  providers: ["model", "migration", "sim", "agent", "testbed", "monitor"],
  controller: ["model", "planner", "migration", "providers", "agent", "schema", "console", "monitor"],
  // The console's end-to-end protocol, client session and relay: pure (node:crypto only).
  console: [],
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

// Static imports and re-exports (`from "..."`), side-effect imports (`import "..."`) and
// dynamic imports (`import("...")`).
const importRe =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** The module specifiers a file's text imports. */
const importSpecs = (text: string): string[] =>
  [...text.matchAll(importRe)].map((m) => (m[1] ?? m[2] ?? m[3]) as string);

const srcModules = readdirSync(src).filter((m) => statSync(join(src, m)).isDirectory());

test("the import table names exactly the folders under src/ (no module missing, no phantom one)", () => {
  for (const mod of srcModules)
    assert.ok(mod in allowedImports, `src/${mod} is not in the module table (test/architecture.test.ts)`);
  for (const [mod, deps] of Object.entries(allowedImports)) {
    assert.ok(srcModules.includes(mod), `the module table names ${mod}, but src/${mod} does not exist`);
    for (const d of deps)
      assert.ok(srcModules.includes(d), `${mod} may import ${d}, but src/${d} does not exist`);
  }
});

/** The rows of docs/architecture.md's module table: module -> its "may import" cell. */
function documentedModules(): Map<string, string> {
  const doc = readFileSync(join(root, "docs", "architecture.md"), "utf8");
  const section =
    doc.split(/^## Modules$/m)[1]?.split(/^## /m)[0] ?? assert.fail("docs/architecture.md: no ## Modules");
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    // | module | owns | may import |: skip the header and the separator.
    if (cells.length < 5 || cells[1] === "module" || /^-+$/.test(cells[1])) continue;
    rows.set(cells[1], cells[cells.length - 2]);
  }
  return rows;
}

test("docs/architecture.md's module table has one row per module, with the imports this test allows", () => {
  const rows = documentedModules();
  assert.deepEqual([...rows.keys()].sort(), Object.keys(allowedImports).sort());
  for (const [mod, cell] of rows) {
    // "nothing" and "node only" (with what of node in parentheses) mean no module.
    const named = /^(nothing|node only)\b/.test(cell)
      ? []
      : cell.split(",").map((d) => d.trim().replace(/\s*\(.*\)$/, ""));
    assert.deepEqual([...named].sort(), [...allowedImports[mod]].sort(), `docs/architecture.md, row ${mod}`);
  }
});

test("modules import only what the architecture allows, and only through index.ts", () => {
  const problems: string[] = [];
  for (const file of tsFiles(src)) {
    const mod = relative(src, file).split(sep)[0];
    const text = readFileSync(file, "utf8");
    for (const spec of importSpecs(text)) {
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
  const pure = ["model", "planner", "migration", "console"];
  // Any import of them counts: static, side-effect or dynamic.
  const io =
    /^(node:)?(fs|fs\/promises|net|tls|dgram|dns|child_process|http|https|http2|os|readline|worker_threads|cluster)$/;
  const offenders = pure.flatMap((m) =>
    tsFiles(join(src, m))
      .filter((f) => !f.endsWith(".test.ts") && importSpecs(readFileSync(f, "utf8")).some((s) => io.test(s)))
      .map((f) => relative(root, f)),
  );
  assert.deepEqual(offenders, []);
});

test("monitor/disk/nbd: the NBD wire format is parsed apart from the socket I/O", () => {
  // protocol (constants), codec (encode/decode of whole messages), extents and errors: pure,
  // importing nothing but each other; the reader, handshake, client and transports do the I/O.
  const dir = join(src, "monitor", "disk", "nbd");
  const pure = ["protocol.ts", "codec.ts", "extents.ts", "errors.ts"];
  const problems: string[] = [];
  for (const f of pure) {
    for (const spec of importSpecs(readFileSync(join(dir, f), "utf8"))) {
      if (!pure.includes(spec.replace(/^\.\//, ""))) problems.push(`monitor/disk/nbd/${f} imports ${spec}`);
    }
  }
  assert.deepEqual(problems, []);
});

test("monitor/disk/ext4: the on-disk structures are parsed apart from the I/O", () => {
  // layout (superblock, descriptors, inodes, extent nodes, directory blocks, the journal's
  // blocks) and errors: pure, importing nothing but each other; fs, journal, walk and source
  // read the device.
  const dir = join(src, "monitor", "disk", "ext4");
  const pure = ["layout.ts", "errors.ts"];
  const problems: string[] = [];
  for (const f of pure) {
    for (const spec of importSpecs(readFileSync(join(dir, f), "utf8"))) {
      if (!pure.includes(spec.replace(/^\.\//, ""))) problems.push(`monitor/disk/ext4/${f} imports ${spec}`);
    }
  }
  assert.deepEqual(problems, []);
});

/** Relative imports of one file, resolved to absolute paths. */
function localImports(file: string): string[] {
  const out: string[] = [];
  for (const spec of importSpecs(readFileSync(file, "utf8"))) {
    if (spec.startsWith(".")) out.push(resolve(dirname(file), spec));
  }
  return out;
}

const vmi = join(src, "vmi");
const vmiBelow = (...layers: string[]) => ["errors.ts", ...layers];

/**
 * The layers of src/vmi (docs/architecture.md): folder, or single file, -> the layers it may
 * import besides its own. A file belongs to the longest key that is its path or a folder
 * above it. Tests (*.test.ts) may also import the public entry and any testkit: nothing
 * imports a test, so that adds no dependency.
 */
export const vmiLayers: Record<string, readonly string[]> = {
  // VmiError and its codes: every layer reports through them.
  "errors.ts": [],
  // PhysicalMemory/VirtualMemory, the sources (RAM file, QMP, buffer) and what a source may run
  // next to the memory (search, hash, list walks).
  memory: vmiBelow(),
  // x86-64 translation: page walks, the linear kernel mappings, the kernel address space.
  address: vmiBelow("memory"),
  // What the kernel says about itself: VMCOREINFO, kallsyms, BTF, symbols; the fallback finders.
  discovery: vmiBelow("memory", "address"),
  // The Kernel model and its profile, assembled by discoverKernel.
  kernel: vmiBelow("memory", "address", "discovery"),
  queries: vmiBelow("memory", "address", "discovery", "kernel"),
  checks: vmiBelow("memory", "address", "discovery", "kernel", "queries"),
  // The page server and its client meet only in the wire format (protocol, codec): neither
  // imports the other, and nothing below the public entry imports either.
  remote: vmiBelow("memory", "address"),
  "remote/server.ts": vmiBelow("memory", "address", "remote"),
  "remote/client.ts": vmiBelow("memory", "address", "remote"),
  "index.ts": vmiBelow(
    "memory",
    "address",
    "discovery",
    "kernel",
    "queries",
    "checks",
    "remote",
    "remote/server.ts",
    "remote/client.ts",
  ),
};

function vmiLayerOf(file: string): string | undefined {
  const rel = relative(vmi, file).split(sep).join("/");
  return Object.keys(vmiLayers)
    .filter((k) => rel === k || rel.startsWith(`${k}/`))
    .sort((a, b) => b.length - a.length)[0];
}

test("vmi layers: the layer table names only what exists and has no cycle (lower layers never import higher ones)", () => {
  for (const layer of Object.keys(vmiLayers))
    assert.ok(
      existsSync(join(vmi, layer)),
      `the vmi layer table names ${layer}, but src/vmi/${layer} does not exist`,
    );
  const done = new Set<string>();
  const visit = (layer: string, path: string[]): void => {
    assert.ok(!path.includes(layer), `layer cycle: ${[...path, layer].join(" -> ")}`);
    if (done.has(layer)) return;
    for (const dep of vmiLayers[layer] ?? assert.fail(`unknown layer ${layer}`)) visit(dep, [...path, layer]);
    done.add(layer);
  };
  for (const layer of Object.keys(vmiLayers)) visit(layer, []);
});

test("vmi layers: every file belongs to a layer and imports only the layers below it", () => {
  const problems: string[] = [];
  for (const file of tsFiles(vmi)) {
    const layer = vmiLayerOf(file);
    const name = relative(root, file);
    if (!layer) {
      problems.push(`${name} is in no vmi layer (test/architecture.test.ts vmiLayers)`);
      continue;
    }
    const isTest = file.endsWith(".test.ts");
    for (const target of localImports(file)) {
      if (!target.startsWith(vmi + sep)) continue;
      const to = vmiLayerOf(target);
      if (to === layer || (to && vmiLayers[layer].includes(to))) continue;
      if (isTest && (to === "index.ts" || target.endsWith(".testkit.ts"))) continue;
      problems.push(`${name} (${layer}) imports ${relative(root, target)} (${to ?? "no layer"})`);
    }
  }
  assert.deepEqual(problems, []);
});

test("no import cycles between the files of any module (type-only imports count)", () => {
  const graph = new Map(tsFiles(src).map((f) => [f, localImports(f)]));
  // Tarjan's strongly connected components: any component of more than one file is a cycle.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[] = [];
  const connect = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v) as number);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(relative(root, w));
    } while (w !== v);
    if (component.length > 1 || graph.get(v)?.includes(v)) cycles.push(component.sort().join(" <-> "));
  };
  for (const f of graph.keys()) if (!index.has(f)) connect(f);
  assert.deepEqual(cycles, []);
});

test("providers: a rental knows no data plane, a data plane no rental; only a provider.ts composes them", () => {
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
    const targets = importSpecs(readFileSync(file, "utf8"))
      .filter((spec) => spec.startsWith("."))
      .map((spec) => rel(resolve(dirname(file), spec)));
    // The public entry re-exports both halves; composing them is a provider.ts's job.
    if (
      targets.some(isRental) &&
      targets.some(isPlane) &&
      !/(^|\/)provider\.ts$/.test(from) &&
      from !== "index.ts"
    )
      problems.push(`${from} imports both a rental and a data plane: only a provider.ts composes them`);
    for (const to of targets) {
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
    for (const spec of importSpecs(text)) {
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

test("one decision-maker: no placement or migration-cost rule in the controller or the providers", () => {
  // The planner decides where guests go, where they move and by which mechanism (for the
  // simulator and the controller alike); the controller carries the plans out (its executor
  // only checks that a planned move still fits). The providers choose nothing either: the
  // simulated one may size a migration it was told to run (the world's physics), no more.
  const placement = /\b(routeBetween|freeMemory|placementProblem)\(|Math\.min\(1, 0\.\d+ \+/;
  const costs =
    /\b(estimateMove|estimatePrecopy|estimatePostcopy|estimateInstant)\(|residentMiB:\s*[a-z.]*memoryMiB\s*\*/;
  const problems: string[] = [];
  for (const dir of ["controller", "providers"]) {
    for (const file of tsFiles(join(src, dir))) {
      if (file.endsWith(".test.ts")) continue;
      const text = readFileSync(file, "utf8");
      const m = placement.exec(text) ?? (dir === "controller" ? costs.exec(text) : null);
      if (m) problems.push(`${relative(root, file)} decides for itself (${m[0]}): ask the planner`);
    }
  }
  assert.deepEqual(problems, []);
});

test("every action kind of the planner has one stored payload, and the same list of kinds", async () => {
  const { ACTION_KINDS } = await import("../src/planner/index.ts");
  const { ActionPayload } = await import("../src/controller/api/schemas/plans.ts");
  const kinds = (
    ActionPayload as unknown as { anyOf: { properties: { kind: { const: string } } }[] }
  ).anyOf.map((o) => o.properties.kind.const);
  assert.deepEqual([...kinds].sort(), [...ACTION_KINDS].sort());
});

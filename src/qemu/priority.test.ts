// The control path above its guests: a process that raised itself starts children at its
// original priority and lends them its own for a switch, on every thread. Run in a child
// process each time: raising priority is once per process and would change this runner.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, test } from "node:test";

const dir = mkdtempSync(join(tmpdir(), "nc-prio-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const mod = resolve(import.meta.dirname, "priority.ts");
const mayRaise = process.getuid?.() === 0;

/** Nice of every thread of `pid`, from /proc (field 19 of stat). */
const probe = `
import { readdirSync, readFileSync } from "node:fs";
export function nices(pid) {
  return readdirSync("/proc/" + pid + "/task").map((t) => {
    const stat = readFileSync("/proc/" + pid + "/task/" + t + "/stat", "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });
}`;

function run(body: string, env: NodeJS.ProcessEnv = {}): Record<string, unknown> {
  const file = join(dir, `s${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(file, `${probe}\nimport * as p from ${JSON.stringify(mod)};\n${body}`);
  const out = execFileSync(process.execPath, ["--import", "tsx", file], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

const spawnChild = `
import { spawn } from "node:child_process";
// A multi-threaded child (node has several threads from the start).
const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 300));
`;

test("raised: the process runs 10 steps above its children, which it lends its level and takes it back, every thread", {
  skip: !mayRaise && "raising priority needs root or CAP_SYS_NICE",
}, () => {
  const r = run(`
const base = (await import("node:os")).getPriority();
const lv = p.raiseControlPriority();
${spawnChild}
const inherited = nices(child.pid);
p.setLevel(child.pid, "guest");
const guest = nices(child.pid);
p.setLevel(child.pid, "control");
const lent = nices(child.pid);
p.setLevel(child.pid, "guest");
const back = nices(child.pid);
child.kill();
console.log(JSON.stringify({ base, lv, self: nices(process.pid), inherited, guest, lent, back }));
`);
  const base = r.base as number;
  assert.deepEqual(r.lv, { guest: base, control: base - 10, raised: true }, "levels");
  const all = (k: string, v: number) =>
    assert.ok(
      (r[k] as number[]).every((n) => n === v),
      `${k}: every thread at ${v}: ${JSON.stringify(r[k])}`,
    );
  assert.ok((r.self as number[]).length > 1, "the runner has several threads");
  all("self", base - 10);
  all("inherited", base - 10);
  all("guest", base);
  all("lent", base - 10);
  all("back", base);
});

test("NESTCLOUD_CONTROL_PRIORITY=0: nothing raised, children untouched", () => {
  const r = run(
    `
const lv = p.raiseControlPriority();
${spawnChild}
const ok = p.setLevel(child.pid, "control");
const after = nices(child.pid);
child.kill();
console.log(JSON.stringify({ lv, ok, after, own: (await import("node:os")).getPriority() }));
`,
    { NESTCLOUD_CONTROL_PRIORITY: "0" },
  );
  const lv = r.lv as { guest: number; control: number; raised: boolean };
  assert.equal(lv.raised, false, "not raised");
  assert.equal(lv.control, lv.guest, "one level");
  assert.ok(
    (r.after as number[]).every((n) => n === lv.guest),
    `child untouched: ${JSON.stringify(r.after)}`,
  );
});

test("a bad NESTCLOUD_CONTROL_PRIORITY is refused with a message naming it", () => {
  assert.throws(
    () => run(`p.raiseControlPriority(); console.log("{}");`, { NESTCLOUD_CONTROL_PRIORITY: "high" }),
    (e: Error & { stderr?: string }) =>
      /NESTCLOUD_CONTROL_PRIORITY must be an integer from 0 to 39/.test(String(e.stderr)),
  );
});

test("a process that is gone: false, no throw", () => {
  const r = run(`console.log(JSON.stringify({ ok: p.setProcessNice(2 ** 22 + 12345, 0) }));`);
  assert.equal(r.ok, false, "gone");
});

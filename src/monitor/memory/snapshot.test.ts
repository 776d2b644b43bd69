import assert from "node:assert/strict";
import { test } from "node:test";
import { compareSnapshots, MAX_ITEM_FINDINGS, type MemorySnapshot, type ProcEntry } from "./snapshot.ts";

const proc = (comm: string, ppid = 1, uid: number | null = 0): ProcEntry => ({
  comm,
  ppid,
  uid,
  kernelThread: false,
});

function snap(over: Partial<MemorySnapshot> = {}): MemorySnapshot {
  return {
    kernelKey: "k1",
    processes: new Map([
      [1, proc("init", 0)],
      [100, proc("sleep")],
    ]),
    modules: new Map([["crc7", { base: "0xffffffffc0000000", size: 4096 }]]),
    hidden: [],
    syscalls: [],
    textChanged: [],
    ...over,
  };
}

test("an unchanged guest: no finding", () => {
  assert.deepEqual(compareSnapshots(snap(), null, snap()), []);
  assert.deepEqual(compareSnapshots(snap(), snap(), snap()), []);
});

test("process changes since the previous round, a reused pid counted both ways", () => {
  const prev = snap();
  const cur = snap({
    processes: new Map([
      [1, proc("init", 0)],
      [100, proc("nc", 1, 1000)],
      [200, proc("sh", 100, 1000)],
    ]),
  });
  const f = compareSnapshots(snap(), prev, cur);
  assert.equal(f.length, 1);
  assert.equal(f[0].kind, "processes-changed");
  assert.equal(f[0].severity, "info");
  assert.deepEqual(f[0].evidence.started, ["100 nc (ppid 1, uid 1000)", "200 sh (ppid 100, uid 1000)"]);
  assert.deepEqual(f[0].evidence.exited, ["100 sleep (ppid 1, uid 0)"]);
});

test("a hidden task is critical once, then reported gone once", () => {
  const h = { pid: 100, tgid: 100, comm: "sleep", seenIn: ["pid-idr"] };
  const base = snap();
  const hidden = snap({ hidden: [h], processes: new Map([[1, proc("init", 0)]]) });
  const first = compareSnapshots(base, base, hidden).filter((x) => x.kind === "hidden-task");
  assert.equal(first.length, 1);
  assert.equal(first[0].severity, "critical");
  assert.match(first[0].summary, /pid 100 \(sleep\)/);
  assert.deepEqual(
    compareSnapshots(base, hidden, hidden).filter((x) => x.kind === "hidden-task"),
    [],
  );
  const gone = compareSnapshots(base, hidden, base);
  assert.ok(gone.some((x) => x.kind === "hidden-task-gone"));
});

test("syscall findings the baseline had are not alerted; new ones are, once; restored is info", () => {
  const legit = { nr: 1, address: "0x1", problem: "not-a-syscall-entry", symbol: "tramp" };
  const hook = {
    nr: 246,
    address: "0xffffffffc0000010",
    problem: "outside-text",
    symbol: "module:crc7+0x10",
  };
  const base = snap({ syscalls: [legit] });
  const hooked = snap({ syscalls: [legit, hook] });
  const f = compareSnapshots(base, base, hooked);
  assert.deepEqual(
    f.map((x) => [x.kind, x.severity, x.evidence.nr]),
    [["syscall-hooked", "critical", 246]],
  );
  assert.match(f[0].summary, /module:crc7\+0x10/);
  assert.deepEqual(compareSnapshots(base, hooked, hooked), []);
  assert.deepEqual(
    compareSnapshots(base, hooked, base).map((x) => x.kind),
    ["syscall-restored"],
  );
});

test("kernel text: alerted when the changed chunks change, restored once", () => {
  const base = snap();
  const changed = snap({ textChanged: [{ offset: 0x30000, symbol: "__x64_sys_kexec_load" }] });
  const f = compareSnapshots(base, base, changed);
  assert.deepEqual(
    f.map((x) => [x.kind, x.severity]),
    [["kernel-text-changed", "critical"]],
  );
  assert.match(f[0].summary, /__x64_sys_kexec_load/);
  assert.deepEqual(compareSnapshots(base, changed, changed), []);
  assert.deepEqual(
    compareSnapshots(base, changed, base).map((x) => x.kind),
    ["kernel-text-restored"],
  );
});

test("modules loaded and unloaded", () => {
  const cur = snap({ modules: new Map([["evil", { base: "0x2", size: 1 }]]) });
  const f = compareSnapshots(snap(), null, cur);
  assert.deepEqual(f[0].evidence.loaded, ["evil"]);
  assert.deepEqual(f[0].evidence.unloaded, ["crc7"]);
});

test("a guest hiding thousands of tasks gets a bounded number of alerts", () => {
  const hidden = Array.from({ length: 5000 }, (_, i) => ({
    pid: i + 1000,
    tgid: i + 1000,
    comm: "x",
    seenIn: ["pid-idr"],
  }));
  const f = compareSnapshots(snap(), null, snap({ hidden }));
  const per = f.filter((x) => x.kind === "hidden-task");
  assert.equal(per.length, MAX_ITEM_FINDINGS);
  const cap = f.find((x) => x.kind === "findings-capped");
  assert.equal(cap?.evidence.total, 5000);
});

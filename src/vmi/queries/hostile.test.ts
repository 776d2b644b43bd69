// Hostile guest memory: cyclic lists, endless lists, wild pointers, corrupt trees and random
// corruption. Every query must end within a time bound with a result or a typed VmiError
// (never VMI_INTERNAL, never an untyped exception, never a hang).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  BufferPhysicalMemory,
  checkSyscallTable,
  discoverKernel,
  findHiddenTasks,
  type Kernel,
  listModules,
  listProcesses,
  QueryError,
  VmiError,
  walkListLocal,
} from "../index.ts";
import {
  L,
  MODULES_VA,
  PAGE_OFFSET_BASE,
  RAM_SIZE,
  SyntheticGuest,
  TEXT,
} from "../kernel/synthetic-guest.testkit.ts";

const BOUND_MS = 5000;
const SEED = Number(process.env.VMI_FUZZ_SEED ?? 20261126);

async function kernelOf(g: SyntheticGuest): Promise<Kernel> {
  return discoverKernel(new BufferPhysicalMemory(g.ram));
}

async function rejectsWith(p: Promise<unknown>, code: string, boundMs = BOUND_MS): Promise<void> {
  const t0 = performance.now();
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof VmiError, `untyped: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
  assert.ok(performance.now() - t0 < boundMs, "ended within the bound");
}

const tasksOf = (g: SyntheticGuest, pid: number) => (g.tasks.get(pid) as bigint) + BigInt(L.task.tasks);

test("a task list that loops without returning to init_task ends with QUERY_LIST_CYCLE", async () => {
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  g.u64(tasksOf(g, 101), tasksOf(g, 2)); // 1 -> 2 -> 3 -> 100 -> 101 -> 2 ...
  await rejectsWith(listProcesses(k), "QUERY_LIST_CYCLE");
  g.u64(tasksOf(g, 1), tasksOf(g, 1)); // self loop
  await rejectsWith(listProcesses(k), "QUERY_LIST_CYCLE");
  await rejectsWith(findHiddenTasks(k), "QUERY_LIST_CYCLE");
});

test("an endless list of distinct nodes ends with QUERY_TOO_MANY at the entry cap", async () => {
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  // 100,000 list_heads in a row, each pointing to the next: no cycle, no end.
  const base = PAGE_OFFSET_BASE + BigInt(RAM_SIZE - 4 * 1024 * 1024);
  for (let i = 0; i < 100_000; i++)
    g.u64(base + BigInt(i * 32) + BigInt(L.task.tasks), base + BigInt((i + 1) * 32) + BigInt(L.task.tasks));
  g.u64(tasksOf(g, 101), base + BigInt(L.task.tasks));
  await rejectsWith(listProcesses(k, { maxEntries: 5000 }), "QUERY_TOO_MANY");
  // Whichever bound comes first ends it: the entry cap or the time budget.
  await assert.rejects(listProcesses(k, { maxEntries: 20_000, timeoutMs: 500 }), (e: unknown) => {
    assert.ok(
      e instanceof QueryError && (e.code === "QUERY_TOO_MANY" || e.code === "QUERY_TIMEOUT"),
      String(e),
    );
    return true;
  });
});

test("wild pointers: non-canonical, NULL, outside RAM, unmapped vmalloc", async () => {
  for (const wild of [
    0x4141414141414141n,
    0n,
    PAGE_OFFSET_BASE + (1n << 40n),
    0xffffc90000000000n,
    0xdead000000000100n,
  ]) {
    const g = new SyntheticGuest();
    const k = await kernelOf(g);
    g.u64(tasksOf(g, 3), wild);
    await rejectsWith(listProcesses(k, { retries: 0 }), "QUERY_BAD_POINTER");
  }
  // A wild cred or parent pointer costs that field only.
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  g.u64((g.tasks.get(100) as bigint) + BigInt(L.task.cred), 0xffff800000000000n);
  g.u64((g.tasks.get(100) as bigint) + BigInt(L.task.realParent), 0x1234n);
  const sh = (await listProcesses(k)).find((p) => p.pid === 100);
  assert.equal(sh?.uid, undefined);
  assert.equal(sh?.ppid, 0);
});

test("module list: cycles and wild links are typed errors; the syscall check still answers", async () => {
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  const link = (i: number) => g.moduleVas[i] + BigInt(L.module.list);
  g.u64(link(1), link(1));
  await rejectsWith(listModules(k), "QUERY_LIST_CYCLE");
  g.u64(link(1), MODULES_VA + 0x7fff000n); // unmapped module-area address
  await rejectsWith(listModules(k, { retries: 0 }), "QUERY_BAD_POINTER");
  // Naming a hook's module is best effort: a broken module list does not fail the check.
  const r = await checkSyscallTable(k);
  assert.equal(r.findings.length, 0);
});

test("pid IDR: cyclic, over-deep and mis-shifted XArray nodes are typed errors", async () => {
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  const head = g.read64(g.sym("init_pid_ns") + BigInt(L.pidNs.idr + L.xarray.head));
  const top = head - 2n;
  g.u64(top + BigInt(L.xaNode.slots + 8), head); // top's slot 1 points back to top
  await rejectsWith(findHiddenTasks(k), "QUERY_LIST_CORRUPT");
  g.u64(top + BigInt(L.xaNode.slots + 8), 0n);
  g.dv.setUint8(g.pa(top), 7); // shift not a multiple of 6
  await rejectsWith(findHiddenTasks(k), "QUERY_LIST_CORRUPT");
});

test("a walk spec that would return too much, or has absurd offsets, is refused up front", async () => {
  const k = await kernelOf(new SyntheticGuest());
  const head = k.symbols.require("init_task") + 0x40n;
  const bad = [
    { head, linkOffset: 0x40, reads: [{ offset: 0, len: 4096 }], maxNodes: 1 << 20 },
    { head, linkOffset: -1, reads: [], maxNodes: 10 },
    { head, linkOffset: 0x40, reads: [{ offset: 1 << 20, len: 4 }], maxNodes: 10 },
    { head: 0x1000n, linkOffset: 0x40, reads: [], maxNodes: 10 },
    {
      head,
      linkOffset: 0x40,
      reads: Array.from({ length: 100 }, () => ({ offset: 0, len: 1 })),
      maxNodes: 10,
    },
  ];
  for (const spec of bad) await rejectsWith(walkListLocal(k.vmem, spec), "QUERY_BAD_SPEC");
});

test("deadline: a walk past its time budget ends with QUERY_TIMEOUT", async () => {
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  const head = k.symbols.require("init_task") + BigInt(L.task.tasks);
  await rejectsWith(
    walkListLocal(
      k.vmem,
      { head, linkOffset: L.task.tasks, reads: [], maxNodes: 100 },
      { deadline: Date.now() - 1 },
    ),
    "QUERY_TIMEOUT",
  );
  assert.ok(QueryError);
});

test("random corruption of kernel objects: every query ends typed, within the bound", async () => {
  const pristine = new SyntheticGuest();
  const k0 = await kernelOf(pristine);
  const slabStart = 28 * 1024 * 1024;
  const regions = [
    [slabStart, slabStart + 0x8000], // tasks, creds, pids, xa_nodes
    [pristine.pa(pristine.sym("init_task")), pristine.pa(pristine.sym("init_task")) + 0x4000], // init_task, modules head, init_pid_ns
    [pristine.pa(MODULES_VA), pristine.pa(MODULES_VA) + 0x20000],
  ];
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          region: fc.integer({ min: 0, max: regions.length - 1 }),
          at: fc.nat(),
          value: fc.oneof(
            fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
            fc.constantFrom(0n, PAGE_OFFSET_BASE, MODULES_VA, 0xffffffffffffffffn, 0xdead000000000100n),
          ),
        }),
        { minLength: 1, maxLength: 24 },
      ),
      async (writes) => {
        const g = new SyntheticGuest();
        for (const w of writes) {
          const [lo, hi] = regions[w.region];
          const pa = lo + ((w.at % (hi - lo - 8)) & ~7);
          g.dv.setBigUint64(pa, w.value, true);
        }
        const k = new (k0.constructor as typeof Kernel)(
          new BufferPhysicalMemory(g.ram),
          k0.facts,
          k0.symbols,
          k0.profile,
          undefined,
        );
        for (const [name, q] of [
          ["ps", () => listProcesses(k, { timeoutMs: 2000 })],
          ["modules", () => listModules(k, { timeoutMs: 2000 })],
          ["hidden", () => findHiddenTasks(k, { timeoutMs: 2000 })],
          ["syscalls", () => checkSyscallTable(k)],
        ] as const) {
          const t0 = performance.now();
          try {
            await q();
          } catch (e) {
            if (!(e instanceof VmiError)) throw new Error(`${name}: untyped ${String(e)}`, { cause: e });
            if (e.code === "VMI_INTERNAL") throw new Error(`${name}: internal ${e.message}`, { cause: e });
          }
          assert.ok(performance.now() - t0 < BOUND_MS, `${name} took too long`);
        }
      },
    ),
    { seed: SEED, numRuns: 60 },
  );
});

test("fallback discovery on corrupted exported-symbol and kallsyms tables ends typed, within the bound", async () => {
  const base = new SyntheticGuest({ noVmcoreinfo: true });
  const regions = [
    [base.pa(base.sym("kallsyms_names")), base.pa(base.sym("kallsyms_token_index")) + 512],
    [base.pa(TEXT + 0x600000n), base.pa(TEXT + 0x600000n) + 0x400],
    [base.pa(base.sym("phys_base")), base.pa(base.sym("phys_base")) + 8],
  ];
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ region: fc.nat(regions.length - 1), at: fc.nat(), byte: fc.nat(255) }), {
        minLength: 1,
        maxLength: 16,
      }),
      async (writes) => {
        const g = new SyntheticGuest({ noVmcoreinfo: true });
        for (const w of writes) {
          const [lo, hi] = regions[w.region];
          g.ram[lo + (w.at % (hi - lo))] = w.byte;
        }
        const t0 = performance.now();
        try {
          const k = await discoverKernel(new BufferPhysicalMemory(g.ram));
          await listProcesses(k, { timeoutMs: 2000 });
        } catch (e) {
          if (!(e instanceof VmiError)) throw new Error(`untyped ${String(e)}`, { cause: e });
          if (e.code === "VMI_INTERNAL") throw new Error(`internal ${e.message}`, { cause: e });
        }
        assert.ok(performance.now() - t0 < BOUND_MS * 2, "discovery took too long");
      },
    ),
    { seed: SEED, numRuns: 25 },
  );
});

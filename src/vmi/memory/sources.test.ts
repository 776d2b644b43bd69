// The local memory sources: a RAM file read with pread through the q35 layout, and the QMP
// fallback (pmemsave) driven by a stand-in for QEMU's QMP that writes the requested range.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  discoverKernel,
  FileMemory,
  listProcesses,
  MemoryError,
  openRamFile,
  type QmpExecutor,
  QmpMemory,
  readPhys,
} from "../index.ts";
import { SyntheticGuest } from "../kernel/synthetic-guest.testkit.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-vmi-sources-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const isMem = (code: string) => (e: unknown) => e instanceof MemoryError && e.code === code;

test("RAM file: the synthetic guest discovered and listed straight from a file", async () => {
  const g = new SyntheticGuest();
  const file = join(dir, "guest.ram");
  writeFileSync(file, g.ram);
  const rf = openRamFile(file);
  try {
    assert.equal(rf.memory.size, g.ram.length);
    const k = await discoverKernel(rf.memory);
    assert.deepEqual(
      (await listProcesses(k)).map((p) => p.pid),
      [1, 2, 3, 100, 101],
    );
    assert.ok(rf.file.stats.ranges > 0);
    // Big reads go through the thread pool and return the same bytes.
    const [big] = await readPhys(rf.memory, [{ addr: 0, len: 4 * 1024 * 1024 }]);
    assert.deepEqual(
      big.subarray(3 * 1024 * 1024, 3 * 1024 * 1024 + 4096),
      g.ram.subarray(3 * 1024 * 1024, 3 * 1024 * 1024 + 4096),
    );
  } finally {
    rf.close();
  }
  await assert.rejects(rf.memory.read([{ addr: 0, len: 1 }]), isMem("MEM_READ_FAILED"));
});

test("RAM file: missing files, reads past the end and files that shrink are MemoryErrors", async () => {
  assert.throws(() => openRamFile(join(dir, "nope.ram")), isMem("MEM_READ_FAILED"));
  const file = join(dir, "small.ram");
  writeFileSync(file, new Uint8Array(64 * 1024));
  const f = FileMemory.open(file);
  await assert.rejects(f.read([{ addr: 60 * 1024, len: 8192 }]), isMem("MEM_OUT_OF_RANGE"));
  truncateSync(file, 1024);
  await assert.rejects(f.read([{ addr: 4096, len: 16 }]), isMem("MEM_READ_FAILED"));
  f.close();
});

/** What QEMU does for pmemsave and query-memory-size-summary, over a buffer. */
function fakeQmp(ram: Uint8Array): QmpExecutor & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async execute<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
      calls.push(cmd);
      if (cmd === "query-memory-size-summary") return { "base-memory": ram.length } as T;
      if (cmd === "pmemsave") {
        const a = args as { val: number; size: number; filename: string };
        writeFileSync(a.filename, ram.subarray(a.val, a.val + a.size));
        return {} as T;
      }
      throw new Error(`unexpected ${cmd}`);
    },
  };
}

test("QMP fallback: pmemsave per range gives the same process list", async () => {
  const g = new SyntheticGuest();
  const qmp = fakeQmp(g.ram);
  const mem = await QmpMemory.open(qmp, { tmpDir: dir });
  try {
    const k = await discoverKernel(mem);
    assert.deepEqual(
      (await listProcesses(k)).map((p) => p.comm),
      ["init", "kthreadd", "rcu_gp", "sh", "sleep"],
    );
    assert.ok(mem.calls > 10);
    assert.ok(qmp.calls.every((c) => c === "pmemsave" || c === "query-memory-size-summary"));
  } finally {
    mem.close();
  }
  const failing: QmpExecutor = {
    async execute<T>(cmd: string): Promise<T> {
      if (cmd === "query-memory-size-summary") return { "base-memory": 1 << 20 } as T;
      throw new Error("GenericError: no");
    },
  };
  const m2 = await QmpMemory.open(failing, { tmpDir: dir });
  await assert.rejects(m2.read([{ addr: 0, len: 16 }]), isMem("MEM_READ_FAILED"));
  m2.close();
});

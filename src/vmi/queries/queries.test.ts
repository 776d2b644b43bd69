// Discovery and every query on the synthetic guest, through the public API only.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  BufferPhysicalMemory,
  checkKernelText,
  checkSyscallTable,
  discoverKernel,
  findHiddenTasks,
  KallsymsError,
  type Kernel,
  KernelError,
  listModules,
  listProcesses,
  ProfileCache,
  stateLetter,
  TextBaselineStore,
} from "../index.ts";
import {
  DEFAULT_TASKS,
  KASLR,
  MODULES_VA,
  PAGE_OFFSET_BASE,
  PHYS_BASE,
  SyntheticGuest,
  TEXT,
} from "../kernel/synthetic-guest.testkit.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-vmi-queries-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function kernelOf(g: SyntheticGuest, cache?: ProfileCache): Promise<Kernel> {
  return discoverKernel(new BufferPhysicalMemory(g.ram), { profileCache: cache });
}

test("discovery finds VMCOREINFO, KASLR, phys_base, the direct map and builds a profile", async () => {
  const k = await kernelOf(new SyntheticGuest());
  assert.equal(k.facts.path, "vmcoreinfo");
  assert.equal(k.facts.osRelease, "6.1.0-synthetic");
  assert.equal(k.facts.kernelOffset, KASLR);
  assert.equal(k.facts.physBase, PHYS_BASE);
  assert.equal(k.facts.pageOffsetBase, PAGE_OFFSET_BASE);
  assert.equal(k.facts.levels, 4);
  assert.equal(k.facts.profileSource, "btf");
  assert.equal(k.symbols.source, "kallsyms");
  assert.deepEqual(k.field("task_struct.tasks.next"), { offset: 0x40, size: 8 });
  assert.deepEqual(k.field("task_struct.comm"), { offset: 0x140, size: 16, count: 16 });
  assert.throws(
    () => k.field("task_struct.no_such"),
    (e: unknown) => e instanceof KernelError,
  );
});

test("profiles are cached per build id, on disk too; a corrupt cache file is ignored", async () => {
  const cacheDir = join(dir, "profiles");
  const g = new SyntheticGuest();
  const first = await kernelOf(g, new ProfileCache(cacheDir));
  assert.equal(first.facts.profileSource, "btf");
  const [file] = readdirSync(cacheDir);
  assert.equal(file, `${first.profile.key}.json`);
  const second = await kernelOf(g, new ProfileCache(cacheDir));
  assert.equal(second.facts.profileSource, "cache");
  assert.deepEqual(second.profile, first.profile);
  writeFileSync(join(cacheDir, file), '{"version":1,"key":"x"}');
  const third = await kernelOf(g, new ProfileCache(cacheDir));
  assert.equal(third.facts.profileSource, "btf");
});

test("process list: pid, ppid, comm, uid, state and kernel threads as /proc shows them", async () => {
  const k = await kernelOf(new SyntheticGuest());
  const ps = await listProcesses(k);
  assert.deepEqual(
    ps.map((p) => [p.pid, p.ppid, p.comm, p.uid, p.state, p.kernelThread]),
    [
      [1, 0, "init", 0, "R", false],
      [2, 0, "kthreadd", 0, "R", true],
      [3, 2, "rcu_gp", 0, "I", true],
      [100, 1, "sh", 0, "S", false],
      [101, 100, "sleep", 1000, "S", false],
    ],
  );
  assert.equal(ps.length, DEFAULT_TASKS.length);
});

test("state letters follow the kernel's __task_state_index", () => {
  assert.equal(stateLetter(0, 0), "R");
  assert.equal(stateLetter(1, 0), "S");
  assert.equal(stateLetter(2, 0), "D");
  assert.equal(stateLetter(0x402, 0), "I");
  assert.equal(stateLetter(4, 0), "T");
  assert.equal(stateLetter(0, 32), "Z");
  assert.equal(stateLetter(0x40, 0), "P");
});

test("module list: name, base, size (core + init) and state", async () => {
  const k = await kernelOf(new SyntheticGuest());
  const mods = await listModules(k);
  assert.deepEqual(
    mods.map((m) => [m.name, m.size, m.state, m.base]),
    [
      ["crc7", 16384, "live", MODULES_VA + 0x1000n],
      ["virtio_net", 73728, "live", MODULES_VA + 0x1000n + 0x1000n + 12288n],
    ],
  );
});

test("hidden processes: an unlinked task is found through the pid IDR and the runqueue", async () => {
  const g = new SyntheticGuest({
    tasks: [
      ...DEFAULT_TASKS,
      { pid: 666, comm: "rootkitd", ppid: 1, hidden: true },
      { pid: 102, comm: "worker", threadOf: 100 },
    ],
    running: 666,
  });
  const k = await kernelOf(g);
  const r = await findHiddenTasks(k);
  assert.deepEqual(
    r.hidden.map((h) => [h.pid, h.comm, h.seenIn]),
    [[666, "rootkitd", ["pid-idr", "runqueue"]]],
  );
  assert.equal(r.counts.pidIdr, DEFAULT_TASKS.length + 2);
  assert.deepEqual(r.skipped, []);
  assert.equal(
    (await listProcesses(k)).some((p) => p.pid === 666),
    false,
  );
  const clean = await findHiddenTasks(await kernelOf(new SyntheticGuest()));
  assert.deepEqual(clean.hidden, []);
});

test("syscall table: hooks outside text are named by module, trampolines inside text flagged", async () => {
  const clean = await checkSyscallTable(await kernelOf(new SyntheticGuest()));
  assert.equal(clean.entries, 16, "trailing padding is not an entry");
  assert.deepEqual(clean.findings, []);
  const g = new SyntheticGuest();
  const hooked = new SyntheticGuest({
    hookSyscalls: { 3: MODULES_VA + 0x1000n + 0x40n, 7: g.sym("__x64_sys_call1") + 5n },
  });
  const r = await checkSyscallTable(await kernelOf(hooked));
  assert.deepEqual(
    r.findings.map((f) => [f.nr, f.problem, f.symbol]),
    [
      [3, "outside-text", "module:crc7+0x40"],
      [7, "not-a-syscall-entry", "__x64_sys_call1+0x5"],
    ],
  );
});

test("kernel text: baseline at first sight, then match, then the changed chunk is named", async () => {
  const store = new TextBaselineStore(join(dir, "baselines"));
  const g = new SyntheticGuest();
  const k = await kernelOf(g);
  assert.equal((await checkKernelText(k, store)).status, "baseline-recorded");
  assert.equal((await checkKernelText(k, store)).status, "match");
  g.u32(g.sym("__x64_sys_call2"), 0xcccccccc);
  const r = await checkKernelText(k, store);
  assert.equal(r.status, "mismatch");
  assert.deepEqual(
    r.changed.map((c) => c.offset),
    [0],
  );
  assert.equal(r.changed[0].symbol, "_stext");
});

describe("without VMCOREINFO", () => {
  test("banner + exported symbols + kallsyms found by pattern: every query works", async () => {
    const g = new SyntheticGuest({ noVmcoreinfo: true });
    const k = await kernelOf(g);
    assert.equal(k.facts.path, "banner+ksymtab+kallsyms-scan");
    assert.equal(k.facts.osRelease, "6.1.0-synthetic");
    assert.match(k.facts.banner ?? "", /^Linux version 6\.1\.0-synthetic /);
    assert.equal(k.facts.physBase, PHYS_BASE);
    assert.equal(k.facts.kernelOffset, KASLR);
    assert.equal(k.symbols.source, "kallsyms");
    const direct = await kernelOf(new SyntheticGuest());
    assert.deepEqual(await listProcesses(k), await listProcesses(direct));
    assert.deepEqual(await listModules(k), await listModules(direct));
    assert.deepEqual((await checkSyscallTable(k)).findings, []);
  });

  test("kallsyms wiped too: exported symbols only; ps works, modules need kallsyms (typed error)", async () => {
    const g = new SyntheticGuest({ noVmcoreinfo: true });
    g.bytes(g.sym("kallsyms_token_index"), new Uint8Array(512));
    const k = await kernelOf(g);
    assert.equal(k.facts.path, "banner+ksymtab");
    assert.equal(k.symbols.source, "ksymtab");
    assert.ok(k.facts.notes.some((n) => /active_mm->pgd/.test(n)));
    assert.deepEqual(
      (await listProcesses(k)).map((p) => p.comm),
      ["init", "kthreadd", "rcu_gp", "sh", "sleep"],
    );
    await assert.rejects(
      listModules(k),
      (e: unknown) => e instanceof KallsymsError && e.code === "KALLSYMS_MISSING_SYMBOL",
    );
  });

  test("no kernel at all: KERNEL_NOT_FOUND, with or without the fallback", async () => {
    const empty = new BufferPhysicalMemory(new Uint8Array(8 * 1024 * 1024));
    const notFound = (e: unknown) => e instanceof KernelError && e.code === "KERNEL_NOT_FOUND";
    await assert.rejects(discoverKernel(empty), notFound);
    await assert.rejects(discoverKernel(empty, { fallback: false }), notFound);
    const g = new SyntheticGuest({ noVmcoreinfo: true });
    await assert.rejects(discoverKernel(new BufferPhysicalMemory(g.ram), { fallback: false }), notFound);
  });
});

describe("VMCOREINFO of newer kernels", () => {
  test("a hex NUMBER() keeps the VMCOREINFO path and its build id (no fallback)", async () => {
    const g = new SyntheticGuest({
      vmcoreinfoExtra: ["NUMBER(VMALLOC_START)=0xffffc90000000000", "NUMBER(KERNEL_IMAGE_SIZE)=1073741824"],
    });
    const k = await kernelOf(g);
    assert.equal(k.facts.path, "vmcoreinfo");
    assert.equal(k.facts.buildId, "00112233445566778899aabbccddeeff00112233");
    assert.deepEqual(
      (await listProcesses(k)).map((p) => p.comm),
      ["init", "kthreadd", "rcu_gp", "sh", "sleep"],
    );
  });

  test("a note that is rejected falls back, and the kernel's notes say why", async () => {
    const g = new SyntheticGuest({ vmcoreinfoExtra: ["SIZE(page)=sixty-four"] });
    const logged: string[] = [];
    const k = await discoverKernel(new BufferPhysicalMemory(g.ram), { log: (m) => logged.push(m) });
    assert.equal(k.facts.path, "banner+ksymtab+kallsyms-scan");
    const why = k.facts.notes.find((n) => n.startsWith("VMCOREINFO note at PA 0x"));
    assert.ok(why, k.facts.notes.join("\n"));
    assert.match(
      why,
      /rejected: expected an unsigned decimal: "SIZE\(page\)=sixty-four" \(VMCOREINFO_BAD_VALUE\)/,
    );
    assert.ok(logged.includes(why));
    assert.ok(k.facts.notes.some((n) => n.startsWith("no usable VMCOREINFO; banner at")));
    await assert.rejects(
      discoverKernel(new BufferPhysicalMemory(g.ram), { fallback: false }),
      (e: unknown) =>
        e instanceof KernelError &&
        e.code === "KERNEL_NOT_FOUND" &&
        /SIZE\(page\)=sixty-four/.test(e.message),
    );
  });
});

describe("a kernel that is still booting", () => {
  const notReady = (state: string) => (e: unknown) =>
    e instanceof KernelError &&
    e.code === "KERNEL_NOT_READY" &&
    e.message ===
      `kernel 6.1.0-synthetic is still booting (system_state ${state}); try again once it has started init`;

  test("system_state before SYSTEM_RUNNING is KERNEL_NOT_READY, on both discovery paths", async () => {
    await assert.rejects(kernelOf(new SyntheticGuest({ systemState: 1 })), notReady("SYSTEM_SCHEDULING"));
    await assert.rejects(
      kernelOf(new SyntheticGuest({ systemState: 0, noVmcoreinfo: true })),
      notReady("SYSTEM_BOOTING"),
    );
    // Checked before the direct map is read: a booting kernel whose page_offset_base is not
    // set yet still says "booting", not "inconsistent".
    const g = new SyntheticGuest({ systemState: 2 });
    g.u64(g.sym("page_offset_base"), 0n);
    await assert.rejects(kernelOf(g), notReady("SYSTEM_FREEING_INITMEM"));
  });

  test("a running kernel notes its state; one shutting down is still read", async () => {
    const k = await kernelOf(new SyntheticGuest());
    assert.ok(k.facts.notes.includes("system_state SYSTEM_RUNNING"), k.facts.notes.join("\n"));
    assert.equal(k.profile.constants["system_states.SYSTEM_RUNNING"], 3);
    const halting = await kernelOf(new SyntheticGuest({ systemState: 4 }));
    assert.ok(halting.facts.notes.includes("system_state SYSTEM_HALT"));
    assert.equal((await listProcesses(halting)).length, 5);
  });
});

describe("a kernel image in RAM that is not running yet (no VMCOREINFO yet)", () => {
  /** Puts kernel/vmcore_info.c's format string into the image's rodata. */
  const withFormat = (g: SyntheticGuest) =>
    g.bytes(TEXT + 0x205000n, Buffer.from("OSRELEASE=%s\n\0", "latin1"));

  test("a kernel that writes VMCOREINFO but has not yet, and cannot be read: KERNEL_NOT_READY", async () => {
    const g = new SyntheticGuest({ noVmcoreinfo: true });
    g.u64(g.sym("page_offset_base"), 0x1234n); // not set up yet
    await assert.rejects(
      kernelOf(g),
      (e: unknown) => e instanceof KernelError && e.code === "KERNEL_INCONSISTENT",
      "without the format string: a kernel without VMCOREINFO support, inconsistent",
    );
    withFormat(g);
    await assert.rejects(
      kernelOf(g),
      (e: unknown) =>
        e instanceof KernelError &&
        e.code === "KERNEL_NOT_READY" &&
        e.message ===
          "kernel 6.1.0-synthetic is in memory but not running yet (no VMCOREINFO yet, which it writes at boot; page_offset_base 0x1234 is not a direct-map base)",
    );
    // Readable: the fallback is used as before (a tamperer may have wiped the note).
    const ok = new SyntheticGuest({ noVmcoreinfo: true });
    withFormat(ok);
    assert.equal((await kernelOf(ok)).facts.path, "banner+ksymtab+kallsyms-scan");
  });

  test("an exported-symbol entry pointing outside RAM does not derail the fallback", async () => {
    const g = new SyntheticGuest({ noVmcoreinfo: true });
    // The last filler entry's value field (PREL32) now points 64 MiB below its entry: PA < 0.
    const last = TEXT + 0x600000n + BigInt(26 * 12);
    g.u32(last, -64 * 1024 * 1024);
    // kallsyms unusable too (as while the image is still being written): BTF is then searched
    // for between the exported addresses, a range that must stay inside RAM.
    g.bytes(g.sym("kallsyms_token_index"), new Uint8Array(512));
    const k = await kernelOf(g);
    assert.equal(k.facts.path, "banner+ksymtab");
    assert.equal((await listProcesses(k)).length, 5);
    // Most of the table outside RAM: inconsistent, typed.
    for (let i = 6; i < 27; i++) g.u32(TEXT + 0x600000n + BigInt(i * 12), -64 * 1024 * 1024);
    await assert.rejects(
      kernelOf(g),
      (e: unknown) => e instanceof KernelError && e.code === "KERNEL_INCONSISTENT",
    );
  });
});

// Property tests: hostile input (random, or real data with random corruption) must make every
// parser return or throw a typed VmiError quickly. VMI_INTERNAL (a wrapped RangeError/TypeError)
// counts as a failure: it means a bounds check is missing somewhere.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { PageWalker } from "../address/pagewalk.ts";
import { KernelImageMemory, START_KERNEL_MAP } from "../address/translate.ts";
import { VmiError } from "../errors.ts";
import { BufferPhysicalMemory } from "../memory/memory.ts";
import { Btf } from "./btf.ts";
import { sampleBtf } from "./btf-builder.testkit.ts";
import { fieldLocation, resolveAlias, sizeOf } from "./btf-layout.ts";
import { decodeKallsyms, type KallsymsBlobs, type KallsymsLocation, readKallsyms } from "./kallsyms.ts";
import { encode, sampleSyms } from "./kallsyms-encoder.testkit.ts";
import { parseVmcoreinfo, scanVmcoreinfo } from "./vmcoreinfo.ts";

/** Per-call time bound: generous for a loaded CI box; a hang would blow far past it. */
const CALL_MS = 3000;
const SEED = Number(process.env.VMI_FUZZ_SEED ?? 20261126);

function typedOrOk(what: string, fn: () => unknown): void {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    if (!(e instanceof VmiError)) throw new Error(`${what}: untyped ${String(e)}`, { cause: e });
    if (e.code === "VMI_INTERNAL") throw new Error(`${what}: internal error ${e.message}`, { cause: e });
  }
  const ms = performance.now() - t0;
  assert.ok(ms < CALL_MS, `${what} took ${ms.toFixed(0)} ms`);
}

async function typedOrOkAsync(what: string, fn: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof VmiError)) throw new Error(`${what}: untyped ${String(e)}`, { cause: e });
    if (e.code === "VMI_INTERNAL") throw new Error(`${what}: internal error ${e.message}`, { cause: e });
  }
  const ms = performance.now() - t0;
  assert.ok(ms < CALL_MS, `${what} took ${ms.toFixed(0)} ms`);
}

const u64 = () => fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

/** Random corruption: byte overwrites, then optional truncation. */
const corruption = (maxFlips: number) =>
  fc.record({
    flips: fc.array(
      fc.tuple(
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        fc.integer({ min: 0, max: 255 }),
      ),
      {
        minLength: 1,
        maxLength: maxFlips,
      },
    ),
    truncate: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 4 }),
  });

function corrupt(src: Uint8Array, c: { flips: [number, number][]; truncate: number | null }): Uint8Array {
  const out = src.slice();
  for (const [where, value] of c.flips) out[Math.floor(where * out.length)] = value;
  return c.truncate === null ? out : out.subarray(0, Math.floor(c.truncate * out.length));
}

/** Exercises a parsed Btf broadly: every type, sizes, alias chains, paths. */
function exerciseBtf(btf: Btf, paths: readonly string[], maxIds = Number.POSITIVE_INFINITY): void {
  const n = Math.min(btf.typeCount, maxIds);
  for (let id = 0; id <= n; id++) {
    const tid = btf.typeId(id);
    btf.type(tid);
    typedOrOk(`sizeOf ${id}`, () => sizeOf(btf, tid));
    typedOrOk(`resolveAlias ${id}`, () => resolveAlias(btf, tid));
  }
  for (const p of paths) typedOrOk(`path ${p}`, () => fieldLocation(btf, p));
}

test("BTF: corrupted synthetic blobs", () => {
  const { bytes } = sampleBtf();
  const paths = [
    "task.tasks.next",
    "task.pgd",
    "task.prio",
    "task.comm",
    "list_head.prev",
    "old_style.f",
    "task.nope",
  ];
  fc.assert(
    fc.property(corruption(8), (c) => {
      typedOrOk("parse+exercise", () => exerciseBtf(Btf.parse(corrupt(bytes, c)), paths));
    }),
    { numRuns: 1500, seed: SEED },
  );
});

test("BTF: random bytes behind a valid magic", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 400 }), (tail) => {
      const blob = new Uint8Array(4 + tail.length);
      blob.set([0x9f, 0xeb, 1, 0]);
      blob.set(tail, 4);
      typedOrOk("random", () => exerciseBtf(Btf.parse(blob), ["a.b", "x.y.z"]));
    }),
    { numRuns: 1500, seed: SEED },
  );
});

test("BTF: corrupted real kernel BTF (/sys/kernel/btf/vmlinux)", () => {
  const real = readFileSync("/sys/kernel/btf/vmlinux");
  const paths = ["task_struct.tasks.next", "mm_struct.pgd", "task_struct.comm", "sk_buff.cloned"];
  // Flips near the start hit the header and early (widely referenced) types; others anywhere.
  const nearStart = fc.record({
    flips: fc.array(
      fc.tuple(fc.double({ min: 0, max: 0.001, noNaN: true }), fc.integer({ min: 0, max: 255 })),
      {
        minLength: 1,
        maxLength: 6,
      },
    ),
    truncate: fc.constant(null),
  });
  fc.assert(
    fc.property(fc.oneof(corruption(64), nearStart), (c) => {
      typedOrOk("real parse+exercise", () => exerciseBtf(Btf.parse(corrupt(real, c)), paths, 3000));
    }),
    { numRuns: 30, seed: SEED },
  );
});

test("VMCOREINFO: mutated and random text", async () => {
  const { SAMPLE } = await import("./vmcoreinfo.fixture.ts");
  const sample = Buffer.from(SAMPLE, "latin1");
  fc.assert(
    fc.property(corruption(10), fc.string({ maxLength: 200 }), (c, extra) => {
      const bytes = corrupt(sample, c);
      typedOrOk("parse bytes", () => parseVmcoreinfo(bytes));
      typedOrOk("parse text", () => parseVmcoreinfo(Buffer.from(bytes).toString("latin1") + extra));
      typedOrOk("scan", () => scanVmcoreinfo(Buffer.concat([Buffer.from(extra), bytes, bytes])));
    }),
    { numRuns: 1500, seed: SEED },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
      typedOrOk("random parse", () => parseVmcoreinfo(bytes));
      typedOrOk("random scan", () => scanVmcoreinfo(Buffer.concat([Buffer.from("OSRELEASE="), bytes])));
    }),
    { numRuns: 1000, seed: SEED },
  );
});

test("kallsyms: corrupted encoded tables and random blobs", () => {
  const { blobs } = encode(sampleSyms(200), "absolute-percpu");
  const fields = ["names", "tokenTable", "tokenIndex", "offsets"] as const;
  fc.assert(
    fc.property(
      fc.constantFrom(...fields),
      corruption(12),
      fc.option(fc.integer({ min: -10, max: 0x7fffffff }), { freq: 3 }),
      (field, c, count) => {
        const mutated: KallsymsBlobs = {
          ...blobs,
          [field]: corrupt(blobs[field], c),
          numSyms: count ?? blobs.numSyms,
        };
        typedOrOk("decode mutated", () => decodeKallsyms(mutated));
        typedOrOk("decode mutated anchored", () =>
          decodeKallsyms(mutated, { anchor: { name: "_stext", address: 0xffffffff81001000n } }),
        );
      },
    ),
    { numRuns: 1500, seed: SEED },
  );
  fc.assert(
    fc.property(
      fc.record({
        numSyms: fc.integer({ min: 0, max: 5000 }),
        names: fc.uint8Array({ maxLength: 4000 }),
        tokenTable: fc.uint8Array({ maxLength: 600 }),
        tokenIndex: fc.uint8Array({ minLength: 0, maxLength: 600 }),
        offsets: fc.uint8Array({ maxLength: 4000 }),
        relativeBase: fc.option(u64()),
      }),
      (r) => {
        const b: KallsymsBlobs = {
          ...r,
          relativeBase: r.relativeBase ?? undefined,
          offsetsAddr: 0xffffffff82000000n,
        };
        typedOrOk("decode random", () => decodeKallsyms(b));
      },
    ),
    { numRuns: 1500, seed: SEED },
  );
});

test("kallsyms: readKallsyms with random locations over random kernel-image memory", async () => {
  const ram = new Uint8Array(1 << 20);
  const rnd = fc.sample(fc.uint8Array({ minLength: ram.length, maxLength: ram.length }), {
    numRuns: 1,
    seed: SEED,
  })[0];
  ram.set(rnd);
  const image = new KernelImageMemory(new BufferPhysicalMemory(ram), 0n);
  const addr = fc.oneof(fc.bigInt({ min: START_KERNEL_MAP, max: START_KERNEL_MAP + (1n << 20n) }), u64());
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        numSyms: addr,
        names: addr,
        tokenTable: addr,
        tokenIndex: addr,
        offsets: addr,
        relativeBase: fc.option(addr),
      }),
      async (r) => {
        const loc: KallsymsLocation = { ...r, relativeBase: r.relativeBase ?? undefined };
        await typedOrOkAsync("readKallsyms", () => readKallsyms(image, loc, { maxSymbols: 50_000 }));
      },
    ),
    { numRuns: 300, seed: SEED },
  );
});

test("page walk: random tables and random addresses", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 8192, maxLength: 8192 }),
      fc.array(u64(), { minLength: 1, maxLength: 20 }),
      fc.constantFrom(4 as const, 5 as const),
      async (ram, vas, levels) => {
        // Make some entries point back into this tiny RAM so walks go deep.
        const dv = new DataView(ram.buffer);
        for (let i = 0; i < 1024; i += 3)
          dv.setBigUint64(i * 8, (BigInt(i % 2) << 12n) | 1n | (BigInt(i) & 0x80n), true);
        const w = new PageWalker(new BufferPhysicalMemory(ram), { root: 0, levels });
        await typedOrOkAsync("translateMany", () => w.translateMany(vas));
        await typedOrOkAsync("read", () => w.read(vas.map((addr) => ({ addr, len: 16 }))));
      },
    ),
    { numRuns: 500, seed: SEED },
  );
});

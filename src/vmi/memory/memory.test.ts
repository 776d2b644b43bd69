import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryError } from "../errors.ts";
import {
  BufferPhysicalMemory,
  MAX_READ_LEN,
  type PhysicalMemory,
  readPhys,
  readPhysLenient,
  readVirtOne,
  type VirtualMemory,
} from "./memory.ts";
import { gpaToRamOffset, physLimit, RamFileMemory, ramLayout } from "./ram-layout.ts";

const GiB = 1024 ** 3;
const isMem = (code: string) => (e: unknown) => e instanceof MemoryError && e.code === code;

test("BufferPhysicalMemory: reads copies, validates ranges", async () => {
  const ram = Uint8Array.from({ length: 64 }, (_, i) => i);
  const mem = new BufferPhysicalMemory(ram);
  const [a, b] = await readPhys(mem, [
    { addr: 4, len: 4 },
    { addr: 60, len: 4 },
  ]);
  assert.deepEqual([...a], [4, 5, 6, 7]);
  assert.deepEqual([...b], [60, 61, 62, 63]);
  a[0] = 99;
  assert.equal(ram[4], 4);
  await assert.rejects(readPhys(mem, [{ addr: 61, len: 4 }]), isMem("MEM_OUT_OF_RANGE"));
  await assert.rejects(readPhys(mem, [{ addr: -1, len: 1 }]), isMem("MEM_OUT_OF_RANGE"));
  await assert.rejects(readPhys(mem, [{ addr: 0.5, len: 1 }]), isMem("MEM_OUT_OF_RANGE"));
  await assert.rejects(readPhys(mem, [{ addr: 0, len: MAX_READ_LEN + 1 }]), isMem("MEM_BAD_REQUEST"));
  await assert.rejects(readPhys(mem, [{ addr: 0, len: Number.NaN }]), isMem("MEM_BAD_REQUEST"));
});

test("misbehaving sources become MemoryErrors", async () => {
  const liar = (out: unknown): PhysicalMemory => ({ size: 100, read: async () => out as Uint8Array[] });
  await assert.rejects(readPhys(liar([]), [{ addr: 0, len: 1 }]), isMem("MEM_BAD_RESULT"));
  await assert.rejects(readPhys(liar([new Uint8Array(2)]), [{ addr: 0, len: 1 }]), isMem("MEM_BAD_RESULT"));
  await assert.rejects(readPhys(liar(["x"]), [{ addr: 0, len: 1 }]), isMem("MEM_BAD_RESULT"));
  await assert.rejects(readPhys(liar(null), [{ addr: 0, len: 1 }]), isMem("MEM_BAD_RESULT"));
  const thrower: PhysicalMemory = {
    size: 100,
    read: async () => {
      throw new TypeError("boom");
    },
  };
  await assert.rejects(readPhys(thrower, [{ addr: 0, len: 1 }]), isMem("MEM_READ_FAILED"));
  const virt: VirtualMemory = { read: async () => [new Uint8Array(3)] };
  await assert.rejects(readVirtOne(virt, 0n, 4), isMem("MEM_BAD_RESULT"));
  await assert.rejects(readVirtOne(virt, -1n, 4), isMem("MEM_BAD_REQUEST"));
  await assert.rejects(readVirtOne(virt, (1n << 64n) - 2n, 4), isMem("MEM_BAD_REQUEST"));
});

test("readPhysLenient: holes become undefined", async () => {
  const mem = new BufferPhysicalMemory(new Uint8Array(16));
  const got = await readPhysLenient(mem, [
    { addr: 0, len: 4 },
    { addr: 14, len: 4 },
  ]);
  assert.equal(got[0]?.length, 4);
  assert.equal(got[1], undefined);
});

test("q35 and pc RAM layouts (QEMU 7.2 rules)", () => {
  assert.deepEqual(ramLayout("q35", 1 * GiB), { machine: "q35", ramSize: GiB, below4g: GiB, above4g: 0 });
  assert.deepEqual(ramLayout("q35", 0xb0000000 - 1), {
    machine: "q35",
    ramSize: 0xb0000000 - 1,
    below4g: 0xb0000000 - 1,
    above4g: 0,
  });
  assert.deepEqual(ramLayout("q35", 0xb0000000), {
    machine: "q35",
    ramSize: 0xb0000000,
    below4g: 2 * GiB,
    above4g: 0x30000000,
  });
  assert.deepEqual(ramLayout("q35", 8 * GiB), {
    machine: "q35",
    ramSize: 8 * GiB,
    below4g: 2 * GiB,
    above4g: 6 * GiB,
  });
  assert.equal(ramLayout("q35", 2.5 * GiB, { maxRamBelow4g: GiB }).below4g, GiB);
  assert.equal(ramLayout("pc", 3.5 * GiB - 1).below4g, 3.5 * GiB - 1);
  assert.deepEqual(ramLayout("pc", 4 * GiB), {
    machine: "pc",
    ramSize: 4 * GiB,
    below4g: 3 * GiB,
    above4g: GiB,
  });
  assert.throws(() => ramLayout("q35", 0), isMem("MEM_BAD_REQUEST"));
  assert.throws(() => ramLayout("q35", GiB, { maxRamBelow4g: 5 * GiB }), isMem("MEM_BAD_REQUEST"));
});

test("guest-physical to RAM file offsets", () => {
  const l = ramLayout("q35", 4 * GiB); // 2 GiB low, 2 GiB high
  assert.deepEqual(gpaToRamOffset(l, 0x1000), { kind: "ram", offset: 0x1000, contiguous: 0xa0000 - 0x1000 });
  assert.deepEqual(gpaToRamOffset(l, 0xb8000), {
    kind: "shadowed",
    offset: 0xb8000,
    contiguous: 0x100000 - 0xb8000,
  });
  assert.deepEqual(gpaToRamOffset(l, 0x100000), {
    kind: "ram",
    offset: 0x100000,
    contiguous: 2 * GiB - 0x100000,
  });
  assert.deepEqual(gpaToRamOffset(l, 2 * GiB), { kind: "hole" });
  assert.deepEqual(gpaToRamOffset(l, 4 * GiB), { kind: "ram", offset: 2 * GiB, contiguous: 2 * GiB });
  assert.deepEqual(gpaToRamOffset(l, 6 * GiB), { kind: "hole" });
  assert.deepEqual(gpaToRamOffset(l, -1), { kind: "hole" });
  assert.equal(physLimit(l), 6 * GiB);
  assert.equal(physLimit(ramLayout("q35", GiB)), GiB);
});

test("RamFileMemory maps reads and refuses ranges touching holes", async () => {
  const l = ramLayout("q35", 4 * GiB);
  const seen: { addr: number; len: number }[] = [];
  // A fake 4 GiB "file" that records offsets instead of storing data.
  const file: PhysicalMemory = {
    size: 4 * GiB,
    read: async (ranges) =>
      ranges.map((r) => {
        seen.push({ ...r });
        return new Uint8Array(r.len);
      }),
  };
  const mem = new RamFileMemory(l, file);
  assert.equal(mem.size, 6 * GiB);
  await readPhys(mem, [
    { addr: 0x1000, len: 8 },
    { addr: 4 * GiB + 0x2000, len: 8 },
  ]);
  assert.deepEqual(seen, [
    { addr: 0x1000, len: 8 },
    { addr: 2 * GiB + 0x2000, len: 8 },
  ]);
  await assert.rejects(readPhys(mem, [{ addr: 2 * GiB - 4, len: 8 }]), isMem("MEM_HOLE"));
  await assert.rejects(readPhys(mem, [{ addr: 3 * GiB, len: 8 }]), isMem("MEM_HOLE"));
  await assert.rejects(readPhys(mem, [{ addr: 6 * GiB - 4, len: 8 }]), isMem("MEM_OUT_OF_RANGE"));
  assert.throws(() => new RamFileMemory(l, { size: GiB, read: file.read }), isMem("MEM_BAD_REQUEST"));
});

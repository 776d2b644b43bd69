import assert from "node:assert/strict";
import { test } from "node:test";
import { AddressError, MemoryError } from "../errors.ts";
import { BufferPhysicalMemory, readVirtOne } from "../memory/memory.ts";
import {
  DirectMapMemory,
  directMapVaToPa,
  KernelImageMemory,
  kernelImageVaToPa,
  START_KERNEL_MAP,
} from "./translate.ts";

const isMem = (code: string) => (e: unknown) => e instanceof MemoryError && e.code === code;

test("kernel image and direct map translations", async () => {
  const physBase = -0x60000000n + 0x70000000n; // phys_base may be any signed value; here 256 MiB
  assert.equal(kernelImageVaToPa(0xffffffff81000000n, physBase), 0x11000000);
  assert.equal(kernelImageVaToPa(START_KERNEL_MAP, 0n), 0);
  const isAddr = (code: string) => (e: unknown) => e instanceof AddressError && e.code === code;
  assert.throws(() => kernelImageVaToPa(0xffff888000000000n, physBase), isAddr("ADDR_NOT_IN_REGION"));
  assert.throws(
    () => kernelImageVaToPa(START_KERNEL_MAP + (1n << 30n) - 4n, 0n, 8),
    isAddr("ADDR_NOT_IN_REGION"),
  );
  assert.throws(() => kernelImageVaToPa(START_KERNEL_MAP, -0x1000n), isAddr("ADDR_NOT_IN_REGION"));
  assert.throws(() => kernelImageVaToPa(-1n, 0n), isAddr("ADDR_BAD_ARGUMENT"));
  assert.equal(directMapVaToPa(0xffff888000001000n, 0xffff888000000000n), 0x1000);
  assert.throws(
    () => directMapVaToPa(0xffff887fffffffffn, 0xffff888000000000n),
    isAddr("ADDR_NOT_IN_REGION"),
  );
  assert.throws(
    () => directMapVaToPa(0xffffffffffffff00n, 0xffff888000000000n),
    isAddr("ADDR_NOT_IN_REGION"),
  );

  const ram = Uint8Array.from({ length: 0x3000 }, (_, i) => i & 0xff);
  const phys = new BufferPhysicalMemory(ram);
  const image = new KernelImageMemory(phys, 0x1000n);
  assert.deepEqual(
    [...(await readVirtOne(image, START_KERNEL_MAP + 2n, 2))],
    [2, 3].map((x) => (0x1000 + x) & 0xff),
  );
  const dmap = new DirectMapMemory(phys, 0xffff888000000000n);
  assert.deepEqual([...(await readVirtOne(dmap, 0xffff888000000005n, 1))], [5]);
  await assert.rejects(readVirtOne(dmap, 0xffff888000003000n, 1), isMem("MEM_OUT_OF_RANGE"));
  await assert.rejects(readVirtOne(image, 0xffff888000000000n, 1), isAddr("ADDR_NOT_IN_REGION"));
});

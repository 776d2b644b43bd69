import { KernelError } from "./errors.ts";
import type { Kernel } from "./kernel.ts";
import type { PhysicalMemory } from "./memory.ts";
export async function discoverWithoutVmcoreinfo(
  _p: PhysicalMemory,
  _o: unknown,
  _t: unknown,
): Promise<Kernel> {
  throw new KernelError("KERNEL_NOT_FOUND", "no VMCOREINFO");
}

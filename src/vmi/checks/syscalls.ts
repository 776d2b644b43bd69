// Syscall-table integrity: every sys_call_table entry must point into kernel text, and at a
// syscall entry symbol (__x64_sys_*, or the ni_syscall stub). A rootkit that hooks a syscall
// points the entry at module memory (outside text) or, more subtly, at a trampoline inside text.
// The table size is not in BTF; it is bounded by the next symbol (the linker pads the table, and
// those trailing zero words are not entries) and by a hard cap.

import { guardAsync, KernelError } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { VirtAddr } from "../memory/memory.ts";
import { listModules, type ModuleInfo } from "../queries/modules.ts";

export interface SyscallFinding {
  readonly nr: number;
  readonly address: VirtAddr;
  readonly problem: "outside-text" | "not-a-syscall-entry";
  /** What the address points into: a kernel symbol (name+offset) or "module:<name>+offset". */
  readonly symbol?: string;
}

export interface SyscallReport {
  readonly table: VirtAddr;
  readonly entries: number;
  readonly findings: SyscallFinding[];
}

const MAX_SYSCALLS = 1024;
const ENTRY_PREFIXES = ["__x64_sys_", "__ia32_sys_", "__do_sys_", "sys_"];

export function checkSyscallTable(k: Kernel): Promise<SyscallReport> {
  return guardAsync(async () => {
    const table = k.symbols.require("sys_call_table");
    const textStart = k.symbols.require("_stext");
    const textEnd = k.symbols.require("_etext");
    if (textEnd <= textStart) throw new KernelError("KERNEL_INCONSISTENT", "_etext is not above _stext");
    const next = k.symbols.nextAbove(table);
    let count = MAX_SYSCALLS;
    if (next !== undefined) count = Math.min(count, Number((next - table) / 8n));
    const buf = await k.read(table, count * 8);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const entries = Array.from({ length: count }, (_, i) => dv.getBigUint64(i * 8, true));
    while (entries.length > 0 && entries[entries.length - 1] === 0n) entries.pop();
    const findings: SyscallFinding[] = [];
    let modules: ModuleInfo[] | undefined;
    const end = k.symbols.lookup("_end") ?? textEnd;
    for (const [nr, address] of entries.entries()) {
      if (address < textStart || address >= textEnd) {
        // Hooks usually live in a module: name it (best effort; the list may be tampered with).
        modules ??= await listModules(k).catch(() => []);
        const m = modules.find((x) => address >= x.base && address < x.base + BigInt(x.size));
        const sym = address >= textStart && address < end ? k.symbols.containing(address) : undefined;
        const symbol = m
          ? `module:${m.name}+0x${(address - m.base).toString(16)}`
          : sym
            ? `${sym.name}+0x${(address - sym.address).toString(16)}`
            : undefined;
        findings.push({ nr, address, problem: "outside-text", symbol });
        continue;
      }
      // Only full kallsyms know every function; the exported table cannot judge this.
      if (k.symbols.source !== "kallsyms") continue;
      const exact = k.symbols.at(address);
      if (!exact.some((s) => ENTRY_PREFIXES.some((p) => s.name.startsWith(p)))) {
        const sym = k.symbols.containing(address);
        const symbol = sym ? `${sym.name}+0x${(address - sym.address).toString(16)}` : undefined;
        findings.push({ nr, address, problem: "not-a-syscall-entry", symbol });
      }
    }
    return { table, entries: entries.length, findings };
  });
}

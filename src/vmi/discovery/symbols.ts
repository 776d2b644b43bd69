// Kernel symbols by name and by address, whatever their source (kallsyms, or only the exported
// symbol table when kallsyms could not be found).

import { KallsymsError } from "../errors.ts";
import type { VirtAddr } from "../memory/memory.ts";
import type { KernelSymbol } from "./kallsyms.ts";

export type SymbolSource = "kallsyms" | "ksymtab";

export class SymbolIndex {
  private readonly byName = new Map<string, KernelSymbol>();
  private sorted: KernelSymbol[] | undefined;

  constructor(
    readonly symbols: readonly KernelSymbol[],
    readonly source: SymbolSource,
  ) {
    for (const s of symbols) if (!this.byName.has(s.name)) this.byName.set(s.name, s);
  }

  get size(): number {
    return this.symbols.length;
  }

  lookup(name: string): VirtAddr | undefined {
    return this.byName.get(name)?.address;
  }

  symbol(name: string): KernelSymbol | undefined {
    return this.byName.get(name);
  }

  require(name: string): VirtAddr {
    const a = this.lookup(name);
    if (a === undefined) {
      throw new KallsymsError("KALLSYMS_MISSING_SYMBOL", `no symbol ${name} (symbols from ${this.source})`);
    }
    return a;
  }

  /** Address-sorted symbols, absolute ('A', percpu offsets) excluded. */
  private bySortedAddress(): KernelSymbol[] {
    this.sorted ??= this.symbols
      .filter((s) => s.type !== "A" && s.type !== "a")
      .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return this.sorted;
  }

  /** The symbol at or below `addr` (the function or object containing it, as far as we know). */
  containing(addr: VirtAddr): KernelSymbol | undefined {
    const s = this.bySortedAddress();
    let lo = 0;
    let hi = s.length - 1;
    let best: KernelSymbol | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].address <= addr) {
        best = s[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  }

  /** Symbols exactly at `addr`. */
  at(addr: VirtAddr): KernelSymbol[] {
    const s = this.bySortedAddress();
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].address < addr) lo = mid + 1;
      else hi = mid;
    }
    const out: KernelSymbol[] = [];
    for (let i = lo; i < s.length && s[i].address === addr; i++) out.push(s[i]);
    return out;
  }

  /** Address of the first symbol strictly above `addr` (bounds an object of unknown size). */
  nextAbove(addr: VirtAddr): VirtAddr | undefined {
    const s = this.bySortedAddress();
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid].address <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo < s.length ? s[lo].address : undefined;
  }
}

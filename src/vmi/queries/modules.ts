// Loaded kernel modules: the `modules` list of struct module (kernel/module/main.c), reported as
// /proc/modules does: name, size = all of the module's memory (core + init before 6.4, the sum of
// mem[] from 6.4), base = the core (text) base, and state.

import { guardAsync } from "../errors.ts";
import type { Kernel } from "../kernel/kernel.ts";
import type { FieldRead } from "../memory/listwalk.ts";
import type { VirtAddr } from "../memory/memory.ts";
import { cString, type QueryOptions, withRetries } from "./processes.ts";

export interface ModuleInfo {
  readonly name: string;
  readonly base: VirtAddr;
  readonly size: number;
  readonly state: "live" | "coming" | "going" | "unformed" | "unknown";
  /** Address of the struct module. */
  readonly module: VirtAddr;
}

const STATES = ["live", "coming", "going", "unformed"] as const;

interface SizeLayout {
  readonly base: FieldRead;
  readonly sizes: FieldRead[];
}

/** Where base and sizes live: core_layout/init_layout (< 6.4) or mem[] (6.4+). */
function sizeLayout(k: Kernel): SizeLayout {
  const core = k.profile.fields["module.core_layout.base"];
  if (core) {
    return {
      base: { offset: core.offset, len: 8 },
      sizes: [
        { offset: k.field("module.core_layout.size").offset, len: 4 },
        { offset: k.field("module.init_layout.size").offset, len: 4 },
      ],
    };
  }
  const mem = k.field("module.mem");
  const stride = k.profile.sizes.module_memory ?? 0;
  const count = Math.min(mem.count ?? 0, 16);
  const base = k.field("module_memory.base").offset;
  const size = k.field("module_memory.size").offset;
  return {
    base: { offset: mem.offset + base, len: 8 },
    sizes: Array.from({ length: count }, (_, i) => ({ offset: mem.offset + i * stride + size, len: 4 })),
  };
}

export function listModules(k: Kernel, opts: QueryOptions = {}): Promise<ModuleInfo[]> {
  return guardAsync(() =>
    withRetries(k, opts.retries ?? 2, async () => {
      const head = k.symbols.require("modules");
      const listOff = k.field("module.list").offset;
      const name = k.field("module.name");
      const layout = sizeLayout(k);
      const reads: FieldRead[] = [
        { offset: name.offset, len: Math.min(name.size, 64) },
        { offset: k.field("module.state").offset, len: 4 },
        layout.base,
        ...layout.sizes,
      ];
      const nodes = await k.walkList(
        { head, linkOffset: listOff, reads, maxNodes: opts.maxEntries ?? 8192 },
        { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
      );
      return nodes.map((n) => {
        const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
        const [nameB, stateB, baseB, ...sizeB] = n.fields;
        const st = dv(stateB).getUint32(0, true);
        return {
          name: cString(nameB),
          base: dv(baseB).getBigUint64(0, true),
          size: sizeB.reduce((s, b) => s + dv(b).getUint32(0, true), 0),
          state: STATES[st] ?? "unknown",
          module: n.addr,
        };
      });
    }),
  );
}

// A kernel profile: the struct layouts the queries need, resolved once from the guest's own BTF
// and kept as plain JSON (no debug symbols involved). Lookups are by path, "task_struct.tasks.next".
// Profiles are cached per kernel build (VMCOREINFO BUILD-ID, else OSRELEASE + a hash of the BTF
// blob), so a second guest running the same kernel skips reading and parsing 4 MB of BTF.
//
// Trust: the cache key comes from the guest. A guest that forges another build's id only gets
// wrong layouts for its own introspection — which a compromised kernel can achieve anyway.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Btf } from "../discovery/btf.ts";
import { fieldLocation, resolveAlias, sizeOf } from "../discovery/btf-layout.ts";
import type { TypeId } from "../discovery/btf-types.ts";
import { BtfError, KernelError } from "../errors.ts";

export interface FieldLayout {
  readonly offset: number;
  /** Bytes (for an array, the whole array). */
  readonly size: number;
  /** Array element count when the field is an array. */
  readonly count?: number;
}

export interface KernelProfile {
  readonly version: 2;
  readonly key: string;
  readonly osRelease: string;
  /** Resolved paths; a path the kernel lacks is absent. */
  readonly fields: Readonly<Record<string, FieldLayout>>;
  /** sizeof(struct X) for the structs queries step over. */
  readonly sizes: Readonly<Record<string, number>>;
  /** Enumerators of PROFILE_ENUMS as "enum.NAME" -> value (a missing enum is absent). */
  readonly constants: Readonly<Record<string, number>>;
}

/** Every path queries may use. Alternatives across kernel versions are both listed. */
export const PROFILE_PATHS: readonly string[] = [
  "list_head.next",
  "list_head.prev",
  "hlist_head.first",
  "hlist_node.next",
  "task_struct.tasks",
  "task_struct.pid",
  "task_struct.tgid",
  "task_struct.comm",
  "task_struct.__state", // 5.14+
  "task_struct.state", // before 5.14
  "task_struct.exit_state",
  "task_struct.flags",
  "task_struct.real_parent",
  "task_struct.group_leader",
  "task_struct.cred",
  "task_struct.real_cred",
  "task_struct.pid_links",
  "task_struct.mm",
  "task_struct.active_mm",
  "mm_struct.pgd",
  "cred.uid",
  "cred.euid",
  "cred.gid",
  "module.list",
  "module.name",
  "module.state",
  "module.core_layout.base", // before 6.4
  "module.core_layout.size",
  "module.init_layout.size",
  "module.mem", // 6.4+: struct module_memory mem[MOD_MEM_NUM_TYPES]
  "module_memory.base",
  "module_memory.size",
  "pid.level",
  "pid.tasks",
  "pid.numbers",
  "upid.nr",
  "pid_namespace.idr",
  "idr.idr_rt",
  "idr.idr_base",
  "xarray.xa_head",
  "xa_node.shift",
  "xa_node.count",
  "xa_node.slots",
  "rq.curr",
  "rq.idle",
];

export const PROFILE_SIZES: readonly string[] = [
  "task_struct",
  "module",
  "module_memory",
  "upid",
  "xa_node",
  "rq",
];

/** Enums whose values queries need: system_states tells a booting kernel from a running one. */
export const PROFILE_ENUMS: readonly string[] = ["system_states"];
const MAX_ENUM_VALUES = 256;

function arrayCount(btf: Btf, type: TypeId): number | undefined {
  const t = btf.type(resolveAlias(btf, type));
  return t.kind === "array" ? t.nelems : undefined;
}

/** Resolves every known path that this BTF has. */
export function buildProfile(btf: Btf, key: string, osRelease: string): KernelProfile {
  const fields: Record<string, FieldLayout> = {};
  for (const path of PROFILE_PATHS) {
    try {
      const loc = fieldLocation(btf, path);
      if (loc.kind === "bitfield") continue;
      const count = arrayCount(btf, loc.type);
      fields[path] = {
        offset: loc.byteOffset,
        size: sizeOf(btf, loc.type),
        ...(count !== undefined ? { count } : {}),
      };
    } catch (e) {
      // A path this kernel lacks (other version) is simply absent; corrupt BTF still throws.
      if (!(e instanceof BtfError && (e.code === "BTF_NOT_FOUND" || e.code === "BTF_NO_SIZE"))) throw e;
    }
  }
  const sizes: Record<string, number> = {};
  for (const name of PROFILE_SIZES) {
    try {
      sizes[name] = sizeOf(btf, btf.findComposite(name));
    } catch (e) {
      if (!(e instanceof BtfError && e.code === "BTF_NOT_FOUND")) throw e;
    }
  }
  const constants: Record<string, number> = {};
  for (const name of PROFILE_ENUMS) {
    const id = btf.findByName(name, "enum")[0];
    if (id === undefined) continue;
    const t = btf.type(id);
    if (t.kind !== "enum") continue;
    for (const v of t.values.slice(0, MAX_ENUM_VALUES)) constants[`${name}.${v.name}`] = v.value;
  }
  return { version: 2, key, osRelease, fields, sizes, constants };
}

/** A field layout or KERNEL_PROFILE_FIELD. */
export function field(p: KernelProfile, path: string): FieldLayout {
  const f = p.fields[path];
  if (f === undefined) {
    throw new KernelError("KERNEL_PROFILE_FIELD", `kernel ${p.osRelease} has no ${path} (profile ${p.key})`);
  }
  return f;
}

export function optionalField(p: KernelProfile, path: string): FieldLayout | undefined {
  return p.fields[path];
}

/** First of several alternative paths that exists (e.g. __state, then state). */
export function fieldOf(p: KernelProfile, ...paths: string[]): FieldLayout {
  for (const path of paths) {
    const f = p.fields[path];
    if (f !== undefined) return f;
  }
  throw new KernelError("KERNEL_PROFILE_FIELD", `kernel ${p.osRelease} has none of ${paths.join(", ")}`);
}

/** Cache key: the build id when VMCOREINFO has one, else release + a hash of the BTF blob. */
export function profileKey(osRelease: string, buildId: string | undefined, btfBytes?: Uint8Array): string {
  if (buildId) return `build-${buildId.toLowerCase()}`;
  if (!btfBytes) throw new KernelError("KERNEL_NO_BTF", "no build id and no BTF to key the profile");
  return `btf-${osRelease}-${createHash("sha256").update(btfBytes).digest("hex").slice(0, 32)}`;
}

const KEY_RE = /^[A-Za-z0-9._+~-]{1,200}$/;
const MAX_PROFILE_BYTES = 1 << 20;

function validProfile(v: unknown, key: string): KernelProfile | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const p = v as KernelProfile;
  if (p.version !== 2 || p.key !== key || typeof p.osRelease !== "string") return undefined;
  const okNum = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) < 1 << 24;
  if (typeof p.fields !== "object" || p.fields === null || typeof p.sizes !== "object" || p.sizes === null) {
    return undefined;
  }
  for (const f of Object.values(p.fields)) {
    if (!okNum(f?.offset) || !okNum(f?.size) || (f.count !== undefined && !okNum(f.count))) return undefined;
  }
  if (!Object.values(p.sizes).every(okNum)) return undefined;
  if (typeof p.constants !== "object" || p.constants === null) return undefined;
  if (!Object.values(p.constants).every((n) => Number.isSafeInteger(n))) return undefined;
  return p;
}

/**
 * Profiles by key: in memory, and in `dir` as <key>.json when given (written atomically; a
 * corrupt or foreign file is ignored and rebuilt).
 */
export class ProfileCache {
  private readonly mem = new Map<string, KernelProfile>();
  constructor(readonly dir?: string) {}

  get(key: string): KernelProfile | undefined {
    const hit = this.mem.get(key);
    if (hit || !this.dir || !KEY_RE.test(key)) return hit;
    try {
      const text = readFileSync(join(this.dir, `${key}.json`), "utf8");
      if (text.length > MAX_PROFILE_BYTES) return undefined;
      const p = validProfile(JSON.parse(text), key);
      if (p) this.mem.set(key, p);
      return p;
    } catch {
      return undefined;
    }
  }

  set(p: KernelProfile): void {
    this.mem.set(p.key, p);
    if (!this.dir || !KEY_RE.test(p.key)) return;
    try {
      mkdirSync(this.dir, { recursive: true });
      const file = join(this.dir, `${p.key}.json`);
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(p, null, 1)}\n`);
      renameSync(tmp, file);
    } catch {
      // A cache that cannot be written only costs time.
    }
  }
}

// Layout questions answered from BTF: how big is a type, and where is `a.b.c` inside a struct.
// BTF is guest data, so type graphs may be cyclic (typedef A -> typedef B -> A, a struct that
// contains itself through anonymous members) or deliberately explosive (a DAG of anonymous
// unions). Every walk here has a depth limit and member searches have a total work budget.

import { BtfError, guard } from "../errors.ts";
import type { Btf } from "./btf.ts";
import type { BtfComposite, TypeId } from "./btf-types.ts";

/** Longest typedef/qualifier/array chain we follow. Real kernels need < 10. */
export const MAX_TYPE_DEPTH = 32;
/** Deepest nesting of anonymous struct/union members searched. task_struct needs 3. */
export const MAX_ANON_DEPTH = 16;
/** Members visited per path lookup before giving up. */
export const MEMBER_BUDGET = 200_000;
/** Pointer size of the guest (x86-64). */
export const POINTER_SIZE = 8;

/** Follows typedef/const/volatile/restrict/type_tag to the underlying type. */
export function resolveAlias(btf: Btf, id: TypeId): TypeId {
  return guard(() => {
    let cur = id;
    for (let i = 0; i < MAX_TYPE_DEPTH; i++) {
      const t = btf.type(cur);
      switch (t.kind) {
        case "typedef":
        case "const":
        case "volatile":
        case "restrict":
        case "type_tag":
          cur = t.type;
          continue;
        default:
          return cur;
      }
    }
    throw new BtfError(
      "BTF_DEPTH_EXCEEDED",
      `type ${id}: qualifier/typedef chain longer than ${MAX_TYPE_DEPTH}`,
    );
  });
}

/** Size in bytes of a type, through typedefs, qualifiers, arrays and variables. */
export function sizeOf(btf: Btf, id: TypeId): number {
  return guard(() => {
    let cur = id;
    let mult = 1;
    for (let i = 0; i < MAX_TYPE_DEPTH; i++) {
      const t = btf.type(cur);
      switch (t.kind) {
        case "typedef":
        case "const":
        case "volatile":
        case "restrict":
        case "type_tag":
        case "var":
          cur = t.type;
          continue;
        case "array":
          mult *= t.nelems;
          if (!Number.isSafeInteger(mult))
            throw new BtfError("BTF_BAD_LAYOUT", `type ${id}: array size overflows`);
          cur = t.elemType;
          continue;
        case "ptr":
          return mult * POINTER_SIZE;
        case "int":
        case "enum":
        case "enum64":
        case "struct":
        case "union":
        case "float":
        case "datasec": {
          const size = mult * t.size;
          if (!Number.isSafeInteger(size)) throw new BtfError("BTF_BAD_LAYOUT", `type ${id}: size overflows`);
          return size;
        }
        default:
          throw new BtfError(
            "BTF_NO_SIZE",
            `type ${id} (${t.kind}${t.name ? ` ${t.name}` : ""}) has no size`,
          );
      }
    }
    throw new BtfError("BTF_DEPTH_EXCEEDED", `type ${id}: type chain longer than ${MAX_TYPE_DEPTH}`);
  });
}

/**
 * Where a member lives, relative to the start of the root type. `bitOffset` is always the
 * absolute bit position; a plain field is byte aligned by construction (else BTF_BAD_LAYOUT).
 */
export type MemberLocation =
  | {
      readonly kind: "field";
      /** Declared type of the member (may be a typedef; see resolveAlias). */
      readonly type: TypeId;
      readonly byteOffset: number;
      readonly bitOffset: number;
    }
  | {
      readonly kind: "bitfield";
      readonly type: TypeId;
      /** Byte containing the first bit. */
      readonly byteOffset: number;
      readonly bitOffset: number;
      readonly bitSize: number;
    };

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
const MAX_PATH_COMPONENTS = 32;

function parsePath(path: string): string[] {
  const parts = path.split(".", MAX_PATH_COMPONENTS + 1);
  if (parts.length > MAX_PATH_COMPONENTS) throw new BtfError("BTF_BAD_PATH", "member path too long");
  for (const p of parts) {
    if (!IDENT.test(p)) throw new BtfError("BTF_BAD_PATH", `bad member name "${p}" in "${path}"`);
  }
  return parts;
}

function asComposite(btf: Btf, id: TypeId, what: string): BtfComposite {
  const t = btf.type(resolveAlias(btf, id));
  if (t.kind !== "struct" && t.kind !== "union") {
    throw new BtfError("BTF_NOT_COMPOSITE", `${what} is a ${t.kind}, not a struct or union`);
  }
  return t;
}

interface Found {
  readonly type: TypeId;
  readonly bitOffset: number;
  /** 0 unless a bitfield. */
  readonly bitSize: number;
}

/**
 * Finds `name` in a struct/union, descending into anonymous struct/union members (C11 anonymous
 * members; e.g. mm_struct.pgd lives in one). In-order depth-first, like C name lookup.
 */
function findMember(
  btf: Btf,
  t: BtfComposite,
  name: string,
  budget: { left: number },
  depth: number,
): Found | undefined {
  for (const m of t.members) {
    if (--budget.left < 0)
      throw new BtfError("BTF_BUDGET_EXCEEDED", `searching "${name}" visited too many members`);
    if (m.name === name) return { type: m.type, bitOffset: m.bitOffset, bitSize: bitfieldSize(btf, t, m) };
    if (m.name !== "") continue;
    const inner = btf.type(resolveAlias(btf, m.type));
    if (inner.kind !== "struct" && inner.kind !== "union") continue;
    if (depth >= MAX_ANON_DEPTH) {
      throw new BtfError("BTF_DEPTH_EXCEEDED", `anonymous members nested deeper than ${MAX_ANON_DEPTH}`);
    }
    const hit = findMember(btf, inner, name, budget, depth + 1);
    if (hit) return { ...hit, bitOffset: m.bitOffset + hit.bitOffset };
  }
  return undefined;
}

/**
 * Bitfield width of a member. With kind_flag it is encoded in the member; without, the old
 * encoding makes the member's int type narrower than its storage (BTF_INT_BITS < size * 8).
 */
function bitfieldSize(btf: Btf, parent: BtfComposite, m: BtfComposite["members"][number]): number {
  if (parent.kindFlag) return m.bitfieldSize;
  const t = btf.type(resolveAlias(btf, m.type));
  if (t.kind === "int" && (t.bits !== t.size * 8 || t.bitOffset !== 0)) return t.bits;
  return 0;
}

/** Adds the old-style BTF_INT_OFFSET of a non-kind_flag bitfield's int type. */
function intBitOffset(btf: Btf, f: Found): number {
  if (f.bitSize === 0) return 0;
  const t = btf.type(resolveAlias(btf, f.type));
  return t.kind === "int" ? t.bitOffset : 0;
}

/**
 * Locates `path` (e.g. "tasks.next") inside the struct/union `root`. Each component must name a
 * member of the previous one's struct/union type (typedefs and qualifiers are looked through;
 * pointers are not: following a pointer needs a memory read).
 */
export function memberLocation(btf: Btf, root: TypeId, path: string): MemberLocation {
  return guard(() => {
    const parts = parsePath(path);
    const budget = { left: MEMBER_BUDGET };
    let cur = root;
    let bits = 0;
    let last: Found | undefined;
    let walked = btf.nameOf(root) || `type ${root}`;
    for (const part of parts) {
      const t = asComposite(btf, cur, walked);
      const f = findMember(btf, t, part, budget, 0);
      if (!f) throw new BtfError("BTF_NOT_FOUND", `${walked} has no member "${part}"`);
      bits += f.bitOffset + intBitOffset(btf, f);
      if (!Number.isSafeInteger(bits)) throw new BtfError("BTF_BAD_LAYOUT", `offset of ${path} overflows`);
      cur = f.type;
      last = f;
      walked += `.${part}`;
    }
    // parsePath returns at least one component, so `last` is set.
    const f = last as Found;
    if (f.bitSize > 0) {
      return {
        kind: "bitfield",
        type: f.type,
        byteOffset: Math.floor(bits / 8),
        bitOffset: bits,
        bitSize: f.bitSize,
      };
    }
    if (bits % 8 !== 0) throw new BtfError("BTF_BAD_LAYOUT", `${walked} is not byte aligned (bit ${bits})`);
    return { kind: "field", type: f.type, byteOffset: bits / 8, bitOffset: bits };
  });
}

/**
 * Locates "struct.member.member" where the first component names a struct or union, e.g.
 * "task_struct.tasks.next" or "mm_struct.pgd".
 */
export function fieldLocation(btf: Btf, qualifiedPath: string): MemberLocation {
  return guard(() => {
    const dot = qualifiedPath.indexOf(".");
    if (dot <= 0) throw new BtfError("BTF_BAD_PATH", `expected "struct.member", got "${qualifiedPath}"`);
    const root = btf.findComposite(qualifiedPath.slice(0, dot));
    return memberLocation(btf, root, qualifiedPath.slice(dot + 1));
  });
}

/** Byte offset of a non-bitfield member, e.g. offsetOf(btf, "task_struct.pid"). */
export function offsetOf(btf: Btf, qualifiedPath: string): number {
  const loc = fieldLocation(btf, qualifiedPath);
  if (loc.kind === "bitfield") throw new BtfError("BTF_BAD_LAYOUT", `${qualifiedPath} is a bitfield`);
  return loc.byteOffset;
}

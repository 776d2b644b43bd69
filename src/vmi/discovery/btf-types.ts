// Decoded BTF types (include/uapi/linux/btf.h, Documentation/bpf/btf.rst). Each kind is its own
// variant of a discriminated union so a consumer cannot, say, read `members` of a pointer.

declare const typeIdBrand: unique symbol;
/**
 * A type id that exists in a particular Btf (0 = void). Branded so raw numbers (offsets, sizes,
 * bpftool ids) cannot be passed by accident; obtain one from a lookup or Btf.typeId(n).
 */
export type TypeId = number & { readonly [typeIdBrand]: true };

/** BTF_KIND_* numbers as they appear in btf_type.info bits 24-28. */
export const KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

export const MAX_KIND = 19;

export type BtfKindName =
  | "void"
  | "int"
  | "ptr"
  | "array"
  | "struct"
  | "union"
  | "enum"
  | "fwd"
  | "typedef"
  | "volatile"
  | "const"
  | "restrict"
  | "func"
  | "func_proto"
  | "var"
  | "datasec"
  | "float"
  | "decl_tag"
  | "type_tag"
  | "enum64";

/** Index = BTF kind number. */
export const KIND_NAMES: readonly BtfKindName[] = [
  "void",
  "int",
  "ptr",
  "array",
  "struct",
  "union",
  "enum",
  "fwd",
  "typedef",
  "volatile",
  "const",
  "restrict",
  "func",
  "func_proto",
  "var",
  "datasec",
  "float",
  "decl_tag",
  "type_tag",
  "enum64",
];

export type Linkage = "static" | "global" | "extern" | "unknown";

interface Base {
  readonly id: TypeId;
  /** "" for anonymous types. */
  readonly name: string;
}

export interface BtfVoid extends Base {
  readonly kind: "void";
}

export interface BtfInt extends Base {
  readonly kind: "int";
  readonly size: number;
  readonly signed: boolean;
  readonly char: boolean;
  readonly bool: boolean;
  /** BTF_INT_OFFSET: extra bit offset for old-style bitfield encoding (0 from pahole/llvm). */
  readonly bitOffset: number;
  /** BTF_INT_BITS. */
  readonly bits: number;
}

export interface BtfPtr extends Base {
  readonly kind: "ptr";
  readonly type: TypeId;
}

export interface BtfArray extends Base {
  readonly kind: "array";
  readonly elemType: TypeId;
  readonly indexType: TypeId;
  readonly nelems: number;
}

export interface BtfMember {
  /** "" for an anonymous struct/union member. */
  readonly name: string;
  readonly type: TypeId;
  /** Bit offset from the start of the enclosing struct/union. */
  readonly bitOffset: number;
  /** Bitfield width from the kind_flag encoding; 0 = not a bitfield (or old-style encoding). */
  readonly bitfieldSize: number;
}

export interface BtfComposite extends Base {
  readonly kind: "struct" | "union";
  readonly size: number;
  /** kind_flag: member offsets carry bitfield sizes in their top 8 bits. */
  readonly kindFlag: boolean;
  readonly members: readonly BtfMember[];
}

export interface BtfEnumValue {
  readonly name: string;
  readonly value: number;
}

export interface BtfEnum extends Base {
  readonly kind: "enum";
  readonly size: number;
  /** kind_flag: values are signed. */
  readonly signed: boolean;
  readonly values: readonly BtfEnumValue[];
}

export interface BtfEnum64Value {
  readonly name: string;
  readonly value: bigint;
}

export interface BtfEnum64 extends Base {
  readonly kind: "enum64";
  readonly size: number;
  readonly signed: boolean;
  readonly values: readonly BtfEnum64Value[];
}

export interface BtfFwd extends Base {
  readonly kind: "fwd";
  /** kind_flag: 0 = struct, 1 = union. */
  readonly fwdKind: "struct" | "union";
}

/** Types that only wrap another type. */
export interface BtfModifier extends Base {
  readonly kind: "typedef" | "volatile" | "const" | "restrict" | "type_tag";
  readonly type: TypeId;
}

export interface BtfFunc extends Base {
  readonly kind: "func";
  /** The FUNC_PROTO. */
  readonly type: TypeId;
  readonly linkage: Linkage;
}

export interface BtfParam {
  readonly name: string;
  /** 0 (void) together with an empty name marks a trailing "..." */
  readonly type: TypeId;
}

export interface BtfFuncProto extends Base {
  readonly kind: "func_proto";
  readonly returnType: TypeId;
  readonly params: readonly BtfParam[];
}

export interface BtfVar extends Base {
  readonly kind: "var";
  readonly type: TypeId;
  readonly linkage: Linkage;
}

export interface BtfVarSecinfo {
  readonly type: TypeId;
  readonly offset: number;
  readonly size: number;
}

export interface BtfDatasec extends Base {
  readonly kind: "datasec";
  readonly size: number;
  readonly vars: readonly BtfVarSecinfo[];
}

export interface BtfFloat extends Base {
  readonly kind: "float";
  readonly size: number;
}

export interface BtfDeclTag extends Base {
  readonly kind: "decl_tag";
  readonly type: TypeId;
  /** -1: tag applies to the type itself, else to member/parameter number componentIdx. */
  readonly componentIdx: number;
  /** kind_flag: the tag is an __attribute__ rather than a btf_decl_tag. */
  readonly attribute: boolean;
}

export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfPtr
  | BtfArray
  | BtfComposite
  | BtfEnum
  | BtfEnum64
  | BtfFwd
  | BtfModifier
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag;

export interface BtfHeader {
  readonly magic: number;
  readonly version: number;
  readonly flags: number;
  readonly hdrLen: number;
  readonly typeOff: number;
  readonly typeLen: number;
  readonly strOff: number;
  readonly strLen: number;
}

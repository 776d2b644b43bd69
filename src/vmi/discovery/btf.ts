// BTF parser. The blob comes from guest memory (between __start_BTF and __stop_BTF), so parse()
// validates everything a later lookup could trip over, in two linear passes:
//   1. index: walk the type section record by record (each record is >= 12 bytes, so the loop
//      is bounded by type_len / 12), checking kind and that the record fits;
//   2. references: every type id referenced is < type count and every name offset is inside the
//      string table, whose last byte must be NUL (so every string terminates inside it).
// After that, decoding a type cannot fail; it happens lazily (and is cached) because a kernel has
// ~100k types and a monitor needs a few dozen.

import { Buffer } from "node:buffer";
import { BtfError, guard } from "../errors.ts";
import {
  type BtfComposite,
  type BtfEnum,
  type BtfEnum64,
  type BtfHeader,
  type BtfKindName,
  type BtfMember,
  type BtfType,
  KIND,
  KIND_NAMES,
  type Linkage,
  MAX_KIND,
  type TypeId,
} from "./btf-types.ts";

export const BTF_MAGIC = 0xeb9f;
/** BTF_MAX_TYPE from btf.h: type ids are at most 20 bits. */
export const BTF_MAX_TYPE = 0xfffff;
/** BTF_MAX_NAME_OFFSET + 1: largest string section the kernel accepts. */
export const BTF_MAX_STR_LEN = 0x1000000;
/** Longest string we decode; the kernel limits identifiers to KSYM_NAME_LEN (512). */
export const BTF_MAX_STRING = 4096;

const HEADER_LEN = 24;
const RECORD_LEN = 12;

/** Extra bytes after the 12-byte btf_type for each kind, or -1 for an unknown kind. */
function extraSize(kind: number, vlen: number): number {
  switch (kind) {
    case KIND.INT:
    case KIND.VAR:
    case KIND.DECL_TAG:
      return 4;
    case KIND.ARRAY:
      return 12;
    case KIND.STRUCT:
    case KIND.UNION:
    case KIND.DATASEC:
    case KIND.ENUM64:
      return 12 * vlen;
    case KIND.ENUM:
    case KIND.FUNC_PROTO:
      return 8 * vlen;
    case KIND.PTR:
    case KIND.FWD:
    case KIND.TYPEDEF:
    case KIND.VOLATILE:
    case KIND.CONST:
    case KIND.RESTRICT:
    case KIND.FUNC:
    case KIND.FLOAT:
    case KIND.TYPE_TAG:
      return 0;
    default:
      return -1;
  }
}

/** Kinds whose size_or_type field is a type id. */
function sizeFieldIsType(kind: number): boolean {
  switch (kind) {
    case KIND.PTR:
    case KIND.TYPEDEF:
    case KIND.VOLATILE:
    case KIND.CONST:
    case KIND.RESTRICT:
    case KIND.FUNC:
    case KIND.FUNC_PROTO:
    case KIND.VAR:
    case KIND.DECL_TAG:
    case KIND.TYPE_TAG:
      return true;
    default:
      return false;
  }
}

function linkageName(v: number): Linkage {
  return v === 0 ? "static" : v === 1 ? "global" : v === 2 ? "extern" : "unknown";
}

export interface BtfParseOptions {
  /** Upper bound on the number of types (default BTF_MAX_TYPE). */
  readonly maxTypes?: number;
}

export class Btf {
  readonly header: BtfHeader;
  /** Number of types; valid ids are 0 (void) .. typeCount. */
  readonly typeCount: number;

  private readonly dv: DataView;
  private readonly bytes: Uint8Array;
  private readonly strStart: number;
  private readonly strLen: number;
  /** Byte offset (in `bytes`) of each type record, by id. */
  private readonly recOff: Uint32Array;
  /** BTF kind number of each type, by id (0 for void). */
  private readonly kinds: Uint8Array;
  private readonly decoded: (BtfType | undefined)[];
  /**
   * The string section as one Latin-1 string (byte i = char i), so a name is a cheap substring
   * and offsets stay exact. Kernel identifiers are ASCII; odd bytes survive as U+0080..U+00FF.
   */
  private readonly strTable: string;
  private nameIndex: Map<string, TypeId[]> | undefined;

  private constructor(bytes: Uint8Array, header: BtfHeader, maxTypes: number) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.header = header;
    this.strStart = header.hdrLen + header.strOff;
    this.strLen = header.strLen;
    this.checkStringSection();
    this.strTable = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
      "latin1",
      this.strStart,
      this.strStart + this.strLen,
    );

    const typeStart = header.hdrLen + header.typeOff;
    const typeEnd = typeStart + header.typeLen;
    // Every record is at least 12 bytes: this bounds both the loop and the allocation by the
    // actual input size, never by a count read from the input.
    const capacity = Math.min(maxTypes, Math.floor(header.typeLen / RECORD_LEN));
    const recOff = new Uint32Array(capacity + 1);
    const kinds = new Uint8Array(capacity + 1);
    let id = 0;
    for (let pos = typeStart; pos < typeEnd; ) {
      if (pos + RECORD_LEN > typeEnd) {
        throw new BtfError("BTF_TRUNCATED", `type ${id + 1}: record header runs past the type section`);
      }
      if (id >= capacity) throw new BtfError("BTF_TOO_MANY_TYPES", `more than ${capacity} types`);
      const info = this.dv.getUint32(pos + 4, true);
      const kind = (info >>> 24) & 0x1f;
      const extra = extraSize(kind, info & 0xffff);
      if (extra < 0) throw new BtfError("BTF_BAD_KIND", `type ${id + 1}: unknown kind ${kind}`);
      if (pos + RECORD_LEN + extra > typeEnd) {
        throw new BtfError(
          "BTF_TRUNCATED",
          `type ${id + 1}: ${KIND_NAMES[kind]} data runs past the type section`,
        );
      }
      id++;
      recOff[id] = pos;
      kinds[id] = kind;
      pos += RECORD_LEN + extra;
    }
    this.typeCount = id;
    this.recOff = recOff;
    this.kinds = kinds;
    this.decoded = new Array(id + 1);
    this.checkReferences();
  }

  /** Parses and validates a BTF blob (the bytes are kept, not copied: do not mutate them). */
  static parse(bytes: Uint8Array, options: BtfParseOptions = {}): Btf {
    return guard(() => {
      const maxTypes = options.maxTypes ?? BTF_MAX_TYPE;
      if (!Number.isSafeInteger(maxTypes) || maxTypes < 0 || maxTypes > BTF_MAX_TYPE) {
        throw new BtfError("BTF_TOO_MANY_TYPES", `maxTypes must be 0..${BTF_MAX_TYPE}, got ${maxTypes}`);
      }
      return new Btf(bytes, parseHeader(bytes), maxTypes);
    });
  }

  private checkStringSection(): void {
    const { strStart, strLen, bytes } = this;
    if (strLen < 1 || strLen > BTF_MAX_STR_LEN) {
      throw new BtfError("BTF_BAD_STRING", `string section length ${strLen} out of bounds`);
    }
    // The first string is "", and the section must end with NUL so no string runs out of it.
    if (bytes[strStart] !== 0 || bytes[strStart + strLen - 1] !== 0) {
      throw new BtfError("BTF_BAD_STRING", "string section must start and end with NUL");
    }
  }

  // `id` only feeds the error message; the message is built only when failing (hot loop).
  private checkName(nameOff: number, id: number): void {
    if (nameOff >= this.strLen) {
      throw new BtfError(
        "BTF_BAD_STRING",
        `${this.where(id)}: name offset ${nameOff} outside string section`,
      );
    }
  }

  private checkRef(ref: number, id: number): void {
    if (ref > this.typeCount) {
      throw new BtfError(
        "BTF_BAD_TYPE_ID",
        `${this.where(id)}: reference to type ${ref}, only ${this.typeCount} types`,
      );
    }
  }

  private where(id: number): string {
    return `type ${id} (${KIND_NAMES[this.kinds[id]]})`;
  }

  /** Pass 2: all references in range. Bounded by the bytes of the type section. */
  private checkReferences(): void {
    const { dv } = this;
    for (let id = 1; id <= this.typeCount; id++) {
      const pos = this.recOff[id];
      const kind = this.kinds[id];
      const vlen = dv.getUint32(pos + 4, true) & 0xffff;
      const where = id;
      this.checkName(dv.getUint32(pos, true), where);
      if (sizeFieldIsType(kind)) this.checkRef(dv.getUint32(pos + 8, true), where);
      const data = pos + RECORD_LEN;
      switch (kind) {
        case KIND.ARRAY:
          this.checkRef(dv.getUint32(data, true), where);
          this.checkRef(dv.getUint32(data + 4, true), where);
          break;
        case KIND.STRUCT:
        case KIND.UNION:
          for (let i = 0, p = data; i < vlen; i++, p += 12) {
            this.checkName(dv.getUint32(p, true), where);
            this.checkRef(dv.getUint32(p + 4, true), where);
          }
          break;
        case KIND.ENUM:
          for (let i = 0, p = data; i < vlen; i++, p += 8) this.checkName(dv.getUint32(p, true), where);
          break;
        case KIND.ENUM64:
          for (let i = 0, p = data; i < vlen; i++, p += 12) this.checkName(dv.getUint32(p, true), where);
          break;
        case KIND.FUNC_PROTO:
          for (let i = 0, p = data; i < vlen; i++, p += 8) {
            this.checkName(dv.getUint32(p, true), where);
            this.checkRef(dv.getUint32(p + 4, true), where);
          }
          break;
        case KIND.DATASEC:
          for (let i = 0, p = data; i < vlen; i++, p += 12) this.checkRef(dv.getUint32(p, true), where);
          break;
      }
    }
  }

  /** Validates a raw number as a type id of this BTF. */
  typeId(n: number): TypeId {
    if (!Number.isInteger(n) || n < 0 || n > this.typeCount) {
      throw new BtfError("BTF_BAD_TYPE_ID", `no type ${n} (type count ${this.typeCount})`);
    }
    return n as TypeId;
  }

  /** Kind of a type without decoding it. */
  kindOf(id: TypeId): BtfKindName {
    return KIND_NAMES[this.kinds[this.typeId(id)]];
  }

  /** Name of a type without decoding it ("" for anonymous types and void). */
  nameOf(id: TypeId): string {
    this.typeId(id);
    return id === 0 ? "" : this.str(this.dv.getUint32(this.recOff[id], true));
  }

  /** Decoded type (cached). */
  type(id: TypeId): BtfType {
    return guard(() => {
      this.typeId(id);
      const hit = this.decoded[id];
      if (hit) return hit;
      const t = this.decode(id);
      this.decoded[id] = t;
      return t;
    });
  }

  /** All type ids with this name, ascending; optionally only of one kind. */
  findByName(name: string, kind?: BtfKindName): readonly TypeId[] {
    return guard(() => {
      const ids = this.names().get(name) ?? [];
      return kind === undefined ? ids : ids.filter((id) => KIND_NAMES[this.kinds[id]] === kind);
    });
  }

  /** Lowest type id with this name and kind; throws BTF_NOT_FOUND. */
  findType(name: string, kind: BtfKindName): TypeId {
    const ids = this.findByName(name, kind);
    if (ids.length === 0) throw new BtfError("BTF_NOT_FOUND", `no ${kind} named "${name}"`);
    return ids[0];
  }

  /**
   * The struct or union definition called `name` (struct preferred; forward declarations are
   * skipped). Kernels may define a few same-named local structs: the lowest id wins.
   */
  findComposite(name: string): TypeId {
    return guard(() => {
      const ids = this.names().get(name) ?? [];
      const pick = (k: number) => ids.find((id) => this.kinds[id] === k);
      const id = pick(KIND.STRUCT) ?? pick(KIND.UNION);
      if (id === undefined) throw new BtfError("BTF_NOT_FOUND", `no struct or union named "${name}"`);
      return id;
    });
  }

  /** Builds (once) the name -> ids index; bounded by typeCount. */
  private names(): Map<string, TypeId[]> {
    if (this.nameIndex) return this.nameIndex;
    const index = new Map<string, TypeId[]>();
    for (let id = 1; id <= this.typeCount; id++) {
      const off = this.dv.getUint32(this.recOff[id], true);
      if (off === 0) continue;
      const name = this.str(off);
      const list = index.get(name);
      if (list) list.push(id as TypeId);
      else index.set(name, [id as TypeId]);
    }
    this.nameIndex = index;
    return index;
  }

  /** String at a (validated) offset into the string section. */
  private str(off: number): string {
    if (off === 0) return "";
    // Terminates inside the section: its last byte is NUL (checked at parse time).
    const end = this.strTable.indexOf("\0", off);
    if (end - off > BTF_MAX_STRING) {
      throw new BtfError("BTF_BAD_STRING", `string at offset ${off} longer than ${BTF_MAX_STRING} bytes`);
    }
    return this.strTable.slice(off, end);
  }

  private decode(id: TypeId): BtfType {
    if (id === 0) return { kind: "void", id, name: "" };
    const { dv } = this;
    const pos = this.recOff[id];
    const name = this.str(dv.getUint32(pos, true));
    const info = dv.getUint32(pos + 4, true);
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    const sizeOrType = dv.getUint32(pos + 8, true);
    const ref = sizeOrType as TypeId;
    const data = pos + RECORD_LEN;
    const kind = this.kinds[id];
    switch (kind) {
      case KIND.INT: {
        const v = dv.getUint32(data, true);
        const enc = (v >>> 24) & 0x0f;
        return {
          kind: "int",
          id,
          name,
          size: sizeOrType,
          signed: (enc & 1) !== 0,
          char: (enc & 2) !== 0,
          bool: (enc & 4) !== 0,
          bitOffset: (v >>> 16) & 0xff,
          bits: v & 0xff,
        };
      }
      case KIND.PTR:
        return { kind: "ptr", id, name, type: ref };
      case KIND.ARRAY:
        return {
          kind: "array",
          id,
          name,
          elemType: dv.getUint32(data, true) as TypeId,
          indexType: dv.getUint32(data + 4, true) as TypeId,
          nelems: dv.getUint32(data + 8, true),
        };
      case KIND.STRUCT:
      case KIND.UNION: {
        const members: BtfMember[] = new Array(vlen);
        for (let i = 0, p = data; i < vlen; i++, p += 12) {
          const off = dv.getUint32(p + 8, true);
          members[i] = {
            name: this.str(dv.getUint32(p, true)),
            type: dv.getUint32(p + 4, true) as TypeId,
            bitOffset: kflag ? off & 0xffffff : off,
            bitfieldSize: kflag ? off >>> 24 : 0,
          };
        }
        const t: BtfComposite = {
          kind: kind === KIND.STRUCT ? "struct" : "union",
          id,
          name,
          size: sizeOrType,
          kindFlag: kflag,
          members,
        };
        return t;
      }
      case KIND.ENUM: {
        const values: BtfEnum["values"][number][] = new Array(vlen);
        for (let i = 0, p = data; i < vlen; i++, p += 8) {
          const raw = dv.getInt32(p + 4, true);
          values[i] = { name: this.str(dv.getUint32(p, true)), value: kflag ? raw : raw >>> 0 };
        }
        return { kind: "enum", id, name, size: sizeOrType, signed: kflag, values };
      }
      case KIND.ENUM64: {
        const values: BtfEnum64["values"][number][] = new Array(vlen);
        for (let i = 0, p = data; i < vlen; i++, p += 12) {
          const lo = BigInt(dv.getUint32(p + 4, true));
          const hi = BigInt(dv.getUint32(p + 8, true));
          const u = (hi << 32n) | lo;
          values[i] = { name: this.str(dv.getUint32(p, true)), value: kflag ? BigInt.asIntN(64, u) : u };
        }
        return { kind: "enum64", id, name, size: sizeOrType, signed: kflag, values };
      }
      case KIND.FWD:
        return { kind: "fwd", id, name, fwdKind: kflag ? "union" : "struct" };
      case KIND.TYPEDEF:
        return { kind: "typedef", id, name, type: ref };
      case KIND.VOLATILE:
        return { kind: "volatile", id, name, type: ref };
      case KIND.CONST:
        return { kind: "const", id, name, type: ref };
      case KIND.RESTRICT:
        return { kind: "restrict", id, name, type: ref };
      case KIND.TYPE_TAG:
        return { kind: "type_tag", id, name, type: ref };
      case KIND.FUNC:
        // For FUNC, vlen holds the linkage.
        return { kind: "func", id, name, type: ref, linkage: linkageName(vlen) };
      case KIND.FUNC_PROTO: {
        const params = new Array(vlen);
        for (let i = 0, p = data; i < vlen; i++, p += 8) {
          params[i] = { name: this.str(dv.getUint32(p, true)), type: dv.getUint32(p + 4, true) as TypeId };
        }
        return { kind: "func_proto", id, name, returnType: ref, params };
      }
      case KIND.VAR:
        return { kind: "var", id, name, type: ref, linkage: linkageName(dv.getUint32(data, true)) };
      case KIND.DATASEC: {
        const vars = new Array(vlen);
        for (let i = 0, p = data; i < vlen; i++, p += 12) {
          vars[i] = {
            type: dv.getUint32(p, true) as TypeId,
            offset: dv.getUint32(p + 4, true),
            size: dv.getUint32(p + 8, true),
          };
        }
        return { kind: "datasec", id, name, size: sizeOrType, vars };
      }
      case KIND.FLOAT:
        return { kind: "float", id, name, size: sizeOrType };
      case KIND.DECL_TAG:
        return {
          kind: "decl_tag",
          id,
          name,
          type: ref,
          componentIdx: dv.getInt32(data, true),
          attribute: kflag,
        };
      default:
        // Unreachable: the index pass rejected unknown kinds.
        throw new BtfError("BTF_BAD_KIND", `type ${id}: unknown kind ${kind} (max ${MAX_KIND})`);
    }
  }
}

/** Parses and validates the header and section bounds. */
export function parseHeader(bytes: Uint8Array): BtfHeader {
  if (bytes.length < HEADER_LEN)
    throw new BtfError("BTF_BAD_HEADER", `blob of ${bytes.length} bytes has no header`);
  // Record offsets are kept in a Uint32Array.
  if (bytes.length > 0xffffffff) throw new BtfError("BTF_BAD_HEADER", "blob larger than 4 GiB");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint16(0, true);
  if (magic !== BTF_MAGIC) {
    const hint = magic === 0x9feb ? " (big-endian BTF is not supported)" : "";
    throw new BtfError("BTF_BAD_MAGIC", `bad magic 0x${magic.toString(16)}${hint}`);
  }
  const version = bytes[2];
  if (version !== 1) throw new BtfError("BTF_BAD_VERSION", `unsupported BTF version ${version}`);
  const h: BtfHeader = {
    magic,
    version,
    flags: bytes[3],
    hdrLen: dv.getUint32(4, true),
    typeOff: dv.getUint32(8, true),
    typeLen: dv.getUint32(12, true),
    strOff: dv.getUint32(16, true),
    strLen: dv.getUint32(20, true),
  };
  if (h.hdrLen < HEADER_LEN || h.hdrLen > bytes.length) {
    throw new BtfError("BTF_BAD_HEADER", `header length ${h.hdrLen} out of bounds`);
  }
  const avail = bytes.length - h.hdrLen;
  // u32 + u32 < 2^33: exact in a number, no overflow.
  if (h.typeOff + h.typeLen > avail || h.strOff + h.strLen > avail) {
    throw new BtfError("BTF_BAD_SECTION", "type or string section extends past the end of the blob");
  }
  if (h.typeOff % 4 !== 0 || h.typeLen % 4 !== 0) {
    throw new BtfError("BTF_BAD_SECTION", "type section not 4-byte aligned");
  }
  const overlap = h.typeOff < h.strOff + h.strLen && h.strOff < h.typeOff + h.typeLen;
  if (overlap && h.typeLen > 0) throw new BtfError("BTF_BAD_SECTION", "type and string sections overlap");
  return h;
}

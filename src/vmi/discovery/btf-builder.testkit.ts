// Test support (not used by production code): a small BTF encoder for synthetic blobs, including
// deliberately malformed ones (raw records, bad header fields).

import { KIND } from "./btf-types.ts";

export interface MemberSpec {
  readonly name: string;
  readonly type: number;
  readonly bitOffset: number;
  /** Only meaningful with kindFlag. */
  readonly bitfieldSize?: number;
}

export interface HeaderOverrides {
  magic?: number;
  version?: number;
  hdrLen?: number;
  typeOff?: number;
  typeLen?: number;
  strOff?: number;
  strLen?: number;
}

export class BtfBuilder {
  private readonly words: number[] = [];
  private readonly strs: number[] = [0];
  private readonly strIndex = new Map<string, number>();
  private count = 0;

  /** Id the next added type will get. */
  get nextId(): number {
    return this.count + 1;
  }

  str(s: string): number {
    if (s === "") return 0;
    const hit = this.strIndex.get(s);
    if (hit !== undefined) return hit;
    const off = this.strs.length;
    for (const c of Buffer.from(s, "latin1")) this.strs.push(c);
    this.strs.push(0);
    this.strIndex.set(s, off);
    return off;
  }

  /** Appends a raw record: full control for hostile cases. Returns its id. */
  raw(
    kind: number,
    nameOff: number,
    vlen: number,
    kflag: boolean,
    sizeOrType: number,
    extra: number[] = [],
  ): number {
    const info = ((kflag ? 1 : 0) << 31) | ((kind & 0x1f) << 24) | (vlen & 0xffff);
    this.words.push(nameOff >>> 0, info >>> 0, sizeOrType >>> 0, ...extra.map((w) => w >>> 0));
    return ++this.count;
  }

  int(
    name: string,
    size: number,
    opts: { signed?: boolean; char?: boolean; bool?: boolean; bits?: number; offset?: number } = {},
  ): number {
    const enc = (opts.signed ? 1 : 0) | (opts.char ? 2 : 0) | (opts.bool ? 4 : 0);
    const v = (enc << 24) | ((opts.offset ?? 0) << 16) | (opts.bits ?? size * 8);
    return this.raw(KIND.INT, this.str(name), 0, false, size, [v]);
  }
  ptr(type: number): number {
    return this.raw(KIND.PTR, 0, 0, false, type);
  }
  array(elem: number, index: number, nelems: number): number {
    return this.raw(KIND.ARRAY, 0, 0, false, 0, [elem, index, nelems]);
  }
  composite(
    kind: "struct" | "union",
    name: string,
    size: number,
    members: MemberSpec[],
    kindFlag = false,
  ): number {
    const extra = members.flatMap((m) => [
      this.str(m.name),
      m.type,
      kindFlag ? ((m.bitfieldSize ?? 0) << 24) | (m.bitOffset & 0xffffff) : m.bitOffset,
    ]);
    return this.raw(
      kind === "struct" ? KIND.STRUCT : KIND.UNION,
      this.str(name),
      members.length,
      kindFlag,
      size,
      extra,
    );
  }
  struct(name: string, size: number, members: MemberSpec[], kindFlag = false): number {
    return this.composite("struct", name, size, members, kindFlag);
  }
  union(name: string, size: number, members: MemberSpec[], kindFlag = false): number {
    return this.composite("union", name, size, members, kindFlag);
  }
  enum(name: string, size: number, values: [string, number][], signed = false): number {
    const extra = values.flatMap(([n, v]) => [this.str(n), v]);
    return this.raw(KIND.ENUM, this.str(name), values.length, signed, size, extra);
  }
  enum64(name: string, size: number, values: [string, bigint][], signed = false): number {
    const extra = values.flatMap(([n, v]) => {
      const u = BigInt.asUintN(64, v);
      return [this.str(n), Number(u & 0xffffffffn), Number(u >> 32n)];
    });
    return this.raw(KIND.ENUM64, this.str(name), values.length, signed, size, extra);
  }
  fwd(name: string, union = false): number {
    return this.raw(KIND.FWD, this.str(name), 0, union, 0);
  }
  typedef(name: string, type: number): number {
    return this.raw(KIND.TYPEDEF, this.str(name), 0, false, type);
  }
  volatile(type: number): number {
    return this.raw(KIND.VOLATILE, 0, 0, false, type);
  }
  const(type: number): number {
    return this.raw(KIND.CONST, 0, 0, false, type);
  }
  restrict(type: number): number {
    return this.raw(KIND.RESTRICT, 0, 0, false, type);
  }
  func(name: string, proto: number, linkage = 1): number {
    return this.raw(KIND.FUNC, this.str(name), linkage, false, proto);
  }
  funcProto(ret: number, params: [string, number][]): number {
    const extra = params.flatMap(([n, t]) => [this.str(n), t]);
    return this.raw(KIND.FUNC_PROTO, 0, params.length, false, ret, extra);
  }
  var(name: string, type: number, linkage = 1): number {
    return this.raw(KIND.VAR, this.str(name), 0, false, type, [linkage]);
  }
  datasec(name: string, size: number, vars: [number, number, number][]): number {
    return this.raw(KIND.DATASEC, this.str(name), vars.length, false, size, vars.flat());
  }
  float(name: string, size: number): number {
    return this.raw(KIND.FLOAT, this.str(name), 0, false, size);
  }
  declTag(name: string, type: number, componentIdx: number, attribute = false): number {
    return this.raw(KIND.DECL_TAG, this.str(name), 0, attribute, type, [componentIdx]);
  }
  typeTag(name: string, type: number): number {
    return this.raw(KIND.TYPE_TAG, this.str(name), 0, false, type);
  }

  /** Serializes: header, type section, string section (in that order, like pahole). */
  build(h: HeaderOverrides = {}): Uint8Array {
    const typeLen = this.words.length * 4;
    const strLen = this.strs.length;
    const hdrLen = 24;
    const out = new Uint8Array(hdrLen + typeLen + strLen);
    const dv = new DataView(out.buffer);
    dv.setUint16(0, h.magic ?? 0xeb9f, true);
    out[2] = h.version ?? 1;
    out[3] = 0;
    dv.setUint32(4, h.hdrLen ?? hdrLen, true);
    dv.setUint32(8, h.typeOff ?? 0, true);
    dv.setUint32(12, h.typeLen ?? typeLen, true);
    dv.setUint32(16, h.strOff ?? typeLen, true);
    dv.setUint32(20, h.strLen ?? strLen, true);
    this.words.forEach((w, i) => {
      dv.setUint32(hdrLen + i * 4, w, true);
    });
    out.set(this.strs, hdrLen + typeLen);
    return out;
  }
}

/**
 * A small kernel-like type graph: ints, list_head (self-referential), a task-like struct with
 * an anonymous union holding a nested anonymous struct, kind_flag bitfields, typedefs, arrays.
 */
export function sampleBtf(): { bytes: Uint8Array; ids: Record<string, number> } {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  const i32 = b.int("int", 4, { signed: true });
  const u64 = b.int("long unsigned int", 8);
  const chr = b.int("char", 1, { char: true });
  const listHead = b.nextId + 1;
  const listPtr = b.ptr(listHead);
  b.struct("list_head", 16, [
    { name: "next", type: listPtr, bitOffset: 0 },
    { name: "prev", type: listPtr, bitOffset: 64 },
  ]);
  const pidT = b.typedef("pid_t", i32);
  const constPid = b.const(pidT);
  const comm = b.array(chr, u32, 16);
  const pgdT = b.struct("pgd_t", 8, [{ name: "pgd", type: u64, bitOffset: 0 }]);
  const pgdPtr = b.ptr(pgdT);
  const inner = b.struct("", 16, [
    { name: "pgd", type: pgdPtr, bitOffset: 0 },
    { name: "flags", type: u64, bitOffset: 64 },
  ]);
  const anonUnion = b.union("", 16, [
    { name: "", type: inner, bitOffset: 0 },
    { name: "raw", type: u64, bitOffset: 0 },
  ]);
  const task = b.struct(
    "task",
    64,
    [
      { name: "state", type: u32, bitOffset: 0 },
      { name: "on_cpu", type: u32, bitOffset: 32, bitfieldSize: 1 },
      { name: "prio", type: u32, bitOffset: 33, bitfieldSize: 7 },
      { name: "tasks", type: listHead, bitOffset: 64 },
      { name: "pid", type: constPid, bitOffset: 192 },
      { name: "", type: anonUnion, bitOffset: 256 },
      { name: "comm", type: comm, bitOffset: 384 },
    ],
    true,
  );
  const oldBits = b.int("unsigned int", 4, { bits: 3, offset: 2 });
  const oldStyle = b.struct("old_style", 4, [{ name: "f", type: oldBits, bitOffset: 4 }]);
  const enm = b.enum(
    "color",
    4,
    [
      ["RED", 0],
      ["NEG", -1],
    ],
    true,
  );
  const enm64 = b.enum64("big", 8, [["HUGE", 0xffff_ffff_ffffn]]);
  const fwd = b.fwd("opaque", true);
  const vol = b.volatile(u32);
  const res = b.restrict(listPtr);
  const proto = b.funcProto(i32, [
    ["a", u32],
    ["", 0],
  ]);
  const func = b.func("do_thing", proto, 0);
  const v = b.var("jiffies", u64, 1);
  const sec = b.datasec(".data", 8, [[v, 0, 8]]);
  const flt = b.float("double", 8);
  const tag = b.declTag("bpf_kfunc", func, -1);
  const ttag = b.typeTag("percpu", u32);
  const ttPtr = b.ptr(ttag);
  return {
    bytes: b.build(),
    ids: {
      u32,
      i32,
      u64,
      chr,
      listPtr,
      listHead,
      pidT,
      constPid,
      comm,
      pgdT,
      pgdPtr,
      inner,
      anonUnion,
      task,
      oldBits,
      oldStyle,
      enm,
      enm64,
      fwd,
      vol,
      res,
      proto,
      func,
      v,
      sec,
      flt,
      tag,
      ttag,
      ttPtr,
    },
  };
}

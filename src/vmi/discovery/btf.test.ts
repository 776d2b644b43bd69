import assert from "node:assert/strict";
import { test } from "node:test";
import { BtfError } from "../errors.ts";
import { Btf } from "./btf.ts";
import { BtfBuilder, sampleBtf } from "./btf-builder.testkit.ts";
import { fieldLocation, memberLocation, offsetOf, resolveAlias, sizeOf } from "./btf-layout.ts";
import { KIND } from "./btf-types.ts";

function expectBtfError(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof BtfError, `expected BtfError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

test("decodes every kind", () => {
  const { bytes, ids } = sampleBtf();
  const btf = Btf.parse(bytes);
  const t = (n: number) => btf.type(btf.typeId(n));
  assert.deepEqual(t(0), { kind: "void", id: 0, name: "" });
  assert.deepEqual(t(ids.i32), {
    kind: "int",
    id: ids.i32,
    name: "int",
    size: 4,
    signed: true,
    char: false,
    bool: false,
    bitOffset: 0,
    bits: 32,
  });
  const chr = t(ids.chr);
  assert.ok(chr.kind === "int" && chr.char && !chr.signed && chr.bits === 8);
  assert.deepEqual(t(ids.listPtr), { kind: "ptr", id: ids.listPtr, name: "", type: ids.listHead });
  assert.deepEqual(t(ids.comm), {
    kind: "array",
    id: ids.comm,
    name: "",
    elemType: ids.chr,
    indexType: ids.u32,
    nelems: 16,
  });
  const task = t(ids.task);
  assert.ok(task.kind === "struct");
  assert.equal(task.kindFlag, true);
  assert.deepEqual(task.members[2], { name: "prio", type: ids.u32, bitOffset: 33, bitfieldSize: 7 });
  assert.equal(t(ids.anonUnion).kind, "union");
  assert.deepEqual(t(ids.enm), {
    kind: "enum",
    id: ids.enm,
    name: "color",
    size: 4,
    signed: true,
    values: [
      { name: "RED", value: 0 },
      { name: "NEG", value: -1 },
    ],
  });
  assert.deepEqual(t(ids.enm64), {
    kind: "enum64",
    id: ids.enm64,
    name: "big",
    size: 8,
    signed: false,
    values: [{ name: "HUGE", value: 0xffff_ffff_ffffn }],
  });
  assert.deepEqual(t(ids.fwd), { kind: "fwd", id: ids.fwd, name: "opaque", fwdKind: "union" });
  assert.deepEqual(t(ids.pidT), { kind: "typedef", id: ids.pidT, name: "pid_t", type: ids.i32 });
  assert.equal(t(ids.constPid).kind, "const");
  assert.equal(t(ids.vol).kind, "volatile");
  assert.equal(t(ids.res).kind, "restrict");
  assert.deepEqual(t(ids.proto), {
    kind: "func_proto",
    id: ids.proto,
    name: "",
    returnType: ids.i32,
    params: [
      { name: "a", type: ids.u32 },
      { name: "", type: 0 },
    ],
  });
  assert.deepEqual(t(ids.func), {
    kind: "func",
    id: ids.func,
    name: "do_thing",
    type: ids.proto,
    linkage: "static",
  });
  assert.deepEqual(t(ids.v), { kind: "var", id: ids.v, name: "jiffies", type: ids.u64, linkage: "global" });
  assert.deepEqual(t(ids.sec), {
    kind: "datasec",
    id: ids.sec,
    name: ".data",
    size: 8,
    vars: [{ type: ids.v, offset: 0, size: 8 }],
  });
  assert.deepEqual(t(ids.flt), { kind: "float", id: ids.flt, name: "double", size: 8 });
  assert.deepEqual(t(ids.tag), {
    kind: "decl_tag",
    id: ids.tag,
    name: "bpf_kfunc",
    type: ids.func,
    componentIdx: -1,
    attribute: false,
  });
  assert.deepEqual(t(ids.ttag), { kind: "type_tag", id: ids.ttag, name: "percpu", type: ids.u32 });
  assert.equal(btf.kindOf(btf.typeId(ids.task)), "struct");
  assert.equal(btf.nameOf(btf.typeId(ids.task)), "task");
});

test("lookup by name and kind", () => {
  const { bytes, ids } = sampleBtf();
  const btf = Btf.parse(bytes);
  assert.deepEqual(btf.findByName("unsigned int"), [ids.u32, ids.oldBits]);
  assert.deepEqual(btf.findByName("unsigned int", "int"), [ids.u32, ids.oldBits]);
  assert.deepEqual(btf.findByName("unsigned int", "struct"), []);
  assert.equal(btf.findType("pid_t", "typedef"), ids.pidT);
  assert.equal(btf.findComposite("list_head"), ids.listHead);
  expectBtfError(() => btf.findType("nope", "struct"), "BTF_NOT_FOUND");
  expectBtfError(() => btf.findComposite("opaque"), "BTF_NOT_FOUND"); // only a FWD
  expectBtfError(() => btf.typeId(btf.typeCount + 1), "BTF_BAD_TYPE_ID");
  expectBtfError(() => btf.typeId(-1), "BTF_BAD_TYPE_ID");
  expectBtfError(() => btf.typeId(1.5), "BTF_BAD_TYPE_ID");
});

test("sizes resolve through typedef/const/volatile/array/var chains", () => {
  const { bytes, ids } = sampleBtf();
  const btf = Btf.parse(bytes);
  const size = (n: number) => sizeOf(btf, btf.typeId(n));
  assert.equal(size(ids.constPid), 4);
  assert.equal(size(ids.comm), 16);
  assert.equal(size(ids.listPtr), 8);
  assert.equal(size(ids.task), 64);
  assert.equal(size(ids.vol), 4);
  assert.equal(size(ids.v), 8);
  assert.equal(size(ids.ttag), 4);
  assert.equal(resolveAlias(btf, btf.typeId(ids.constPid)), ids.i32);
  expectBtfError(() => size(ids.func), "BTF_NO_SIZE");
  expectBtfError(() => size(ids.fwd), "BTF_NO_SIZE");
  expectBtfError(() => size(0), "BTF_NO_SIZE");
});

test("member paths: nested structs, anonymous unions/structs, bitfields", () => {
  const { bytes, ids } = sampleBtf();
  const btf = Btf.parse(bytes);
  assert.deepEqual(fieldLocation(btf, "task.tasks.next"), {
    kind: "field",
    type: ids.listPtr,
    byteOffset: 8,
    bitOffset: 64,
  });
  assert.deepEqual(fieldLocation(btf, "task.tasks.prev"), {
    kind: "field",
    type: ids.listPtr,
    byteOffset: 16,
    bitOffset: 128,
  });
  // pgd is inside an anonymous struct inside an anonymous union.
  assert.deepEqual(fieldLocation(btf, "task.pgd"), {
    kind: "field",
    type: ids.pgdPtr,
    byteOffset: 32,
    bitOffset: 256,
  });
  assert.equal(offsetOf(btf, "task.flags"), 40);
  assert.equal(offsetOf(btf, "task.raw"), 32);
  assert.equal(offsetOf(btf, "task.pid"), 24);
  assert.equal(offsetOf(btf, "task.comm"), 48);
  assert.deepEqual(fieldLocation(btf, "task.prio"), {
    kind: "bitfield",
    type: ids.u32,
    byteOffset: 4,
    bitOffset: 33,
    bitSize: 7,
  });
  // Old-style bitfield: no kind_flag, the int type is 3 bits wide at int offset 2.
  assert.deepEqual(fieldLocation(btf, "old_style.f"), {
    kind: "bitfield",
    type: ids.oldBits,
    byteOffset: 0,
    bitOffset: 6,
    bitSize: 3,
  });
  expectBtfError(() => offsetOf(btf, "task.prio"), "BTF_BAD_LAYOUT");
  expectBtfError(() => fieldLocation(btf, "task.nope"), "BTF_NOT_FOUND");
  expectBtfError(() => fieldLocation(btf, "task.state.x"), "BTF_NOT_COMPOSITE");
  // Pointers are not followed: that would need a memory read.
  expectBtfError(() => fieldLocation(btf, "task.pgd.pgd"), "BTF_NOT_COMPOSITE");
  expectBtfError(() => fieldLocation(btf, "task"), "BTF_BAD_PATH");
  expectBtfError(() => fieldLocation(btf, "task..x"), "BTF_BAD_PATH");
  expectBtfError(() => fieldLocation(btf, "task.a-b"), "BTF_BAD_PATH");
  expectBtfError(() => memberLocation(btf, btf.typeId(ids.u32), "x"), "BTF_NOT_COMPOSITE");
});

test("header and section validation", () => {
  const b = new BtfBuilder();
  b.int("int", 4, { signed: true });
  const good = b.build();
  assert.equal(Btf.parse(good).typeCount, 1);
  expectBtfError(() => Btf.parse(good.subarray(0, 10)), "BTF_BAD_HEADER");
  expectBtfError(() => Btf.parse(b.build({ magic: 0x9feb })), "BTF_BAD_MAGIC");
  expectBtfError(() => Btf.parse(b.build({ version: 2 })), "BTF_BAD_VERSION");
  expectBtfError(() => Btf.parse(b.build({ hdrLen: 8 })), "BTF_BAD_HEADER");
  expectBtfError(() => Btf.parse(b.build({ hdrLen: 0xffffffff })), "BTF_BAD_HEADER");
  expectBtfError(() => Btf.parse(b.build({ typeLen: 0xfffffff0 })), "BTF_BAD_SECTION");
  expectBtfError(() => Btf.parse(b.build({ strLen: 0xffffffff })), "BTF_BAD_SECTION");
  expectBtfError(() => Btf.parse(b.build({ typeOff: 2 })), "BTF_BAD_SECTION");
  expectBtfError(() => Btf.parse(b.build({ strOff: 0 })), "BTF_BAD_SECTION");
  expectBtfError(() => Btf.parse(good.subarray(0, good.length - 1)), "BTF_BAD_SECTION");
});

test("record validation: truncation, unknown kinds, dangling references, bad names", () => {
  const withRaw = (f: (b: BtfBuilder) => void, h = {}) => {
    const b = new BtfBuilder();
    b.int("int", 4);
    f(b);
    return b.build(h);
  };
  // Struct claims 3 members but the section ends after one.
  expectBtfError(
    () => Btf.parse(withRaw((b) => b.raw(KIND.STRUCT, 0, 3, false, 8, [0, 1, 0]))),
    "BTF_TRUNCATED",
  );
  expectBtfError(() => Btf.parse(withRaw((b) => b.raw(0, 0, 0, false, 0))), "BTF_BAD_KIND");
  expectBtfError(() => Btf.parse(withRaw((b) => b.raw(20, 0, 0, false, 0))), "BTF_BAD_KIND");
  expectBtfError(() => Btf.parse(withRaw((b) => b.ptr(99))), "BTF_BAD_TYPE_ID");
  expectBtfError(() => Btf.parse(withRaw((b) => b.array(1, 77, 3))), "BTF_BAD_TYPE_ID");
  expectBtfError(
    () => Btf.parse(withRaw((b) => b.struct("s", 4, [{ name: "x", type: 5, bitOffset: 0 }]))),
    "BTF_BAD_TYPE_ID",
  );
  expectBtfError(() => Btf.parse(withRaw((b) => b.datasec(".d", 4, [[9, 0, 4]]))), "BTF_BAD_TYPE_ID");
  expectBtfError(
    () => Btf.parse(withRaw((b) => b.raw(KIND.TYPEDEF, 0xfffff, 0, false, 1))),
    "BTF_BAD_STRING",
  );
  expectBtfError(
    () => Btf.parse(withRaw((b) => b.raw(KIND.ENUM, 0, 1, false, 4, [0xffff, 0]))),
    "BTF_BAD_STRING",
  );
  // A record header cut in half.
  const b = new BtfBuilder();
  b.int("int", 4);
  const cut = b.build({ typeLen: 8, strOff: 16 });
  expectBtfError(() => Btf.parse(cut), "BTF_TRUNCATED");
  expectBtfError(() => Btf.parse(withRaw(() => {}, { strLen: 3 })), "BTF_BAD_STRING");
});

test("hostile graphs: typedef cycles, self-containing anonymous members, huge arrays", () => {
  const b = new BtfBuilder();
  const a = b.nextId;
  b.typedef("a", a + 1);
  b.typedef("b", a); // a -> b -> a
  const selfAnon = b.nextId;
  b.struct("loop", 8, [{ name: "", type: selfAnon, bitOffset: 0 }]); // contains itself anonymously
  const u8 = b.int("u8", 1);
  const big = b.array(u8, u8, 0xffffffff);
  const bigger = b.array(big, u8, 0xffffffff);
  const huge = b.array(bigger, u8, 0xffffffff);
  b.struct("holder", 8, [{ name: "x", type: a, bitOffset: 0 }]);
  const btf = Btf.parse(b.build());
  expectBtfError(() => sizeOf(btf, btf.typeId(a)), "BTF_DEPTH_EXCEEDED");
  expectBtfError(() => resolveAlias(btf, btf.typeId(a)), "BTF_DEPTH_EXCEEDED");
  expectBtfError(() => fieldLocation(btf, "loop.x"), "BTF_DEPTH_EXCEEDED");
  assert.equal(sizeOf(btf, btf.typeId(big)), 0xffffffff);
  expectBtfError(() => sizeOf(btf, btf.typeId(huge)), "BTF_BAD_LAYOUT");
  expectBtfError(() => fieldLocation(btf, "holder.x.y"), "BTF_DEPTH_EXCEEDED");
});

test("hostile graphs: a wide DAG of anonymous unions hits the work budget, not a hang", () => {
  // Each level is a union of 64 anonymous members of the level below: 64^6 paths.
  const b = new BtfBuilder();
  let level = b.int("int", 4);
  for (let d = 0; d < 6; d++) {
    const members = Array.from({ length: 64 }, () => ({ name: "", type: level, bitOffset: 0 }));
    level = b.union("", 4, members);
  }
  b.struct("top", 4, [{ name: "", type: level, bitOffset: 0 }]);
  const btf = Btf.parse(b.build());
  const t0 = performance.now();
  expectBtfError(() => fieldLocation(btf, "top.missing"), "BTF_BUDGET_EXCEEDED");
  assert.ok(performance.now() - t0 < 2000);
});

test("maxTypes option bounds the type count", () => {
  const { bytes } = sampleBtf();
  expectBtfError(() => Btf.parse(bytes, { maxTypes: 3 }), "BTF_TOO_MANY_TYPES");
  expectBtfError(() => Btf.parse(bytes, { maxTypes: -1 }), "BTF_TOO_MANY_TYPES");
  assert.ok(Btf.parse(bytes, { maxTypes: 1000 }).typeCount > 3);
});

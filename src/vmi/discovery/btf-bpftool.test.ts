// Cross-checks the BTF parser against bpftool (the kernel tree's own BTF dumper) on this
// machine's kernel BTF: every type's kind, name and kind-specific fields, every struct/union
// member, and member-path lookups (including anonymous members) for named + sampled structs.
// Requires bpftool and /sys/kernel/btf/vmlinux; a missing tool is a failure, not a skip.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { Btf } from "./btf.ts";
import { fieldLocation, memberLocation, sizeOf } from "./btf-layout.ts";
import type { BtfType } from "./btf-types.ts";

const VMLINUX = "/sys/kernel/btf/vmlinux";

interface RefType {
  id: number;
  kind: string;
  name: string;
  attrs: Map<string, string>;
  items: string[];
}

function runBpftool(): string {
  try {
    return execFileSync("bpftool", ["btf", "dump", "file", VMLINUX, "format", "raw"], {
      encoding: "utf8",
      maxBuffer: 512 * 1024 * 1024,
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      assert.fail(
        "bpftool is not installed: install it (Debian: apt-get install bpftool; scripts/ensure-deps.sh does)",
      );
    }
    throw e;
  }
}

const HEAD = /^\[(\d+)\] ([A-Z_0-9]+) '([^']*)'(.*)$/;
const ATTR = /([a-z_]+)=([^ ,]+)/g;

function parseRaw(text: string): Map<number, RefType> {
  const out = new Map<number, RefType>();
  let cur: RefType | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const m = HEAD.exec(line);
    if (m) {
      const attrs = new Map<string, string>();
      for (const a of m[4].matchAll(ATTR)) attrs.set(a[1], a[2]);
      cur = { id: Number(m[1]), kind: m[2], name: m[3] === "(anon)" ? "" : m[3], attrs, items: [] };
      out.set(cur.id, cur);
    } else {
      assert.ok(cur && line.startsWith("\t"), `unexpected bpftool line: ${line}`);
      cur.items.push(line.slice(1));
    }
  }
  return out;
}

const ITEM_NAMED = /^'([^']*)' (.*)$/;
function itemAttrs(item: string): { name: string; attrs: Map<string, string> } {
  const m = ITEM_NAMED.exec(item);
  const rest = m ? m[2] : item;
  const attrs = new Map<string, string>();
  for (const a of rest.matchAll(ATTR)) attrs.set(a[1], a[2]);
  const name = m ? (m[1] === "(anon)" ? "" : m[1]) : "";
  return { name, attrs };
}

const num = (s: string | undefined) => {
  assert.ok(s !== undefined, "missing attribute");
  return Number(s);
};

/** Compares one of our decoded types with bpftool's line(s); returns mismatch descriptions. */
function compare(t: BtfType, r: RefType): string[] {
  const bad: string[] = [];
  const eq = (what: string, ours: unknown, theirs: unknown) => {
    if (ours !== theirs)
      bad.push(`[${r.id}] ${r.kind} ${r.name} ${what}: ours ${String(ours)} bpftool ${String(theirs)}`);
  };
  eq("kind", t.kind.toUpperCase(), r.kind);
  eq("name", t.name, r.name);
  const a = r.attrs;
  switch (t.kind) {
    case "int": {
      eq("size", t.size, num(a.get("size")));
      eq("bits_offset", t.bitOffset, num(a.get("bits_offset")));
      eq("nr_bits", t.bits, num(a.get("nr_bits")));
      const enc = t.signed ? "SIGNED" : t.char ? "CHAR" : t.bool ? "BOOL" : "(none)";
      eq("encoding", enc, a.get("encoding"));
      break;
    }
    case "ptr":
    case "typedef":
    case "volatile":
    case "const":
    case "restrict":
    case "type_tag":
      eq("type_id", t.type, num(a.get("type_id")));
      break;
    case "array":
      eq("type_id", t.elemType, num(a.get("type_id")));
      eq("index_type_id", t.indexType, num(a.get("index_type_id")));
      eq("nr_elems", t.nelems, num(a.get("nr_elems")));
      break;
    case "struct":
    case "union":
      eq("size", t.size, num(a.get("size")));
      eq("vlen", t.members.length, num(a.get("vlen")));
      t.members.forEach((m, i) => {
        const it = itemAttrs(r.items[i] ?? "");
        eq(`member ${i} name`, m.name, it.name);
        eq(`member ${m.name} type_id`, m.type, num(it.attrs.get("type_id")));
        eq(`member ${m.name} bits_offset`, m.bitOffset, num(it.attrs.get("bits_offset")));
        eq(`member ${m.name} bitfield_size`, m.bitfieldSize, Number(it.attrs.get("bitfield_size") ?? 0));
      });
      break;
    case "enum":
    case "enum64":
      eq("size", t.size, num(a.get("size")));
      eq("vlen", t.values.length, num(a.get("vlen")));
      eq("encoding", t.signed ? "SIGNED" : "UNSIGNED", a.get("encoding"));
      t.values.forEach((v, i) => {
        const it = itemAttrs(r.items[i] ?? "");
        eq(`value ${i} name`, v.name, it.name);
        const val = (it.attrs.get("val") ?? "").replace(/U?LL$/, "");
        eq(`value ${v.name}`, String(v.value), String(BigInt(val)));
      });
      break;
    case "fwd":
      eq("fwd_kind", t.fwdKind, a.get("fwd_kind"));
      break;
    case "func":
      eq("type_id", t.type, num(a.get("type_id")));
      eq("linkage", t.linkage, a.get("linkage"));
      break;
    case "func_proto":
      eq("ret_type_id", t.returnType, num(a.get("ret_type_id")));
      eq("vlen", t.params.length, num(a.get("vlen")));
      t.params.forEach((p, i) => {
        const it = itemAttrs(r.items[i] ?? "");
        eq(`param ${i} name`, p.name, it.name);
        eq(`param ${i} type_id`, p.type, num(it.attrs.get("type_id")));
      });
      break;
    case "var":
      eq("type_id", t.type, num(a.get("type_id")));
      eq("linkage", t.linkage, a.get("linkage"));
      break;
    case "datasec":
      eq("size", t.size, num(a.get("size")));
      eq("vlen", t.vars.length, num(a.get("vlen")));
      t.vars.forEach((v, i) => {
        const it = itemAttrs(r.items[i] ?? "");
        eq(`var ${i} type_id`, v.type, num(it.attrs.get("type_id")));
        eq(`var ${i} offset`, v.offset, num(it.attrs.get("offset")));
        eq(`var ${i} size`, v.size, num(it.attrs.get("size")));
      });
      break;
    case "float":
      eq("size", t.size, num(a.get("size")));
      break;
    case "decl_tag":
      eq("type_id", t.type, num(a.get("type_id")));
      eq("component_idx", t.componentIdx, num(a.get("component_idx")));
      break;
    case "void":
      bad.push("void has no bpftool line");
      break;
  }
  return bad;
}

/** Reference member resolution over bpftool's data: name -> absolute bit offset, via anon members. */
function refMembers(
  ref: Map<number, RefType>,
  id: number,
  base: number,
  out: Map<string, number>,
  depth = 0,
): void {
  let r = ref.get(id);
  // Look through typedefs/qualifiers like the parser does.
  for (let i = 0; r && r.kind !== "STRUCT" && r.kind !== "UNION" && i < 32; i++) {
    if (!["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"].includes(r.kind)) return;
    r = ref.get(num(r.attrs.get("type_id")));
  }
  if (!r || (r.kind !== "STRUCT" && r.kind !== "UNION") || depth > 16) return;
  for (const item of r.items) {
    const it = itemAttrs(item);
    const off = base + num(it.attrs.get("bits_offset"));
    if (it.name === "") refMembers(ref, num(it.attrs.get("type_id")), off, out, depth + 1);
    else if (!out.has(it.name)) out.set(it.name, off);
  }
}

const IMPORTANT = [
  "task_struct",
  "mm_struct",
  "list_head",
  "hlist_head",
  "hlist_node",
  "module",
  "cred",
  "file",
  "inode",
  "dentry",
  "super_block",
  "sk_buff",
  "sock",
  "socket",
  "net_device",
  "files_struct",
  "fdtable",
  "fs_struct",
  "path",
  "vfsmount",
  "qstr",
  "pid",
  "upid",
  "signal_struct",
  "vm_area_struct",
  "page",
  "kobject",
  "uts_namespace",
  "new_utsname",
  "nsproxy",
  "thread_struct",
  "rb_node",
  "rb_root",
  "maple_tree",
  "bpf_prog",
  "sock_common",
  "inet_sock",
  "tcp_sock",
  "pt_regs",
  "timer_list",
];

let parsed: { btf: Btf; parseMs: number } | undefined;
function loadBtf() {
  if (parsed) return parsed;
  assert.ok(existsSync(VMLINUX), `${VMLINUX} missing: needs a kernel built with CONFIG_DEBUG_INFO_BTF`);
  const bytes = readFileSync(VMLINUX);
  const t0 = performance.now();
  const btf = Btf.parse(bytes);
  parsed = { btf, parseMs: performance.now() - t0 };
  return parsed;
}

let reference: Map<number, RefType> | undefined;
function load() {
  reference ??= parseRaw(runBpftool());
  return { btf: loadBtf().btf, ref: reference };
}

test("parses this machine's kernel BTF quickly", (t) => {
  const { btf, parseMs } = loadBtf();
  const t0 = performance.now();
  btf.findComposite("task_struct");
  const indexMs = performance.now() - t0;
  t.diagnostic(`types=${btf.typeCount} parse=${parseMs.toFixed(1)}ms name-index=${indexMs.toFixed(1)}ms`);
  // Generous bound for a loaded CI machine; typical is ~30-60 ms parse + ~50-120 ms index.
  assert.ok(parseMs + indexMs < 2000, `parse took ${parseMs} + ${indexMs} ms`);
});

test("type count matches bpftool", () => {
  const { btf, ref } = load();
  assert.equal(btf.typeCount, ref.size);
});

test("every type matches bpftool (kind, name, fields, members)", () => {
  const { btf, ref } = load();
  const bad: string[] = [];
  for (let id = 1; id <= btf.typeCount; id++) {
    const r = ref.get(id);
    if (!r) {
      bad.push(`bpftool has no type ${id}`);
      continue;
    }
    bad.push(...compare(btf.type(btf.typeId(id)), r));
    if (bad.length > 20) break;
  }
  assert.deepEqual(bad, []);
});

test("named and sampled structs: sizes and member paths match bpftool", () => {
  const { btf, ref } = load();
  const structs = [...ref.values()].filter((r) => r.kind === "STRUCT" && r.name !== "");
  // Deterministic sample spread over the whole id range, plus the structs a monitor needs.
  const step = Math.max(1, Math.floor(structs.length / 60));
  const sample = structs.filter((_, i) => i % step === 0).map((r) => r.name);
  const names = [...new Set([...IMPORTANT, ...sample])];
  let checkedStructs = 0;
  let checkedPaths = 0;
  for (const name of names) {
    const id = btf.findComposite(name);
    const r = ref.get(id);
    assert.ok(r, `bpftool lacks ${name}`);
    assert.equal(r.name, name);
    assert.equal(sizeOf(btf, id), num(r.attrs.get("size")), `${name} size`);
    const expected = new Map<string, number>();
    refMembers(ref, id, 0, expected);
    for (const [member, bits] of expected) {
      const loc = memberLocation(btf, id, member);
      assert.equal(loc.bitOffset, bits, `${name}.${member} bit offset`);
      checkedPaths++;
    }
    checkedStructs++;
  }
  assert.ok(checkedStructs >= 50, `only ${checkedStructs} structs checked`);
  assert.ok(checkedPaths > 1000, `only ${checkedPaths} member paths checked`);
});

test("well-known nested paths resolve through anonymous members and into member structs", () => {
  const { btf, ref } = load();
  const expectBits = (root: string, chain: string[]) => {
    // Resolve by hand over bpftool's data: each step through refMembers of the member's type.
    let id = btf.findComposite(root) as number;
    let bits = 0;
    for (const part of chain) {
      const m = new Map<string, number>();
      refMembers(ref, id, 0, m);
      const off = m.get(part);
      assert.ok(off !== undefined, `${root}: no ${part}`);
      bits += off;
      // Find the member's type id by scanning again with types.
      id = memberLocation(btf, btf.typeId(id), part).type;
    }
    return bits;
  };
  for (const p of ["task_struct.tasks.next", "task_struct.tasks.prev", "mm_struct.pgd", "task_struct.comm"]) {
    const [root, ...chain] = p.split(".");
    const loc = fieldLocation(btf, p);
    assert.equal(loc.kind, "field");
    assert.equal(loc.bitOffset, expectBits(root, chain), p);
  }
  assert.equal(fieldLocation(btf, "list_head.prev").byteOffset, 8);
});

// A PlanetLab trace file's lines: the plain form (digits, LF or CRLF) and everything else
// the general rule accepts give the values Number() gives; bad lines are named.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { loadPlanetlabFolder, PLANETLAB_SAMPLES } from "./planetlab.ts";

const dir = mkdtempSync(join(tmpdir(), "nestcloud-trace-format-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let folders = 0;

/** The 288 samples of a one-file trace folder holding `text`. */
function samples(text: string): number[] {
  const f = join(dir, `t${folders++}`);
  mkdirSync(f);
  writeFileSync(join(f, "vm"), text);
  return Array.from(loadPlanetlabFolder(f).data);
}

/** `head` followed by its last value up to 288 samples (short files hold their last value). */
const padded = (...head: number[]) => [
  ...head,
  ...Array(PLANETLAB_SAMPLES - head.length).fill(head[head.length - 1]),
];

test("plain digit lines, LF or CRLF, with or without a final newline", () => {
  assert.deepEqual(samples("5\n60\n100\n"), padded(5, 60, 100));
  assert.deepEqual(samples("5\r\n60\r\n100"), padded(5, 60, 100));
  assert.deepEqual(samples("\n\n007\n\n0\n"), padded(7, 0));
});

test("other forms Number() reads as integers 0..100 give the same values", () => {
  assert.deepEqual(samples("  5\n\t6 \n"), padded(5, 6));
  assert.deepEqual(samples("1e1\n0x10\n+5\n5.0\n-0\n"), padded(10, 16, 5, 5, 0));
  assert.deepEqual(samples("\uFEFF7\r\r\n8\n"), padded(7, 8));
});

test("only the first 288 values count; what follows them is not read", () => {
  const values = Array.from({ length: 300 }, (_, i) => i % 101);
  assert.deepEqual(samples(`${values.join("\n")}\nnot a number\n`), values.slice(0, PLANETLAB_SAMPLES));
});

test("a bad line is named with its number, in either form", () => {
  assert.throws(() => samples("5\n101\n"), /vm:2: expected an integer CPU percent 0\.\.100, got "101"/);
  assert.throws(() => samples("5\r\n6\rx\n"), /vm:2: expected an integer CPU percent 0\.\.100, got "6\rx"/);
  assert.throws(() => samples("5\n\nabc\n"), /vm:3: expected an integer CPU percent 0\.\.100, got "abc"/);
  assert.throws(() => samples("\n\n"), /vm: empty trace file/);
});

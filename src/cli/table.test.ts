// plainTable draws what cli-table3 draws (default characters, no colours), or declines.
import assert from "node:assert/strict";
import { test } from "node:test";
import Table from "cli-table3";
import fc from "fast-check";
import { plainTable } from "./table.ts";

function cliTable3(head: string[], rows: string[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r);
  return t.toString();
}

test("same drawing as cli-table3 for one-line printable ASCII cells", () => {
  const cell = fc.string({ unit: fc.constantFrom(..." abcxyzXYZ019-_.:,()|[]*%/\\'\""), maxLength: 12 });
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 6 })
        .chain((cols) =>
          fc.tuple(
            fc.array(cell, { minLength: cols, maxLength: cols }),
            fc.array(fc.array(cell, { minLength: cols, maxLength: cols }), { maxLength: 8 }),
          ),
        ),
      ([head, rows]) => {
        assert.equal(plainTable(head, rows), cliTable3(head, rows));
      },
    ),
    { numRuns: 300 },
  );
});

test("declines what it does not draw like cli-table3: wide, control or multi-line cells, no header", () => {
  assert.equal(plainTable(["id"], [["日本"]]), undefined);
  assert.equal(plainTable(["id"], [["a\nb"]]), undefined);
  assert.equal(plainTable(["id"], [["\u001b[1mx"]]), undefined);
  assert.equal(plainTable(["id", "x"], [["a"]]), undefined);
  assert.equal(plainTable([], [["a"]]), undefined);
});

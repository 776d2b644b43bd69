/**
 * Tables as cli-table3 draws them with its default box characters and no colours, for the
 * common case only: a header and cells that are one line of printable ASCII each. Drawing a
 * page of guests this way takes well under a millisecond; cli-table3, starting cold, takes
 * about a third of `nestcloud vms`'s CPU (it merges options cell by cell). For anything else
 * (wide or control characters, line breaks, no header) it returns undefined and the caller
 * draws with cli-table3. table.test.ts checks both draw the same.
 */
const PLAIN = /^[\x20-\x7e]*$/;

export function plainTable(
  head: readonly string[],
  rows: readonly (readonly string[])[],
): string | undefined {
  if (head.length === 0) return undefined;
  const widths = head.map((h) => h.length);
  for (const cells of [head, ...rows]) {
    if (cells.length !== head.length) return undefined;
    for (let c = 0; c < cells.length; c++) {
      if (!PLAIN.test(cells[c])) return undefined;
      if (cells[c].length > widths[c]) widths[c] = cells[c].length;
    }
  }
  const rule = (left: string, mid: string, right: string) =>
    left + widths.map((w) => "─".repeat(w + 2)).join(mid) + right;
  const line = (cells: readonly string[]) => `│${cells.map((s, c) => ` ${s.padEnd(widths[c])} `).join("│")}│`;
  const between = rule("├", "┼", "┤");
  return [
    rule("┌", "┬", "┐"),
    ...[head, ...rows].map(line).flatMap((l, i) => (i ? [between, l] : [l])),
    rule("└", "┴", "┘"),
  ].join("\n");
}

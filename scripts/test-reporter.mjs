// A node:test reporter for scripts/test.sh's summary, added beside the spec reporter:
//   node --test --test-reporter=spec --test-reporter-destination=stdout \
//        --test-reporter=./scripts/test-reporter.mjs --test-reporter-destination=<file> ...
// It writes one tab-separated line per event the summary needs:
//   skip  <file>  <test, with its suites: "suite > test">  <reason>
//   fail  <file>  <test>  <first line of the error>
//   count <passed> <failed> <skipped>          (last line; a skipped suite counts once)
// Files are relative to the working folder. Tabs and newlines in names become spaces.
import { relative } from "node:path";

const clean = (s) => String(s).replace(/[\t\r\n]+/g, " ");
const where = (file) => (file ? relative(process.cwd(), file) || file : "?");

export default async function* testReporter(source) {
  // Names of the tests being run, per file and nesting level, to name a test with its suites.
  const open = new Map();
  const fullName = (d) => {
    const stack = open.get(d.file) ?? [];
    return [...stack.slice(0, d.nesting), d.name].map(clean).join(" > ");
  };
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const { type, data } of source) {
    if (type === "test:start") {
      const stack = open.get(data.file) ?? [];
      stack.length = data.nesting;
      stack.push(data.name);
      open.set(data.file, stack);
      continue;
    }
    if (type !== "test:pass" && type !== "test:fail") continue;
    const suite = data.details?.type === "suite";
    if (data.skip !== undefined && data.skip !== false) {
      skipped++;
      const reason = data.skip === true ? "(no reason given)" : clean(data.skip);
      yield `skip\t${where(data.file)}\t${fullName(data)}\t${reason}\n`;
    } else if (type === "test:pass") {
      if (!suite && !data.todo) passed++;
    } else {
      const error = data.details?.error;
      // A suite fails when one of its tests did (counted there), or on its own (its body threw).
      if (suite && error?.failureType === "subtestsFailed") continue;
      if (data.todo) continue;
      failed++;
      const cause = error?.cause ?? error;
      const message = clean(cause?.message ?? cause ?? "failed").slice(0, 300);
      yield `fail\t${where(data.file)}\t${fullName(data)}\t${message}\n`;
    }
  }
  yield `count\t${passed}\t${failed}\t${skipped}\n`;
}

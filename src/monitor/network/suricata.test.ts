// Suricata's configuration for one monitor and what is read from its JSON log: the config
// names the rule files and the interface, bounds memory and forbids Lua rules and dataset
// writes; Suricata itself accepts it with nestcloud's default rules (`suricata -T`, when it is
// installed) and reports a tenant's broken or clashing rules; the log scan finds the rule
// counts, the errors and the start of capture.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DEFAULT_NETWORK_RULES } from "../assets.ts";
import { type RuleLoad, scanSuricataLog, suricataConfig } from "./suricata.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-suricata-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const hasSuricata = spawnSync("suricata", ["-V"]).status === 0;

test("the configuration: the monitor's interface and rule files, bounded memory, no Lua rules, no dataset writes", () => {
  const y = suricataConfig({
    dir: "/run/m/suricata",
    netns: "ncnm-x",
    iface: "nctap-x",
    ruleFiles: [DEFAULT_NETWORK_RULES, '/tenant/odd "name".rules'],
  });
  assert.match(y, /^af-packet:\n {2}- interface: "nctap-x"$/m);
  assert.match(
    y,
    /^rule-files:\n {2}- ".*nestcloud-default\.rules"\n {2}- "\/tenant\/odd \\"name\\"\.rules"$/m,
  );
  assert.match(y, /^ {2}lua:\n {4}allow-rules: false$/m);
  assert.match(y, /^ {4}allow-write: false$/m);
  assert.match(y, /^ {4}checksum-checks: no$/m);
  assert.match(y, /^default-log-dir: "\/run\/m\/suricata"$/m);
});

test("the default rules: nestcloud's SID range, each with a priority", () => {
  const rules = readFileSync(DEFAULT_NETWORK_RULES, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("alert "));
  assert.ok(rules.length >= 5);
  for (const r of rules) {
    const sid = Number(/sid:(\d+);/.exec(r)?.[1]);
    assert.ok(sid >= 9_000_000 && sid <= 9_000_999, r);
    assert.match(r, /priority:[1-3];/);
  }
});

test("Suricata accepts the configuration with the default rules, and names a tenant's broken and clashing rules", {
  skip: !hasSuricata && "suricata is not installed (scripts/ensure-deps.sh qemu)",
}, () => {
  const run = (name: string, ruleFiles: string[]) => {
    const d = join(dir, name);
    execFileSync("mkdir", ["-p", d]);
    writeFileSync(join(d, "s.yaml"), suricataConfig({ dir: d, netns: "-", iface: "lo", ruleFiles }));
    const r = spawnSync("suricata", ["-T", "-c", join(d, "s.yaml"), "-l", d], {
      encoding: "utf8",
      timeout: 60_000,
    });
    const seen = { started: false, rules: null as RuleLoad | null, errors: [] as string[] };
    scanSuricataLog(readFileSync(join(d, "suricata.log"), "utf8"), seen);
    return { status: r.status, ...seen };
  };
  const ok = run("ok", [DEFAULT_NETWORK_RULES]);
  assert.equal(ok.status, 0, ok.errors.join("; "));
  assert.deepEqual(ok.errors, []);
  assert.equal(ok.rules?.failed, 0);
  const defaults = ok.rules!.loaded;
  const tenant = join(dir, "tenant.rules");
  writeFileSync(
    tenant,
    [
      'alert udp any any -> any any (msg:"tenant ok"; content:"T"; sid:1000001; rev:1;)',
      'alert udp any any -> any any (msg:"typo"; contnt:"x"; sid:1000002; rev:1;)',
      'alert udp any any -> any any (msg:"clash"; content:"y"; sid:9000001; rev:1;)',
    ].join("\n"),
  );
  const bad = run("bad", [DEFAULT_NETWORK_RULES, tenant]);
  assert.deepEqual(bad.rules && [bad.rules.files, bad.rules.loaded, bad.rules.failed], [2, defaults + 1, 2]);
  assert.ok(
    bad.errors.some((e) => e.includes("contnt")),
    bad.errors.join("; "),
  );
  assert.ok(
    bad.errors.some((e) => /Duplicate signature/.test(e)),
    bad.errors.join("; "),
  );
});

test("the log scan: rule counts, errors (bounded), capture started; lines that are not JSON are skipped", () => {
  const seen = { started: false, rules: null as RuleLoad | null, errors: [] as string[] };
  const rec = (level: string, message: string) =>
    JSON.stringify({ timestamp: "t", log_level: level, event_type: "engine", engine: { message } });
  scanSuricataLog(
    [
      rec("Notice", "This is Suricata version 7.0.10 RELEASE running in SYSTEM mode"),
      "garbage {",
      ...Array.from({ length: 15 }, (_, i) => rec("Error", `error parsing signature ${i}`)),
      rec("Info", "1 rule files processed. 1 rules successfully loaded, 1 rules failed, 0"),
    ].join("\n"),
    seen,
  );
  assert.equal(seen.started, false);
  assert.deepEqual(seen.rules, { files: 1, loaded: 1, failed: 1, errors: [] });
  assert.equal(seen.errors.length, 10);
  scanSuricataLog(rec("Notice", "Threads created -> W: 1 FM: 1 FR: 1   Engine started."), seen);
  assert.equal(seen.started, true);
});

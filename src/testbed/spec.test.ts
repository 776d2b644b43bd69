import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadTestbedSpec, parseSubnet24, parseTestbedSpec, TestbedSpecError } from "./spec.ts";

const root = join(import.meta.dirname, "../..");

test("the shipped small testbed parses", () => {
  const spec = parseTestbedSpec(
    readFileSync(join(root, "scenarios/testbed-small.yaml"), "utf8"),
    "small.yaml",
  );
  assert.equal(spec.servers.length, 2);
  assert.ok(spec.servers.every((s) => s.hostVms.length === 2));
  assert.ok((spec.guests ?? []).length >= 2);
});

const good = `
servers:
  - name: s1
    hostVms: [{ name: h1, memoryMiB: 1024 }, { name: h2, memoryMiB: 512 }]
guests:
  - { name: g1, server: s1, hostVm: h1, memoryMiB: 256, workloads: [{ kind: verify, mib: 8 }] }
`;

test("problems name the file and the field", () => {
  const cases: Array<[string, RegExp]> = [
    ["servers: [x\n", /^t\.yaml:\d+:\d+: malformed YAML/],
    [good.replace("name: s1", "name: S1"), /servers\[0\]\.name: /],
    [good.replace("memoryMiB: 512", "memoryMiB: 100"), /servers\[0\]\.hostVms\[1\]\.memoryMiB: .*256/],
    [good.replace("hostVm: h1,", "hostVm: h7,"), /guests\[0\]\.hostVm: no host VM h7 on server s1/],
    [good.replace("server: s1,", "server: s9,"), /guests\[0\]\.server: no server named s9/],
    [
      good.replace("memoryMiB: 256", "memoryMiB: 2048"),
      /guests\[0\]\.memoryMiB: host VM s1\/h1 has 1024 MiB/,
    ],
    [good.replace("mib: 8", "mib: 200"), /guests\[0\]\.workloads\[0\]: needs 200 MiB/],
    // A workload kind that does not exist: one error listing the kinds.
    [
      good.replace("kind: verify", "kind: busy"),
      /^t\.yaml: guests\[0\]\.workloads\[0\]\.kind: must be one of verify, dirty$/,
    ],
    // A known kind: only that kind's own fields count.
    [good.replace("mib: 8", "mib: 0"), /^t\.yaml: guests\[0\]\.workloads\[0\]\.mib: must be >= 1$/],
    [good.replace("{ name: h2, memoryMiB: 512 }", "{ name: h1, memoryMiB: 512 }"), /duplicate host VM h1/],
    [`${good}network: { subnet: 8.8.8.0/24 }\n`, /network\.subnet: expected a private/],
    [`${good}extra: 1\n`, /unknown field extra/],
    ["servers: []\n", /servers: /],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseTestbedSpec(text, "t.yaml"),
      (e: unknown) => e instanceof TestbedSpecError && re.test(e.message) && e.message.startsWith("t.yaml"),
      `expected ${re} for ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
});

test("only private /24 subnets are accepted", () => {
  assert.deepEqual(parseSubnet24("10.1.2.0/24"), [10, 1, 2]);
  assert.deepEqual(parseSubnet24("172.20.5.0/24"), [172, 20, 5]);
  assert.deepEqual(parseSubnet24("192.168.9.0/24"), [192, 168, 9]);
  assert.equal(parseSubnet24("172.32.0.0/24"), null);
  assert.equal(parseSubnet24("10.1.2.0/16"), null);
  assert.equal(parseSubnet24("10.1.2.5/24"), null);
});

test("alias bombs and oversized files are refused with one clear line", () => {
  let bomb = `a: &a [x, x, x, x, x, x, x, x, x]\n`;
  const names = "abcdefghi";
  for (let i = 1; i < names.length; i++)
    bomb += `${names[i]}: &${names[i]} [${Array(9)
      .fill(`*${names[i - 1]}`)
      .join(", ")}]\n`;
  assert.throws(
    () => parseTestbedSpec(bomb, "bomb.yaml"),
    (e: unknown) =>
      e instanceof TestbedSpecError && /^bomb\.yaml: YAML aliases expand too far/.test(e.message),
  );
  const dir = mkdtempSync(join(tmpdir(), "nestcloud-spec-"));
  try {
    const big = join(dir, "big.yaml");
    writeFileSync(big, "");
    truncateSync(big, 5 << 20);
    assert.throws(
      () => loadTestbedSpec(big),
      (e: unknown) =>
        e instanceof TestbedSpecError &&
        /testbed description too large \(5\.0 MiB; at most 1\.0 MiB\)/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("placement is visible unless the file hides it; nothing else is accepted", () => {
  assert.equal(parseTestbedSpec(good, "t.yaml").placement, undefined);
  assert.equal(parseTestbedSpec(`placement: hidden\n${good}`, "t.yaml").placement, "hidden");
  assert.throws(() => parseTestbedSpec(`placement: secret\n${good}`, "t.yaml"), /placement/);
});

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseSubnet24, parseTestbedSpec, TestbedSpecError } from "./spec.ts";

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

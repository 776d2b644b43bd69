import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ScenarioError } from "./errors.ts";
import { parseScenario } from "./scenario.ts";

const base = `
name: t
nesting: nested
servers:
  - { prefix: s, count: 2, cores: 8, mipsPerCore: 1000, memoryMiB: 65536, networkMbps: 1000, power: hp-ml110-g5, hostVmSlots: 2 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 1000, memoryMiB: 16384, pricePerHour: 0.2 }
hostVms: { type: hv, perServer: 1 }
guests:
  types: [{ name: a, mipsPerVcpu: 500, memoryMiB: 1024 }]
trace: { kind: synthetic, guests: 10 }
policy: { name: nestcloud }
`;

function problem(yaml: string): string {
  try {
    parseScenario(yaml, "x.yaml");
  } catch (e) {
    assert.ok(e instanceof ScenarioError, `expected a ScenarioError, got ${e}`);
    assert.equal(e.message.includes("\n"), false, "one line");
    return e.message;
  }
  assert.fail("expected the scenario to be refused");
}

describe("scenario files", () => {
  test("a valid scenario resolves servers, types and defaults", () => {
    const s = parseScenario(base, "x.yaml");
    assert.equal(s.servers.length, 2);
    assert.equal(s.servers[1].id, "s-1");
    assert.equal(s.initialHostVms?.perServer, 1);
    assert.equal(s.intervalSeconds, 300);
    assert.equal(s.hostVmTypes[0].billingIncrementSeconds, 1);
  });

  test("malformed YAML names file and position", () => {
    assert.match(problem("name: [unclosed\n"), /^x\.yaml:\d+:\d+: malformed YAML/);
  });

  test("unknown fields are named with their path", () => {
    assert.equal(
      problem(base.replace("cores: 8,", "cores: 8, coresz: 2,")),
      "x.yaml: servers[0]: unknown field coresz",
    );
    assert.equal(problem(`${base}colour: red\n`), "x.yaml: unknown field colour");
  });

  test("bad values and missing fields name the field", () => {
    assert.match(
      problem(base.replace("cores: 8", "cores: 0")),
      /^x\.yaml: servers\[0\]\.cores: must be >= 1/,
    );
    assert.match(problem(base.replace("policy: { name: nestcloud }\n", "")), /missing field policy/);
    assert.match(
      problem(base.replace("kind: synthetic", "kind: sythetic")),
      /trace\.kind: expected planetlab or synthetic/,
    );
  });

  test("cross-field mistakes", () => {
    assert.match(
      problem(base.replace("type: hv, perServer: 1", "type: hx, perServer: 1")),
      /hostVms\.type: no host VM type named hx/,
    );
    assert.match(
      problem(base.replace("perServer: 1", "perServer: 3")),
      /hostVms\.perServer: 3 host VMs per server exceed the 2 slots/,
    );
  });

  test("a guest larger than every host VM type is an impossible scenario", () => {
    assert.match(
      problem(base.replace("memoryMiB: 1024 }", "memoryMiB: 99999 }")),
      /^x\.yaml: guests\.types\[0\]: guest type a .* fits in no host VM type$/,
    );
  });
});

describe("fields with fixed values", () => {
  test("a bad value gets one error listing the allowed ones", () => {
    assert.equal(
      problem(base.replace("nesting: nested", "nesting: nest")),
      "x.yaml: nesting: must be one of none, nested",
    );
    assert.equal(
      problem(`${base}migration: { model: xen }\n`),
      "x.yaml: migration.model: must be one of cloudsim, qemu",
    );
    assert.equal(
      problem(`${base}serverOrder: random\n`),
      "x.yaml: serverOrder: must be one of interleave, sequential",
    );
    assert.equal(problem(`${base}compat: cloudsim\n`), "x.yaml: compat: must be cloudsim-3.0.3");
    assert.equal(
      problem(base.replace("power: hp-ml110-g5", "power: hp-ml110-g9")),
      "x.yaml: servers[0].power: must be one of hp-ml110-g4, hp-ml110-g5, or an array",
    );
    // A list of readings is the other kind of value power takes: its own problem is reported.
    assert.equal(
      problem(base.replace("power: hp-ml110-g5", "power: [1, 2]")),
      "x.yaml: servers[0].power: must not have fewer than 11 items",
    );
  });
});

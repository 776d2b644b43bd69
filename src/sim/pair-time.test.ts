// Security VMs in the simulator (issue 13 item 4): the scenario key, the pairs it builds, the
// share of pair-time per channel, and the planner with pair awareness against the one without.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildCloud } from "./build.ts";
import { runScenario } from "./run.ts";
import { loadScenario, parseScenario } from "./scenario.ts";

const file = fileURLToPath(new URL("../../scenarios/secvm-pairs.yaml", import.meta.url));

describe("security VMs in the simulator", () => {
  test("securityVms makes every n-th row of tenants security VMs of the next rows' same-tenant guests", () => {
    const s = loadScenario(file);
    assert.deepEqual(s.securityVms, { every: 5, targets: 1, requires: "direct", type: 3 });
    const built = buildCloud(s, { names: Array.from({ length: 64 }, (_, i) => `x${i}`) } as never);
    const g = built.cloud.guests;
    assert.deepEqual(g[0].role, { kind: "security", targets: ["vm-16"], requires: "direct" });
    assert.equal(g[0].tenant, g[16].tenant);
    assert.equal(g[0].memoryMiB, 613, "the micro type");
    assert.equal(g[16].role.kind, "tenant");
    assert.equal(g.filter((x) => x.role.kind === "security").length, 16, "row 0 of 4 rows");
  });

  test("a bad securityVms key is refused with the field named", () => {
    const doc = (extra: string) => `${readBase()}\n${extra}`;
    assert.throws(
      () => parseScenario(doc("securityVms: { every: 2, targets: 2 }"), "x.yaml"),
      /securityVms\.targets/,
    );
    assert.throws(
      () => parseScenario(doc("securityVms: { every: 3, type: nano }"), "x.yaml"),
      /securityVms\.type/,
    );
  });

  test("pair awareness keeps monitoring local or direct where the pair-blind planner goes remote", () => {
    const s = loadScenario(file);
    const run = (pairAware: number) =>
      runScenario(s, { policyParams: { nestcloud: { pairAware } }, checkInvariants: true }).result;
    const aware = run(1);
    const blind = run(0);
    const a = aware.monitoring!;
    const b = blind.monitoring!;
    assert.equal(a.pairs, 208);
    for (const m of [a, b]) {
      const sum = m.shares.local + m.shares.direct + m.shares.remote + m.shares.none;
      assert.ok(Math.abs(sum - 1) < 1e-9, `shares sum to 1 (${sum})`);
      assert.ok(
        Math.abs(m.pairHours - 208 * 24) < 1e-6,
        `every pair accounted the whole day (${m.pairHours})`,
      );
    }
    assert.ok(b.shares.remote > 0.2, `the pair-blind planner leaves pairs remote (${b.shares.remote})`);
    assert.ok(a.shares.remote < 0.01, `pair-aware: remote ${a.shares.remote}`);
    assert.ok(a.shares.local + a.shares.direct > 0.99);
    assert.equal(b.followMoves + b.coMigrations, 0);
  });
});

function readBase(): string {
  return `
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
policy: { name: nestcloud }`;
}

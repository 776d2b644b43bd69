import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { findViolations } from "../model/index.ts";
import { buildCloud } from "./build.ts";
import { Simulation } from "./engine.ts";
import { realPlanetlabDays } from "./planetlab-testkit.ts";
import { createPolicy } from "./policies.ts";
import { loadCalibration, loadTrace, runScenario } from "./run.ts";
import { loadScenario, parseScenario } from "./scenario.ts";
import { utilizationAt } from "./trace.ts";

const root = resolve(import.meta.dirname, "../..");
/** A synthetic day in the PlanetLab format (24 VMs; 4 idle at the start), shipped with the tests. */
const fixtureDay = join(root, "test/fixtures/planetlab/20000101");

const small = (seed: number, hours = 6) =>
  parseScenario(
    `
name: small
seed: ${seed}
durationSeconds: ${hours * 3600}
nesting: nested
servers:
  - { prefix: s, count: 4, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, hypervisorOverheadMiB: 1024, pricePerHour: 0.4, provisionSeconds: 120 }
hostVms: { type: hv, perServer: 2 }
guests:
  antiAffinityPairsEvery: 5
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
    - { name: b, mipsPerVcpu: 1000, memoryMiB: 1740, dirtyRateMiBps: 20 }
trace: { kind: synthetic, guests: 300 }
migration: { model: qemu, maxConcurrent: 4, maxPerHostVm: 2 }
policy: { name: nestcloud }
`,
    "small.yaml",
  );

describe("simulation", () => {
  for (const policy of ["nestcloud", "lr-mmt-1.2"]) {
    test(`${policy}: same seed and inputs give byte-identical results`, () => {
      const a = JSON.stringify(runScenario(small(3), { policy }).result);
      const b = JSON.stringify(runScenario(small(3), { policy }).result);
      assert.equal(a, b);
      const c = JSON.stringify(runScenario(small(4), { policy }).result);
      assert.notEqual(a, c, "another seed gives another day");
    });
  }

  test("invariants hold after every round, and guests are consolidated", () => {
    const { result } = runScenario(small(5), { policy: "nestcloud", checkInvariants: true });
    assert.ok(result.migrations.total > 0);
    assert.ok(result.hostVmReleases > 0, "the host VMs left empty are released");
    assert.ok(result.hostVmHours < 8 * 6, "fewer host VMs than at the start");
  });

  test("a day needs every guest placed; an impossible start is a clear error", () => {
    const sc = small(1);
    const crowded = {
      ...sc,
      servers: sc.servers.slice(0, 1),
      initialHostVms: { ...sc.initialHostVms!, perServer: 1 },
    };
    const tooSmall = { ...crowded, servers: crowded.servers.map((s) => ({ ...s, hostVmSlots: 1 })) };
    assert.throws(
      () => runScenario(tooSmall, { policy: "lr-mmt-1.2" }),
      /initial placement failed: \d+ guest VM\(s\) fit nowhere/,
    );
  });
});

describe("simulation on a PlanetLab-format day (the fixture)", () => {
  // The nested scenario of the tests above, on the fixture's 24 guests.
  const nested = parseScenario(
    `
name: fixture-nested
seed: 7
durationSeconds: 86400
nesting: nested
servers:
  - { prefix: s, count: 2, cores: 16, mipsPerCore: 2660, memoryMiB: 262144, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }
hostVmTypes:
  - { name: hv, vcpus: 2, mipsPerVcpu: 2660, memoryMiB: 16384, hypervisorOverheadMiB: 1024, pricePerHour: 0.1, provisionSeconds: 120 }
hostVms: { type: hv, perServer: 3 }
guests:
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
    - { name: b, mipsPerVcpu: 1000, memoryMiB: 1740, dirtyRateMiBps: 20 }
trace: { kind: planetlab, day: "${fixtureDay}" }
migration: { model: qemu, maxConcurrent: 4, maxPerHostVm: 2 }
policy: { name: nestcloud }
`,
    "fixture-nested.yaml",
  );

  for (const policy of ["nestcloud", "lr-mmt-1.2"]) {
    test(`${policy}: a whole day, invariants after every round, same bytes twice`, () => {
      const a = runScenario(nested, { policy, checkInvariants: true }).result;
      assert.equal(a.guests, 24);
      assert.equal(a.trace, `planetlab:${fixtureDay}`);
      assert.equal(a.rounds, 288);
      assert.equal(JSON.stringify(runScenario(nested, { policy }).result), JSON.stringify(a));
    });
  }

  test("nestcloud consolidates the day's guests with instant handovers", () => {
    const r = runScenario(nested, { policy: "nestcloud" }).result;
    assert.ok(r.migrations.instant > 0, "guests are moved");
    assert.equal(r.migrations.instant, r.migrations.total, "between host VMs of one server: all instant");
    assert.ok(r.hostVmReleases > 0, "the host VMs left empty are released");
    assert.ok(r.hostVmHours < 6 * 24, "fewer host-VM hours than the 6 host VMs of the start");
  });

  test("a bare day name under NESTCLOUD_PLANETLAB_DIR is the same day as its folder", () => {
    const saved = process.env.NESTCLOUD_PLANETLAB_DIR;
    process.env.NESTCLOUD_PLANETLAB_DIR = join(root, "test/fixtures/planetlab");
    try {
      const byName = loadTrace(nested, "planetlab:20000101", 1);
      const byFolder = loadTrace(nested, undefined, 1);
      assert.equal(byName.source, "planetlab:20000101");
      assert.deepEqual(byName.names, byFolder.names);
      assert.deepEqual(byName.data, byFolder.data);
    } finally {
      if (saved === undefined) delete process.env.NESTCLOUD_PLANETLAB_DIR;
      else process.env.NESTCLOUD_PLANETLAB_DIR = saved;
    }
  });

  for (const policy of ["nestcloud", "lr-mmt-1.2", "lr-mmt-1.2+billing+hostvm+react"]) {
    test(`${policy}: moves into a newly acquired host VM start the moment it runs, not at a later pump`, () => {
      // As a real controller does: a move waiting for its destination starts when the host VM
      // is up (acquired + provisionSeconds), unless the migration caps hold it back a little.
      const sc = small(3);
      const trace = loadTrace(sc, undefined, 3);
      const built = buildCloud(sc, trace);
      const firstMoveInto = new Map<number, number>();
      const sim = new Simulation({
        scenario: sc,
        trace,
        built,
        policy: createPolicy(policy, {}, { acquireType: built.acquireType }),
        calibration: loadCalibration(sc),
        seed: 3,
        onMigrationStarted(_g, _from, to, at) {
          if (!firstMoveInto.has(to)) firstMoveInto.set(to, at);
        },
      });
      sim.run();
      let acquired = 0;
      let atOnce = 0;
      for (const [h, at] of firstMoveInto) {
        const host = sim.cloud.hostVms[h];
        if (host.acquiredAt <= 0) continue;
        acquired++;
        const up = host.acquiredAt + host.type.provisionSeconds;
        assert.ok(at >= up, `a move into ${host.id} started at ${at} s, before it was up at ${up} s`);
        if (at === up) atOnce++;
      }
      assert.ok(acquired > 0, "the day rents host VMs and moves guests into them");
      assert.ok(
        atOnce >= 0.9 * acquired,
        `${atOnce} of ${acquired} first moves started when the host VM came up`,
      );
    });
  }

  test("CloudSim mode spreads VMs one per host and drops those with zero demand at the first round", () => {
    // The reference scenario below, shrunk to 16 + 16 hosts for the fixture's 24 VMs.
    const text = readFileSync(join(root, "scenarios/cloudsim-planetlab.yaml"), "utf8")
      .replaceAll("count: 400,", "count: 16,")
      .replace('day: "20110303"', `day: "${fixtureDay}"`);
    assert.ok(text.includes(fixtureDay) && !text.includes("count: 400"));
    const sc = parseScenario(text, join(root, "scenarios/cloudsim-fixture.yaml"));
    const trace = loadTrace(sc, undefined, 1);
    assert.equal(trace.names.length, 24);
    const built = buildCloud(sc, trace);
    const policy = createPolicy("lr-mmt-1.2", {}, { acquireType: built.acquireType });
    const sim = new Simulation({
      scenario: { ...sc, durationSeconds: 301 },
      trace,
      built,
      policy,
      calibration: loadCalibration(sc),
      seed: 1,
    });
    sim.run();
    const cloud = built.cloud;
    const idle = trace.names.filter((_, g) => utilizationAt(trace, g, 300.1) === 0).length;
    assert.equal(idle, 4, "the fixture has 4 VMs idle at the start");
    assert.equal(sim.accounts.series[0].t, 300.1);
    assert.equal(sim.accounts.series[0].activeHostVms, 24 - idle);
    const hosts = Array.from(cloud.guestHost.subarray(0, cloud.guests.length)).filter((h) => h >= 0);
    assert.equal(hosts.length, 24 - idle);
    assert.equal(new Set(hosts).size, hosts.length, "one VM per host");
    for (let g = 0; g < cloud.guests.length; g++) {
      if (cloud.guestHost[g] >= 0 && cloud.guests[g].mipsPerVcpu > 1860)
        assert.ok(cloud.servers[cloud.hostVms[cloud.guestHost[g]].server!].id.startsWith("g5-"));
    }
    assert.deepEqual(
      findViolations(cloud).filter((v) => v.rule !== "memory-overcommitted"),
      [],
    );
  });
});

// The real day 20110303 (../shared/data/planetlab or NESTCLOUD_PLANETLAB_DIR): skipped with
// the reason when absent, a failure when NESTCLOUD_REQUIRE_PLANETLAB=1 (CI).
const day20110303 = realPlanetlabDays("20110303");

describe("CloudSim reference scenario (real PlanetLab day 20110303)", { skip: day20110303.skip }, () => {
  test("initial placement spreads VMs one per host as CloudSim 3.0.3 does (775 hosts on 20110303)", () => {
    day20110303.assertPresent();
    // CloudSim ranks hosts by power "after" on the live allocation against power "before" on
    // the (still empty) measurement, so a host that already got a VM looks dearer: VMs
    // spread out. A rebuilt CloudSim 3.0.3 shows 775 active hosts at the first round.
    const sc = loadScenario("scenarios/cloudsim-planetlab.yaml");
    const trace = loadTrace(sc, undefined, 1);
    assert.equal(trace.names.length, 1052);
    const built = buildCloud(sc, trace);
    const policy = createPolicy("lr-mmt-1.2", {}, { acquireType: built.acquireType });
    const sim = new Simulation({
      scenario: { ...sc, durationSeconds: 301 },
      trace,
      built,
      policy,
      calibration: loadCalibration(sc),
      seed: 1,
    });
    sim.run();
    const cloud = built.cloud;
    // Every host gets a VM at creation; 775 still run some at the first round, after
    // CloudSim dropped the VMs whose demand was zero.
    assert.equal(sim.accounts.series[0].t, 300.1);
    assert.equal(sim.accounts.series[0].activeHostVms, 775);
    // 2500- and 2000-MIPS VMs cannot run on a G4 core (1860 MIPS): they are all on G5 hosts.
    for (let g = 0; g < cloud.guests.length; g++) {
      if (cloud.guestHost[g] >= 0 && cloud.guests[g].mipsPerVcpu > 1860)
        assert.ok(cloud.servers[cloud.hostVms[cloud.guestHost[g]].server!].id.startsWith("g5-"));
    }
    assert.deepEqual(
      findViolations(cloud).filter((v) => v.rule !== "memory-overcommitted"),
      [],
    );
  });
});

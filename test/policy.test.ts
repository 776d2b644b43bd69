// Regression guards on the policy figures of docs/benchmarks.md, on the real PlanetLab days
// (../shared/data/planetlab or NESTCLOUD_PLANETLAB_DIR): skipped with the reason when they are
// absent, a failure when NESTCLOUD_REQUIRE_PLANETLAB=1 (CI).
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { CLOUDSIM_NOTES } from "../bench/policy/reference.ts";
import { loadScenario, loadTrace, runScenario } from "../src/sim/index.ts";
import { realPlanetlabDays } from "../src/sim/planetlab-testkit.ts";

const root = resolve(import.meta.dirname, "..");

const day20110303 = realPlanetlabDays("20110303");
const day20110306 = realPlanetlabDays("20110306");

describe("reference policies match CloudSim 3.0.3 on day 20110303", { skip: day20110303.skip }, () => {
  day20110303.assertPresent();
  const sc = loadScenario(join(root, "scenarios/cloudsim-planetlab.yaml"));
  const trace = loadTrace(sc, undefined, sc.seed);
  for (const policy of ["lr-mmt-1.2", "thr-mmt-0.8", "mad-mmt-2.5"]) {
    test(`${policy}: energy and migrations within 15 %, SLATAH within 2 points`, () => {
      const r = runScenario(sc, { policy, loadedTrace: trace }).result;
      const ref = CLOUDSIM_NOTES[policy];
      assert.ok(
        Math.abs(r.energyKWh / ref.energyKWh - 1) <= 0.15,
        `energy ${r.energyKWh} vs ${ref.energyKWh}`,
      );
      assert.ok(
        Math.abs(r.migrations.total / ref.migrations - 1) <= 0.15,
        `migrations ${r.migrations.total} vs ${ref.migrations}`,
      );
      assert.ok(Math.abs(r.slatah - ref.slatah) <= 0.02, `SLATAH ${r.slatah} vs ${ref.slatah}`);
    });
  }
});

test("nestcloud beats plain lr-mmt-1.2 billed per started hour (day 20110306)", {
  skip: day20110306.skip,
}, () => {
  day20110306.assertPresent();
  const sc = loadScenario(join(root, "scenarios/nested-planetlab-hourly.yaml"));
  const trace = loadTrace(sc, "planetlab:20110306", sc.seed);
  const lr = runScenario(sc, { policy: "lr-mmt-1.2", loadedTrace: trace }).result;
  const nc = runScenario(sc, { policy: "nestcloud", loadedTrace: trace }).result;
  assert.ok(nc.hostVmHours <= 0.8 * lr.hostVmHours, `host-VM hours ${nc.hostVmHours} vs ${lr.hostVmHours}`);
  assert.ok(nc.slatah <= lr.slatah, `SLATAH ${nc.slatah} vs ${lr.slatah}`);
  assert.ok(
    nc.migrations.total <= lr.migrations.total / 2,
    `migrations ${nc.migrations.total} vs ${lr.migrations.total}`,
  );
  assert.ok(
    nc.migrations.instant >= 0.8 * nc.migrations.total,
    `instant ${nc.migrations.instant} of ${nc.migrations.total}`,
  );
});

test("each modifier makes lr-mmt-1.2 a stronger baseline, billed per second (day 20110306)", {
  skip: day20110306.skip,
}, () => {
  day20110306.assertPresent();
  const sc = loadScenario(join(root, "scenarios/nested-planetlab.yaml"));
  const trace = loadTrace(sc, "planetlab:20110306", sc.seed);
  const run = (policy: string) => runScenario(sc, { policy, loadedTrace: trace }).result;
  const plain = run("lr-mmt-1.2");
  const hostvm = run("lr-mmt-1.2+hostvm");
  const react = run("lr-mmt-1.2+react");
  const all = run("lr-mmt-1.2+billing+hostvm+react");
  assert.ok(
    hostvm.hostVmHours < plain.hostVmHours,
    `+hostvm ${hostvm.hostVmHours} vs ${plain.hostVmHours} h`,
  );
  assert.ok(react.slatah < plain.slatah, `+react SLATAH ${react.slatah} vs ${plain.slatah}`);
  assert.ok(all.hostVmHours < plain.hostVmHours, `all three ${all.hostVmHours} vs ${plain.hostVmHours} h`);
  assert.ok(all.slatah < plain.slatah, `all three SLATAH ${all.slatah} vs ${plain.slatah}`);
  for (const r of [plain, hostvm, react, all])
    assert.ok(r.hostVmHours >= r.lowerBoundHostVmHours!, `${r.policy} under the lower bound`);
});

// What a report and results.json say about rentals: per policy the host-VM types rented,
// how they are billed and why; nothing of the kind on bare metal.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { billingRule, renderReport, warmUpReport } from "./report.ts";
import { runScenario } from "./run.ts";
import { parseScenario } from "./scenario.ts";

const servers = `
servers:
  - { prefix: s, count: 4, cores: 16, mipsPerCore: 2660, memoryMiB: 1048576, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 4 }`;
const guests = `
guests:
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 870, dirtyRateMiBps: 40 }
    - { name: b, mipsPerVcpu: 1000, memoryMiB: 1740, dirtyRateMiBps: 20 }
trace: { kind: synthetic, guests: 200 }
policy: { name: nestcloud }`;

const nested = parseScenario(
  `name: small
seed: 3
durationSeconds: 14400
nesting: nested${servers}
hostVmTypes:
  - { name: hv, vcpus: 4, mipsPerVcpu: 2660, memoryMiB: 131072, hypervisorOverheadMiB: 1024, pricePerHour: 0.4, billingIncrementSeconds: 300, minimumBillingSeconds: 3600 }
hostVms: { type: hv, perServer: 2 }${guests}
`,
  "small.yaml",
);

const bare = parseScenario(
  `name: bare\nseed: 3\ndurationSeconds: 7200\nnesting: none${servers}${guests}\n`,
  "bare.yaml",
);

describe("rentals", () => {
  test("results.json: per host-VM type what was rented, billed and paid; the policy's rule", () => {
    for (const policy of ["nestcloud", "lr-mmt-1.2"]) {
      const r = runScenario(nested, { policy }).result;
      assert.equal(r.nesting, "nested");
      assert.equal(r.rentals.types.length, 1);
      const t = r.rentals.types[0];
      assert.equal(t.type, "hv");
      assert.equal(t.billingIncrementSeconds, 300);
      assert.equal(t.minimumBillingSeconds, 3600);
      assert.ok(t.hostVms >= 8, "the 8 host VMs of the start at least");
      // The type's figures are the run's: nothing else was rented.
      assert.ok(Math.abs(t.billedHours - r.hostVmHours) < 1e-9);
      assert.ok(Math.abs(t.cost - r.cost) < 1e-9);
      assert.ok(t.billedHours >= t.rentedHours - 1e-9, "billing rounds up");
      assert.match(r.rentals.rule, policy === "nestcloud" ? /paid increment/ : /as soon as it is empty/);
    }
  });

  test("the report shows the type, its price and billing, and why the policy rents so", () => {
    const results = ["nestcloud", "lr-mmt-1.2"].map((policy) => runScenario(nested, { policy }).result);
    const html = renderReport(results, "t");
    assert.match(html, /What each policy rents, and why/);
    assert.match(html, /hv<\/span> <span class="nw">\(4 vCPU, 128 GiB\)/);
    assert.match(
      html,
      /at \$0\.40 \/ h,<\/span> <span class="nw billing">billed per started 5 min, at least 1 h/,
    );
    assert.match(html, /<b>nestcloud<\/b> rents host VMs ahead of predicted demand/);
    assert.match(html, /<b>lr-mmt-1\.2<\/b> rents a host VM when a guest fits in none/);
    for (const row of ["host-VM hours", "cost", "&nbsp;&nbsp;instant"])
      assert.ok(html.includes(`>${row}</th>`), row);
    assert.match(html, /Cost rate/);
  });

  test("bare metal: nothing rented, so no host-VM hours, cost or instant handovers", () => {
    const results = ["lr-mmt-1.2", "thr-mmt-0.8"].map((policy) => runScenario(bare, { policy }).result);
    assert.equal(results[0].nesting, "none");
    assert.deepEqual(results[0].rentals, { rule: "", types: [] });
    const html = renderReport(results, "t");
    assert.doesNotMatch(
      html,
      />host-VM hours<|>cost<|Cost rate|instant|Rented host VMs|What each policy rents, and why/,
    );
    assert.match(html, /Nothing: on bare metal the guests run on the physical servers themselves/);
    assert.match(html, /Physical servers carrying guests/);
  });
});

test("billing rules in words", () => {
  assert.equal(billingRule(1, 0), "per second");
  assert.equal(billingRule(1, 60), "per second, at least 1 min");
  assert.equal(billingRule(60, 60), "per started minute");
  assert.equal(billingRule(3600, 60), "per started hour");
  assert.equal(billingRule(900, 0), "per started 15 min");
  assert.equal(billingRule(86400, 0), "per started 24 h");
});

test("a report's bytes do not depend on the charts drawn before it (a warm-up, an earlier report)", () => {
  const results = ["nestcloud", "lr-mmt-1.2"].map((policy) => runScenario(nested, { policy }).result);
  const first = renderReport(results, "t");
  warmUpReport();
  const afterWarmUp = renderReport(results, "t");
  const again = renderReport(results, "t");
  assert.ok(first === afterWarmUp && first === again, "byte-identical reports");
  // zrender's ids numbered from the report's start, one block per chart, as a fresh process has them.
  const charts = [...new Set(first.match(/\bzr\d+(?=-)/g))];
  assert.deepEqual(
    charts,
    charts.map((_, i) => `zr${i}`),
  );
  const classes = [...new Set(first.match(/\bzr\d+-cls-\d+\b/g))].map((c) => Number(c.split("-")[2]));
  assert.deepEqual(
    [...classes].sort((a, b) => a - b),
    classes.map((_, i) => i),
  );
});

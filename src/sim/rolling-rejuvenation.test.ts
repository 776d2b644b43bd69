// The simulator's rolling rejuvenation (scenario key `rejuvenation`): the planner's rollout
// executed in virtual time, each guest's pause accounted, and what a rollout costs.
import assert from "node:assert/strict";
import { dirname, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { withRollingRejuvenation } from "../planner/index.ts";
import { buildCloud } from "./build.ts";
import { Simulation } from "./engine.ts";
import { createPolicy } from "./policies.ts";
import { loadCalibration, loadTrace, rolloutCost, rolloutLine, runScenario } from "./run.ts";
import { loadScenario, parseScenario, type Scenario } from "./scenario.ts";

const FILE = resolve(dirname(fileURLToPath(import.meta.url)), "../../scenarios/rolling-rejuvenation.yaml");

function scenario(change: (doc: Record<string, unknown>) => void = () => {}): Scenario {
  const s = loadScenario(FILE);
  const doc = structuredClone(s.doc) as unknown as Record<string, unknown>;
  change(doc);
  return parseScenario(JSON.stringify(doc), FILE);
}

/** Runs the scenario and records every rejuvenate action the rounds planned, and its host VM's server. */
function rollout(s: Scenario) {
  const trace = loadTrace(s, undefined, s.seed);
  const built = buildCloud(s, trace);
  const policy = withRollingRejuvenation(
    createPolicy(s.policy.name, s.policy.params, { acquireType: built.acquireType }),
    s.rejuvenation!.rollout,
  );
  const planned: { at: number; hostVm: number; server: number | undefined; guests: number }[] = [];
  const sim: Simulation = new Simulation({
    scenario: s,
    trace,
    built,
    policy,
    calibration: loadCalibration(s),
    seed: s.seed,
    onDecision: (d) => {
      if (d.kind !== "round") return;
      for (const a of d.plan.actions)
        if (a.kind === "rejuvenate")
          planned.push({
            at: d.at,
            hostVm: a.hostVm,
            server: sim.cloud.hostVms[a.hostVm].server,
            guests: sim.cloud.hostGuests[a.hostVm].length,
          });
    },
  });
  sim.run();
  return { sim, planned };
}

describe("simulated rolling rejuvenation", () => {
  test("renews every due host VM once, one at a time and one server after another; each guest pauses once", () => {
    const s = scenario();
    const { sim, planned } = rollout(s);
    const r = sim.executor.rejuvenation;
    assert.ok(planned.length >= 4, `${planned.length} renewals planned`);
    assert.equal(r.done, planned.length);
    assert.equal(r.failed, 0);
    // Due from 2 h (22 h old at the start, 24 h limit), never before.
    assert.ok(
      planned[0].at >= 2 * 3600 && planned[0].at < 2 * 3600 + s.intervalSeconds,
      `first at ${planned[0].at}`,
    );
    // One per round at most, none while another runs (a renewal of ~80 guests takes ~67 s < a round).
    for (let i = 1; i < planned.length; i++) assert.ok(planned[i].at > planned[i - 1].at);
    // Each host VM renewed once (its new hypervisor is 12 h from due again); servers in blocks.
    assert.equal(new Set(planned.map((p) => p.hostVm)).size, planned.length);
    const order = planned.map((p) => p.server);
    const blocks = order.filter((x, i) => i === 0 || x !== order[i - 1]);
    assert.equal(new Set(blocks).size, blocks.length, `servers in blocks: ${order.join(",")}`);
    // Every guest of a renewed host VM paused once, 55 ms.
    const guests = planned.reduce((n, p) => n + p.guests, 0);
    assert.equal(r.guestPauses, guests);
    assert.ok(Math.abs(r.pauseSeconds - guests * 0.055) < 1e-9);
    assert.equal(r.maxPauseSeconds, 0.055);
    // After the rollout no running host VM runs a hypervisor older than the limit at the end.
    const renewed = new Set(planned.map((p) => p.hostVm));
    for (const [h, host] of sim.cloud.hostVms.entries())
      if (host.state === "running" && host.acquiredAt === 0)
        assert.ok(renewed.has(h), `${host.id} not renewed`);
  });

  test("the rollout's cost against the same run without it (figures), in place and evacuated", () => {
    const inPlace = rolloutCost(scenario());
    // Evacuate needs a spare on the server with room for every guest: nestcloud keeps one.
    const evac = rolloutCost(
      scenario((d) => {
        (d.rejuvenation as Record<string, unknown>).mode = "evacuate";
        d.policy = { name: "nestcloud", params: { spareHostVms: 1 } };
      }),
    );
    for (const c of [inPlace, evac]) console.log(rolloutLine(c));
    // Pauses cost demand: PDM grows, by the pauses' share only.
    assert.ok(inPlace.pdm.with > inPlace.pdm.without);
    assert.ok(inPlace.rollout.pauseSeconds > 0 && inPlace.rollout.maxPauseMs === 55);
    // Some renewals evacuate (where the spare is), the others fall back to in place; an
    // evacuated guest pauses twice (out to the spare, back), each pause 55 ms.
    assert.ok(evac.rollout.evacuated > 0 && evac.rollout.evacuated <= evac.rollout.rejuvenations);
    assert.ok(
      Math.abs(evac.rollout.pauseSeconds / evac.rollout.guestPauses - 0.055) < 1e-9 &&
        evac.rollout.guestPauses > 0,
    );
    // Renewals hold their host VMs (no move in or out) for minutes, not hours, here.
    for (const c of [inPlace, evac])
      assert.ok(c.rollout.heldHostVmHours > 0 && c.rollout.heldHostVmHours < 0.5);
    // The difference in host-VM hours is what it is (reported); in place never needs a host VM more.
    assert.ok(
      inPlace.hostVmHours.extra >= -1 && inPlace.hostVmHours.extra <= 1,
      `${inPlace.hostVmHours.extra}`,
    );
    assert.equal(inPlace.cost.extra, inPlace.hostVmHours.extra * 0.834);
  });

  test("a version rollout renews hypervisors started before it; the result carries the rollout", () => {
    const s = scenario((d) => {
      d.rejuvenation = { version: { name: "10.1", installedAtHours: 1 }, mode: "in-place" };
      d.durationSeconds = 4 * 3600;
    });
    const r = runScenario(s).result;
    assert.match(r.rollout?.policy ?? "", /^version 10\.1 installed at 1 h, in-place$/);
    assert.ok((r.rollout?.rejuvenations ?? 0) >= 1);
  });

  test("scenario checks: one of maxAgeHours or version, nested only; a run without the key has no rollout", () => {
    assert.throws(
      () =>
        scenario((d) => {
          d.rejuvenation = { maxAgeHours: 1, version: { name: "x", installedAtHours: 0 } };
        }),
      /rejuvenation: give one of maxAgeHours or version/,
    );
    assert.throws(() => scenario((d) => void (d.rejuvenation = { maxAgeHours: 0 })), /maxAgeHours/);
    assert.throws(
      () => scenario((d) => void (d.rejuvenation = { version: { name: "bad name", installedAtHours: 0 } })),
      /version\.name|name/,
    );
    const none = scenario((d) => {
      delete d.rejuvenation;
      d.durationSeconds = 3600;
    });
    assert.equal(none.rejuvenation, undefined);
    assert.equal(runScenario(none).result.rollout, undefined);
  });
});

// One decision-maker (issue 11): the simulator and the controller on the simulated provider,
// given the same cloud, trace and seed, issue the same sequence of plans for a simulated day —
// rounds every 300 s and the policy's checks between them every 30 s, compared by time, action
// kinds, guests, targets, mechanisms and dependencies. The controller is stepped on a clock
// the test holds (its timers do not run): each round is an audit then a round, each check a
// react, and its executor steps at every moment the provider finishes something (a migration
// ending, a host VM coming up) and after each stored plan.
//
// Both executors start the moves waiting for a newly acquired host VM the moment it runs (as a
// real controller does; the simulator does so for every policy). The one difference, explicit
// and checked here: the controller keeps one plan applying at a time, so a round that falls
// while one applies waits (the simulator's would supersede the waiting actions). The test
// requires none here.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pino from "pino";
import { Controller, openStore, type Store } from "../src/controller/index.ts";
import { DEFAULT_CALIBRATION } from "../src/migration/index.ts";
import { type Action, createPolicy } from "../src/planner/index.ts";
import {
  DEMO_HOST_VM_TYPE,
  type Provider,
  SimProvider,
  type World,
  worldTrace,
} from "../src/providers/index.ts";
import { buildCloud, parseScenario, type SimDecision, Simulation } from "../src/sim/index.ts";

/** Simulated hours compared (a day: 24; about 35 s on two shared cores). */
const HOURS = Number(process.env.NESTCLOUD_EQUIVALENCE_HOURS ?? 24);
const GUESTS = Number(process.env.NESTCLOUD_EQUIVALENCE_GUESTS ?? 160);
const SEED = 42;
const INTERVAL = 300;
const T = DEMO_HOST_VM_TYPE;

const scenario = parseScenario(
  `
name: decision-equivalence
intervalSeconds: ${INTERVAL}
durationSeconds: ${HOURS * 3600}
seed: ${SEED}
nesting: nested
servers:
  - { prefix: srv, count: 4, cores: 32, mipsPerCore: 2660, memoryMiB: 262144, networkMbps: 10000, power: hp-ml110-g5, hostVmSlots: 6 }
hostVmTypes:
  - { name: ${T.name}, vcpus: ${T.vcpus}, mipsPerVcpu: ${T.mipsPerVcpu}, memoryMiB: ${T.memoryMiB}, hypervisorOverheadMiB: ${T.hypervisorOverheadMiB}, pricePerHour: ${T.pricePerHour}, provisionSeconds: ${T.provisionSeconds}, billingIncrementSeconds: ${T.billingIncrementSeconds}, minimumBillingSeconds: ${T.minimumBillingSeconds} }
hostVms: { type: ${T.name}, perServer: 1 }
guests:
  tenants: 4
  types:
    - { name: a, mipsPerVcpu: 2500, memoryMiB: 1740, dirtyRateMiBps: 20 }
    - { name: b, mipsPerVcpu: 2000, memoryMiB: 2048, dirtyRateMiBps: 20 }
    - { name: c, mipsPerVcpu: 1000, memoryMiB: 1024, dirtyRateMiBps: 20 }
    - { name: d, mipsPerVcpu: 500, memoryMiB: 512, dirtyRateMiBps: 20 }
trace: { kind: synthetic, guests: ${GUESTS} }
migration: { model: qemu, maxConcurrent: 8, maxPerHostVm: 2, postcopyFallback: true }
policy: { name: nestcloud }
`,
  "decision-equivalence.yaml",
);

/** A plan as compared: when, which decision, and each action as kind, guest and target. */
interface Decision {
  readonly at: number;
  readonly kind: "round" | "react";
  readonly actions: readonly string[];
}

/** Guest and host VM as indices: the simulator's own, the controller's mapped to them. */
function describeAction(a: Action): string {
  switch (a.kind) {
    case "migrate":
      return `migrate g${a.guest} h${a.from}->${a.to.kind === "existing" ? `h${a.to.hostVm}` : `new#${a.to.action}`} ${a.estimate.mechanism} deps[${a.dependsOn}]`;
    case "acquire-host-vm":
      return `acquire s${a.server}`;
    case "release-host-vm":
      return `release h${a.hostVm} deps[${a.dependsOn}]`;
    case "rejuvenate":
      return `rejuvenate h${a.hostVm}`;
    case "co-migrate":
      return `co-migrate ${a.members.map((m) => `g${m.guest} h${m.from}`).join(",")} ->${a.to.kind === "existing" ? `h${a.to.hostVm}` : `new#${a.to.action}`} deps[${a.dependsOn}]`;
  }
}

const guestId = (g: number) => `vm-${String(g).padStart(3, "0")}`;
const initialHostId = (h: number) => `hv-${String(h).padStart(3, "0")}`;

function simulate(): { world: World; decisions: Decision[] } {
  const trace = worldTrace({ series: GUESTS, seed: SEED });
  const built = buildCloud(scenario, trace);
  const decisions: Decision[] = [];
  let world: World | undefined;
  const sim = new Simulation({
    scenario,
    trace,
    built,
    policy: createPolicy("nestcloud", {}, { acquireType: built.acquireType }),
    calibration: DEFAULT_CALIBRATION,
    seed: SEED,
    onDecision(d: SimDecision) {
      if (d.kind === "placement") {
        // The controller's world starts where the simulator's placement put the guests.
        const cloud = sim.cloud;
        world = {
          version: 1,
          clock: { worldT0: 0, wallT0: 0, speed: 1 },
          seed: SEED,
          series: GUESTS,
          servers: [...cloud.servers],
          hostVmTypes: [T],
          hostVms: cloud.hostVms.map((h, i) => ({
            id: initialHostId(i),
            type: h.type.name,
            server: cloud.servers[h.server!].id,
            state: "running" as const,
            acquiredAt: 0,
            stateSince: 0,
            readyAt: 0,
          })),
          guests: cloud.guests.map((g, i) => ({
            id: guestId(i),
            tenant: g.tenant,
            vcpus: g.vcpus,
            mipsPerVcpu: g.mipsPerVcpu,
            memoryMiB: g.memoryMiB,
            dirtyRateMiBps: g.dirtyRateMiBps,
            hostVm: initialHostId(cloud.guestHost[i]),
            running: true,
            series: i,
          })),
          migrations: [],
          nextId: 1,
        };
        return;
      }
      if (d.plan.actions.length > 0)
        decisions.push({ at: d.at, kind: d.kind, actions: d.plan.actions.map(describeAction) });
    },
  });
  sim.run();
  assert.ok(world, "the simulator placed its guests");
  return { world, decisions };
}

/** The controller on the simulated provider, stepped through the same times. */
async function control(world: World): Promise<{ decisions: Decision[]; waited: number[] }> {
  let clock = 0;
  let saved: string | undefined;
  const provider: Provider = await SimProvider.open(
    {
      load: async () => saved,
      save: async (json) => {
        saved = json;
      },
    },
    () => world,
    () => clock,
  );
  const db = await openStore("sqlite::memory:");
  store = db;
  const c = new Controller({
    store: db,
    provider,
    policy: createPolicy("nestcloud", {}, { acquireType: T }),
    log: pino({ level: "silent" }),
    intervalSeconds: INTERVAL,
    maxConcurrentMigrations: scenario.migration.maxConcurrent,
    maxPerHostVm: scenario.migration.maxPerHostVm,
    seed: SEED,
  });
  controller = c;
  assert.ok(await c.leader.tryLead(0));
  await c.reconciler.describe();
  await c.store.repos.settings.setAutomation("automatic");

  // Host VM ids -> the simulator's indices: the initial ones by name, the acquired ones in the
  // order they were acquired (the simulator appends them).
  const hostIndex = new Map(world.hostVms.map((h, i) => [h.id, i]));
  const serverIndex = new Map(world.servers.map((s, i) => [s.id, i]));
  const learnHostVms = async () => {
    const fresh = (await provider.snapshot()).hostVms
      .filter((h) => !hostIndex.has(h.id))
      .sort((a, b) => a.acquiredAt - b.acquiredAt || (a.id < b.id ? -1 : 1));
    for (const h of fresh) hostIndex.set(h.id, hostIndex.size);
  };
  const describeStored = async (planId: number): Promise<string[]> => {
    await learnHostVms();
    const actions = await db.repos.plans.actions(planId);
    return actions.map(({ payload: p, dependsOn }) => {
      const h = (id: string) => `h${hostIndex.get(id) ?? `?${id}`}`;
      switch (p.kind) {
        case "migrate":
          return `migrate g${Number(p.guest.slice(3))} ${h(p.from)}->${"hostVm" in p.to ? h(p.to.hostVm) : `new#${p.to.acquire}`} ${p.mechanism} deps[${dependsOn}]`;
        case "acquire-host-vm":
          return `acquire s${serverIndex.get(p.server!)}`;
        case "release-host-vm":
          return `release ${h(p.hostVm)} deps[${dependsOn}]`;
        case "co-migrate":
          return `co-migrate ${p.members.map((m) => `g${Number(m.guest.slice(3))} ${h(m.from)}`).join(",")} ->${"hostVm" in p.to ? h(p.to.hostVm) : `new#${p.to.acquire}`} deps[${dependsOn}]`;
        default:
          return `rejuvenate ${h(p.hostVm)}`;
      }
    });
  };

  /** Steps the executor at every moment the provider finishes something, up to `until`. */
  const settleUntil = async (until: number) => {
    for (;;) {
      const snap = await provider.snapshot();
      let next = Number.POSITIVE_INFINITY;
      for (const m of snap.migrations)
        if (m.status === "running") next = Math.min(next, clock + m.etaSeconds);
      for (const h of snap.hostVms)
        if (h.state === "provisioning") next = Math.min(next, h.acquiredAt + T.provisionSeconds);
      if (next > until) return;
      clock = Math.max(clock, next);
      await c.executor.step();
    }
  };

  const decisions: Decision[] = [];
  const waited: number[] = [];
  const end = HOURS * 3600;
  const every = c.reconciler.reactWallSeconds;
  assert.equal(every, 30, "the policy checks every 30 s between rounds (speed 1)");
  for (let t = 0; t < end; t += every!) {
    await settleUntil(t);
    clock = t;
    if (t % INTERVAL === 0) {
      await c.reconciler.audit();
      const r = await c.reconciler.round();
      if (r.waiting !== undefined) waited.push(t);
      if (r.applied !== undefined)
        decisions.push({ at: t, kind: "round", actions: await describeStored(r.applied) });
    } else {
      const r = await c.reconciler.react();
      if (r.applied !== undefined)
        decisions.push({ at: t, kind: "react", actions: await describeStored(r.applied) });
    }
    await c.executor.step();
  }
  return { decisions, waited };
}

let store: Store | undefined;
let controller: Controller | undefined;
after(async () => {
  await controller?.provider.close();
  await store?.close();
});

const moves = (ds: readonly Decision[]) =>
  ds.reduce((n, d) => n + d.actions.filter((a) => a.startsWith("migrate")).length, 0);

let run: { world: World; simulated: Decision[]; controlled: Decision[]; waited: number[]; seconds: number };
before(async () => {
  const started = performance.now();
  const { world, decisions: simulated } = simulate();
  const { decisions: controlled, waited } = await control(world);
  run = { world, simulated, controlled, waited, seconds: (performance.now() - started) / 1000 };
});

test(`the simulator and the controller on the simulated provider issue the same plans (${HOURS} h)`, (t) => {
  const { simulated, controlled, waited } = run;
  t.diagnostic(
    `${simulated.length} plans (${simulated.filter((d) => d.kind === "react").length} between rounds), ` +
      `${moves(simulated)} moves; ${run.seconds.toFixed(1)} s`,
  );
  // The controller plans one plan at a time: a round while a plan applies would wait (the
  // simulator's would supersede the plan's waiting actions). None did: every plan was done
  // before the next round.
  assert.deepEqual(waited, [], "rounds the controller skipped while a plan was applying");
  // Enough happened for the comparison to mean something: rounds that move, rent and give
  // back, and relief between rounds.
  assert.ok(
    simulated.filter((d) => d.kind === "round" && d.actions.some((a) => a.startsWith("migrate"))).length >=
      10,
  );
  assert.ok(simulated.some((d) => d.kind === "react"));
  assert.ok(simulated.some((d) => d.actions.some((a) => a.startsWith("acquire"))));
  assert.ok(simulated.some((d) => d.actions.some((a) => a.startsWith("release"))));
  for (let i = 0; i < Math.max(simulated.length, controlled.length); i++)
    assert.deepEqual(controlled[i], simulated[i], `plan #${i} (simulator first at ${simulated[i]?.at} s)`);
});

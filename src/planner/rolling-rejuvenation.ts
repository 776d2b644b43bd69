/**
 * Rolling rejuvenation: renewing every host VM's hypervisor layer (guest QEMUs, agent) across
 * the whole cloud, one host VM at a time and one server at a time, as a planner action.
 *
 * A rollout policy says which host VMs are due: those whose hypervisor is older than a
 * maximum age, or those started before a version was installed (a version rolled out is
 * "every hypervisor started before it"). Each round, beside the base policy's plan, the
 * rollout adds at most one `rejuvenate` action, and none while one is planned or running:
 * - one server at a time: it stays on the server it renewed last while that server has host
 *   VMs due, else it takes the server holding the oldest due hypervisor;
 * - capacity kept: in place, the host VM keeps serving (each guest pauses for its own
 *   switchover); evacuate runs only where another running host VM of the same server has
 *   the memory and CPU for every guest (the spare that keeps relocations instant stays: the
 *   renewed host VM is empty meanwhile and takes its place), else it falls back to in place;
 * - never under a move: a host VM with a guest migrating in or out, or touched by this
 *   round's plan, waits for a later round.
 * Pure decisions: the simulator and the controller execute the action (plan/executor path).
 */
import { hostVmGuestMemory, hostVmMips } from "../model/index.ts";
import type { PlannerInput } from "./input.ts";
import { type ActionPlan, type RejuvenationMode, validatePlan } from "./plan.ts";
import { type Policy, PolicyError } from "./policy-base.ts";

/** Which hypervisors are due, and how they are renewed. */
export type RolloutPolicy =
  | {
      readonly kind: "max-age";
      /** A hypervisor older than this (seconds since it started) is renewed. */
      readonly maxAgeSeconds: number;
      readonly mode: RejuvenationMode;
    }
  | {
      readonly kind: "version";
      /** The version rolled out (reported; the decision needs only when it was installed). */
      readonly version: string;
      /** When it was installed: every hypervisor started before it runs an older one. */
      readonly installedAt: number;
      readonly mode: RejuvenationMode;
    };

/**
 * Largest share of a spare's CPU the guests of both host VMs may ask for during an
 * evacuation: all of it (a spare of the renewed host VM's type takes what that one carried).
 */
export const EVACUATE_CPU_HEADROOM = 1;

export function validateRollout(p: RolloutPolicy): RolloutPolicy {
  if (p.kind === "max-age" && !(Number.isFinite(p.maxAgeSeconds) && p.maxAgeSeconds > 0))
    throw new PolicyError(`rolling rejuvenation: maxAgeSeconds must be positive, got ${p.maxAgeSeconds}`);
  if (p.kind === "version") {
    if (!/^[\w.+~-]{1,64}$/.test(p.version))
      throw new PolicyError(
        `rolling rejuvenation: version must be 1-64 of [A-Za-z0-9_.+~-], got ${JSON.stringify(p.version)}`,
      );
    if (!Number.isFinite(p.installedAt))
      throw new PolicyError("rolling rejuvenation: installedAt must be a time");
  }
  return p;
}

/** When each host VM's hypervisor started (the input's, or its acquisition). */
function startedAt(input: PlannerInput, h: number): number {
  return input.hypervisorSince?.[h] ?? input.cloud.hostVms[h].acquiredAt;
}

/** Whether host VM h's hypervisor is due for renewal under the policy. */
export function isDue(policy: RolloutPolicy, input: PlannerInput, h: number): boolean {
  const host = input.cloud.hostVms[h];
  if (host.state === "released" || host.type.bareMetal) return false;
  const since = startedAt(input, h);
  return policy.kind === "max-age" ? input.now - since >= policy.maxAgeSeconds : since < policy.installedAt;
}

/** Host VMs due, oldest hypervisor first (ties: index). */
export function dueHostVms(policy: RolloutPolicy, input: PlannerInput): number[] {
  const out: number[] = [];
  for (let h = 0; h < input.cloud.hostVms.length; h++) if (isDue(policy, input, h)) out.push(h);
  return out.sort((a, b) => startedAt(input, a) - startedAt(input, b) || a - b);
}

export type RolloutStep =
  | {
      readonly kind: "rejuvenate";
      readonly hostVm: number;
      readonly mode: RejuvenationMode;
      readonly note: string;
    }
  | { readonly kind: "wait"; readonly note: string }
  | { readonly kind: "idle" };

/** Host VMs a plan's actions touch (moves from or to, releases): not renewed in the same round. */
export function touchedBy(plan: ActionPlan): Set<number> {
  const out = new Set<number>();
  for (const a of plan.actions) {
    if (a.kind === "migrate") {
      out.add(a.from);
      if (a.to.kind === "existing") out.add(a.to.hostVm);
    } else if (a.kind === "release-host-vm" || a.kind === "rejuvenate") out.add(a.hostVm);
  }
  return out;
}

/** Host VMs with a guest migrating out of or into them. */
function movingHostVms(input: PlannerInput): Set<number> {
  const out = new Set<number>();
  const guests =
    input.inFlightGuests ??
    Array.from({ length: input.inMigration.length }, (_, g) => g).filter((g) => input.inMigration[g]);
  for (const g of guests) {
    if (!input.inMigration[g]) continue;
    const from = input.cloud.guestHost[g];
    if (from >= 0) out.add(from);
    if (input.inboundTarget[g] >= 0) out.add(input.inboundTarget[g]);
  }
  return out;
}

/** A running host VM of h's server that can hold every guest of h beside its own, if any. */
export function spareFor(input: PlannerInput, h: number, busy: ReadonlySet<number>): number | undefined {
  const { cloud } = input;
  const server = cloud.hostVms[h].server;
  const memory = cloud.hostMemoryUsed[h];
  let demand = 0;
  for (const g of cloud.hostGuests[h]) demand += input.requestMips[g];
  let best: number | undefined;
  for (let s = 0; s < cloud.hostVms.length; s++) {
    const spare = cloud.hostVms[s];
    if (s === h || spare.server !== server || spare.state !== "running" || busy.has(s)) continue;
    if (input.rejuvenating?.[s]) continue;
    if (memory > hostVmGuestMemory(spare.type) - cloud.hostMemoryUsed[s] + 1e-9) continue;
    let own = 0;
    for (const g of cloud.hostGuests[s]) own += input.requestMips[g];
    if (demand + own > EVACUATE_CPU_HEADROOM * hostVmMips(spare.type)) continue;
    // The emptiest spare first: the others keep their room for relocations.
    if (best === undefined || cloud.hostMemoryUsed[s] < cloud.hostMemoryUsed[best]) best = s;
  }
  return best;
}

/**
 * The rollout's next step: which host VM to renew now and how, why it waits, or nothing due.
 * `busy`: host VMs this round's plan touches.
 */
export function nextRejuvenation(
  policy: RolloutPolicy,
  input: PlannerInput,
  busy: ReadonlySet<number> = new Set(),
): RolloutStep {
  const { cloud } = input;
  const due = dueHostVms(policy, input);
  if (due.length === 0) return { kind: "idle" };
  const running = cloud.hostVms.findIndex((_, h) => input.rejuvenating?.[h] === 1);
  if (running >= 0)
    return {
      kind: "wait",
      note: `rejuvenation: ${cloud.hostVms[running].id} is being renewed; ${due.length} due after it`,
    };
  // The server renewed last (the newest renewal after an acquisition), if it has host VMs due.
  let last = -1;
  for (let h = 0; h < cloud.hostVms.length; h++) {
    const since = startedAt(input, h);
    if (since > cloud.hostVms[h].acquiredAt && (last < 0 || since > startedAt(input, last))) last = h;
  }
  const lastServer = last >= 0 ? cloud.hostVms[last].server : undefined;
  const server = due.some((h) => cloud.hostVms[h].server === lastServer)
    ? lastServer
    : cloud.hostVms[due[0]].server;
  const moving = movingHostVms(input);
  for (const h of due) {
    const host = cloud.hostVms[h];
    if (host.server !== server || host.state !== "running" || busy.has(h) || moving.has(h)) continue;
    const age = (input.now - startedAt(input, h)) / 3600;
    const why =
      policy.kind === "max-age"
        ? `hypervisor ${age.toFixed(1)} h old > ${(policy.maxAgeSeconds / 3600).toFixed(1)} h`
        : `hypervisor predates version ${policy.version}`;
    let mode = policy.mode;
    let how: string = mode;
    if (mode === "evacuate") {
      const spare = spareFor(input, h, new Set([...busy, ...moving]));
      if (spare === undefined) {
        mode = "in-place";
        how = "in-place (no spare on the server with room for its guests)";
      } else how = `evacuate via ${cloud.hostVms[spare].id}`;
    }
    return {
      kind: "rejuvenate",
      hostVm: h,
      mode,
      note: `rejuvenate ${host.id}: ${why}, ${how}; ${due.length - 1} more due`,
    };
  }
  const name = server === undefined ? "an unknown server" : cloud.servers[server].id;
  return {
    kind: "wait",
    note: `rejuvenation: ${due.length} due; those on ${name} are busy (moves under way)`,
  };
}

/** The base plan with the rollout's step added (a rejuvenate action, or a note why it waits). */
export function withRolloutStep(plan: ActionPlan, policy: RolloutPolicy, input: PlannerInput): ActionPlan {
  const step = nextRejuvenation(policy, input, touchedBy(plan));
  if (step.kind === "idle") return plan;
  if (step.kind === "wait") return { ...plan, notes: [...plan.notes, step.note] };
  const out: ActionPlan = {
    ...plan,
    actions: [
      ...plan.actions,
      { kind: "rejuvenate", id: plan.actions.length, hostVm: step.hostVm, mode: step.mode, dependsOn: [] },
    ],
    notes: [...plan.notes, step.note],
  };
  validatePlan(out);
  return out;
}

/**
 * A policy whose rounds also roll the rejuvenation out (its placements and reflex are the
 * base policy's: a rollout never hurries, it waits for the next round).
 */
export function withRollingRejuvenation(base: Policy, rollout: RolloutPolicy): Policy {
  validateRollout(rollout);
  const wrapped: Policy = {
    name: base.name,
    placeNew: (input, guests) => base.placeNew(input, guests),
    plan: (input) => withRolloutStep(base.plan(input), rollout, input),
    ...(base.react ? { react: (input: PlannerInput) => base.react!(input) } : {}),
    ...(base.reactIntervalSeconds !== undefined ? { reactIntervalSeconds: base.reactIntervalSeconds } : {}),
    ...(base.reactWhenAbove !== undefined ? { reactWhenAbove: base.reactWhenAbove } : {}),
    ...(base.rentalRule !== undefined ? { rentalRule: base.rentalRule } : {}),
  };
  return wrapped;
}

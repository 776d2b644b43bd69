/**
 * A running testbed (`nestcloud testbed up`) as a provider: its slices rented as host VMs
 * (TestbedRental) with the agent data plane on them (guests are real QEMUs the host-VM agents
 * run, migrations MigrationOrchestrator runs: instant handover on one server, pre-copy across).
 */
import { resolve } from "node:path";
import { HostVmAgentClient, testbedToken } from "../../agent/index.ts";
import { defaultTestbedRoot, readTestbedState, stateDirOf, TESTBED_ID_RE } from "../../testbed/index.ts";
import { AgentGuestPlane } from "../agents/plane.ts";
import { composeProvider } from "../compose.ts";
import { PlacementDiscovery } from "../placement/discovery.ts";
import { memoryStore, type Provider, ProviderError, type StateStore } from "../types.ts";

import { TestbedRental } from "./rental.ts";

export interface TestbedProviderOptions {
  /** A testbed id (looked up under `root`) or the testbed's state folder. */
  readonly testbed: string;
  /** Where testbed folders live (default: that of `nestcloud testbed up`). */
  readonly root?: string;
  /** Where the rentals are kept (the controller's store); default: memory. */
  readonly store?: StateStore;
  /** Where the guests' definitions are kept (the controller's store); default: memory. */
  readonly guestStore?: StateStore;
  readonly log?: (msg: string) => void;
  /** How often placement is discovered when the testbed hides it (default 10 s). */
  readonly discoveryIntervalMs?: number;
  /** Trial handovers of a probe guest per discovery round (default 1; 0: none). */
  readonly trialsPerRound?: number;
}

export const TestbedProvider = {
  /** Opens the testbed named by id or folder; fails clearly when it is not up. */
  async open(o: TestbedProviderOptions): Promise<Provider> {
    const log = o.log ?? (() => {});
    const dir = testbedDir(o.testbed, o.root);
    const state = readTestbedState(dir);
    if (!state) {
      throw new ProviderError(
        "unavailable",
        `no testbed ${o.testbed} is up (no state file in ${dir}); start one with \`nestcloud testbed up <file.yaml>\``,
      );
    }
    if (!state.complete) {
      throw new ProviderError(
        "unavailable",
        `testbed ${state.id} did not finish starting; see \`nestcloud testbed status ${state.id}\``,
      );
    }
    // Its agents must answer now: a state file left by a crashed machine is not a testbed.
    try {
      const token = testbedToken(state);
      await Promise.all(
        state.hostVms.map((h) => {
          if (!h.agent?.url) throw new Error(`the agent of ${h.server}/${h.name} has no URL`);
          return new HostVmAgentClient(h.agent.url, token, { timeoutMs: 5000 }).status();
        }),
      );
    } catch (e) {
      throw new ProviderError(
        "unavailable",
        `testbed ${state.id} does not answer (${(e as Error).message}); see \`nestcloud testbed status ${state.id}\``,
      );
    }
    const rental = new TestbedRental(state, o.store ?? memoryStore(), log);
    await rental.resume();
    const plane = await AgentGuestPlane.open(rental, o.guestStore ?? memoryStore(), () => rental.now(), log);
    // A testbed that hides placement: discover it through the agents (co-residency probe),
    // the plane's completed handovers and failed ones.
    let discovery: PlacementDiscovery | undefined;
    if (rental.placementHidden) {
      discovery = new PlacementDiscovery(rental, {
        directory: rental,
        plane,
        intervalMs: o.discoveryIntervalMs,
        trialsPerRound: o.trialsPerRound,
        log,
      });
      await discovery.refresh();
      discovery.start();
    }
    return composeProvider("testbed", rental, plane, discovery, log);
  },
};

/** The testbed's state folder: the argument itself if it is one, else <root>/<id>. */
export function testbedDir(testbed: string, root?: string): string {
  if (TESTBED_ID_RE.test(testbed) && !testbed.includes("/"))
    return stateDirOf(testbed, root ?? defaultTestbedRoot());
  return resolve(testbed);
}

/**
 * What a guest data plane driven through nestcloud's agents needs from the rental: where
 * the agent of each rented host VM is, and the agents of the physical servers (memory pool,
 * handovers). Any rental whose host VMs run the agent provides it (a testbed's slices now;
 * an OpenStack project's instances later).
 */
import type { AgentEndpoint } from "../../agent/index.ts";

export interface AgentHost {
  /** A stable key for the agent (its slot: the same across rentals of one testbed slice). */
  readonly key: string;
  /** The host VM id the controller knows it by: its current rental, or the last one. */
  readonly hostVm: string;
  /** Rented and running: it may take guests. */
  readonly usable: boolean;
  /** Its host-VM agent, with the agent of its server; undefined while not known or not ready. */
  readonly endpoint: AgentEndpoint | undefined;
}

export interface AgentDirectory {
  /** Names the set of agents in messages ("testbed x1"). */
  readonly label: string;
  /** Identifies this set of agents: state saved for another (an older testbed) is stale. */
  readonly identity: string;
  /** The bearer token the agents accept. */
  token(): string;
  /** Every host-VM agent the plane may ask (also idle ones: guests started by hand show). */
  hosts(): readonly AgentHost[];
  /** The server agents, for pool files (resident memory). */
  serverAgents(): readonly { readonly server: string; readonly url: string }[];
}

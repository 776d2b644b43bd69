/**
 * An OpenStack project as a provider (`nestcloud up --provider openstack`): host VMs rented
 * through Nova (OpenStackRental), placement discovered from Nova's per-project hostIds, and,
 * given the agents' token, guests on those host VMs through nestcloud's agents (the agent
 * data plane, the same as on a testbed) found from Nova's fields (directory.ts).
 * Without an agent token the provider rents and places host VMs but holds no guests.
 */
import { readFileSync, statSync } from "node:fs";
import { readToken } from "../../agent/index.ts";
import { AgentGuestPlane } from "../agents/plane.ts";
import { composeProvider } from "../compose.ts";
import { PlacementDiscovery } from "../placement/discovery.ts";
import { type GuestDataPlane, memoryStore, type Provider, ProviderError, type StateStore } from "../types.ts";
import { type OpenStackFlags, openStackSettings, parseOpenrc } from "./credentials.ts";
import { type AgentAddressOptions, NovaAgentDirectory } from "./directory.ts";
import { isHostVmServer, OpenStackRental, type OpenStackRentalOptions } from "./rental.ts";

const NO_GUESTS =
  "this openstack provider holds no guests: start it with the host-VM agents' token (--agent-token-file) to run guests through them";

/** A data plane with no guests: renting and placement work, guest operations are refused. */
function noGuestPlane(): GuestDataPlane {
  const refuse = async (): Promise<never> => {
    throw new ProviderError("unavailable", NO_GUESTS);
  };
  return {
    observe: async () => ({ guests: [], migrations: [] }),
    inUse: async () => false,
    createGuest: refuse,
    setGuestRunning: refuse,
    deleteGuest: refuse,
    migrate: refuse,
    migration: async () => undefined,
    cancelMigration: refuse,
    close: async () => {},
  };
}

export interface OpenStackProviderOptions extends OpenStackRentalOptions {
  /** The host-VM and server agents' bearer token: with it, guests run through the agents. */
  readonly agents?: AgentAddressOptions & {
    readonly token: string;
    /** Where the guests' definitions are kept (the controller's store); default: memory. */
    readonly guestStore?: StateStore;
    /** How often the agents' addresses are re-read from Nova (default 3 s). */
    readonly refreshMs?: number;
  };
  readonly discoveryIntervalMs?: number;
  readonly log?: (msg: string) => void;
}

/** Says which party failed and how, for a start that cannot go on. */
function explain(e: unknown, o: OpenStackRentalOptions): never {
  const msg = (e as Error).message;
  if (!(e instanceof ProviderError)) throw e;
  if (/auth\/tokens: (fetch failed|.*abort|.*timeout)/i.test(msg))
    throw new ProviderError("unavailable", `Keystone at ${o.authUrl} is unreachable (${msg})`);
  if (/authenticating with Keystone: 401/.test(msg))
    throw new ProviderError(
      "unavailable",
      `Keystone at ${o.authUrl} refused user ${o.username} (domain ${o.userDomain}) for project ${o.projectName}: ${msg}`,
    );
  if (/authenticating with Keystone/.test(msg))
    throw new ProviderError("unavailable", `Keystone at ${o.authUrl} refused the request: ${msg}`);
  if (/fetch failed|abort|timeout/i.test(msg))
    throw new ProviderError("unavailable", `Nova (from Keystone's catalog) is unreachable: ${msg}`);
  throw new ProviderError(e.code, `Nova refused: ${msg}`);
}

/**
 * The provider's options from `up`'s flags, its credentials file and the environment: the
 * file must be its owner's alone (it holds a password), the agents' token is read from its file.
 */
export function openStackOptionsFrom(
  flags: OpenStackFlags,
  env: Readonly<Record<string, string | undefined>>,
  guestStore?: StateStore,
): OpenStackProviderOptions {
  let file: Record<string, string> = {};
  if (flags.credentials) {
    let text: string;
    try {
      const mode = statSync(flags.credentials).mode & 0o777;
      if (mode & 0o077)
        throw new Error(`readable by others (mode ${mode.toString(8)}); chmod 600 it: it holds a password`);
      text = readFileSync(flags.credentials, "utf8");
    } catch (e) {
      throw new ProviderError("invalid", `--os-credentials ${flags.credentials}: ${(e as Error).message}`);
    }
    file = parseOpenrc(text, flags.credentials);
  }
  const { agentTokenFile, agentNetwork, ...rental } = openStackSettings(env, flags, file);
  if (!agentTokenFile) return rental;
  let token: string;
  try {
    token = readToken(agentTokenFile);
  } catch (e) {
    throw new ProviderError("invalid", `--agent-token-file: ${(e as Error).message}`);
  }
  return { ...rental, agents: { token, guestStore, ...(agentNetwork ? { network: agentNetwork } : {}) } };
}

export const OpenStackProvider = {
  async open(o: OpenStackProviderOptions): Promise<Provider> {
    const log = o.log ?? (() => {});
    const rental = new OpenStackRental(o);
    // Authenticates and lists now: wrong credentials or an unreachable cloud fail at start.
    try {
      await rental.describe();
      await rental.hostVms();
    } catch (e) {
      explain(e, o);
    }
    let plane: GuestDataPlane = noGuestPlane();
    let directory: NovaAgentDirectory | undefined;
    if (o.agents) {
      const project = await rental.nova.projectId();
      if ((await rental.nova.poolUrl()) === undefined)
        throw new ProviderError(
          "unavailable",
          "Keystone's catalog lists no nestcloud-pool service: guests need the hosts' server agents (shared memory pool)",
        );
      directory = new NovaAgentDirectory(
        rental.nova,
        isHostVmServer,
        o.agents.token,
        `openstack project ${o.projectName}`,
        `openstack project ${project} at ${o.authUrl}`,
        { ...o.agents, log },
      );
      await directory.refresh();
      directory.start(o.agents.refreshMs ?? 3000);
      plane = await AgentGuestPlane.open(
        directory,
        o.agents.guestStore ?? memoryStore(),
        () => rental.now(),
        log,
      );
    }
    // Placement from Nova's hostIds (and the plane's completed handovers): hostId is Nova's own
    // word within a project, so no co-residency probes or trial guests are spent on it.
    const discovery = new PlacementDiscovery(rental, {
      plane: o.agents ? plane : undefined,
      intervalMs: o.discoveryIntervalMs,
      log,
    });
    await discovery.refresh();
    discovery.start();
    const provider = composeProvider("openstack", rental, plane, discovery, log);
    if (!directory) return provider;
    const dir = directory;
    return {
      ...provider,
      // A host VM Nova just made is reachable once the directory has read its address.
      async acquireHostVm(type, server) {
        const h = await provider.acquireHostVm(type, server);
        void dir.refresh().catch(() => {});
        return h;
      },
      async close() {
        await dir.stop();
        await provider.close();
      },
    };
  },
};

/**
 * An OpenStack project as a provider (`nestcloud up --provider openstack`): host VMs rented
 * through Nova (OpenStackRental), placement discovered from Nova's per-project hostIds.
 * Credentials come from the usual openrc variables (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,
 * OS_USER_DOMAIN_NAME, OS_PROJECT_NAME, OS_PROJECT_DOMAIN_NAME, OS_INTERFACE, OS_REGION_NAME)
 * and the image the host VMs boot from NESTCLOUD_OPENSTACK_IMAGE.
 *
 * Not yet: guests on these host VMs. They would need nestcloud's agents in each instance
 * (an AgentDirectory from Nova's addresses) and an L0-shared memory pool for instant
 * handovers; until then the data plane holds no guests and refuses guest operations.
 */
import { composeProvider } from "../compose.ts";
import { PlacementDiscovery } from "../placement/discovery.ts";
import { type GuestDataPlane, type Provider, ProviderError } from "../types.ts";
import { OpenStackRental, type OpenStackRentalOptions } from "./rental.ts";

const NO_GUESTS =
  "guests on OpenStack host VMs are not supported yet (they need nestcloud's agents inside the instances)";

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

/** The rental's options from openrc-style variables; names the first one missing. */
export function openStackOptionsFromEnv(env: NodeJS.ProcessEnv): OpenStackRentalOptions {
  const need = (k: string): string => {
    const v = env[k];
    if (!v) throw new ProviderError("invalid", `the openstack provider needs ${k} (source your openrc file)`);
    return v;
  };
  const iface = env.OS_INTERFACE;
  if (iface !== undefined && iface !== "public" && iface !== "internal" && iface !== "admin")
    throw new ProviderError("invalid", `OS_INTERFACE: expected public, internal or admin, got ${iface}`);
  return {
    authUrl: need("OS_AUTH_URL"),
    username: need("OS_USERNAME"),
    password: need("OS_PASSWORD"),
    userDomain: env.OS_USER_DOMAIN_NAME ?? "Default",
    projectName: need("OS_PROJECT_NAME"),
    projectDomain: env.OS_PROJECT_DOMAIN_NAME ?? "Default",
    interface: iface,
    region: env.OS_REGION_NAME,
    imageRef: need("NESTCLOUD_OPENSTACK_IMAGE"),
  };
}

export const OpenStackProvider = {
  async open(
    o: OpenStackRentalOptions & { discoveryIntervalMs?: number; log?: (msg: string) => void },
  ): Promise<Provider> {
    const rental = new OpenStackRental(o);
    await rental.describe(); // authenticates now: wrong credentials fail at start, clearly
    const discovery = new PlacementDiscovery(rental, { intervalMs: o.discoveryIntervalMs, log: o.log });
    await discovery.refresh();
    discovery.start();
    return composeProvider("openstack", rental, noGuestPlane(), discovery, o.log);
  },
};

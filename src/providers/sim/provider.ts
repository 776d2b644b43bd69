/**
 * A simulated datacenter as a provider: the simulated rental (host VMs acquired and
 * provisioned in virtual time) and the simulated data plane (guests replaying a seeded
 * synthetic trace, migrations taking the cost models' time) over one world, saved after every
 * change through a StateStore so that a controller restart (or a follower taking over)
 * continues it.
 */
import { composeProvider } from "../compose.ts";
import type { Provider, StateStore } from "../types.ts";
import { SimGuestPlane } from "./plane.ts";
import { SimRental } from "./rental.ts";
import { SimWorldState } from "./state.ts";
import type { World } from "./world.ts";

export const SimProvider = {
  /** Opens the persisted world, or starts `initial` if there is none. */
  async open(store: StateStore, initial: () => World, wallNow = () => Date.now() / 1000): Promise<Provider> {
    const state = await SimWorldState.open(store, initial, wallNow);
    return composeProvider("sim", new SimRental(state), new SimGuestPlane(state));
  },
};

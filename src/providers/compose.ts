/**
 * A rental and a data plane as the one Provider the controller drives: a snapshot is the
 * rental's host VMs with the plane's guests and migrations; a release first makes sure the
 * plane no longer uses the host VM.
 */
import {
  type GuestDataPlane,
  type HostVmRental,
  type Provider,
  ProviderError,
  type ProviderSnapshot,
} from "./types.ts";

export function composeProvider(name: string, rental: HostVmRental, plane: GuestDataPlane): Provider {
  return {
    name,
    rental,
    plane,
    now: () => rental.now(),
    clock: rental.clock,
    get speed() {
      return rental.speed;
    },
    describe: () => rental.describe(),
    async snapshot(): Promise<ProviderSnapshot> {
      // Both asked at once: one point in time (neither waits for the other).
      const now = rental.now();
      const [hostVms, { guests, migrations }] = await Promise.all([rental.hostVms(), plane.observe(now)]);
      return { now, hostVms, guests, migrations };
    },
    acquireHostVm: (type, server) => rental.acquireHostVm(type, server),
    async releaseHostVm(id) {
      if (await plane.inUse(id))
        throw new ProviderError("conflict", `host VM ${id} still hosts guests or migrations`);
      await rental.releaseHostVm(id);
    },
    createGuest: (spec, hostVm) => plane.createGuest(spec, hostVm),
    setGuestRunning: (id, running) => plane.setGuestRunning(id, running),
    deleteGuest: (id) => plane.deleteGuest(id),
    migrate: (guest, to, mechanism, seconds) => plane.migrate(guest, to, mechanism, seconds),
    migration: (id) => plane.migration(id),
    cancelMigration: (id) => plane.cancelMigration(id),
    ...(plane.rejuvenate && plane.rejuvenation
      ? {
          rejuvenate: (hostVm, mode) => plane.rejuvenate!(hostVm, mode),
          rejuvenation: (id) => plane.rejuvenation!(id),
        }
      : {}),
    async resume() {
      await rental.resume?.();
      await plane.resume?.();
    },
    async close() {
      // The plane first: its running moves end before the rental lets go of its state.
      await plane.close();
      await rental.close();
    },
  };
}

/**
 * A rental and a data plane as the one Provider the controller drives: a snapshot is the
 * rental's host VMs with the plane's guests and migrations; a release first makes sure the
 * plane no longer uses the host VM.
 */
import type { PlacementDiscovery } from "./placement/discovery.ts";
import { pairEvidence } from "./placement/evidence.ts";
import type { PlacementReport } from "./placement/report.ts";
import {
  type GuestDataPlane,
  type HostVmRental,
  NotCoResidentError,
  type Provider,
  ProviderError,
  type ProviderSnapshot,
} from "./types.ts";

/**
 * With `discovery` (a rental that hides placement), host VMs the rental names no server for
 * get the one discovery found, and an instant handover refused for lack of a shared server
 * (the map was stale) corrects the map and goes ahead as a pre-copy migration instead.
 */
export function composeProvider(
  name: string,
  rental: HostVmRental,
  plane: GuestDataPlane,
  discovery?: PlacementDiscovery,
  log: (msg: string) => void = () => {},
): Provider {
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
      const [told, { guests, migrations }] = await Promise.all([rental.hostVms(), plane.observe(now)]);
      const hostVms = discovery
        ? told.map((h) => (h.server === undefined ? { ...h, server: discovery.serverOf(h.id) } : h))
        : told;
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
    async migrate(guest, to, mechanism, seconds) {
      try {
        return await plane.migrate(guest, to, mechanism, seconds);
      } catch (e) {
        if (!(e instanceof NotCoResidentError) || mechanism !== "instant") throw e;
        // Conclusive: these two do not share a server now. Correct the map, then move anyway.
        await discovery?.record(pairEvidence(e.from, e.to, false, "trial-handover", rental.now()));
        log(
          `instant handover of ${guest} to ${to} refused (${e.message}); placement corrected, pre-copy instead`,
        );
        return plane.migrate(guest, to, "precopy", seconds);
      }
    },
    ...(plane.coMigrate ? { coMigrate: (moves) => plane.coMigrate!(moves) } : {}),
    migration: (id) => plane.migration(id),
    cancelMigration: (id) => plane.cancelMigration(id),
    ...(plane.rejuvenate && plane.rejuvenation
      ? {
          // The plane replaces a renewed host VM and rents a spare through the rental.
          rejuvenate: (hostVm, mode, opts) =>
            plane.rejuvenate!(hostVm, mode, {
              ...opts,
              renewal: {
                acquire: async (type, server) => (await rental.acquireHostVm(type, server)).id,
                release: (id) => rental.releaseHostVm(id),
                async typeOf(id) {
                  const h = (await rental.hostVms()).find((x) => x.id === id);
                  if (!h) throw new ProviderError("not-found", `no host VM ${id}`);
                  return h.type;
                },
              },
            }),
          rejuvenation: (id) => plane.rejuvenation!(id),
        }
      : {}),
    async resume() {
      await rental.resume?.();
      await plane.resume?.();
    },
    ...(discovery?.canTrial
      ? {
          async placementTrial(a: string, b: string) {
            const r = await discovery.trial(a, b);
            return { a, b, together: r.evidence?.together, ms: r.ms, detail: r.detail };
          },
        }
      : {}),
    async placement(): Promise<PlacementReport> {
      if (discovery) return discovery.report();
      const now = rental.now();
      return {
        mode: "told",
        refreshedAt: now,
        entries: (await rental.hostVms())
          .filter((h) => h.state !== "released")
          .map((h) => ({
            hostVm: h.id,
            server: h.server,
            source: h.server === undefined ? undefined : "provider",
            confidence: h.server === undefined ? 0 : 1,
            at: h.server === undefined ? undefined : now,
            conflict: false,
          })),
      };
    },
    async close() {
      await discovery?.stop();
      // The plane first: its running moves end before the rental lets go of its state.
      await plane.close();
      await rental.close();
    },
  };
}

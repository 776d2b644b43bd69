/**
 * The host-VM agent: one per host VM. Runs that host VM's guests through the qemu module
 * (create, start, stop, delete, status with heartbeats and workload reports), and does the
 * QEMU side of migrations: incoming (destination QEMU started paused, see hostvm/incoming.ts)
 * and outgoing (hostvm/outgoing.ts). Which agent to call in which order is the
 * orchestrator's job (migration-orchestrator.ts), not this one's.
 *
 * The agent is the shared app (http.ts: auth, validation, errors, OpenAPI) plus one route
 * plugin per resource (hostvm/routes) over the host VM's state (hostvm/state.ts).
 *
 * Restarted after a crash (its supervisor does that), it adopts the QEMUs its predecessor
 * left running before it answers any request (recover): each QEMU's state file says what it
 * was (hostvm/adoption.ts). A guest is a guest again (console reconnected, what it printed
 * meanwhile read from QEMU's serial log); a guest whose migration was under way gets that
 * migration back, followed from where QEMU stands (a completed one waits paused for the
 * orchestrator's confirm, or settles itself: hostvm/outgoing.ts); a destination still
 * paused is an incoming again with a fresh lease, one that runs is a guest. Only QEMUs that
 * cannot be adopted (no record, no QMP) are killed, as before.
 */
import type { FastifyBaseLogger } from "fastify";
import { MAX_MESSAGE } from "../console/index.ts";
import type { HostVmAgentConfig } from "./config.ts";
import { type ConsoleOptions, ConsoleService } from "./hostvm/console.ts";
import { consoleRoutes } from "./hostvm/routes/console.ts";
import { deviceRoutes } from "./hostvm/routes/devices.ts";
import { guestRoutes } from "./hostvm/routes/guests.ts";
import { incomingRoutes } from "./hostvm/routes/migrations-in.ts";
import { outgoingRoutes } from "./hostvm/routes/migrations-out.ts";
import { placementRoutes } from "./hostvm/routes/placement.ts";
import { powerRoutes } from "./hostvm/routes/power.ts";
import { qmpRoutes } from "./hostvm/routes/qmp.ts";
import { secvmExportRoutes } from "./hostvm/routes/secvm-exports.ts";
import { secvmRoutes } from "./hostvm/routes/secvms.ts";
import { statusRoutes } from "./hostvm/routes/status.ts";
import { workloadRoutes } from "./hostvm/routes/workloads.ts";
import { HostVm } from "./hostvm/state.ts";
import { type App, createApp } from "./http.ts";
import { SecVmExports } from "./secvm/exports.ts";
import { SecVmManager } from "./secvm/manager.ts";

export interface HostVmAgent {
  app: App;
  /** The guests' consoles (serial ports with a log), end to end encrypted. */
  consoles: ConsoleService;
  /** Its security VMs (monitoring services beside the guests, secvm/manager.ts). */
  secvms: SecVmManager;
  /** Its guests exported to security VMs of other host VMs of its server (secvm/exports.ts). */
  secvmExports: SecVmExports;
  /** Adopts (or, failing that, reaps) the QEMUs a previous agent left behind; call before listening. */
  recover(): Promise<void>;
  /** Stops every guest and incoming QEMU (graceful agent shutdown). */
  shutdown(): Promise<void>;
  /** Lets POST /v1/restart end this process (its supervisor restarts it); QEMUs are kept. */
  allowRestart(exit: () => void): void;
}

export function buildHostVmAgent(
  cfg: HostVmAgentConfig,
  token: string,
  logger: FastifyBaseLogger,
  opts: { console?: ConsoleOptions } = {},
): HostVmAgent {
  const host = new HostVm(cfg, token, logger);
  const consoles = new ConsoleService(host, token, opts.console);
  host.consoleDrain = (guestId, destinationUrl) => consoles.drainInput(guestId, undefined, destinationUrl);
  const app = createApp(token, logger, {
    title: `nestcloud host-VM agent ${cfg.server}/${cfg.hostVm}`,
    // A client hello (with its ticket) is the largest message a console client sends.
    websocketMaxPayload: MAX_MESSAGE + 2048,
  });
  for (const routes of [
    statusRoutes,
    guestRoutes,
    deviceRoutes,
    workloadRoutes,
    qmpRoutes,
    outgoingRoutes,
    incomingRoutes,
    placementRoutes,
    powerRoutes,
  ]) {
    void app.register(routes, { host });
  }
  void app.register(consoleRoutes, { host, consoles });
  const secvms = new SecVmManager(host);
  const secvmExports = new SecVmExports(host);
  // One watcher per guest, local or on another host VM (a QEMU has one NBD server).
  secvmExports.localWatcher = (g) =>
    [...secvms.vms.values()].find((v) => v.req.targets.some((t) => t.guestId === g && !t.via))?.id;
  secvms.exportedTo = (g) => secvmExports.exportOf(g);
  host.beforeDeparture = (g) => secvms.departing(g);
  void app.register(secvmRoutes, { secvms });
  void app.register(secvmExportRoutes, { exports: secvmExports });
  return {
    app,
    consoles,
    secvms,
    secvmExports,
    // The guests' QEMUs first: the security VMs are started again against them.
    recover: async () => {
      await host.recover();
      await secvms.recover();
    },
    allowRestart: (exit) => {
      // The consoles first: a keystroke QEMU read is recorded before the agent goes.
      host.restartSelf = () => void consoles.handOff().finally(exit);
    },
    shutdown: async () => {
      consoles.closeAll();
      await secvms.shutdown();
      await secvmExports.shutdown();
      await host.shutdown();
    },
  };
}

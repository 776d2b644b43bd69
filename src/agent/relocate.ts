/**
 * Moving a host VM of a testbed to another server, as the underlying cloud's live migration
 * of a host VM would (`nestcloud testbed move`). Both server agents are told (the old one
 * forgets it, the new one accounts for it) and the testbed restarts its agent on the new
 * server. The controller is told nothing: it finds out by placement discovery.
 *
 * A host VM with guests takes them along, as a live migration of the whole VM would: their
 * RAM lives in the server's pool (a /dev/shm folder here), so each one is pre-copied to a
 * landing agent of the same host VM on the new server, then that agent's QEMUs are adopted
 * by the host VM's agent there. The guests keep their ids and their host VM; each pauses
 * only for its own pre-copy's downtime. If a guest cannot be moved, the ones already moved
 * go back and the host VM stays where it was.
 */
import {
  type AgentLauncher,
  type HostVmRecord,
  moveHostVmProcesses,
  startLandingAgent,
  stopLandingAgent,
  type TestbedState,
  writeTestbedState,
} from "../testbed/index.ts";
import { endpointOf, hostVmClient, serverClient, testbedToken } from "./launcher.ts";
import { type AgentEndpoint, MigrationOrchestrator } from "./migration-orchestrator.ts";

export class RelocationRefusedError extends Error {
  override name = "RelocationRefusedError";
}

export interface RelocationResult {
  movedInMs: number;
  /** The guests that moved along, each with its pre-copy's pause. */
  guests: { guestId: string; downtimeMs: number | null; endToEndMs: number }[];
}

export async function relocateHostVm(
  state: TestbedState,
  server: string,
  hostVm: string,
  toServer: string,
  launcher: AgentLauncher,
  opts: { readyTimeoutMs?: number; log?: (msg: string) => void } = {},
): Promise<RelocationResult> {
  const t0 = Date.now();
  const hv = state.hostVms.find((h) => h.server === server && h.name === hostVm);
  if (!hv) throw new RelocationRefusedError(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (!state.servers.some((s) => s.name === toServer))
    throw new RelocationRefusedError(`no server ${toServer} in testbed ${state.id}`);
  if (state.hostVms.some((h) => h.server === toServer && h.name === hostVm))
    throw new RelocationRefusedError(`server ${toServer} has a host VM named ${hostVm} already`);
  const { guests } = await hostVmClient(state, server, hostVm).status();
  const busy = guests.filter((g) => g.state !== "running" && g.state !== "stopped");
  if (busy.length > 0)
    throw new RelocationRefusedError(
      `host VM ${server}/${hostVm}: ${busy.map((g) => `${g.guestId} is ${g.state}`).join(", ")}; try again once settled`,
    );
  const stopped = guests.filter((g) => g.state === "stopped");
  if (stopped.length > 0)
    throw new RelocationRefusedError(
      `host VM ${server}/${hostVm}: stopped guest(s) ${stopped.map((g) => g.guestId).join(", ")} cannot be live-migrated; start or delete them first`,
    );
  await serverClient(state, toServer).attachHostVm(hostVm, { memoryMiB: hv.memoryMiB, cpus: hv.cpus });
  const moved: RelocationResult["guests"] = [];
  if (guests.length > 0) {
    try {
      await carryGuests(
        state,
        hv,
        server,
        toServer,
        guests.map((g) => g.guestId),
        launcher,
        opts,
        moved,
      );
    } catch (e) {
      await serverClient(state, toServer)
        .detachHostVm(hostVm)
        .catch(() => {});
      throw e;
    }
  }
  await serverClient(state, server).detachHostVm(hostVm);
  opts.log?.(`moving host VM ${server}/${hostVm} to server ${toServer}`);
  await moveHostVmProcesses(state, server, hostVm, toServer, launcher, opts.readyTimeoutMs);
  writeTestbedState(state);
  return { movedInMs: Date.now() - t0, guests: moved };
}

/** Pre-copies each guest to a landing agent on `toServer`; on failure, moves them back. */
async function carryGuests(
  state: TestbedState,
  hv: HostVmRecord,
  server: string,
  toServer: string,
  guestIds: readonly string[],
  launcher: AgentLauncher,
  opts: { readyTimeoutMs?: number; log?: (msg: string) => void },
  moved: RelocationResult["guests"],
): Promise<void> {
  const landing = await startLandingAgent(state, server, hv.name, toServer, launcher, opts.readyTimeoutMs);
  const to = state.servers.find((s) => s.name === toServer)!;
  const there: AgentEndpoint = {
    server: toServer,
    hostVm: hv.name,
    hostVmUrl: landing.agent.url!,
    serverUrl: to.agent!.url!,
    address: to.address,
  };
  const here = endpointOf(state, server, hv.name);
  const orch = new MigrationOrchestrator(testbedToken(state), { log: opts.log });
  try {
    for (const guestId of guestIds) {
      opts.log?.(`host VM ${server}/${hv.name} -> ${toServer}: pre-copying ${guestId}`);
      const o = await orch.migrate({ guestId, from: here, to: there, mechanism: "precopy" });
      moved.push({ guestId, downtimeMs: o.downtimeMs, endToEndMs: o.endToEndMs });
    }
  } catch (e) {
    opts.log?.(`host VM ${server}/${hv.name} stays on ${server}: ${(e as Error).message}`);
    const stranded: string[] = [];
    for (const g of moved)
      await orch
        .migrate({ guestId: g.guestId, from: there, to: here, mechanism: "precopy" })
        .catch((back: Error) => {
          opts.log?.(`moving ${g.guestId} back failed: ${back.message}`);
          stranded.push(g.guestId);
        });
    moved.length = 0;
    // A guest that could not come back keeps running on the landing agent (down stops it).
    if (stranded.length === 0) await stopLandingAgent(state, hv);
    throw new RelocationRefusedError(
      `moving host VM ${server}/${hv.name} to ${toServer}: ${(e as Error).message}` +
        (stranded.length > 0 ? ` (left on ${toServer}'s landing agent: ${stranded.join(", ")})` : ""),
    );
  }
}

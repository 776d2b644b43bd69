/**
 * Moving a host VM of a testbed to another server, as the underlying cloud's live migration
 * of a host VM would (`nestcloud testbed move`). Both server agents are told (the old one
 * forgets it, the new one accounts for it) and the testbed restarts its agent on the new
 * server. Guests' RAM lives in the old server's pool, so only an empty host VM moves now: a
 * host VM with guests is refused, naming them (moving them along is not done yet).
 */
import {
  type AgentLauncher,
  moveHostVmProcesses,
  type TestbedState,
  writeTestbedState,
} from "../testbed/index.ts";
import { hostVmClient, serverClient } from "./launcher.ts";

export class RelocationRefusedError extends Error {
  override name = "RelocationRefusedError";
}

export async function relocateHostVm(
  state: TestbedState,
  server: string,
  hostVm: string,
  toServer: string,
  launcher: AgentLauncher,
  opts: { readyTimeoutMs?: number; log?: (msg: string) => void } = {},
): Promise<{ movedInMs: number }> {
  const t0 = Date.now();
  const hv = state.hostVms.find((h) => h.server === server && h.name === hostVm);
  if (!hv) throw new RelocationRefusedError(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (!state.servers.some((s) => s.name === toServer))
    throw new RelocationRefusedError(`no server ${toServer} in testbed ${state.id}`);
  if (state.hostVms.some((h) => h.server === toServer && h.name === hostVm))
    throw new RelocationRefusedError(`server ${toServer} has a host VM named ${hostVm} already`);
  const { guests } = await hostVmClient(state, server, hostVm).status();
  if (guests.length > 0)
    throw new RelocationRefusedError(
      `host VM ${server}/${hostVm} runs ${guests.map((g) => g.guestId).join(", ")}: their memory is in ${server}'s pool; move them away first (moving guests along is not supported yet)`,
    );
  await serverClient(state, server).detachHostVm(hostVm);
  try {
    await serverClient(state, toServer).attachHostVm(hostVm, { memoryMiB: hv.memoryMiB, cpus: hv.cpus });
  } catch (e) {
    // Put it back where it was: nothing moved.
    await serverClient(state, server)
      .attachHostVm(hostVm, { memoryMiB: hv.memoryMiB, cpus: hv.cpus })
      .catch(() => {});
    throw e;
  }
  opts.log?.(`moving host VM ${server}/${hostVm} to server ${toServer}`);
  await moveHostVmProcesses(state, server, hostVm, toServer, launcher, opts.readyTimeoutMs);
  writeTestbedState(state);
  return { movedInMs: Date.now() - t0 };
}

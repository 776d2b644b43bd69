/**
 * Runs nestcloud's agents on a testbed: the AgentLauncher the testbed module asks for
 * (command lines and configs), booting the guests a testbed file describes, and the
 * endpoints and clients a caller needs to talk to a testbed's agents.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GuestImage } from "../qemu/index.ts";
import type {
  AgentLauncher,
  HostVmAgentContext,
  ServerAgentContext,
  TestbedSpec,
  TestbedState,
} from "../testbed/index.ts";
import type { GuestStatus } from "./api-types.ts";
import { HostVmAgentClient, ServerAgentClient } from "./client.ts";
import { type HostVmAgentConfig, loadAgentConfig, type ServerAgentConfig } from "./config.ts";
import type { AgentEndpoint } from "./migration-orchestrator.ts";
import { readToken } from "./token.ts";

/**
 * node + bin/nestcloud-agent.js (absolute, so any working directory works), which runs the
 * built agent when dist/ is fresh and the sources through tsx otherwise. The path holds
 * from src/agent/ and from dist/chunks/ alike: both are two levels below the package root.
 */
export function agentCommand(): string[] {
  return [process.execPath, fileURLToPath(new URL("../../bin/nestcloud-agent.js", import.meta.url))];
}

export interface LauncherOptions {
  image: Pick<GuestImage, "kernel" | "initrd" | "append">;
  /** TCG translation cache per guest, MiB (QEMU's default is 1 GiB, touched lazily). */
  tcgTbSizeMiB?: number;
  /**
   * The host-VM agents' QEMU (default: the system's qemu-system-x86_64), e.g. the private
   * QEMU 10 of scripts/ensure-qemu10.sh: its guests then live-update by cpr-transfer.
   */
  qemuBinary?: string;
}

export function agentLauncher(opts: LauncherOptions): AgentLauncher {
  const base = agentCommand();
  return {
    server(ctx: ServerAgentContext) {
      const config: ServerAgentConfig = {
        role: "server",
        testbedId: ctx.testbedId,
        server: ctx.server.name,
        address: ctx.server.address,
        poolDir: ctx.server.poolDir,
        tokenFile: ctx.tokenFile,
        readyFile: ctx.readyFile,
        iface: ctx.server.iface,
        hostVms: ctx.hostVms.map((h) => ({ name: h.name, memoryMiB: h.memoryMiB, cpus: h.cpus })),
      };
      return { argv: [...base, "--config", ctx.configFile], config };
    },
    hostVm(ctx: HostVmAgentContext) {
      const config: HostVmAgentConfig = {
        role: "hostvm",
        testbedId: ctx.testbedId,
        server: ctx.server.name,
        hostVm: ctx.hostVm.name,
        address: ctx.server.address,
        poolDir: ctx.server.poolDir,
        qemuDir: ctx.hostVm.qemuDir,
        // Per server (all its host VMs see it), on disk: guests' disks and serial logs.
        storeDir: join(ctx.server.stateDir, "guests"),
        // Per host VM: images a disk may start from.
        imageDir: join(ctx.hostVm.stateDir, "images"),
        tokenFile: ctx.tokenFile,
        readyFile: ctx.readyFile,
        serverAgentUrl: ctx.serverAgentUrl,
        memoryMiB: ctx.hostVm.memoryMiB,
        cpus: ctx.hostVm.cpus,
        image: { kernel: opts.image.kernel, initrd: opts.image.initrd, append: opts.image.append },
        qemu:
          opts.tcgTbSizeMiB || opts.qemuBinary
            ? {
                ...(opts.tcgTbSizeMiB ? { tcgTbSizeMiB: opts.tcgTbSizeMiB } : {}),
                ...(opts.qemuBinary ? { binary: opts.qemuBinary } : {}),
              }
            : undefined,
      };
      return { argv: [...base, "--config", ctx.configFile], config };
    },
  };
}

/**
 * The launcher a running testbed was started with, rebuilt from a host-VM agent's config
 * file (its guest image and QEMU options): restarting or moving an agent needs no image build.
 */
export function launcherOf(state: TestbedState): AgentLauncher {
  const hv = state.hostVms[0];
  if (!hv) throw new Error(`testbed ${state.id} has no host VMs`);
  const cfg = loadAgentConfig(join(hv.stateDir, "agent.json"));
  if (cfg.role !== "hostvm") throw new Error(`${hv.stateDir}/agent.json is not a host-VM agent's config`);
  const image = { kernel: cfg.image.kernel, initrd: cfg.image.initrd, append: cfg.image.append ?? "" };
  return agentLauncher({ image, tcgTbSizeMiB: cfg.qemu?.tcgTbSizeMiB, qemuBinary: cfg.qemu?.binary });
}

/** How to reach one host VM of a testbed (for the orchestrator and clients). */
export function endpointOf(state: TestbedState, server: string, hostVm: string): AgentEndpoint {
  const s = state.servers.find((x) => x.name === server);
  const h = state.hostVms.find((x) => x.server === server && x.name === hostVm);
  if (!s || !h) throw new Error(`no host VM ${server}/${hostVm} in testbed ${state.id}`);
  if (!s.agent?.url || !h.agent?.url)
    throw new Error(`agents of ${server}/${hostVm} have no URL (not ready)`);
  return { server, hostVm, hostVmUrl: h.agent.url, serverUrl: s.agent.url, address: s.address };
}

export function testbedToken(state: TestbedState): string {
  return readToken(state.tokenFile);
}

export function hostVmClient(state: TestbedState, server: string, hostVm: string): HostVmAgentClient {
  return new HostVmAgentClient(endpointOf(state, server, hostVm).hostVmUrl, testbedToken(state));
}

export function serverClient(state: TestbedState, server: string): ServerAgentClient {
  const s = state.servers.find((x) => x.name === server);
  if (!s?.agent?.url) throw new Error(`no server agent ${server} in testbed ${state.id}`);
  return new ServerAgentClient(s.agent.url, testbedToken(state));
}

/**
 * Boots the guests of a testbed file, at most `parallel` at once (TCG boots are CPU-bound:
 * more at once only makes each slower).
 */
export async function bootGuests(
  state: TestbedState,
  spec: TestbedSpec,
  opts: { parallel?: number; log?: (msg: string) => void } = {},
): Promise<GuestStatus[]> {
  const queue = [...(spec.guests ?? [])];
  const out: GuestStatus[] = [];
  const worker = async () => {
    for (let g = queue.shift(); g; g = queue.shift()) {
      opts.log?.(`booting guest ${g.name} on ${g.server}/${g.hostVm} (${g.memoryMiB} MiB)`);
      const st = await hostVmClient(state, g.server, g.hostVm).createGuest({
        guestId: g.name,
        memoryMiB: g.memoryMiB,
        cpus: g.cpus,
        workloads: g.workloads,
      });
      out.push(st);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 2) }, worker));
  return out;
}

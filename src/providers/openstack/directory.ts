/**
 * Where the agents of an OpenStack project's host VMs are, from what Nova tells the project
 * (the AgentDirectory the agent data plane drives guests through):
 * - a host VM's agent listens on its fixed address (Nova's `addresses`; the network named by
 *   the operator, else the first in name order) at the port in its server metadata
 *   `nestcloud-agent-port` (the image's first-boot script publishes it; default 7310);
 * - the name its server agent keeps it under is what that agent says (its status' hostVm);
 * - its physical host is its `hostId` (equal ids = one host, within the project), and that
 *   host's server agent (shared memory pool, handover broker) is what the cloud's pool
 *   service (catalog type nestcloud-pool) names for the hostId.
 * Nothing else of the host is used: where a host VM runs is known from hostId alone.
 * The directory is read synchronously by the plane, so refresh() keeps a copy current.
 */
import type { AgentEndpoint } from "../../agent/index.ts";
import { HostVmAgentClient } from "../../agent/index.ts";
import type { AgentDirectory, AgentHost } from "../agents/directory.ts";
import type { NovaClient, NovaServer } from "./nova.ts";

export const AGENT_PORT_KEY = "nestcloud-agent-port";
export const DEFAULT_AGENT_PORT = 7310;

export interface AgentAddressOptions {
  /** The network whose fixed address the agents listen on (default: the first by name). */
  readonly network?: string;
  /** When a server's metadata names no port (default 7310). */
  readonly defaultPort?: number;
  readonly scheme?: "http" | "https";
}

/** A host VM's agent as Nova's fields place it, or why they do not. */
export type AgentAddress =
  | { readonly ok: true; readonly address: string; readonly url: string }
  | { readonly ok: false; readonly reason: string };

/** The agent's URL from a server's addresses and metadata (pure). */
export function agentAddressOf(s: NovaServer, o: AgentAddressOptions = {}): AgentAddress {
  const nets = o.network !== undefined ? [o.network] : Object.keys(s.addresses).sort();
  const fixed = nets.flatMap((n) => (s.addresses[n] ?? []).filter((a) => a.type !== "floating"));
  const a = fixed.find((x) => x.version === 4) ?? fixed.find((x) => x.version === 6);
  if (!a)
    return {
      ok: false,
      reason: `server ${s.id} has no fixed address${o.network !== undefined ? ` on network ${o.network}` : ""}`,
    };
  const raw = s.metadata[AGENT_PORT_KEY];
  const port = raw === undefined ? (o.defaultPort ?? DEFAULT_AGENT_PORT) : Number(raw);
  if (!/^\d{1,5}$/.test(raw ?? String(port)) || !Number.isInteger(port) || port < 1 || port > 65535)
    return {
      ok: false,
      reason: `server ${s.id}: metadata ${AGENT_PORT_KEY}=${String(raw).slice(0, 20)} is no port`,
    };
  const host = a.version === 6 ? `[${a.addr}]` : a.addr;
  return { ok: true, address: a.addr, url: `${o.scheme ?? "http"}://${host}:${port}` };
}

/** What the directory learnt about one server beyond Nova (cached: neither changes while it runs). */
export interface KnownAgent {
  /** The name its server agent keeps it under (its agent's status). */
  readonly name: string;
}

/**
 * The project's host VMs as agent hosts (pure): usable when ACTIVE, its agent placed by
 * Nova's fields, its name known and its hostId's server agent known.
 */
export function agentHostsOf(
  servers: readonly NovaServer[],
  serverAgents: ReadonlyMap<string, string>,
  known: ReadonlyMap<string, KnownAgent>,
  o: AgentAddressOptions = {},
): AgentHost[] {
  return servers.map((s): AgentHost => {
    const at = agentAddressOf(s, o);
    const serverUrl = s.hostId === "" ? undefined : serverAgents.get(s.hostId);
    const name = known.get(s.id)?.name;
    const endpoint: AgentEndpoint | undefined =
      at.ok && serverUrl && name
        ? { server: s.hostId, hostVm: name, hostVmUrl: at.url, serverUrl, address: at.address }
        : undefined;
    return { key: s.id, hostVm: s.id, usable: s.status === "ACTIVE" && endpoint !== undefined, endpoint };
  });
}

export class NovaAgentDirectory implements AgentDirectory {
  private servers: NovaServer[] = [];
  private readonly hostAgents = new Map<string, string>();
  private readonly known = new Map<string, KnownAgent>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly nova: NovaClient,
    /** The servers that are ours (the rental's tag). */
    private readonly ours: (s: NovaServer) => boolean,
    private readonly agentToken: string,
    readonly label: string,
    readonly identity: string,
    private readonly o: AgentAddressOptions & { log?: (msg: string) => void } = {},
  ) {}

  token(): string {
    return this.agentToken;
  }

  hosts(): readonly AgentHost[] {
    return agentHostsOf(this.servers, this.hostAgents, this.known, this.o);
  }

  serverAgents(): readonly { server: string; url: string }[] {
    // Only the hosts our host VMs are on now (a hostId is one host of this project).
    const live = new Set(this.servers.map((s) => s.hostId));
    return [...this.hostAgents].filter(([h]) => live.has(h)).map(([server, url]) => ({ server, url }));
  }

  /** Re-reads the project's servers; asks the pool service and the agents about new ones. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const servers = (await this.nova.servers()).filter(this.ours);
    const unknownHosts = [...new Set(servers.map((s) => s.hostId))].filter(
      (h) => h !== "" && !this.hostAgents.has(h),
    );
    for (const h of unknownHosts) {
      const p = await this.nova.poolHost(h);
      if (p) this.hostAgents.set(h, p.agentUrl);
      else this.o.log?.(`the pool service knows no server agent for hostId ${h.slice(0, 12)}`);
    }
    await Promise.all(
      servers
        .filter((s) => s.status === "ACTIVE" && !this.known.has(s.id))
        .map(async (s) => {
          const at = agentAddressOf(s, this.o);
          if (!at.ok) return;
          const st = await new HostVmAgentClient(at.url, this.agentToken, { timeoutMs: 5000 })
            .status()
            .catch(() => undefined); // not up yet: asked again next round
          // Its name goes into the server agent's ledger and URLs: a plain, bounded one only.
          if (st && typeof st.hostVm === "string" && /^[A-Za-z0-9._-]{1,64}$/.test(st.hostVm))
            this.known.set(s.id, { name: st.hostVm });
          else if (st) this.o.log?.(`the agent of ${s.id} gives no usable name; not used`);
        }),
    );
    for (const id of this.known.keys()) if (!servers.some((s) => s.id === id)) this.known.delete(id);
    this.servers = servers;
  }

  /** Refreshes every intervalMs (failures logged, the last view kept). */
  start(intervalMs: number): void {
    this.timer ??= setInterval(() => {
      this.refresh().catch((e) => this.o.log?.(`agent directory refresh failed: ${(e as Error).message}`));
    }, intervalMs);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing?.catch(() => {});
  }
}

/**
 * The agent data plane's view of its agents: every host-VM agent's status (the last good one
 * when an agent does not answer, so one slow agent does not make its guests vanish from an
 * audit), the pool files per server (resident memory), and agent errors turned into
 * ProviderErrors.
 */
import {
  AgentHttpError,
  AgentUnreachableError,
  type GuestStatus,
  HostVmAgentClient,
  type HostVmStatus,
  type PoolFileView,
  ServerAgentClient,
} from "../../agent/index.ts";
import { ProviderError } from "../types.ts";
import type { AgentDirectory, AgentHost } from "./directory.ts";

/** Reads during an audit wait this long at most: the audit runs every few seconds. */
const READ_TIMEOUT_MS = 5000;

export interface HostStatus {
  host: AgentHost;
  /** Null when the agent never answered. */
  status: HostVmStatus | null;
  /** The status is a previous one: the agent did not answer this time. */
  stale: boolean;
}

export interface Located {
  host: AgentHost;
  guest: GuestStatus;
}

/** Which copy of a guest counts when two agents list it (mid-handover): running beats in-flight. */
const RANK: Record<GuestStatus["state"], number> = {
  running: 3,
  booting: 3,
  migrating: 2,
  paused: 2,
  stopped: 1,
  failed: 0,
};

export class Agents {
  private readonly last = new Map<string, HostVmStatus>();
  private readonly failing = new Set<string>();

  constructor(
    readonly directory: AgentDirectory,
    private readonly log: (msg: string) => void,
  ) {}

  /** The agent of a host VM (its current or last rental), or why there is none. */
  host(hostVm: string): AgentHost {
    const h = this.directory.hosts().find((x) => x.hostVm === hostVm);
    if (!h) throw new ProviderError("not-found", `no host VM ${hostVm} on ${this.directory.label}`);
    return h;
  }

  client(host: AgentHost, timeoutMs?: number): HostVmAgentClient {
    if (!host.endpoint)
      throw new ProviderError("unavailable", `the agent of host VM ${host.hostVm} has no URL (not ready)`);
    return new HostVmAgentClient(
      host.endpoint.hostVmUrl,
      this.directory.token(),
      timeoutMs ? { timeoutMs } : {},
    );
  }

  /** Every host-VM agent's status, read in parallel. */
  async statuses(): Promise<HostStatus[]> {
    return Promise.all(
      this.directory.hosts().map(async (host): Promise<HostStatus> => {
        const key = host.key;
        try {
          const status = await this.client(host, READ_TIMEOUT_MS).status();
          this.last.set(key, status);
          if (this.failing.delete(key)) this.log(`host-VM agent ${key} answers again`);
          return { host, status, stale: false };
        } catch (e) {
          if (!this.failing.has(key)) {
            this.failing.add(key);
            this.log(`host-VM agent ${key} does not answer (${(e as Error).message}); using its last status`);
          }
          return { host, status: this.last.get(key) ?? null, stale: true };
        }
      }),
    );
  }

  /** Pool files per server (name -> file), for resident memory; empty for a server that does not answer. */
  async poolFiles(): Promise<Map<string, Map<string, PoolFileView>>> {
    const out = new Map<string, Map<string, PoolFileView>>();
    await Promise.all(
      this.directory.serverAgents().map(async (s) => {
        try {
          const status = await new ServerAgentClient(s.url, this.directory.token(), {
            timeoutMs: READ_TIMEOUT_MS,
          }).status();
          out.set(s.server, new Map(status.poolFiles.map((f) => [f.name, f])));
        } catch {
          // Resident memory then falls back to the guest's size.
        }
      }),
    );
    return out;
  }

  /** The copy of each guest that counts, by guest id. */
  static placements(statuses: readonly HostStatus[]): Map<string, Located> {
    const out = new Map<string, Located>();
    for (const s of statuses) {
      for (const g of s.status?.guests ?? []) {
        const prev = out.get(g.guestId);
        if (!prev || RANK[g.state] > RANK[prev.guest.state]) out.set(g.guestId, { host: s.host, guest: g });
      }
    }
    return out;
  }

  /** Where a guest is now (fresh reads), or undefined. */
  async locate(guestId: string): Promise<Located | undefined> {
    return Agents.placements(await this.statuses()).get(guestId);
  }
}

/** An agent's refusal or failure as the provider error the controller understands. */
export function providerError(e: unknown, doing: string): Error {
  if (e instanceof ProviderError) return e;
  if (e instanceof AgentHttpError) {
    const code =
      e.status === 404
        ? "not-found"
        : e.status === 400
          ? "invalid"
          : e.status < 500
            ? "conflict"
            : "unavailable";
    return new ProviderError(code, `${doing}: ${e.body.message}`);
  }
  if (e instanceof AgentUnreachableError)
    return new ProviderError("unavailable", `${doing}: agent unreachable (${e.causeText})`);
  return new ProviderError("unavailable", `${doing}: ${(e as Error).message}`);
}

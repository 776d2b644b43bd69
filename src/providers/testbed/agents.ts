/**
 * The testbed provider's view of its agents: every slice's status (the last good one when an
 * agent does not answer, so one slow agent does not make its guests vanish from an audit),
 * the pool files per server (resident memory), and agent errors turned into ProviderErrors.
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
import type { HostVmRecord, TestbedState } from "../../testbed/index.ts";
import { ProviderError } from "../types.ts";

/** Reads during an audit wait this long at most: the audit runs every few seconds. */
const READ_TIMEOUT_MS = 5000;

export interface SliceStatus {
  server: string;
  slice: string;
  /** Null when the agent never answered. */
  status: HostVmStatus | null;
  /** The status is a previous one: the agent did not answer this time. */
  stale: boolean;
}

export interface Located {
  server: string;
  slice: string;
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
    private readonly state: () => TestbedState,
    private readonly token: string,
    private readonly log: (msg: string) => void,
  ) {}

  hostVm(server: string, slice: string, timeoutMs?: number): HostVmAgentClient {
    const h = this.record(server, slice);
    if (!h.agent?.url)
      throw new ProviderError("unavailable", `the agent of slice ${server}/${slice} has no URL`);
    return new HostVmAgentClient(h.agent.url, this.token, timeoutMs ? { timeoutMs } : {});
  }

  record(server: string, slice: string): HostVmRecord {
    const h = this.state().hostVms.find((x) => x.server === server && x.name === slice);
    if (!h) throw new ProviderError("not-found", `no slice ${server}/${slice} in the testbed`);
    return h;
  }

  /** Every slice's status, read in parallel. */
  async slices(): Promise<SliceStatus[]> {
    return Promise.all(
      this.state().hostVms.map(async (h): Promise<SliceStatus> => {
        const key = `${h.server}/${h.name}`;
        try {
          const status = await this.hostVm(h.server, h.name, READ_TIMEOUT_MS).status();
          this.last.set(key, status);
          if (this.failing.delete(key)) this.log(`host-VM agent ${key} answers again`);
          return { server: h.server, slice: h.name, status, stale: false };
        } catch (e) {
          if (!this.failing.has(key)) {
            this.failing.add(key);
            this.log(`host-VM agent ${key} does not answer (${(e as Error).message}); using its last status`);
          }
          return { server: h.server, slice: h.name, status: this.last.get(key) ?? null, stale: true };
        }
      }),
    );
  }

  /** Pool files per server (name -> file), for resident memory; empty for a server that does not answer. */
  async poolFiles(): Promise<Map<string, Map<string, PoolFileView>>> {
    const st = this.state();
    const out = new Map<string, Map<string, PoolFileView>>();
    await Promise.all(
      st.servers.map(async (s) => {
        if (!s.agent?.url) return;
        try {
          const status = await new ServerAgentClient(s.agent.url, this.token, {
            timeoutMs: READ_TIMEOUT_MS,
          }).status();
          out.set(s.name, new Map(status.poolFiles.map((f) => [f.name, f])));
        } catch {
          // Resident memory then falls back to the guest's size.
        }
      }),
    );
    return out;
  }

  /** The copy of each guest that counts, by guest id. */
  static placements(slices: readonly SliceStatus[]): Map<string, Located> {
    const out = new Map<string, Located>();
    for (const s of slices) {
      for (const g of s.status?.guests ?? []) {
        const prev = out.get(g.guestId);
        if (!prev || RANK[g.state] > RANK[prev.guest.state])
          out.set(g.guestId, { server: s.server, slice: s.slice, guest: g });
      }
    }
    return out;
  }

  /** Where a guest is now (fresh reads), or undefined. */
  async locate(guestId: string): Promise<Located | undefined> {
    return Agents.placements(await this.slices()).get(guestId);
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

/**
 * A running testbed's slices as rented host VMs. A testbed cannot add slices while it runs,
 * so its slices are a fixed pool: all are rented at the start; "release" returns an empty
 * slice to the pool and "acquire" rents an idle one again under a new host-VM id (a released
 * host VM is final, as in a real cloud). Every slice runs nestcloud's host-VM agent, so the
 * rental is also the directory an agent data plane uses.
 */
import { type AgentEndpoint, endpointOf, HostVmAgentClient, testbedToken } from "../../agent/index.ts";
import { type HostVmRecord, hostVmKey, readTestbedState, type TestbedState } from "../../testbed/index.ts";
import type { AgentDirectory, AgentHost } from "../agents/directory.ts";
import { type HostVmRental, ProviderError, type ProviderHostVm, type StateStore } from "../types.ts";
import { describeTestbed, initialWorld, type Rental, type TestbedWorld, typeName } from "./world.ts";

export class TestbedRental implements HostVmRental, AgentDirectory {
  readonly name = "testbed";
  readonly clock = "wall";
  readonly speed = 1;
  private saving: Promise<void> = Promise.resolve();
  private readonly described: ReturnType<typeof describeTestbed>;
  private world: TestbedWorld;

  constructor(
    private testbed: TestbedState,
    private readonly store: StateStore,
    private readonly log: (msg: string) => void,
  ) {
    this.described = describeTestbed(testbed);
    this.world = initialWorld(testbed);
  }

  /** The testbed hides placement (`placement: hidden`): host VMs carry no server. */
  get placementHidden(): boolean {
    return this.testbed.spec.placement === "hidden";
  }

  get label(): string {
    return `testbed ${this.testbed.id}`;
  }

  get identity(): string {
    return `testbed ${this.testbed.id} created ${this.testbed.createdAt}`;
  }

  /** The saved rentals if they belong to this very testbed, else every slice rented. */
  async resume(): Promise<void> {
    await this.saving;
    const text = await this.store.load();
    const saved = text ? (JSON.parse(text) as TestbedWorld) : undefined;
    if (
      saved?.version === 1 &&
      saved.testbedId === this.testbed.id &&
      saved.createdAt === this.testbed.createdAt
    ) {
      this.world = {
        version: 1,
        testbedId: saved.testbedId,
        createdAt: saved.createdAt,
        rentals: saved.rentals,
      };
    } else {
      if (saved) this.log(`saved testbed state is of another testbed (${saved.testbedId}); starting over`);
      this.world = initialWorld(this.testbed);
      await this.persist();
    }
  }

  /** The testbed's state file, re-read: a restarted agent has a new URL. */
  state(): TestbedState {
    const s = readTestbedState(this.testbed.stateDir);
    if (!s || s.id !== this.testbed.id || s.createdAt !== this.testbed.createdAt)
      throw new ProviderError("unavailable", `testbed ${this.testbed.id} is gone (${this.testbed.stateDir})`);
    this.testbed = s;
    return s;
  }

  private async persist(): Promise<void> {
    const json = JSON.stringify(this.world);
    // Serialized: a later save never lands before an earlier one.
    this.saving = this.saving.then(() => this.store.save(json));
    await this.saving;
  }

  now(): number {
    return Date.now() / 1000;
  }

  async describe() {
    return this.described;
  }

  // ---- the directory the agent data plane uses ----------------------------------------------

  token(): string {
    return testbedToken(this.testbed);
  }

  hosts(): readonly AgentHost[] {
    const st = this.state();
    return st.hostVms.map((h): AgentHost => {
      const r = this.rentalOf(h);
      let endpoint: AgentEndpoint | undefined;
      try {
        endpoint = endpointOf(st, h.server, h.name);
      } catch {
        endpoint = undefined; // not ready yet (no URL)
      }
      return { key: hostVmKey(h), hostVm: r.id, usable: r.state === "running", endpoint };
    });
  }

  serverAgents(): readonly { server: string; url: string }[] {
    return this.state().servers.flatMap((s) => (s.agent?.url ? [{ server: s.name, url: s.agent.url }] : []));
  }

  // ---- host VMs: renting the fixed slices ---------------------------------------------------

  async hostVms(): Promise<readonly ProviderHostVm[]> {
    // Re-read: the testbed may have moved a slice to another server.
    try {
      this.state();
    } catch {
      // gone: report the last known world; the next call that needs the agents says so
    }
    return this.world.rentals.map((r) => this.hostVmView(r));
  }

  /**
   * The slice's current rental, or its last one if it is back in the pool. A rental names
   * the slice by where it first was (its key): the testbed may have moved it since.
   */
  private rentalOf(h: HostVmRecord): Rental {
    const [server, slice] = originOf(h);
    const all = this.world.rentals.filter((r) => r.server === server && r.slice === slice);
    const r = all.find((x) => x.state !== "released") ?? all[all.length - 1];
    if (r) return r;
    // Never rented (a testbed that grew a slice): it stands for itself, not usable.
    return { id: `${server}-${slice}`, server, slice, state: "released", acquiredAt: 0, stateSince: 0 };
  }

  private rental(id: string): Rental {
    const r = this.world.rentals.find((x) => x.id === id);
    if (!r) throw new ProviderError("not-found", `no host VM ${id} on testbed ${this.testbed.id}`);
    return r;
  }

  private hostVmView(r: Rental): ProviderHostVm {
    const h = this.testbed.hostVms.find((x) => hostVmKey(x) === `${r.server}/${r.slice}`);
    return {
      id: r.id,
      type: h ? typeName(h.cpus, h.memoryMiB) : "unknown",
      // Hidden placement: like a public cloud, say nothing of where the host VM runs. Else
      // where it is now (the testbed may have moved it).
      server: this.placementHidden ? undefined : (h?.server ?? r.server),
      state: r.state,
      acquiredAt: r.acquiredAt,
      stateSince: r.stateSince,
    };
  }

  async acquireHostVm(type: string, server: string | undefined): Promise<ProviderHostVm> {
    if (!this.described.hostVmTypes.some((t) => t.name === type))
      throw new ProviderError("invalid", `no host VM type ${type} on testbed ${this.testbed.id}`);
    const st = this.state();
    const rented = (h: HostVmRecord) => {
      const [srv, slice] = originOf(h);
      return this.world.rentals.some((r) => r.server === srv && r.slice === slice && r.state !== "released");
    };
    const candidates = st.hostVms.filter((h) => typeName(h.cpus, h.memoryMiB) === type && !rented(h));
    // A slice running guests nobody rented it for (started by hand) is not free either.
    const idle: typeof candidates = [];
    for (const h of candidates) {
      if (!h.agent?.url) continue;
      const status = await new HostVmAgentClient(h.agent.url, this.token(), { timeoutMs: 5000 })
        .status()
        .catch(() => undefined);
      if (status && status.guests.length === 0) idle.push(h);
    }
    const active = (srv: string) =>
      st.hostVms.filter((h) => h.server === srv && this.rentalOf(h).state !== "released").length;
    // The server asked for, else the one carrying most of ours (later moves stay instant).
    // A provider that hides placement takes no placement requests either.
    const wanted = this.placementHidden ? undefined : server;
    const pick =
      idle.find((h) => h.server === wanted) ??
      [...idle].sort((a, b) => active(b.server) - active(a.server) || a.server.localeCompare(b.server))[0];
    if (!pick) {
      throw new ProviderError(
        "capacity",
        `every ${type} slice of testbed ${this.testbed.id} is rented: a testbed's host VMs are fixed slices, start a bigger testbed for more`,
      );
    }
    const [origin, slice] = originOf(pick);
    const n = this.world.rentals.filter((r) => r.server === origin && r.slice === slice).length;
    const now = this.now();
    const r: Rental = {
      id: n === 0 ? `${origin}-${slice}` : `${origin}-${slice}-${n + 1}`,
      server: origin,
      slice,
      state: "running",
      acquiredAt: now,
      stateSince: now,
    };
    this.world.rentals.push(r);
    await this.persist();
    this.log(`rented slice ${pick.server}/${pick.name} as host VM ${r.id}`);
    return this.hostVmView(r);
  }

  async releaseHostVm(id: string): Promise<void> {
    const r = this.rental(id);
    if (r.state === "released") return;
    r.state = "released";
    r.stateSince = this.now();
    await this.persist();
    this.log(`returned slice ${r.server}/${r.slice} (host VM ${id}) to the pool`);
  }

  async close(): Promise<void> {
    await this.saving;
  }
}

/** The server and name a slice had at the testbed's start (its identity across moves). */
function originOf(h: HostVmRecord): [string, string] {
  const k = hostVmKey(h);
  const i = k.indexOf("/");
  return [k.slice(0, i), k.slice(i + 1)];
}

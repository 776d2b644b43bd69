/**
 * A running testbed (`nestcloud testbed up`) as a provider: physical servers are its
 * server namespaces, host VMs its slices, guests real QEMUs run by the host-VM agents, and
 * migrations MigrationOrchestrator runs (instant handover on one server, pre-copy across).
 *
 * A testbed cannot add slices while it runs, so its slices are a fixed pool: all are rented
 * at the start; "release" returns an empty slice to the pool and "acquire" rents an idle
 * one again under a new host-VM id (a released host VM is final, as in a real cloud).
 * Guest load is measured, not modelled: the CPU rate of each guest's QEMU process.
 */
import { basename, resolve } from "node:path";
import { endpointOf, MigrationOrchestrator, testbedToken } from "../../agent/index.ts";
import {
  defaultTestbedRoot,
  GUEST_NAME_RE,
  readTestbedState,
  stateDirOf,
  TESTBED_ID_RE,
  type TestbedState,
} from "../../testbed/index.ts";
import {
  type GuestSpec,
  type Provider,
  ProviderError,
  type ProviderGuest,
  type ProviderHostVm,
  type ProviderMigration,
  type ProviderSnapshot,
  type StateStore,
} from "../types.ts";
import { Agents, type Located, providerError } from "./agents.ts";
import { CpuMeter } from "./load.ts";
import { MigrationBook } from "./migrations.ts";
import {
  describeTestbed,
  initialWorld,
  MIPS_PER_CORE,
  type Rental,
  type TestbedWorld,
  typeName,
} from "./world.ts";

export interface TestbedProviderOptions {
  /** A testbed id (looked up under `root`) or the testbed's state folder. */
  readonly testbed: string;
  /** Where testbed folders live (default: that of `nestcloud testbed up`). */
  readonly root?: string;
  /** Where rentals and guest definitions are kept (the controller's store); default: memory. */
  readonly store?: StateStore;
  readonly log?: (msg: string) => void;
}

const MiB = 1024 * 1024;

export class TestbedProvider implements Provider {
  readonly name = "testbed";
  readonly clock = "wall";
  readonly speed = 1;
  private saving: Promise<void> = Promise.resolve();
  private readonly meter = new CpuMeter();
  /**
   * Guests booting for createGuest: left out of snapshots (a guest whose creation fails must
   * not be adopted). Once booted they are listed at once; the controller records its own
   * guest over an audit's adoption, and hiding a guest it already recorded would make the
   * executor fail moves of it as "no longer exists".
   */
  private readonly creating = new Set<string>();
  private readonly agents: Agents;
  private readonly book: MigrationBook;
  private readonly described: ReturnType<typeof describeTestbed>;

  private constructor(
    private testbed: TestbedState,
    private world: TestbedWorld,
    private readonly store: StateStore,
    private readonly log: (msg: string) => void,
  ) {
    const token = testbedToken(testbed);
    this.agents = new Agents(() => this.state(), token, log);
    this.book = new MigrationBook(new MigrationOrchestrator(token, { log }), () => this.now(), log);
    this.described = describeTestbed(testbed);
  }

  /** Opens the testbed named by id or folder; fails clearly when it is not up. */
  static async open(o: TestbedProviderOptions): Promise<TestbedProvider> {
    const log = o.log ?? (() => {});
    const dir = testbedDir(o.testbed, o.root);
    const state = readTestbedState(dir);
    if (!state) {
      throw new ProviderError(
        "unavailable",
        `no testbed ${o.testbed} is up (no state file in ${dir}); start one with \`nestcloud testbed up <file.yaml>\``,
      );
    }
    if (!state.complete) {
      throw new ProviderError(
        "unavailable",
        `testbed ${state.id} did not finish starting; see \`nestcloud testbed status ${state.id}\``,
      );
    }
    const store = o.store ?? memoryStore();
    const p = new TestbedProvider(state, initialWorld(state), store, log);
    // Its agents must answer now: a state file left by a crashed machine is not a testbed.
    try {
      await Promise.all(p.state().hostVms.map((h) => p.agents.hostVm(h.server, h.name, 5000).status()));
    } catch (e) {
      throw new ProviderError(
        "unavailable",
        `testbed ${state.id} does not answer (${(e as Error).message}); see \`nestcloud testbed status ${state.id}\``,
      );
    }
    await p.load();
    return p;
  }

  /** The saved world if it belongs to this very testbed, else every slice rented. */
  private async load(): Promise<void> {
    const text = await this.store.load();
    const saved = text ? (JSON.parse(text) as TestbedWorld) : undefined;
    if (
      saved?.version === 1 &&
      saved.testbedId === this.testbed.id &&
      saved.createdAt === this.testbed.createdAt
    ) {
      this.world = saved;
    } else {
      if (saved) this.log(`saved testbed state is of another testbed (${saved.testbedId}); starting over`);
      this.world = initialWorld(this.testbed);
      await this.persist();
    }
  }

  async resume(): Promise<void> {
    await this.saving;
    await this.load();
  }

  /** The testbed's state file, re-read: a restarted agent has a new URL. */
  private state(): TestbedState {
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

  // ---- snapshot ------------------------------------------------------------------------

  async snapshot(): Promise<ProviderSnapshot> {
    const [slices, pools] = await Promise.all([this.agents.slices(), this.agents.poolFiles()]);
    const now = this.now();
    const placed = Agents.placements(slices);
    const guests: ProviderGuest[] = [];
    for (const [id, at] of placed) {
      if (this.creating.has(id)) continue;
      guests.push(this.guestView(at, pools, now));
    }
    this.meter.retain(new Set(placed.keys()));
    return {
      now,
      hostVms: this.world.rentals.map((r) => this.hostVmView(r)),
      guests,
      migrations: this.book.views(),
    };
  }

  private guestView(at: Located, pools: Map<string, Map<string, { allocatedBytes: number }>>, now: number) {
    const g = at.guest;
    const spec = this.world.specs[g.guestId] ?? adoptedSpec(at);
    const cores = this.meter.observe(g.guestId, g.pid, g.cpuSeconds, now);
    // A vCPU is guaranteed (and limited to) its mipsPerVcpu: more use is what the slice
    // lends, not demand the planner may count.
    const cpu = Math.min(1, (cores * MIPS_PER_CORE) / (spec.vcpus * spec.mipsPerVcpu));
    const pool = g.poolFile ? pools.get(at.server)?.get(basename(g.poolFile)) : undefined;
    const dirty = g.workloads.find((w) => w.kind === "dirty");
    const view: ProviderGuest = {
      id: g.guestId,
      spec,
      hostVm: this.rentalOf(at.server, at.slice).id,
      running: g.state !== "stopped" && g.state !== "failed",
      cpu,
      residentMiB: pool ? Math.min(spec.memoryMiB, pool.allocatedBytes / MiB) : spec.memoryMiB,
      dirtyRateMiBps:
        g.dirty?.mibs ?? (dirty?.kind === "dirty" ? dirty.rateMiBps : spec.dirtyRateMiBps * cpu),
    };
    return view;
  }

  /** The slice's current rental, or its last one if it is back in the pool. */
  private rentalOf(server: string, slice: string): Rental {
    const all = this.world.rentals.filter((r) => r.server === server && r.slice === slice);
    const r = all.find((x) => x.state !== "released") ?? all[all.length - 1];
    if (!r) throw new ProviderError("not-found", `slice ${server}/${slice} has never been rented`);
    return r;
  }

  private rental(id: string): Rental {
    const r = this.world.rentals.find((x) => x.id === id);
    if (!r) throw new ProviderError("not-found", `no host VM ${id} on testbed ${this.testbed.id}`);
    return r;
  }

  private hostVmView(r: Rental): ProviderHostVm {
    const h = this.testbed.hostVms.find((x) => x.server === r.server && x.name === r.slice);
    return {
      id: r.id,
      type: h ? typeName(h.cpus, h.memoryMiB) : "unknown",
      server: r.server,
      state: r.state,
      acquiredAt: r.acquiredAt,
      stateSince: r.stateSince,
    };
  }

  // ---- host VMs: renting the fixed slices ---------------------------------------------------

  async acquireHostVm(type: string, server: string | undefined): Promise<ProviderHostVm> {
    if (!this.described.hostVmTypes.some((t) => t.name === type))
      throw new ProviderError("invalid", `no host VM type ${type} on testbed ${this.testbed.id}`);
    const slices = await this.agents.slices();
    const idle = slices.filter((s) => {
      const h = this.agents.record(s.server, s.slice);
      const rented = this.world.rentals.some(
        (r) => r.server === s.server && r.slice === s.slice && r.state !== "released",
      );
      // A slice running guests nobody rented it for (started by hand) is not free either.
      return typeName(h.cpus, h.memoryMiB) === type && !rented && (s.status?.guests.length ?? 1) === 0;
    });
    const active = (srv: string) =>
      this.world.rentals.filter((r) => r.server === srv && r.state !== "released").length;
    // The server asked for, else the one carrying most of ours (later moves stay instant).
    const pick =
      idle.find((s) => s.server === server) ??
      [...idle].sort((a, b) => active(b.server) - active(a.server) || a.server.localeCompare(b.server))[0];
    if (!pick) {
      throw new ProviderError(
        "capacity",
        `every ${type} slice of testbed ${this.testbed.id} is rented: a testbed's host VMs are fixed slices, start a bigger testbed for more`,
      );
    }
    const n = this.world.rentals.filter((r) => r.server === pick.server && r.slice === pick.slice).length;
    const now = this.now();
    const r: Rental = {
      id: n === 0 ? `${pick.server}-${pick.slice}` : `${pick.server}-${pick.slice}-${n + 1}`,
      server: pick.server,
      slice: pick.slice,
      state: "running",
      acquiredAt: now,
      stateSince: now,
    };
    this.world.rentals.push(r);
    await this.persist();
    this.log(`rented slice ${pick.server}/${pick.slice} as host VM ${r.id}`);
    return this.hostVmView(r);
  }

  async releaseHostVm(id: string): Promise<void> {
    const r = this.rental(id);
    if (r.state === "released") return;
    const st = await this.agents.hostVm(r.server, r.slice).status();
    const busy = this.book.running().some((m) => m.from === id || m.to === id);
    if (
      st.guests.length > 0 ||
      busy ||
      st.incoming.some((m) => m.state === "listening" || m.state === "armed")
    )
      throw new ProviderError("conflict", `host VM ${id} still hosts guests or migrations`);
    r.state = "released";
    r.stateSince = this.now();
    await this.persist();
    this.log(`returned slice ${r.server}/${r.slice} (host VM ${id}) to the pool`);
  }

  // ---- guests --------------------------------------------------------------------------

  async createGuest(spec: GuestSpec, hostVm: string): Promise<void> {
    if (!GUEST_NAME_RE.test(spec.id)) {
      throw new ProviderError(
        "invalid",
        `guest id ${spec.id}: on a testbed it names QEMU processes and files, so it must match ${GUEST_NAME_RE.source}`,
      );
    }
    if (!Number.isInteger(spec.memoryMiB))
      throw new ProviderError("invalid", `memoryMiB ${spec.memoryMiB}: a testbed guest has whole MiB`);
    if (spec.vcpus > 8)
      throw new ProviderError("invalid", `vcpus ${spec.vcpus}: a testbed guest has at most 8`);
    const r = this.rental(hostVm);
    if (r.state !== "running") throw new ProviderError("conflict", `host VM ${hostVm} is ${r.state}`);
    if (this.creating.has(spec.id) || (await this.agents.locate(spec.id)))
      throw new ProviderError("exists", `guest ${spec.id} exists`);
    this.creating.add(spec.id);
    // Known before it boots: a controller that crashes meanwhile adopts it with its spec.
    this.world.specs[spec.id] = spec;
    await this.persist();
    try {
      await this.agents.hostVm(r.server, r.slice).createGuest({
        guestId: spec.id,
        memoryMiB: spec.memoryMiB,
        cpus: spec.vcpus,
      });
    } catch (e) {
      delete this.world.specs[spec.id];
      await this.persist();
      throw providerError(e, `creating guest ${spec.id} on ${hostVm}`);
    } finally {
      this.creating.delete(spec.id);
    }
  }

  private async placed(id: string): Promise<Located> {
    const at = await this.agents.locate(id);
    if (!at) throw new ProviderError("not-found", `no guest ${id} on testbed ${this.testbed.id}`);
    return at;
  }

  async setGuestRunning(id: string, running: boolean): Promise<void> {
    const at = await this.placed(id);
    const up = at.guest.state !== "stopped" && at.guest.state !== "failed";
    if (up === running) return;
    const c = this.agents.hostVm(at.server, at.slice);
    try {
      if (running) await c.startGuest(id);
      else await c.stopGuest(id);
    } catch (e) {
      throw providerError(e, `${running ? "starting" : "stopping"} guest ${id}`);
    }
  }

  async deleteGuest(id: string): Promise<void> {
    if (this.book.running().some((m) => m.guest === id))
      throw new ProviderError("conflict", `guest ${id} is migrating`);
    const at = await this.agents.locate(id);
    if (at) {
      try {
        await this.agents.hostVm(at.server, at.slice).deleteGuest(id);
      } catch (e) {
        throw providerError(e, `deleting guest ${id}`);
      }
    }
    delete this.world.specs[id];
    await this.persist();
  }

  // ---- migrations ----------------------------------------------------------------------

  async migrate(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<ProviderMigration> {
    if (this.book.running().some((m) => m.guest === guest))
      throw new ProviderError("conflict", `guest ${guest} is migrating already`);
    const at = await this.placed(guest);
    if (at.guest.state !== "running")
      throw new ProviderError("conflict", `guest ${guest} is ${at.guest.state}, not running`);
    const target = this.rental(to);
    if (target.state !== "running") throw new ProviderError("conflict", `host VM ${to} is ${target.state}`);
    if (target.server === at.server && target.slice === at.slice)
      throw new ProviderError("invalid", `guest ${guest} runs on ${to} already`);
    if (mechanism === "instant" && target.server !== at.server) {
      throw new ProviderError(
        "invalid",
        `an instant handover needs both host VMs on one server (${at.server} != ${target.server})`,
      );
    }
    let source: ReturnType<typeof endpointOf>;
    let destination: ReturnType<typeof endpointOf>;
    try {
      const st = this.state();
      source = endpointOf(st, at.server, at.slice);
      destination = endpointOf(st, target.server, target.slice);
    } catch (e) {
      throw providerError(e, `migrating ${guest}`);
    }
    return this.book.start({
      guest,
      from: this.rentalOf(at.server, at.slice).id,
      to,
      source,
      destination,
      mechanism,
      estimateSeconds: seconds,
      memoryBytes: at.guest.memoryMiB * MiB,
    });
  }

  async migration(id: string): Promise<ProviderMigration | undefined> {
    return this.book.get(id);
  }

  async cancelMigration(id: string): Promise<void> {
    await this.book.cancel(id);
  }

  async close(): Promise<void> {
    // The orchestrator runs in this process: let running moves end rather than leave a
    // guest paused at its source.
    await this.book.settle(60_000);
    await this.saving;
  }
}

/** The testbed's state folder: the argument itself if it is one, else <root>/<id>. */
export function testbedDir(testbed: string, root?: string): string {
  if (TESTBED_ID_RE.test(testbed) && !testbed.includes("/"))
    return stateDirOf(testbed, root ?? defaultTestbedRoot());
  return resolve(testbed);
}

/** What a guest the controller did not create is taken to be (booted from the testbed file). */
function adoptedSpec(at: Located): GuestSpec {
  const dirty = at.guest.workloads.find((w) => w.kind === "dirty");
  return {
    id: at.guest.guestId,
    tenant: "testbed",
    vcpus: at.guest.cpus,
    mipsPerVcpu: MIPS_PER_CORE,
    memoryMiB: at.guest.memoryMiB,
    dirtyRateMiBps: dirty?.kind === "dirty" ? dirty.rateMiBps : 0,
  };
}

function memoryStore(): StateStore {
  let text: string | undefined;
  return {
    async load() {
      return text;
    },
    async save(json) {
      text = json;
    },
  };
}

/**
 * The guest data plane through nestcloud's agents, on any rental whose host VMs run them:
 * guests are QEMUs the host-VM agents run, their load is measured (the CPU rate of each QEMU
 * process), migrations are MigrationOrchestrator runs in this process (instant handover
 * between host VMs of one server, pre-copy across).
 *
 * What the agents do not know — each guest's tenant and guaranteed MIPS — is kept here and
 * saved through a StateStore, so a restarted controller or a new leader knows it too.
 */
import { basename } from "node:path";
import {
  AGENT_GUEST_ID_RE,
  type AgentEndpoint,
  CONSOLE_PORT,
  HostVmAgentClient,
  MigrationOrchestrator,
  Rejuvenator,
} from "../../agent/index.ts";
import { MIPS_PER_CORE } from "../machine.ts";
import { PROBE_GUEST_RE } from "../placement/trial.ts";
import {
  type CoMigrationMove,
  type ConsoleEndpoint,
  type GuestDataPlane,
  type GuestPowerControl,
  type GuestPowerEventView,
  type GuestSpec,
  type HostVmRenewal,
  NotCoResidentError,
  ProviderError,
  type ProviderGuest,
  type ProviderMigration,
  type ProviderRejuvenation,
  type RejuvenateOptions,
  type RejuvenationModeName,
  type StateStore,
} from "../types.ts";
import { Agents, type Located, providerError } from "./agents.ts";
import type { AgentDirectory } from "./directory.ts";
import { CpuMeter } from "./load.ts";
import { MigrationBook, type StartMove } from "./migrations.ts";
import { RejuvenationBook } from "./rejuvenations.ts";
import { AgentSecurityVms } from "./secvms.ts";

const MiB = 1024 * 1024;

interface PlaneState {
  version: 1;
  /** The directory's identity: guests saved for another set of agents are stale. */
  owner: string;
  specs: Record<string, GuestSpec>;
}

export class AgentGuestPlane implements GuestDataPlane {
  private readonly meter = new CpuMeter();
  /**
   * Guests booting for createGuest: left out of observations (a guest whose creation fails
   * must not be adopted). Once booted they are listed at once; the controller records its own
   * guest over an audit's adoption.
   */
  private readonly creating = new Set<string>();
  private readonly agents: Agents;
  private readonly book: MigrationBook;
  private readonly rejuvenations: RejuvenationBook;
  private state: PlaneState;
  /** Security VMs' monitors, following their targets (secvms.ts). */
  readonly securityVms: AgentSecurityVms;
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly directory: AgentDirectory,
    private readonly store: StateStore,
    private readonly now: () => number,
    private readonly log: (msg: string) => void,
  ) {
    this.agents = new Agents(directory, log);
    this.securityVms = new AgentSecurityVms(this.agents, log);
    this.book = new MigrationBook(
      new MigrationOrchestrator(directory.token(), { log }),
      now,
      log,
      this.securityVms,
    );
    this.rejuvenations = new RejuvenationBook(new Rejuvenator(directory.token(), { log }), now, log);
    this.state = { version: 1, owner: directory.identity, specs: {} };
  }

  static async open(
    directory: AgentDirectory,
    store: StateStore,
    now: () => number,
    log: (msg: string) => void,
  ): Promise<AgentGuestPlane> {
    const p = new AgentGuestPlane(directory, store, now, log);
    await p.resume();
    return p;
  }

  /** The saved guest definitions if they belong to these very agents. */
  async resume(): Promise<void> {
    await this.saving;
    const text = await this.store.load();
    const saved = text ? (JSON.parse(text) as PlaneState) : undefined;
    if (saved?.version === 1 && saved.owner === this.directory.identity) this.state = saved;
    else {
      if (saved) this.log(`saved guests belong to other agents (${saved.owner}); starting over`);
      this.state = { version: 1, owner: this.directory.identity, specs: {} };
      await this.persist();
    }
  }

  private async persist(): Promise<void> {
    const json = JSON.stringify(this.state);
    // Serialized: a later save never lands before an earlier one.
    this.saving = this.saving.then(() => this.store.save(json));
    await this.saving;
  }

  // ---- observing ---------------------------------------------------------------------------

  async observe(now: number) {
    const [statuses, pools] = await Promise.all([this.agents.statuses(), this.agents.poolFiles()]);
    const placed = Agents.placements(statuses);
    const guests: ProviderGuest[] = [];
    for (const [id, at] of placed) {
      // Placement discovery's probe guests live for one trial handover: nobody's guests.
      if (this.creating.has(id) || PROBE_GUEST_RE.test(id)) continue;
      guests.push(this.guestView(at, pools, now));
    }
    this.meter.retain(new Set(placed.keys()));
    return { guests, migrations: this.book.views() };
  }

  private guestView(at: Located, pools: Map<string, Map<string, { allocatedBytes: number }>>, now: number) {
    const g = at.guest;
    const spec = this.state.specs[g.guestId] ?? adoptedSpec(at);
    const cores = this.meter.observe(g.guestId, g.pid, g.cpuSeconds, now);
    // A vCPU is guaranteed (and limited to) its mipsPerVcpu: more use is what the host VM
    // lends, not demand the planner may count.
    const cpu = Math.min(1, (cores * MIPS_PER_CORE) / (spec.vcpus * spec.mipsPerVcpu));
    const server = at.host.endpoint?.server;
    const pool = g.poolFile && server ? pools.get(server)?.get(basename(g.poolFile)) : undefined;
    const dirty = g.workloads.find((w) => w.kind === "dirty");
    const view: ProviderGuest = {
      id: g.guestId,
      spec,
      hostVm: at.host.hostVm,
      // Powered off or panicked (virtual AMT): QEMU is kept, the guest does not run.
      running: g.state !== "stopped" && g.state !== "failed" && (g.power ?? "on") === "on",
      cpu,
      residentMiB: pool ? Math.min(spec.memoryMiB, pool.allocatedBytes / MiB) : spec.memoryMiB,
      dirtyRateMiBps:
        g.dirty?.mibs ?? (dirty?.kind === "dirty" ? dirty.rateMiBps : spec.dirtyRateMiBps * cpu),
    };
    return view;
  }

  async inUse(hostVm: string): Promise<boolean> {
    const host = this.agents.host(hostVm);
    if (this.book.running().some((m) => m.from === hostVm || m.to === hostVm)) return true;
    if (this.rejuvenations.running().some((r) => r.hostVm === hostVm || this.involved.get(r.id)?.has(hostVm)))
      return true;
    let st: Awaited<ReturnType<ReturnType<Agents["client"]>["status"]>>;
    try {
      st = await this.agents.client(host).status();
    } catch (e) {
      throw providerError(e, `asking host VM ${hostVm} what it runs`);
    }
    return st.guests.length > 0 || st.incoming.some((m) => m.state === "listening" || m.state === "armed");
  }

  // ---- consoles ------------------------------------------------------------------------

  readonly consoles = {
    /** The agent running the guest now, with its console identity key (asked each time: a key may change with a new testbed). */
    locate: async (guestId: string, movedTo?: string): Promise<ConsoleEndpoint | null> => {
      if (movedTo !== undefined) return this.consoleAt(movedTo);
      const at = await this.agents.locate(guestId);
      if (!at?.host.endpoint || at.guest.state !== "running") return null;
      const id = await this.agents.client(at.host).consoleIdentity();
      return {
        hostVm: at.host.hostVm,
        agentUrl: at.host.endpoint.hostVmUrl,
        token: this.directory.token(),
        identity: Buffer.from(id.publicKey, "base64url"),
      };
    },
    ticketSecret: () => this.directory.token(),
  };

  /**
   * The console endpoint of the agent a move named (its URL), asking it for its key only: the
   * relay then connects, which that agent refuses until the guest runs there. Null when no
   * host VM has that agent.
   */
  private async consoleAt(agentUrl: string): Promise<ConsoleEndpoint | null> {
    const host = this.directory.hosts().find((h) => h.endpoint?.hostVmUrl === agentUrl);
    if (!host?.endpoint) return null;
    const id = await this.agents.client(host).consoleIdentity();
    return {
      hostVm: host.hostVm,
      agentUrl: host.endpoint.hostVmUrl,
      token: this.directory.token(),
      identity: Buffer.from(id.publicKey, "base64url"),
    };
  }

  // ---- the virtual AMT ----------------------------------------------------------------------

  /** Per agent (its key): the last power event taken from it. */
  private readonly powerSeen = new Map<string, number>();

  readonly power: GuestPowerControl = {
    act: async (id, req) => {
      if (this.book.running().some((m) => m.guest === id))
        throw new ProviderError("conflict", `guest ${id} is migrating: power actions wait until it settled`);
      const at = await this.placed(id);
      try {
        return await this.agents.client(at.host).power(id, req);
      } catch (e) {
        throw providerError(e, `${req.action} of guest ${id}`);
      }
    },
    inventory: async (id) => {
      const at = await this.placed(id);
      try {
        return await this.agents.client(at.host).inventory(id);
      } catch (e) {
        throw providerError(e, `inventory of guest ${id}`);
      }
    },
    drainEvents: async () => {
      const out: GuestPowerEventView[] = [];
      await Promise.all(
        this.directory.hosts().map(async (host) => {
          if (!host.endpoint) return;
          try {
            const page = await this.agents.client(host, 5000).powerEvents(this.powerSeen.get(host.key) ?? 0);
            this.powerSeen.set(host.key, page.last);
            for (const e of page.events)
              if (!PROBE_GUEST_RE.test(e.guestId))
                out.push({ guest: e.guestId, at: e.at, kind: e.kind, detail: e.detail });
          } catch {
            // An agent that does not answer keeps its events until it does.
          }
        }),
      );
      return out.sort((a, b) => a.at - b.at);
    },
  };

  // ---- guests --------------------------------------------------------------------------

  async createGuest(spec: GuestSpec, hostVm: string): Promise<void> {
    if (!AGENT_GUEST_ID_RE.test(spec.id)) {
      throw new ProviderError(
        "invalid",
        `guest id ${spec.id}: an agent's guest id names QEMU processes and files, so it must match ${AGENT_GUEST_ID_RE.source}`,
      );
    }
    if (PROBE_GUEST_RE.test(spec.id))
      throw new ProviderError("invalid", `guest id ${spec.id}: ncprobe-<8 hex> names placement probe guests`);
    if (!Number.isInteger(spec.memoryMiB))
      throw new ProviderError("invalid", `memoryMiB ${spec.memoryMiB}: an agent's guest has whole MiB`);
    if (spec.vcpus > 8)
      throw new ProviderError("invalid", `vcpus ${spec.vcpus}: an agent's guest has at most 8`);
    const host = this.agents.host(hostVm);
    if (!host.usable) throw new ProviderError("conflict", `host VM ${hostVm} is not running`);
    if (this.creating.has(spec.id) || (await this.agents.locate(spec.id)))
      throw new ProviderError("exists", `guest ${spec.id} exists`);
    this.creating.add(spec.id);
    // Known before it boots: a controller that crashes meanwhile adopts it with its spec.
    this.state.specs[spec.id] = spec;
    await this.persist();
    try {
      await this.agents.client(host).createGuest({
        guestId: spec.id,
        memoryMiB: spec.memoryMiB,
        cpus: spec.vcpus,
        // Its console (ttyS1): logged, so output is replayed to whoever attaches later; its
        // data disk and NIC, when asked for (what security VMs' disk and network monitors watch).
        devices: [
          { kind: "serial", id: CONSOLE_PORT, log: true },
          ...(spec.devices?.disk ? [{ kind: "disk" as const, id: "d0", file: spec.devices.disk.image }] : []),
          ...(spec.devices?.nic ? [{ kind: "nic" as const, id: "n0" }] : []),
        ],
      });
    } catch (e) {
      delete this.state.specs[spec.id];
      await this.persist();
      throw providerError(e, `creating guest ${spec.id} on ${hostVm}`);
    } finally {
      this.creating.delete(spec.id);
    }
  }

  private async placed(id: string): Promise<Located> {
    const at = await this.agents.locate(id);
    if (!at) throw new ProviderError("not-found", `no guest ${id} on ${this.directory.label}`);
    return at;
  }

  async setGuestRunning(id: string, running: boolean): Promise<void> {
    const at = await this.placed(id);
    const alive = at.guest.state !== "stopped" && at.guest.state !== "failed";
    const up = alive && (at.guest.power ?? "on") === "on";
    if (up === running) return;
    const c = this.agents.client(at.host);
    try {
      // Powered off with its QEMU kept (virtual AMT): power it on rather than boot a new QEMU.
      if (running && alive) await c.power(id, { action: "on" });
      else if (running) await c.startGuest(id);
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
        await this.agents.client(at.host).deleteGuest(id);
      } catch (e) {
        throw providerError(e, `deleting guest ${id}`);
      }
    }
    delete this.state.specs[id];
    await this.persist();
  }

  // ---- migrations ----------------------------------------------------------------------

  async migrate(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<ProviderMigration> {
    return this.book.start(await this.moveOf(guest, to, mechanism, seconds));
  }

  /**
   * Co-migration (a security VM with its targets): every member checked as a move first, then
   * all started in lock-step (MigrationBook.startGroup); none is started if one is refused.
   */
  async coMigrate(moves: readonly CoMigrationMove[]): Promise<ProviderMigration[]> {
    if (moves.length < 2) throw new ProviderError("invalid", "a co-migration moves two guests or more");
    if (new Set(moves.map((m) => m.guest)).size !== moves.length)
      throw new ProviderError("invalid", "a co-migration names each guest once");
    const starts: StartMove[] = [];
    for (const m of moves) starts.push(await this.moveOf(m.guest, m.to, m.mechanism, m.seconds));
    return this.book.startGroup(starts);
  }

  /** A move checked against what runs now (refused as the agents would refuse it). */
  private async moveOf(
    guest: string,
    to: string,
    mechanism: ProviderMigration["mechanism"],
    seconds: number,
  ): Promise<StartMove> {
    if (this.book.running().some((m) => m.guest === guest))
      throw new ProviderError("conflict", `guest ${guest} is migrating already`);
    const at = await this.placed(guest);
    this.refuseWhileRejuvenating(at.host.hostVm, `migrating ${guest}`);
    this.refuseWhileRejuvenating(to, `migrating ${guest}`);
    if (at.guest.state !== "running")
      throw new ProviderError("conflict", `guest ${guest} is ${at.guest.state}, not running`);
    const target = this.agents.host(to);
    if (!target.usable) throw new ProviderError("conflict", `host VM ${to} is not running`);
    if (target.key === at.host.key)
      throw new ProviderError("invalid", `guest ${guest} runs on ${to} already`);
    const source = at.host.endpoint;
    const destination = target.endpoint;
    if (!source || !destination)
      throw new ProviderError(
        "unavailable",
        `migrating ${guest}: the agents of ${at.host.hostVm} and ${to} are not both ready`,
      );
    if (mechanism === "instant" && destination.server !== source.server) {
      // What the server agent's handover broker would refuse: the destination does not see
      // the source's memory pool.
      throw new NotCoResidentError(
        at.host.hostVm,
        to,
        `an instant handover needs both host VMs on one server (${source.server} != ${destination.server})`,
      );
    }
    return {
      guest,
      from: at.host.hostVm,
      to,
      source,
      destination,
      mechanism,
      estimateSeconds: seconds,
      memoryBytes: at.guest.memoryMiB * MiB,
    };
  }

  async migration(id: string): Promise<ProviderMigration | undefined> {
    return this.book.get(id);
  }

  async cancelMigration(id: string): Promise<void> {
    await this.book.cancel(id);
  }

  // ---- rejuvenation ---------------------------------------------------------------------

  private refuseWhileRejuvenating(hostVm: string, doing: string): void {
    const r = this.rejuvenations
      .running()
      .find((x) => x.hostVm === hostVm || x.result?.spare === hostVm || this.involved.get(x.id)?.has(hostVm));
    if (r) throw new ProviderError("conflict", `${doing}: host VM ${hostVm} is being rejuvenated (${r.id})`);
  }

  /** The other host VMs each running rejuvenation uses: its spare, the replacement. */
  private readonly involved = new Map<string, Set<string>>();

  /**
   * evacuate: the guests go to the emptiest other host VM of the server with room for them,
   * or (with `renewal`: the composed provider's rental) to one rented there for it and
   * released after. With `renewal` the emptied host VM is replaced (released, and one rented
   * in its place on the same server, whose fresh agent takes the guests back); without, its
   * agent is restarted.
   */
  async rejuvenate(
    hostVm: string,
    mode: RejuvenationModeName,
    opts: RejuvenateOptions & { readonly renewal?: HostVmRenewal } = {},
  ): Promise<ProviderRejuvenation> {
    const host = this.agents.host(hostVm);
    if (!host.usable || !host.endpoint)
      throw new ProviderError("conflict", `host VM ${hostVm} is not running (or its agent is not ready)`);
    this.refuseWhileRejuvenating(hostVm, `rejuvenating ${hostVm}`);
    const statuses = await this.agents.statuses();
    const mine = statuses.find((s) => s.host.key === host.key)?.status;
    if (!mine) throw new ProviderError("unavailable", `the agent of ${hostVm} does not answer`);
    if (this.book.running().some((m) => m.from === hostVm || m.to === hostVm))
      throw new ProviderError("conflict", `host VM ${hostVm} takes part in a migration: try again after it`);
    const server = host.endpoint.server;
    const { renewal } = opts;
    let spare: { hostVm: string; endpoint: AgentEndpoint; acquired: boolean } | undefined;
    if (mode === "evacuate") {
      // Another running host VM of the same server with room for every guest (memory), the
      // emptiest first: the guests pass through it by instant handover.
      const need = mine.guests.reduce((n, g) => n + g.memoryMiB, 0);
      const room = statuses
        .filter(
          (s) =>
            s.host.key !== host.key &&
            s.host.usable &&
            s.host.endpoint?.server === server &&
            s.status !== null &&
            !s.stale,
        )
        .map((s) => ({
          s,
          free: s.status!.memoryMiB - s.status!.guests.reduce((n, g) => n + g.memoryMiB, 0),
        }))
        .filter(
          (x) => x.free >= need && this.rejuvenations.running().every((r) => r.hostVm !== x.s.host.hostVm),
        )
        .sort((a, b) => b.free - a.free)[0];
      if (room) spare = { hostVm: room.s.host.hostVm, endpoint: room.s.host.endpoint!, acquired: false };
      else if (renewal) {
        // None: rent one of the host VM's own type there (it holds what this one holds).
        const id = await renewal.acquire(await renewal.typeOf(hostVm), server);
        spare = { hostVm: id, endpoint: await this.readyOn(id, server, renewal), acquired: true };
      } else
        throw new ProviderError(
          "capacity",
          `no other host VM on ${server} has ${need} MiB free for ${hostVm}'s guests: acquire a spare there first`,
        );
    }
    const involved = new Set<string>(spare ? [spare.hostVm] : []);
    const replace =
      mode === "evacuate" && renewal
        ? async () => {
            const type = await renewal.typeOf(hostVm);
            await renewal.release(hostVm);
            const id = await renewal.acquire(type, server);
            involved.add(id);
            return { hostVm: id, endpoint: await this.readyOn(id, server, renewal) };
          }
        : undefined;
    const acquired = spare?.acquired ? spare : undefined;
    const r = this.rejuvenations.start({
      hostVm,
      mode,
      endpoint: host.endpoint,
      ...(spare ? { spare } : {}),
      ...(opts.moveBack === false ? { moveBack: false } : {}),
      ...(replace ? { replace } : {}),
      ...(acquired && renewal
        ? {
            // The spare rented for it goes back once empty (the guests returned).
            finally: async () => {
              const st = await new HostVmAgentClient(acquired.endpoint.hostVmUrl, this.directory.token(), {
                timeoutMs: 5000,
              }).status();
              if (st.guests.length > 0) return false;
              await renewal.release(acquired.hostVm);
              return true;
            },
          }
        : {}),
    });
    this.involved.set(r.id, involved);
    return r;
  }

  /**
   * Waits (bounded) for a host VM just rented to answer through its agent on `server`; one
   * rented elsewhere (a rental that cannot place) is given back: no instant handover to it.
   */
  private async readyOn(id: string, server: string, renewal: HostVmRenewal): Promise<AgentEndpoint> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const h = this.directory.hosts().find((x) => x.hostVm === id);
      if (h?.usable && h.endpoint) {
        if (h.endpoint.server !== server) {
          await renewal.release(id).catch(() => {});
          throw new ProviderError(
            "capacity",
            `host VM ${id} was rented on ${h.endpoint.server}, not ${server}`,
          );
        }
        const ok = await new HostVmAgentClient(h.endpoint.hostVmUrl, this.directory.token(), {
          timeoutMs: 5000,
        })
          .status()
          .then(
            () => true,
            () => false,
          );
        if (ok) return h.endpoint;
      }
      if (Date.now() > deadline)
        throw new ProviderError("unavailable", `host VM ${id} did not come up on ${server}`);
      await new Promise((res) => setTimeout(res, 250));
    }
  }

  async rejuvenation(id: string): Promise<ProviderRejuvenation | undefined> {
    return this.rejuvenations.get(id);
  }

  async close(): Promise<void> {
    // The orchestrator runs in this process: let running moves end rather than leave a
    // guest paused at its source.
    await Promise.all([this.book.settle(60_000), this.rejuvenations.settle(120_000)]);
    await this.saving;
  }
}

/** What a guest the controller did not create is taken to be (one started by hand). */
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

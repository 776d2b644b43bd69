/**
 * What a host-VM agent holds, shared by its route plugins: its guests, incoming and
 * outgoing migrations, and the rules between them (a guest that is being migrated cannot be
 * stopped; a guest that arrives by migration becomes a guest here; a guest that left is
 * forgotten). Also the adoption of a dead predecessor's QEMUs at start-up (recover), see
 * hostvm-agent.ts.
 */
import type { FastifyBaseLogger } from "fastify";
import {
  DEFAULT_QEMU_BINARY,
  hasCprTransfer,
  type InstanceState,
  QemuProcess,
  qemuVersion,
  reapOrphans,
} from "../../qemu/index.ts";
import type { HostVmStatus } from "../api-types.ts";
import { HostVmAgentClient, ServerAgentClient } from "../client.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { AgentError, conflict, notFound } from "../http.ts";
import { adoptedOutgoingStatus, type GuestRole, parseRole } from "./adoption.ts";
import { type GuestContext, GuestRuntime } from "./guest-runtime.ts";
import { IncomingMigration } from "./incoming.ts";
import { OutgoingMigration } from "./outgoing.ts";
import { GuestPowerLog } from "./power.ts";

/** Finished migrations stay visible for a while (status, post-mortems), not forever. */
const KEEP_FINISHED_MIGRATIONS = 50;

export class HostVm {
  readonly ctx: GuestContext;
  readonly guests = new Map<string, GuestRuntime>();
  readonly incoming = new Map<string, IncomingMigration>();
  readonly outgoing = new Map<string, OutgoingMigration>();
  /**
   * Before an outgoing migration starts: holds the guest's console keystrokes and waits
   * until QEMU read those written (hostvm/console.ts); answers the release. Set by the agent.
   */
  consoleDrain: (guestId: string, destinationUrl?: string) => Promise<() => void> = async () => () => {};
  /**
   * A guest's migration away is registered and about to start: its security VMs' disk views
   * (a fleece and an NBD export on its drive) are closed first, since QEMU cannot hand over
   * a drive they hold (set by the agent: SecVmManager.departing).
   */
  beforeDeparture: (guestId: string) => Promise<void> = async () => {};
  readonly reaped: HostVmStatus["reapedAtStart"] = [];
  readonly adopted: HostVmStatus["adoptedAtStart"] = [];
  /** This host VM's server agent (memory accounting). */
  readonly server: ServerAgentClient;
  /**
   * Ends this agent so that its supervisor starts a fresh one, which adopts the QEMUs
   * (rejuvenation); absent where no supervisor would restart it (in-process agents).
   */
  restartSelf: (() => void) | null = null;

  constructor(
    readonly cfg: HostVmAgentConfig,
    token: string,
    readonly log: FastifyBaseLogger,
  ) {
    this.ctx = {
      cfg,
      log,
      peer: (url) => new HostVmAgentClient(url, token, { timeoutMs: 10_000 }),
      liveUpdate: "x-ignore-shared",
      powerLog: new GuestPowerLog(),
    };
    this.server = new ServerAgentClient(cfg.serverAgentUrl, token, { timeoutMs: 10_000 });
  }

  get where(): string {
    return `${this.cfg.server}/${this.cfg.hostVm}`;
  }

  guestOf(id: string): GuestRuntime {
    const g = this.guests.get(id);
    if (!g) throw notFound(`no guest ${id} on host VM ${this.where}`);
    return g;
  }

  incomingOf(id: string): IncomingMigration {
    const m = this.incoming.get(id);
    if (!m) throw notFound(`no incoming migration ${id} on host VM ${this.where}`);
    return m;
  }

  outgoingOf(id: string): OutgoingMigration {
    const m = this.outgoing.get(id);
    if (!m) throw notFound(`no outgoing migration ${id} on host VM ${this.where}`);
    return m;
  }

  /** Refuses (409) while a migration away from this guest is under way or awaits its confirm. */
  assertNotMigrating(id: string): void {
    for (const m of this.outgoing.values()) {
      if (
        m.guest.guestId === id &&
        (m.phase === "running" ||
          m.phase === "pre-switchover" ||
          m.phase === "postcopy" ||
          m.phase === "completed")
      ) {
        throw conflict(`guest ${id} is being migrated (${m.migrationId}, ${m.phase})`);
      }
    }
  }

  /** Refuses (409) while the guest arrives here by an unfinished incoming migration. */
  assertNotArriving(id: string): void {
    for (const m of this.incoming.values()) {
      if (m.req.guest.guestId === id && (m.state === "listening" || m.state === "armed")) {
        throw conflict(`guest ${id} is arriving here by migration ${m.migrationId}`);
      }
    }
  }

  /**
   * Refuses (409) a live update of a guest that is not here and running, is migrating, is
   * already being replaced, or with a mode that would copy its memory.
   */
  assertLiveUpdatable(id: string, mode: string): void {
    if (mode !== "handover")
      throw conflict(`a live update of ${id} keeps its RAM file: mode handover, not ${mode}`);
    const g = this.guestOf(id);
    if (g.state !== "running") throw conflict(`guest ${id} is ${g.state}, not running: no live update`);
    this.assertNotMigrating(id);
    this.assertNotArriving(id);
  }

  /**
   * The agent restarts itself (its supervisor starts the successor, which adopts every
   * QEMU): refused while a migration is unfinished here, so that nothing is in flight.
   */
  restart(): { pid: number } {
    if (!this.restartSelf) throw new AgentError(409, "no_supervisor", "this agent cannot restart itself");
    for (const m of this.incoming.values())
      if (!m.done()) throw conflict(`incoming migration ${m.migrationId} is ${m.state}: not restarting`);
    for (const m of this.outgoing.values())
      if (!m.done()) throw conflict(`outgoing migration ${m.migrationId} is ${m.phase}: not restarting`);
    const exit = this.restartSelf;
    // After the answer went out: the successor listens on the same port.
    setTimeout(exit, 50).unref();
    return { pid: process.pid };
  }

  addOutgoing(m: OutgoingMigration): void {
    prune(this.outgoing);
    this.outgoing.set(m.migrationId, m);
  }

  addIncoming(m: IncomingMigration): void {
    prune(this.incoming);
    this.incoming.set(m.migrationId, m);
  }

  /** A guest left this host VM (its migration away was confirmed). */
  readonly onGone = (done: OutgoingMigration): void => {
    // A live update replaced the entry with the guest's new QEMU already: keep that one.
    if (this.guests.get(done.guest.guestId) === done.guest) this.guests.delete(done.guest.guestId);
  };

  /** An incoming migration's QEMU runs the guest: it is one of our guests now. */
  readonly arrived = async (done: IncomingMigration, q: QemuProcess): Promise<void> => {
    const g = new GuestRuntime(this.ctx, done.req.guest);
    // A live update: the replaced copy's heartbeats and verify counts carry on.
    const previous = done.req.inPlace ? (this.guests.get(g.guestId)?.records ?? null) : null;
    this.guests.set(g.guestId, g);
    await g.adopt(q, done.req.workloads ?? [], previous);
    this.log.info({ guest: g.guestId, migration: done.migrationId }, "guest arrived and runs here");
  };

  status(): HostVmStatus {
    const { cfg } = this;
    return {
      role: "hostvm",
      testbedId: cfg.testbedId,
      server: cfg.server,
      hostVm: cfg.hostVm,
      pid: process.pid,
      memoryMiB: cfg.memoryMiB,
      cpus: cfg.cpus,
      guests: [...this.guests.values()].map((g) => g.status()),
      incoming: [...this.incoming.values()].map((m) => m.status()),
      outgoing: [...this.outgoing.values()].map((m) => m.status()),
      qemu: { version: this.qemuText, liveUpdate: this.ctx.liveUpdate },
      reapedAtStart: this.reaped,
      adoptedAtStart: this.adopted,
    };
  }

  /** Whether a live update of this guest can go by cpr-transfer (its QEMU was started for it). */
  cprReady(guestId: string): boolean {
    return (
      this.ctx.liveUpdate === "cpr-transfer" && this.guests.get(guestId)?.qemu?.spec.auxRamShare === true
    );
  }

  /**
   * Which QEMU this agent runs (its configured binary) and so how it live-updates guests.
   * A binary that cannot tell its version keeps the 7.2 mechanism (and is reported).
   */
  async detectQemu(): Promise<void> {
    const bin = this.cfg.qemu?.binary ?? DEFAULT_QEMU_BINARY;
    try {
      const v = await qemuVersion(bin);
      this.qemuText = v.text;
      this.ctx.liveUpdate = hasCprTransfer(v) ? "cpr-transfer" : "x-ignore-shared";
    } catch (e) {
      this.qemuText = (e as Error).message;
      this.log.warn({ err: this.qemuText }, "cannot read the QEMU version: live updates use x-ignore-shared");
    }
  }
  /** The first line of the QEMU binary's --version (detectQemu). */
  qemuText: string | null = null;

  /** Adopts (or, failing that, reaps) the QEMUs a previous agent left behind. */
  async recover(): Promise<void> {
    await this.detectQemu();
    const r = await reapOrphans(this.cfg.qemuDir, (msg) => this.log.warn(msg), {
      adopt: (s) => this.adoptOne(s),
    });
    this.reaped.push(...r.killed);
    if (r.killed.length > 0 || r.removedPoolFiles.length > 0) {
      this.log.warn(
        { killed: r.killed, removedPoolFiles: r.removedPoolFiles },
        "reaped QEMUs of a previous agent",
      );
    }
  }

  /** Stops every guest and incoming QEMU (graceful agent shutdown). */
  async shutdown(): Promise<void> {
    for (const m of this.incoming.values()) await m.abort().catch(() => {});
    for (const g of this.guests.values()) await g.stop().catch(() => {});
  }

  /**
   * Whether `role` (a guest QEMU) is one half of an interrupted live update of a guest
   * already adopted here: one of the two has an outgoing migration, the other none.
   */
  private liveUpdatePair(guestId: string, role: GuestRole): boolean {
    const other = this.guests.get(guestId);
    if (!other) return false;
    const otherLeaving = [...this.outgoing.values()].some((m) => m.guest === other && !m.done());
    return (role.outgoing !== null) !== otherLeaving;
  }

  /**
   * The second guest QEMU of an interrupted live update. The new copy runs (it was
   * finished: only then is it recorded as a guest), so the old one, paused after its
   * completed migration, is stopped; its RAM file is the new copy's now.
   */
  private async adoptLiveUpdateHalf(s: InstanceState, q: QemuProcess, role: GuestRole): Promise<boolean> {
    const guestId = role.guest.guestId;
    const qemuStatus = (await q.qmp.queryStatus()).status;
    if (role.outgoing) {
      // This is the replaced copy; the new one is adopted already.
      if (qemuStatus === "running") throw new Error(`both copies of ${guestId} run: refusing to pick one`);
      const pid = q.pid ?? 0;
      q.releasePoolFile();
      await q.stop();
      this.log.warn(
        { guest: guestId, migration: role.outgoing.migrationId },
        "live update settled: old copy stopped",
      );
      this.adopted.push({
        instanceId: s.instanceId,
        guestId,
        pid,
        as: "guest",
        migrationId: role.outgoing.migrationId,
        qemuStatus,
      });
      return true;
    }
    // This is the new copy; the replaced one was adopted first, with its outgoing migration.
    const g = await GuestRuntime.adoptOrphan(this.ctx, q, role);
    const old = this.guests.get(guestId)!;
    this.guests.set(guestId, g);
    const m = [...this.outgoing.values()].find((x) => x.guest === old && !x.done());
    if (m) {
      await m
        .confirm("success")
        .catch((e) =>
          this.log.error({ guest: guestId, err: (e as Error).message }, "cannot stop the replaced copy"),
        );
    }
    this.log.warn(
      { guest: guestId, migration: m?.migrationId ?? null },
      "live update settled: new copy adopted",
    );
    this.adopted.push({
      instanceId: s.instanceId,
      guestId,
      pid: q.pid ?? 0,
      as: "guest",
      migrationId: m?.migrationId ?? null,
      qemuStatus,
    });
    return true;
  }

  /** Takes over one QEMU of a dead predecessor (see hostvm-agent.ts); false: reap it. */
  private async adoptOne(s: InstanceState): Promise<boolean> {
    const { ctx, log } = this;
    const role = parseRole(s.agentData);
    if (!role) return false;
    const guestId = role.role === "guest" ? role.guest.guestId : role.req.guest.guestId;
    const inPlace = role.role === "incoming" ? role.req.inPlace === true : this.liveUpdatePair(guestId, role);
    if (this.guests.has(guestId) && !inPlace) return false;
    const q = await QemuProcess.adopt(s, { log: (m) => log.debug({ guest: guestId }, m) });
    if (role.role === "guest" && inPlace) return this.adoptLiveUpdateHalf(s, q, role);
    try {
      const qemuStatus = (await q.qmp.queryStatus()).status;
      let migrationId: string | null = null;
      if (role.role === "guest") {
        const g = await GuestRuntime.adoptOrphan(ctx, q, role);
        this.guests.set(guestId, g);
        if (role.outgoing) {
          const status = await adoptedOutgoingStatus(q, { ...role, outgoing: role.outgoing });
          const m = OutgoingMigration.adopt(ctx, g, role.outgoing, this.onGone, status);
          this.outgoing.set(m.migrationId, m);
          m.start();
          migrationId = m.migrationId;
          log.warn(
            { guest: guestId, migration: migrationId, found: status, qemuStatus },
            "adopted a guest with its outgoing migration",
          );
        } else log.warn({ guest: guestId, qemuStatus, state: g.state }, "adopted a guest");
      } else {
        const m = await IncomingMigration.adoptOrphan(ctx, q, role, this.arrived);
        this.incoming.set(m.migrationId, m);
        migrationId = m.migrationId;
        log.warn(
          { guest: guestId, migration: migrationId, qemuStatus, state: m.state },
          "adopted an incoming migration",
        );
      }
      this.adopted.push({
        instanceId: s.instanceId,
        guestId,
        pid: q.pid!,
        as: role.role,
        migrationId,
        qemuStatus,
      });
      return true;
    } catch (e) {
      this.guests.delete(guestId);
      await q.kill().catch(() => {});
      throw e;
    }
  }
}

// A live update interrupted by the agent's death leaves two QEMUs of one guest here: the
// replaced one (a guest whose outgoing migration names this very agent) and the new one
// (an incoming, or a guest once finished). Exactly one may run: the new one if it was
// finished (it ran), else the old one (the fence in incoming.ts decides as usual).
function prune<T extends { done(): boolean }>(m: Map<string, T>): void {
  const finished = [...m].filter(([, v]) => v.done());
  for (const [k] of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED_MIGRATIONS))) m.delete(k);
}

/**
 * The destination side of a migration on a host-VM agent.
 *
 * The destination QEMU starts with -S as well as -incoming defer, so it never runs the
 * guest on its own when the load completes: only finish() (the orchestrator's decision,
 * taken after the source reported completion) starts it. That is what makes a rollback
 * safe: a destination that was never finished never executed the guest, so the source may
 * resume, even after an instant handover where both map the same RAM file.
 *
 * An unfinished incoming is bound by a lease that every status read renews: if the
 * orchestrator vanishes (or the link to it is cut) the QEMU is killed instead of waiting
 * for a source forever.
 *
 * finish, abort and the lease's expiry are decisions about the same QEMU and are taken one
 * at a time: whichever comes first wins, and the other sees its result (an abort after a
 * finish is refused because the guest runs here; a finish after an abort is refused). That
 * makes an abort a fence the source agent can rely on: once it succeeded, this destination
 * can never run the guest (see outgoing.ts, selfResolve). An abort is also refused while
 * the QEMU runs (post-copy armed it to start by itself).
 *
 * A successor agent adopts an unfinished incoming QEMU (adoptOrphan): paused ones are
 * incomings again with a fresh lease (a live orchestrator can still finish or abort them);
 * one that already runs is the guest here.
 *
 * Devices (devices.ts): the QEMU starts with the guest's device list, as the source's. An
 * instant handover uses the guest's files where they are (same server); a pre-copy makes
 * the guest's folder here (writable disks filled by QEMU's block migration, read-only ones,
 * the serial logs and their consoles' delivered keystrokes fetched from the source agent) and removes it if the guest never
 * runs here. Disks are activated only by finish (late-block-activate): until then the
 * source can still take its image locks back and resume. Taps are set up again here: NIC
 * taps with the QEMU, disk taps before the guest resumes (pre-copy) or as it resumes
 * (instant handover: an export would lock the shared image the source may still need).
 */
import { createReadStream, createWriteStream, rmSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import {
  cprPaths,
  listenIncoming,
  type MigrationCapabilities,
  QemuProcess,
  type QmpEvent,
} from "../../qemu/index.ts";
import type { ContinuedLogs, IncomingStatus, PrepareIncomingRequest } from "../api-types.ts";
import { AgentError, conflict } from "../http.ts";
import { cpuSeconds, qmpTimestampMs } from "../proc.ts";
import type { IncomingRole } from "./adoption.ts";
import { inputsPath, writeInputs } from "./console-inputs.ts";
import {
  createIncomingStore,
  diskTapsOf,
  guestDir,
  hasDisks,
  hasStore,
  loggedSerialsOf,
  openDiskTaps,
  removeGuestStore,
  serialLogOf,
} from "./devices.ts";
import { type GuestContext, guestSpec } from "./guest-runtime.ts";

const DEFAULT_LEASE_MS = 30_000;
/**
 * Fetching the source's serial logs at finish is on the guest's downtime path: bounded, and
 * never a reason to fail the move (the log then starts here).
 */
const LOG_FETCH_TIMEOUT_MS = 3000;
/** A post-copy's arming fetch runs while the source still runs the guest: it may take longer. */
const ARM_LOG_FETCH_TIMEOUT_MS = 10_000;
/** Bound of the background QMP connect of a cpr-transfer destination (its lease ends it sooner). */
const CPR_QMP_WAIT_MS = 3_600_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class IncomingMigration {
  state: IncomingStatus["state"] = "listening";
  qemu: QemuProcess | null = null;
  uri: string | null = null;
  resumedAt: number | null = null;
  error: string | null = null;
  cpuStart: number | null = null;
  cpuEnd: number | null = null;
  leaseExpiresAt: number | null = null;
  private leaseTimer: NodeJS.Timeout | null = null;
  /** finish, abort and expiry, one at a time (see the header). */
  private decisions: Promise<unknown> = Promise.resolve();
  /** This incoming made the guest's folder here (pre-copy): it goes if the guest never runs here. */
  private ownsStore = false;
  /**
   * Post-copy: how many bytes of each of the source's serial logs were appended here at
   * arming; continueLogs() appends the rest from there while the source waits before the
   * switch. A port missing here was not continued (its log starts here).
   */
  private logOffsets: Record<string, number> = {};
  /** The new process's cpr channel when this live update goes by cpr-transfer (qemu/cpr.ts). */
  cprUri: string | null = null;
  /**
   * cpr-transfer: QMP connected as soon as QEMU opens it (once the source's cpr state
   * arrived), so that finish, on the guest's downtime path, does not wait for it.
   */
  private cprQmp: Promise<void> | null = null;

  constructor(
    private readonly ctx: GuestContext,
    readonly req: PrepareIncomingRequest,
    /** Called once the guest runs here: the agent turns it into one of its guests. */
    private readonly onRunning: (m: IncomingMigration, q: QemuProcess) => Promise<void>,
    /**
     * A live update by cpr-transfer: the agent's QEMU is >= 10 and the running copy was
     * started for it (aux-ram-share). Only with req.inPlace and handover mode.
     */
    private readonly cpr = false,
  ) {}

  get migrationId(): string {
    return this.req.migrationId;
  }

  /**
   * The guest may still come to run here and is not one of the agent's guests yet: undecided,
   * or started and being handed to the agent (a console session waits for it, console.ts).
   */
  get arriving(): boolean {
    return (
      this.state === "listening" || this.state === "armed" || (this.state === "running" && !this.handedOver)
    );
  }
  private handedOver = false;

  /** Nothing more will happen to this incoming (the guest, if it arrived, is a guest now). */
  done(): boolean {
    return this.state !== "listening" && this.state !== "armed";
  }

  private serialize<T>(f: () => Promise<T>): Promise<T> {
    const next = this.decisions.then(f, f);
    this.decisions = next.catch(() => {});
    return next;
  }

  /** Records what a successor agent needs to adopt this QEMU. */
  private persist(armed = false): void {
    const role: IncomingRole = { role: "incoming", req: this.req, uri: this.uri, armed };
    if (armed) role.logOffsets = this.logOffsets;
    try {
      this.qemu?.setAgentData(role);
    } catch (e) {
      this.ctx.log.warn({ migration: this.migrationId, err: (e as Error).message }, "cannot record the role");
    }
  }

  /** What happens when the QEMU exits while still an incoming. */
  private watch(q: QemuProcess): void {
    this.cpuStart = cpuSeconds(q.pid);
    // A cpr-transfer destination has no QMP yet: its events are followed once connected.
    if (q.hasQmp) this.followEvents(q);
    q.exited.then((x) => {
      if (this.state === "listening" || this.state === "armed") {
        this.state = "failed";
        const why = q.stderr.trim().split("\n").slice(-2).join(" | ");
        this.error = `destination QEMU exited (${x.code ?? x.signal})${why ? `: ${why}` : ""}`;
        this.ctx.log.warn({ migration: this.migrationId }, this.error);
        this.clearLease();
        void this.discard(q).catch(() => {});
      }
    });
  }

  private followEvents(q: QemuProcess): void {
    q.qmp.on("event", (e: QmpEvent) => {
      if (e.event === "RESUME" && this.resumedAt === null) this.resumedAt = qmpTimestampMs(e.timestamp);
    });
  }

  /** Whether the QEMU runs the guest (false while it has no QMP: a cpr-transfer not yet received). */
  private async qemuRuns(q: QemuProcess | null): Promise<boolean> {
    if (!q?.hasQmp) return false;
    return q.qmp
      .queryStatus({ timeoutMs: 2000 })
      .then((s) => s.running)
      .catch(() => false);
  }

  /**
   * Takes over the destination QEMU of a migration that a dead predecessor prepared
   * (adopted by pid, QMP reconnected). Still paused (loading or loaded, -S): an incoming
   * again, with a fresh lease. Running: the guest is here (the predecessor died between
   * starting it and recording that); `onRunning` makes it a guest.
   */
  static async adoptOrphan(
    ctx: GuestContext,
    q: QemuProcess,
    role: IncomingRole,
    onRunning: (m: IncomingMigration, q: QemuProcess) => Promise<void>,
  ): Promise<IncomingMigration> {
    const m = new IncomingMigration(ctx, role.req, onRunning);
    m.qemu = q;
    m.uri = role.uri;
    m.logOffsets = role.logOffsets ?? {};
    m.ownsStore = role.req.mode === "precopy" && hasStore(role.req.guest);
    m.watch(q);
    const st = await q.qmp.queryStatus();
    if (st.running) {
      await m.started(q);
    } else if (["inmigrate", "paused", "prelaunch", "finish-migrate"].includes(st.status)) {
      m.state = role.armed ? "armed" : "listening";
      m.renewLease();
    } else {
      m.state = "failed";
      m.error = `adopted in run state ${st.status}: killed`;
      await m.discard(q);
    }
    return m;
  }

  async prepare(): Promise<void> {
    const handover = this.req.mode === "handover";
    const g = this.req.guest;
    if (!handover && hasStore(g)) {
      await createIncomingStore(this.ctx.cfg, g, (diskId, path) => this.fetchImage(diskId, path));
      this.ownsStore = true;
    }
    const cpr = this.cpr && handover && this.req.inPlace === true;
    let q: QemuProcess;
    try {
      q = await QemuProcess.start({
        stateDir: this.ctx.cfg.qemuDir,
        spec: guestSpec(this.ctx, g, ["-S"]),
        // cpr-transfer: listening on both channels from the start, capabilities as QEMU's defaults.
        incoming: cpr ? "cpr" : "defer",
        poolFile: handover ? "attach" : "create",
        log: (m) => this.ctx.log.debug({ migration: this.migrationId }, m),
      });
    } catch (e) {
      this.dropStore();
      throw e;
    }
    this.qemu = q;
    // A handover's pause is this QEMU's load and start plus the agents' hops: it waits, paused
    // and idle, at the control path's priority until it runs the guest (qemu/priority.ts).
    if (handover) q.prioritize(true);
    this.watch(q);
    this.persist();
    if (cpr) {
      const p = cprPaths(q.spec.runDir);
      this.uri = `unix:${p.main}`;
      this.cprUri = `unix:${p.cpr}`;
      // Ends when QMP is up, or when the QEMU exits (an abort, the lease, a failure).
      this.cprQmp = q.connectQmp(CPR_QMP_WAIT_MS).then(() => this.followEvents(q));
      this.cprQmp.catch(() => {});
      this.persist();
      this.renewLease();
      return;
    }
    try {
      const uri = handover
        ? `unix:${join(q.spec.runDir, "migrate.sock")}`
        : `tcp:${this.req.listenHost ?? this.ctx.cfg.address}:0`;
      const caps: MigrationCapabilities = {
        events: true,
        "x-ignore-shared": handover,
        "postcopy-ram": !!this.req.postcopy,
      };
      // Disks stay inactive (no image locks taken) until finish's cont: see the header.
      if (hasDisks(g)) caps["late-block-activate"] = true;
      this.uri = await listenIncoming(q, caps, uri);
    } catch (e) {
      this.state = "failed";
      this.error = (e as Error).message;
      await this.discard(q);
      throw e;
    }
    this.persist();
    this.renewLease();
  }

  renewLease(): void {
    if (this.state !== "listening" && this.state !== "armed") return;
    this.clearLease();
    const ms = this.req.leaseMs ?? DEFAULT_LEASE_MS;
    this.leaseExpiresAt = Date.now() + ms;
    this.leaseTimer = setTimeout(() => void this.expire(), ms);
    this.leaseTimer.unref();
  }

  private clearLease(): void {
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    this.leaseTimer = null;
    this.leaseExpiresAt = null;
  }

  private expire(): Promise<void> {
    return this.serialize(() => this.doExpire());
  }

  private async doExpire(): Promise<void> {
    if (this.state !== "listening" && this.state !== "armed") return;
    const q = this.qemu;
    // A destination that already runs the guest is the guest now: never kill it on a timer.
    if (await this.qemuRuns(q)) return;
    this.state = "expired";
    this.error = `lease of ${this.req.leaseMs ?? DEFAULT_LEASE_MS} ms expired without finish or renewal`;
    this.ctx.log.warn({ migration: this.migrationId }, `incoming killed: ${this.error}`);
    if (q) await this.discard(q).catch(() => {});
  }

  /**
   * Starts the guest here. `arm`: only tell QEMU to start by itself once the incoming load
   * completes (`cont` during inmigrate), used before switching to post-copy.
   */
  finish(opts: { arm?: boolean; timeoutMs?: number }): Promise<void> {
    return this.serialize(() => this.doFinish(opts));
  }

  private async doFinish(opts: { arm?: boolean; timeoutMs?: number }): Promise<void> {
    const q = this.qemu;
    if (this.state === "running") return;
    if (!q || (this.state !== "listening" && this.state !== "armed")) {
      throw conflict(`incoming ${this.migrationId} is ${this.state}${this.error ? `: ${this.error}` : ""}`);
    }
    if (this.cprQmp) {
      // cpr-transfer: QMP appears once the source's cpr state arrived (it has completed).
      const ms = opts.timeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.cprQmp,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new AgentError(504, "finish_timeout", `no QMP from the new QEMU within ${ms} ms`)),
            ms,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    }
    if (this.state === "listening") {
      await this.beforeResume(q, !!opts.arm, opts.timeoutMs ?? 30_000);
      await q.qmp.cont();
    }
    if (opts.arm) {
      this.state = "armed";
      this.persist(true);
      return;
    }
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      if (!q.isRunning)
        throw new AgentError(409, "destination_gone", this.error ?? "destination QEMU exited");
      const st = await q.qmp.queryStatus();
      if (st.running) break;
      // With -S the load ends "paused"; a cont before that only armed autostart.
      if (st.status === "paused") await q.qmp.cont();
      if (Date.now() > deadline) {
        throw new AgentError(
          504,
          "finish_timeout",
          `destination of ${this.req.guest.guestId} not running (status ${st.status})`,
        );
      }
      await sleep(2);
    }
    await this.started(q);
  }

  /** The guest runs in this QEMU: it owns the RAM file now and becomes one of the agent's guests. */
  private async started(q: QemuProcess): Promise<void> {
    q.prioritize(false);
    this.clearLease();
    this.state = "running";
    // The guest's folder is the running guest's now.
    this.ownsStore = false;
    if (this.req.mode === "handover") q.adoptPoolFile();
    if (this.resumedAt === null) {
      const ev = await q.qmp
        .waitForEvent("RESUME", undefined, 1000, { includeRecent: true })
        .catch(() => null);
      this.resumedAt = qmpTimestampMs(ev?.timestamp);
    }
    this.cpuEnd = cpuSeconds(q.pid);
    // Disk taps not set up before the resume (instant handover, post-copy, an adopted QEMU).
    await openDiskTaps(q, this.req.guest).catch((e) =>
      this.ctx.log.error(
        { migration: this.migrationId, err: (e as Error).message },
        "the guest runs here, but its disk taps could not be set up",
      ),
    );
    try {
      await this.onRunning(this, q);
    } finally {
      this.handedOver = true;
    }
  }

  /**
   * Pre-copy from another server, before the guest resumes here: the source's serial logs
   * (final: the source is paused) so that they continue here, and the disk taps once QEMU
   * has loaded everything. Post-copy arms before the switch, while the source still runs:
   * the logs so far (their sizes kept: continueLogs() appends the rest once the source
   * paused before the switch) and the delivered keystrokes; taps when it runs.
   */
  private async beforeResume(q: QemuProcess, arming: boolean, timeoutMs: number): Promise<void> {
    if (this.req.mode !== "precopy") return;
    const g = this.req.guest;
    const source = this.req.source?.url;
    for (const id of source ? loggedSerialsOf(g) : []) {
      const log = serialLogOf(this.ctx.cfg, g, id)!;
      try {
        const n = await this.appendSourceLog(
          source!,
          id,
          log,
          0,
          arming ? ARM_LOG_FETCH_TIMEOUT_MS : LOG_FETCH_TIMEOUT_MS,
        );
        if (arming) this.logOffsets[id] = n;
        this.ctx.log.info({ migration: this.migrationId, serial: id, bytes: n }, "serial log continued here");
        // The console sessions' delivered keystrokes (final: the source stopped writing them
        // when the migration started), so that none is typed twice here.
        const inputs = await this.ctx
          .peer(source!)
          .consoleInputs(g.guestId, id, LOG_FETCH_TIMEOUT_MS)
          .catch(() => ({}));
        if (Object.keys(inputs).length > 0) writeInputs(inputsPath(this.ctx.cfg, g.guestId, id), inputs);
      } catch (e) {
        this.ctx.log.warn(
          { migration: this.migrationId, serial: id, err: (e as Error).message },
          "could not fetch the source's serial log: it starts here",
        );
      }
    }
    if (arming || diskTapsOf(g).length === 0) return;
    const deadline = Date.now() + timeoutMs;
    while ((await q.qmp.queryStatus()).status === "inmigrate") {
      if (Date.now() > deadline)
        throw new AgentError(504, "finish_timeout", `destination of ${g.guestId} still loading`);
      await sleep(2);
    }
    await openDiskTaps(q, g);
  }

  /**
   * Post-copy, armed, the source paused before the switch (its guest stopped, so its logs
   * are final): appends what each source log gained since arming, before the guest prints
   * here. Lines the guest printed between arming and the switch are then in this log too,
   * at the offsets the console clients saw them at. A fetch that fails leaves that log as it
   * is (bounded: this is on the guest's downtime path).
   */
  continueLogs(): Promise<ContinuedLogs> {
    return this.serialize(() => this.doContinueLogs());
  }

  private async doContinueLogs(): Promise<ContinuedLogs> {
    const t0 = performance.now();
    if (this.state !== "armed" || this.req.mode !== "precopy") {
      throw conflict(
        `incoming ${this.migrationId} is ${this.state} (${this.req.mode}), not an armed post-copy`,
      );
    }
    const g = this.req.guest;
    const source = this.req.source?.url;
    const bytes: Record<string, number> = {};
    for (const [id, from] of Object.entries(this.logOffsets)) {
      const log = serialLogOf(this.ctx.cfg, g, id);
      if (!source || !log) continue;
      try {
        const n = await this.appendSourceLog(source, id, log, from, LOG_FETCH_TIMEOUT_MS);
        this.logOffsets[id] = from + n;
        bytes[id] = n;
      } catch (e) {
        this.ctx.log.warn(
          { migration: this.migrationId, serial: id, err: (e as Error).message },
          "could not fetch the end of the source's serial log: lines printed since arming stay there",
        );
      }
    }
    this.persist(true);
    const ms = performance.now() - t0;
    this.ctx.log.info(
      { migration: this.migrationId, bytes, ms: Math.round(ms) },
      "serial logs completed here",
    );
    return { bytes, ms };
  }

  /**
   * Appends the source's log of port `id` from byte `from` to `log`, whole or not at all (a
   * fetch cut half-way must not leave part of it here); answers the bytes appended.
   */
  private async appendSourceLog(
    source: string,
    id: string,
    log: string,
    from: number,
    timeoutMs: number,
  ): Promise<number> {
    const part = `${log}.part-${this.migrationId}`;
    try {
      const n = await this.ctx
        .peer(source)
        .downloadSerialLog(this.req.guest.guestId, id, part, { from, timeoutMs });
      // Streamed: a long-lived guest's log may be large.
      if (n > 0) await pipeline(createReadStream(part), createWriteStream(log, { flags: "a" }));
      return n;
    } finally {
      rmSync(part, { force: true });
    }
  }

  /** A read-only disk image from the source agent (pre-copy: block migration skips them). */
  private async fetchImage(diskId: string, path: string): Promise<void> {
    const url = this.req.source?.url;
    if (!url) {
      throw conflict(
        `read-only disk ${diskId} of ${this.req.guest.guestId} must come from the source agent, and the request names none`,
      );
    }
    const n = await this.ctx.peer(url).downloadDiskImage(this.req.guest.guestId, diskId, path);
    this.ctx.log.info({ migration: this.migrationId, disk: diskId, bytes: n }, "read-only disk fetched");
  }

  /** Kills the QEMU; the guest's folder goes too if this incoming made it. */
  private async discard(q: QemuProcess): Promise<void> {
    await q.kill();
    this.dropStore();
  }

  private dropStore(): void {
    if (!this.ownsStore) return;
    this.ownsStore = false;
    removeGuestStore(this.ctx.cfg, this.req.guest.guestId);
    this.ctx.log.info(
      { migration: this.migrationId, dir: guestDir(this.ctx.cfg, this.req.guest.guestId) },
      "guest folder removed",
    );
  }

  abort(): Promise<void> {
    return this.serialize(() => this.doAbort());
  }

  private async doAbort(): Promise<void> {
    if (this.state === "running") {
      throw conflict(`incoming ${this.migrationId} already runs the guest here: delete the guest instead`);
    }
    const q = this.qemu;
    if ((this.state === "listening" || this.state === "armed") && q?.isRunning) {
      if (await this.qemuRuns(q))
        throw conflict(`incoming ${this.migrationId} runs the guest here (it started by itself)`);
    }
    this.clearLease();
    if (this.state === "listening" || this.state === "armed") this.state = "aborted";
    if (this.qemu) await this.discard(this.qemu);
  }

  status(): IncomingStatus {
    return {
      migrationId: this.migrationId,
      guestId: this.req.guest.guestId,
      mode: this.req.mode,
      state: this.state,
      uri: this.uri,
      cprUri: this.cprUri,
      pid: this.qemu?.pid ?? null,
      instanceId: this.qemu?.instanceId ?? null,
      qemuStatus: null,
      resumedAt: this.resumedAt,
      error: this.error,
      cpu: { start: this.cpuStart, end: this.cpuEnd ?? cpuSeconds(this.qemu?.pid) },
      leaseExpiresAt: this.leaseExpiresAt,
    };
  }
}

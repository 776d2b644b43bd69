/**
 * One guest run by a host-VM agent: its QEMU, a serial console held open for the guest's
 * whole life on this host VM (heartbeats and workload reports are read from it), and its
 * workloads. A guest arrives either by booting here or by an incoming migration.
 */
import { randomBytes } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import { type LiveUpdateMechanism, QemuProcess, type QemuSpec, SerialConsole } from "../../qemu/index.ts";
import type { GuestConfig, GuestStatus, StartOutgoingRequest, Workload } from "../api-types.ts";
import type { HostVmAgentClient } from "../client.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { ConsoleRecords } from "../console-records.ts";
import { AgentError } from "../http.ts";
import { cpuSeconds } from "../proc.ts";
import { type GuestRole, replaySerialLog } from "./adoption.ts";
import { deviceEndpoints, openDiskTaps, qemuDevices } from "./devices.ts";

export interface GuestContext {
  cfg: HostVmAgentConfig;
  log: FastifyBaseLogger;
  /** A client of another host-VM agent (same token), e.g. a migration's destination. */
  peer: (url: string) => HostVmAgentClient;
  /**
   * How this agent's QEMU live-updates a guest (found at start-up from its version):
   * cpr-transfer (>= 10: guests start with aux-ram-share for it) or x-ignore-shared.
   */
  liveUpdate: LiveUpdateMechanism;
}

/** The QEMU spec of a guest on this host VM: the guest's shape plus this agent's pool and image. */
export function guestSpec(ctx: GuestContext, g: GuestConfig, extraArgs: string[] = []): QemuSpec {
  return {
    guestId: g.guestId,
    memoryMiB: g.memoryMiB,
    cpus: g.cpus ?? 1,
    poolDir: ctx.cfg.poolDir,
    image: ctx.cfg.image,
    bootId: g.bootId,
    qemuBinary: ctx.cfg.qemu?.binary,
    tcgTbSizeMiB: ctx.cfg.qemu?.tcgTbSizeMiB,
    ...(ctx.liveUpdate === "cpr-transfer" ? { auxRamShare: true } : {}),
    ...(g.devices && g.devices.length > 0 ? { devices: qemuDevices(ctx.cfg, g) } : {}),
    extraArgs,
  };
}

export function workloadCommand(w: Workload): string {
  return w.kind === "verify"
    ? `nc-wl start verify ${w.mib}`
    : `nc-wl start dirty ${w.rateMiBps} ${w.workingSetMiB}`;
}

export class GuestRuntime {
  state: GuestStatus["state"] = "stopped";
  qemu: QemuProcess | null = null;
  console: SerialConsole | null = null;
  records = new ConsoleRecords();
  workloads: Workload[] = [];
  /** Asked for at creation, started once the guest is up. */
  private bootWorkloads: Workload[] = [];
  /** Arrived by an incoming migration (see adoption.ts). */
  private arrived = false;
  /** The migration leaving this guest's QEMU (recorded for a successor agent). */
  private outgoingReq: StartOutgoingRequest | null = null;
  error: string | null = null;
  readonly config: GuestConfig & { cpus: number; bootId: string };

  constructor(
    private readonly ctx: GuestContext,
    config: GuestConfig,
  ) {
    this.config = {
      ...config,
      cpus: config.cpus ?? 1,
      bootId: config.bootId ?? `${config.guestId}-${randomBytes(4).toString("hex")}`,
    };
  }

  get guestId(): string {
    return this.config.guestId;
  }

  /** Boots the guest (fresh RAM in the pool) and starts its workloads. */
  async boot(workloads: Workload[], waitReady: boolean, timeoutMs: number): Promise<void> {
    this.state = "booting";
    this.error = null;
    this.records = new ConsoleRecords();
    const q = await QemuProcess.start({
      stateDir: this.ctx.cfg.qemuDir,
      spec: guestSpec(this.ctx, this.config),
      log: (m) => this.ctx.log.debug({ guest: this.guestId }, m),
    });
    this.bootWorkloads = [...workloads];
    this.arrived = false;
    await this.attach(q);
    // Its monitoring taps from the start (a failure is the guest's failure: never unwatched).
    await openDiskTaps(q, this.config);
    const ready = this.waitReadyThenStart(timeoutMs);
    if (waitReady) await ready;
    else ready.catch(() => {});
  }

  /**
   * Takes over the QEMU of a guest that a dead predecessor ran (adopted by pid, QMP already
   * reconnected): the console again, what the guest printed meanwhile (heartbeats, verify
   * reports, from QEMU's serial log), and its state from QEMU's run state.
   */
  static async adoptOrphan(ctx: GuestContext, q: QemuProcess, role: GuestRole): Promise<GuestRuntime> {
    const g = new GuestRuntime(ctx, role.guest);
    g.workloads = [...role.workloads];
    g.bootWorkloads = [...role.bootWorkloads];
    g.arrived = role.arrived;
    g.outgoingReq = role.outgoing;
    replaySerialLog(q.paths.serialLog, g.records);
    await g.attach(q);
    // Whatever the predecessor had half typed into the shell goes away with a Ctrl-C.
    g.console?.write("\x03");
    const run = (await q.qmp.queryStatus()).status;
    const up = role.arrived || g.records.readyBootId === g.config.bootId;
    if (!up) {
      g.state = "booting";
      g.waitReadyThenStart(180_000).catch(() => {});
    } else {
      g.state = run === "running" ? "running" : "paused";
      if (g.bootWorkloads.length > 0 && run === "running") g.waitReadyThenStart(10_000).catch(() => {});
    }
    return g;
  }

  private async waitReadyThenStart(timeoutMs: number): Promise<void> {
    try {
      if (this.records.readyBootId !== this.config.bootId) {
        const re = new RegExp(`NESTCLOUD-READY ${this.config.bootId}\\b`);
        await this.console!.waitForLine(re, timeoutMs, { includeHistory: true });
      }
      this.state = "running";
      for (const w of this.bootWorkloads) await this.startWorkload(w);
      this.bootWorkloads = [];
      this.persist();
    } catch (e) {
      this.state = "failed";
      this.error = `boot: ${(e as Error).message}`;
      throw new AgentError(
        500,
        "boot_failed",
        `guest ${this.guestId} did not come up: ${(e as Error).message}`,
      );
    }
  }

  /** Takes over a running QEMU (an incoming migration that finished here). */
  async adopt(q: QemuProcess, workloads: Workload[], previous: ConsoleRecords | null): Promise<void> {
    this.workloads = [...workloads];
    this.bootWorkloads = [];
    this.arrived = true;
    this.outgoingReq = null;
    this.records = new ConsoleRecords();
    if (previous) this.records.inherit(previous);
    await this.attach(q);
    this.state = "running";
  }

  /** Records (or clears) the migration leaving this guest, for a successor agent. */
  setOutgoing(req: StartOutgoingRequest | null): void {
    this.outgoingReq = req;
    this.persist();
  }

  /** Writes what a successor needs to adopt this guest into its QEMU's state file. */
  private persist(): void {
    const q = this.qemu;
    if (!q) return;
    const role: GuestRole = {
      role: "guest",
      guest: {
        guestId: this.config.guestId,
        memoryMiB: this.config.memoryMiB,
        cpus: this.config.cpus,
        bootId: this.config.bootId,
        ...(this.config.devices ? { devices: this.config.devices } : {}),
      },
      workloads: this.workloads,
      bootWorkloads: this.bootWorkloads,
      arrived: this.arrived,
      outgoing: this.outgoingReq,
    };
    try {
      q.setAgentData(role);
    } catch (e) {
      this.ctx.log.warn({ guest: this.guestId, err: (e as Error).message }, "cannot record the guest's role");
    }
  }

  private async attach(q: QemuProcess): Promise<void> {
    this.qemu = q;
    this.persist();
    q.exited.then((x) => {
      if (this.qemu !== q) return;
      if (this.state !== "stopped") {
        this.state = "failed";
        this.error = `QEMU exited unexpectedly (${x.code ?? x.signal})`;
        this.ctx.log.error({ guest: this.guestId, exit: x, stderr: q.stderr.slice(-500) }, this.error);
        // Cleans its runtime folder and (owned) pool file; the process is gone already.
        void q.kill().catch(() => {});
      }
    });
    this.console?.close();
    this.console = await SerialConsole.connect(q.paths.serialSocket, { label: this.guestId });
    this.console.on("line", (l: string) => this.records.feed(l, Date.now()));
  }

  async startWorkload(w: Workload): Promise<void> {
    const r = await this.exec(workloadCommand(w), 10_000);
    if (r.exitCode !== 0) {
      throw new AgentError(
        500,
        "workload_failed",
        `starting ${w.kind} on ${this.guestId} failed: ${r.output}`,
      );
    }
    this.workloads = [...this.workloads.filter((x) => x.kind !== w.kind), w];
    this.persist();
  }

  async stopWorkload(kind: Workload["kind"]): Promise<void> {
    await this.exec(`nc-wl stop ${kind}`, 10_000);
    this.workloads = this.workloads.filter((x) => x.kind !== kind);
    this.persist();
  }

  async exec(command: string, timeoutMs: number): Promise<{ output: string; exitCode: number }> {
    if (!this.console || this.console.isClosed || (this.state !== "running" && this.state !== "migrating")) {
      throw new AgentError(409, "not_running", `guest ${this.guestId} is ${this.state}: no console`);
    }
    return this.console.run(command, timeoutMs);
  }

  /** Stops QEMU (its RAM file goes with it if this QEMU owns it). */
  async stop(): Promise<void> {
    this.state = "stopped";
    this.console?.close();
    this.console = null;
    const q = this.qemu;
    this.qemu = null;
    await q?.stop();
  }

  /** Lets go of QEMU without stopping it (after a migration away, the caller stops it). */
  detach(): QemuProcess | null {
    this.state = "stopped";
    this.console?.close();
    this.console = null;
    const q = this.qemu;
    this.qemu = null;
    return q;
  }

  status(): GuestStatus {
    const q = this.qemu;
    return {
      guestId: this.guestId,
      state: this.state,
      memoryMiB: this.config.memoryMiB,
      cpus: this.config.cpus,
      bootId: this.config.bootId,
      pid: q?.pid ?? null,
      instanceId: q?.instanceId ?? null,
      poolFile: q?.poolFile ?? null,
      ownsPoolFile: q?.ownsPoolFile ?? false,
      qemuStatus: null,
      heartbeat: this.records.heartbeat,
      verify: this.records.verify,
      dirty: this.records.dirty,
      workloads: this.workloads,
      devices: this.config.devices ?? [],
      endpoints: deviceEndpoints(this.ctx.cfg, this.config, q),
      cpuSeconds: cpuSeconds(q?.pid),
      error: this.error,
    };
  }
}

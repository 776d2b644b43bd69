/**
 * One guest run by a host-VM agent: its QEMU, a serial console held open for the guest's
 * whole life on this host VM (heartbeats and workload reports are read from it), and its
 * workloads. A guest arrives either by booting here or by an incoming migration.
 */
import { randomBytes } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import { type LiveUpdateMechanism, QemuProcess, type QemuSpec, SerialConsole } from "../../qemu/index.ts";
import type {
  GuestConfig,
  GuestStatus,
  PowerAnswer,
  PowerRequest,
  PowerState,
  StartOutgoingRequest,
  Workload,
} from "../api-types.ts";
import { SHUTDOWN_WAIT_DEFAULT_MS } from "../api-types.ts";
import type { HostVmAgentClient } from "../client.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { ConsoleRecords } from "../console-records.ts";
import { AgentError } from "../http.ts";
import { cpuSeconds } from "../proc.ts";
import { type GuestRole, replaySerialLog } from "./adoption.ts";
import { deviceEndpoints, openDiskTaps, qemuDevices } from "./devices.ts";
import { bootAppend, type GuestPowerLog, guestEventOf, POWER_QEMU_ARGS, powerStateOf } from "./power.ts";

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
  /** What the guests did (powered off, reset, panicked, booted), for the controller's event log. */
  powerLog: GuestPowerLog;
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
    // Rescue: the same kernel with nestcloud.rescue=1 and the asked arguments.
    ...(bootAppend(g.boot) ? { append: bootAppend(g.boot) } : {}),
    // The virtual AMT: QEMU outlives the guest's power-off; panics are reported (power.ts).
    extraArgs: [...POWER_QEMU_ARGS, ...extraArgs],
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
  /** Powered off hard by the agent: QEMU stopped and kept (the virtual AMT's "off"). */
  heldOff = false;
  /** What the guest did to its power, as QEMU's events told (RESUME: on again). */
  private guestPower: PowerState = "on";
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
    g.heldOff = role.heldOff === true;
    replaySerialLog(q.paths.serialLog, g.records);
    await g.attach(q);
    g.guestPower = powerStateOf((await q.qmp.queryStatus()).status, false);
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
        ...(this.config.boot ? { boot: this.config.boot } : {}),
      },
      workloads: this.workloads,
      bootWorkloads: this.bootWorkloads,
      arrived: this.arrived,
      outgoing: this.outgoingReq,
      heldOff: this.heldOff,
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
    // What the guest does to its power, for the event log (ignored once this QEMU is not ours).
    q.qmp.on("event", (e: { event: string; data?: Record<string, unknown> }) => {
      if (this.qemu !== q) return;
      const ev = guestEventOf(e);
      if (ev) this.ctx.powerLog.push(this.guestId, ev.kind, ev.detail);
      if (ev?.kind === "guest-powered-off") this.guestPower = "off";
      else if (ev?.kind === "guest-panicked") this.guestPower = "panicked";
      else if (e.event === "RESUME") this.guestPower = "on";
    });
    this.console?.close();
    this.console = await SerialConsole.connect(q.paths.serialSocket, { label: this.guestId });
    this.console.on("line", (l: string) => {
      this.records.feed(l, Date.now());
      // Not at the line's start: the firmware's "Booting from ROM.." has no newline of its own.
      if (/NESTCLOUD-READY \S/.test(l) && this.qemu === q)
        this.ctx.powerLog.push(this.guestId, "booted", `${this.config.boot?.mode ?? "normal"} boot`);
    });
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
    if (this.heldOff) throw new AgentError(409, "not_running", `guest ${this.guestId} is powered off`);
    if (!this.console || this.console.isClosed || (this.state !== "running" && this.state !== "migrating")) {
      throw new AgentError(409, "not_running", `guest ${this.guestId} is ${this.state}: no console`);
    }
    return this.console.run(command, timeoutMs);
  }

  // ---- the virtual AMT (power and boot control; the guest's OS may be hung or off) ----------

  /** The guest's power state as last known (QEMU's events and the agent's own hard off). */
  get power(): PowerState {
    return this.heldOff ? "off" : this.guestPower;
  }

  /** Carries out a power or boot action; the caller checked that no migration is under way. */
  async powerAction(req: PowerRequest): Promise<PowerAnswer> {
    const q = this.qemu;
    if (!q?.isRunning || this.state === "stopped" || this.state === "failed")
      throw new AgentError(409, "no_qemu", `guest ${this.guestId} has no QEMU (${this.state}): start it`);
    const answer = (outcome: PowerAnswer["outcome"], detail: string): PowerAnswer => ({
      guestId: this.guestId,
      power: this.power,
      boot: this.config.boot?.mode ?? "normal",
      outcome,
      detail,
    });
    const now = powerStateOf((await q.qmp.queryStatus()).status, this.heldOff);
    switch (req.action) {
      case "on":
        if (now === "on") return answer("done", "already on");
        await this.resetAndRun(q);
        return answer("done", `powered on (was ${now})`);
      case "off":
        if (now === "off") return answer("done", "already off");
        await this.hardOff(q);
        return answer("done", `powered off hard (was ${now})`);
      case "reset":
        await this.resetAndRun(q);
        return answer("done", `reset (was ${now})`);
      case "shutdown": {
        if (now !== "on") {
          if (now === "panicked" && req.force) {
            await this.hardOff(q);
            return answer("forced", "panicked: no ACPI handler runs; powered off hard");
          }
          return answer(now === "off" ? "done" : "ignored", `already ${now}`);
        }
        const waitMs = req.waitMs ?? SHUTDOWN_WAIT_DEFAULT_MS;
        const off = q.qmp
          .waitForEvent(
            "SHUTDOWN",
            (e) => (e.data as { guest?: boolean } | undefined)?.guest === true,
            waitMs,
          )
          .then(
            () => true,
            () => false,
          );
        await q.qmp.execute("system_powerdown");
        if (await off) return answer("done", "the guest powered off (ACPI)");
        if (req.force) {
          await this.hardOff(q);
          return answer("forced", `the guest ignored the power button for ${waitMs} ms: powered off hard`);
        }
        return answer(
          "ignored",
          `the guest did not power off within ${waitMs} ms (no ACPI handler?): still on`,
        );
      }
      case "rescue":
      case "normal": {
        const boot =
          req.action === "rescue"
            ? { mode: "rescue" as const, ...(req.append ? { append: req.append } : {}) }
            : undefined;
        await this.restartWith(boot);
        return answer("done", `restarted into the ${req.action} command line`);
      }
    }
  }

  /** Hard off: the vCPUs stop at once; QEMU stays (power on = reset + cont). */
  private async hardOff(q: QemuProcess): Promise<void> {
    await q.qmp.stop();
    this.heldOff = true;
    this.persist();
  }

  /**
   * Reset, then run: what powers a guest on (off, panicked) and resets a hung one. The reset
   * is asynchronous in QEMU: cont only once its RESET event came (else "reset required").
   */
  private async resetAndRun(q: QemuProcess): Promise<void> {
    const reset = q.qmp.waitForEvent("RESET", () => true, 10_000);
    await q.qmp.execute("system_reset");
    await reset;
    const st = (await q.qmp.queryStatus()).status;
    if (st !== "running") await q.qmp.cont();
    this.heldOff = false;
    this.guestPower = "on";
    this.persist();
  }

  /** A new QEMU with another command line (rescue or back): the kernel's arguments are fixed per process. */
  private async restartWith(boot: GuestConfig["boot"]): Promise<void> {
    const q = this.qemu;
    this.state = "stopped";
    this.console?.close();
    this.console = null;
    this.qemu = null;
    await q?.stop();
    if (boot) this.config.boot = boot;
    else delete this.config.boot;
    this.heldOff = false;
    this.guestPower = "on";
    // Its workloads died with the old boot; they start again once it is up.
    const workloads = this.workloads;
    this.workloads = [];
    await this.boot(workloads, false, 180_000);
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
      ...(this.config.boot ? { boot: this.config.boot } : {}),
      ...(this.power !== "on" ? { power: this.power } : {}),
    };
  }
}

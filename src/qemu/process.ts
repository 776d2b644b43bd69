// One QEMU process running one guest: argument building (pure), spawning without a shell,
// waiting for QMP, and a stop/cleanup path that never leaves a process or a pool file behind.
//
// Guest RAM lives in a file <poolDir>/<guestId>.ram mapped with share=on: that is what lets a
// second QEMU on the same server take the guest over without copying RAM (x-ignore-shared).
// Whoever "owns" the pool file deletes it on stop; ownership moves to the destination after
// an instant handover (see migrate.ts), so the source's stop leaves the file alone.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { cprIncomingArgs, cprPaths } from "./cpr.ts";
import { buildDeviceArgs, deviceProblem, deviceSockets } from "./devices.ts";
import { setLevel } from "./priority.ts";
import { QmpClient } from "./qmp.ts";
import type { QemuLaunchSpec, QemuSpec } from "./spec.ts";
import { type InstanceState, isOurQemu, processStartTime, readPidFile, writeState } from "./state.ts";

export const DEFAULT_QEMU_BINARY = "qemu-system-x86_64";

export interface RuntimePaths {
  qmpSocket: string;
  serialSocket: string;
  serialLog: string;
  pidFile: string;
}

export class QemuSpecError extends Error {
  override name = "QemuSpecError";
}

/** A QEMU of a previous agent could not be taken over (see QemuProcess.adopt). */
export class QemuAdoptError extends Error {
  override name = "QemuAdoptError";
}

export class QemuStartError extends Error {
  override name = "QemuStartError";
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

// sun_path is 108 bytes including the terminating NUL.
const MAX_UNIX_PATH = 107;
const GUEST_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

export function runtimePaths(runDir: string): RuntimePaths {
  return {
    qmpSocket: join(runDir, "qmp.sock"),
    serialSocket: join(runDir, "serial.sock"),
    serialLog: join(runDir, "serial.log"),
    pidFile: join(runDir, "qemu.pid"),
  };
}

export function poolFilePath(spec: Pick<QemuSpec, "poolDir" | "guestId">): string {
  return join(spec.poolDir, `${spec.guestId}.ram`);
}

export function newInstanceId(guestId: string): string {
  return `${guestId}.${randomBytes(5).toString("hex")}`;
}

/** QEMU's option syntax splits on commas; we refuse rather than try to escape every parser. */
function checkOptionValue(what: string, v: string): void {
  if (v === "" || /[,\n\r\0]/.test(v))
    throw new QemuSpecError(`${what} must be non-empty without commas or newlines: ${JSON.stringify(v)}`);
}

export function validateSpec(spec: QemuLaunchSpec): void {
  if (!GUEST_ID_RE.test(spec.guestId)) {
    throw new QemuSpecError(`guestId ${JSON.stringify(spec.guestId)} must match ${GUEST_ID_RE}`);
  }
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) {
    throw new QemuSpecError(`memoryMiB must be an integer >= 16, got ${spec.memoryMiB}`);
  }
  if (spec.cpus !== undefined && (!Number.isInteger(spec.cpus) || spec.cpus < 1)) {
    throw new QemuSpecError(`cpus must be a positive integer, got ${spec.cpus}`);
  }
  if (!spec.instanceId.includes(spec.guestId) || /[^A-Za-z0-9_.-]/.test(spec.instanceId)) {
    throw new QemuSpecError(`instanceId ${spec.instanceId} must contain the guestId and only [A-Za-z0-9_.-]`);
  }
  for (const [what, v] of [
    ["runDir", spec.runDir],
    ["poolDir", spec.poolDir],
    ["kernel path", spec.image.kernel],
    ["initrd path", spec.image.initrd],
  ] as const) {
    checkOptionValue(what, v);
  }
  const p = runtimePaths(spec.runDir);
  const devices = spec.devices ?? [];
  const problem = deviceProblem(devices);
  if (problem) throw new QemuSpecError(problem);
  const ds = deviceSockets(spec.runDir, devices);
  const deviceSocketPaths = [...Object.values(ds.serial), ...Object.values(ds.nic), ...Object.values(ds.tap)];
  for (const sock of [
    p.qmpSocket,
    p.serialSocket,
    ...(devices.length > 0 ? [ds.nbd] : []),
    ...deviceSocketPaths,
  ]) {
    if (Buffer.byteLength(sock) > MAX_UNIX_PATH) {
      throw new QemuSpecError(
        `unix socket path too long (${Buffer.byteLength(sock)} > ${MAX_UNIX_PATH}): ${sock}; use a shorter state dir`,
      );
    }
  }
  if (spec.net?.mode === "tap") checkOptionValue("tap ifname", spec.net.ifname);
  if (spec.net?.mac !== undefined && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(spec.net.mac)) {
    throw new QemuSpecError(`bad MAC address: ${spec.net.mac}`);
  }
  if (spec.disk) checkOptionValue("disk path", spec.disk.path);
  if (/[\n\r\0]/.test(spec.append ?? "") || /\s/.test(spec.bootId ?? "")) {
    throw new QemuSpecError("append must be one line and bootId must have no whitespace");
  }
}

/** The full qemu-system-x86_64 argument list for a launch spec (pure: no I/O). */
export function buildQemuArgs(spec: QemuLaunchSpec): string[] {
  validateSpec(spec);
  const p = runtimePaths(spec.runDir);
  const mem =
    (spec.tcgDirtyTrackingWorkaround ?? true) ? `${spec.memoryMiB * 1024 + 8}K` : `${spec.memoryMiB}M`;
  const tcg = spec.tcgTbSizeMiB ? `tcg,tb-size=${spec.tcgTbSizeMiB}` : "tcg";
  const append = [
    spec.image.append ?? "",
    spec.bootId ? `nestcloud.bootid=${spec.bootId}` : "",
    spec.append ?? "",
  ]
    .filter((s) => s.trim() !== "")
    .join(" ");
  const args = [
    // Thread names help debugging; the full instance id is in the runtime paths below, which
    // is what lets reapOrphans recognise this very process in /proc/<pid>/cmdline.
    "-name",
    `guest=${spec.guestId},process=${spec.instanceId.slice(0, 15)},debug-threads=on`,
    "-no-user-config",
    "-nodefaults",
    "-nographic",
    "-machine",
    spec.auxRamShare ? "q35,memory-backend=mem,aux-ram-share=on" : "q35,memory-backend=mem",
    "-accel",
    tcg,
    "-m",
    mem,
    "-smp",
    String(spec.cpus ?? 1),
    "-object",
    `memory-backend-file,id=mem,size=${mem},mem-path=${poolFilePath(spec)},share=on`,
    "-kernel",
    spec.image.kernel,
    "-initrd",
    spec.image.initrd,
    "-append",
    append,
    "-pidfile",
    p.pidFile,
    "-qmp",
    `unix:${p.qmpSocket},server=on,wait=off`,
    // Serial on a unix socket server: a console client can attach and detach at will; the
    // logfile keeps everything the guest printed, attached or not.
    "-chardev",
    `socket,id=serial0,path=${p.serialSocket},server=on,wait=off,logfile=${p.serialLog},logappend=on`,
    "-serial",
    "chardev:serial0",
    "-msg",
    "timestamp=on",
  ];
  if (spec.net) {
    const mac = spec.net.mac ? `,mac=${spec.net.mac}` : "";
    if (spec.net.mode === "user") {
      const fwd = (spec.net.hostfwd ?? []).map(
        (f) => `,hostfwd=${f.proto ?? "tcp"}:${f.hostAddr ?? "127.0.0.1"}:${f.hostPort}-:${f.guestPort}`,
      );
      args.push("-netdev", `user,id=net0${fwd.join("")}`);
    } else {
      args.push("-netdev", `tap,id=net0,ifname=${spec.net.ifname},script=no,downscript=no`);
    }
    args.push("-device", `virtio-net-pci,netdev=net0${mac}`);
  }
  if (spec.disk) {
    const ro = spec.disk.readOnly ? ",readonly=on" : "";
    args.push("-drive", `file=${spec.disk.path},if=none,id=disk0,format=${spec.disk.format}${ro}`);
    args.push("-device", "virtio-blk-pci,drive=disk0");
  }
  if (spec.devices) args.push(...buildDeviceArgs(spec.runDir, spec.devices));
  if (spec.noReboot) args.push("-no-reboot");
  if (spec.incoming === "cpr") args.push(...cprIncomingArgs(spec.runDir));
  else if (spec.incoming) args.push("-incoming", spec.incoming);
  if (spec.extraArgs) args.push(...spec.extraArgs);
  return args;
}

export interface StartOptions {
  /** Folder under which this instance's runtime folder <stateDir>/<instanceId> is made. */
  stateDir: string;
  spec: QemuSpec;
  incoming?: "defer" | "cpr";
  /**
   * "create" (default): the pool file must not exist; this process owns it.
   * "attach": the pool file must exist (another QEMU's guest RAM, e.g. an instant handover
   * destination); not owned until adoptPoolFile().
   */
  poolFile?: "create" | "attach";
  instanceId?: string;
  /** Bound for QMP to come up. Default 20 s. */
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface StopOptions {
  /** Wait after QMP quit before SIGTERM. Default 5 s. */
  quitTimeoutMs?: number;
  /** Wait after SIGTERM before SIGKILL. Default 5 s. */
  termTimeoutMs?: number;
  /** Keep the runtime folder (serial log) for post-mortems; sockets and state are removed. */
  keepLogs?: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_TAIL = 64 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Instances not yet cleaned up, so a dying agent can still kill them synchronously. */
const live = new Set<QemuProcess>();
let exitHookInstalled = false;
let keepOnExit = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    if (keepOnExit) return;
    for (const q of live) q.killSync();
  });
}

/**
 * QEMUs of this process outlive it when it exits without stopping them (a crash): for a
 * supervised agent whose restarted successor adopts them. By default they are killed at
 * exit, so that a test or a CLI never leaks one.
 */
export function keepQemusOnExit(keep = true): void {
  keepOnExit = keep;
}

export interface AdoptOptions {
  /** Bound for connecting to its QMP socket. Default 10 s. */
  connectTimeoutMs?: number;
  log?: (msg: string) => void;
}

export class QemuProcess {
  readonly spec: QemuLaunchSpec;
  readonly paths: RuntimePaths;
  readonly poolFile: string;
  readonly args: readonly string[];
  readonly exited: Promise<ExitInfo>;
  private child: ChildProcess | null = null;
  /** Set when this process took over a QEMU another (dead) agent started: not our child. */
  private adoptedPid: number | null = null;
  private adoptedWatch: NodeJS.Timeout | null = null;
  private qmpClient: QmpClient | null = null;
  private exitInfo: ExitInfo | null = null;
  private ownsPool: boolean;
  private stderrBuf = "";
  private cleaned = false;
  private stopping: Promise<void> | null = null;
  private resolveExit!: (e: ExitInfo) => void;
  private readonly log: (msg: string) => void;
  private readonly state: InstanceState;

  private constructor(opts: StartOptions) {
    const instanceId = opts.instanceId ?? newInstanceId(opts.spec.guestId);
    this.spec = {
      ...opts.spec,
      instanceId,
      runDir: join(opts.stateDir, instanceId),
      incoming: opts.incoming,
    };
    this.args = buildQemuArgs(this.spec);
    this.paths = runtimePaths(this.spec.runDir);
    this.poolFile = poolFilePath(this.spec);
    this.ownsPool = (opts.poolFile ?? "create") === "create";
    this.log = opts.log ?? (() => {});
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.state = {
      version: 1,
      instanceId,
      guestId: this.spec.guestId,
      pid: null,
      pidFile: this.paths.pidFile,
      poolFiles: this.ownsPool ? [this.poolFile] : [],
      runDir: this.spec.runDir,
      agentPid: process.pid,
      agentStartTime: processStartTime(process.pid),
      startedAt: new Date().toISOString(),
    };
  }

  /** Spawns QEMU and resolves once QMP answers. On any failure nothing is left behind. */
  static async start(opts: StartOptions): Promise<QemuProcess> {
    const q = new QemuProcess(opts);
    const mode = opts.poolFile ?? "create";
    const exists = existsSync(q.poolFile);
    if (mode === "create" && exists) {
      throw new QemuStartError(
        `pool file ${q.poolFile} already exists: guest ${q.spec.guestId} is running elsewhere on this server, ` +
          "or a crashed agent left it (call reapOrphans(stateDir) at start-up)",
        "",
      );
    }
    if (mode === "attach" && !exists) {
      throw new QemuStartError(`pool file ${q.poolFile} to attach to does not exist`, "");
    }
    mkdirSync(q.spec.poolDir, { recursive: true });
    mkdirSync(q.spec.runDir, { recursive: true, mode: 0o700 });
    try {
      await q.launch(opts.startTimeoutMs ?? 20_000);
      return q;
    } catch (e) {
      await q.kill();
      throw e;
    }
  }

  /**
   * Takes over a QEMU that a previous, dead agent started (found through its state file):
   * verifies the pid by its cmdline, reconnects to its QMP socket (QEMU accepts a new client
   * once the old one is gone), records this process as its agent, and from then on treats
   * it like one of its own (stop, kill, exit watch, pool file ownership) — by pid, since it
   * is not our child. Throws QemuAdoptError if any of that fails; the caller then reaps it.
   */
  static async adopt(state: InstanceState, opts: AdoptOptions = {}): Promise<QemuProcess> {
    if (!state.spec) throw new QemuAdoptError(`${state.instanceId}: no launch spec recorded`);
    const pid = state.pid ?? readPidFile(state.pidFile);
    if (pid === null || !isOurQemu(pid, state.instanceId)) {
      throw new QemuAdoptError(`${state.instanceId}: pid ${pid} is not that QEMU (any more)`);
    }
    const { instanceId, runDir, incoming, ...spec } = state.spec;
    if (instanceId !== state.instanceId || runDir !== state.runDir) {
      throw new QemuAdoptError(`${state.instanceId}: its state file does not match its spec`);
    }
    const q = new QemuProcess({
      stateDir: dirname(runDir),
      spec,
      incoming,
      instanceId,
      poolFile: state.poolFiles.includes(poolFilePath(spec)) ? "create" : "attach",
      log: opts.log,
    });
    q.adoptedPid = pid;
    q.state.startedAt = state.startedAt;
    q.state.agentData = state.agentData;
    q.watchAdopted();
    try {
      q.qmpClient = await QmpClient.connect(q.paths.qmpSocket, {
        label: `QEMU ${instanceId}`,
        timeoutMs: opts.connectTimeoutMs ?? 10_000,
      });
    } catch (e) {
      q.unwatchAdopted();
      throw new QemuAdoptError(`${instanceId}: cannot reconnect to QMP: ${(e as Error).message}`);
    }
    q.qmpClient.on("close", () => q.checkAdopted());
    installExitHook();
    live.add(q);
    // From now on this process is its agent: a later agent sees that one die, not ours.
    q.persistState();
    q.log(`adopted QEMU ${instanceId} (guest ${q.guestId}) pid ${pid}`);
    return q;
  }

  /** Not our child: poll for its end (its parent is init now), verified by cmdline. */
  private watchAdopted(): void {
    this.adoptedWatch = setInterval(() => this.checkAdopted(), 200);
    this.adoptedWatch.unref();
  }

  private unwatchAdopted(): void {
    if (this.adoptedWatch) clearInterval(this.adoptedWatch);
    this.adoptedWatch = null;
  }

  private checkAdopted(): void {
    if (this.adoptedPid === null || this.exitInfo) return;
    if (isOurQemu(this.adoptedPid, this.instanceId)) return;
    this.unwatchAdopted();
    // An adopted process's exit status belongs to init: only the fact is known.
    this.exitInfo = { code: null, signal: null };
    this.resolveExit(this.exitInfo);
  }

  /** Sends a signal to the QEMU (an adopted one only after re-verifying its pid). */
  private signal(sig: NodeJS.Signals): void {
    if (this.child) {
      this.child.kill(sig);
      return;
    }
    if (this.adoptedPid !== null && isOurQemu(this.adoptedPid, this.instanceId)) {
      try {
        process.kill(this.adoptedPid, sig);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** True if this QEMU was started by a previous agent and taken over by this process. */
  get adopted(): boolean {
    return this.adoptedPid !== null;
  }

  /** What the agent recorded about this QEMU (see setAgentData). */
  get agentData(): unknown {
    return this.state.agentData;
  }

  /** Records what this QEMU is for in its state file, for a later agent that adopts it. */
  setAgentData(data: unknown): void {
    this.state.agentData = data;
    this.persistState();
  }

  get instanceId(): string {
    return this.spec.instanceId;
  }
  get guestId(): string {
    return this.spec.guestId;
  }
  /**
   * Lends this QEMU the control path's priority for a switch (a handover's source until it
   * stops, its destination until it runs the guest), or gives it back the guests' one.
   */
  prioritize(onControlPath: boolean): void {
    const pid = this.pid;
    if (pid !== null) setLevel(pid, onControlPath ? "control" : "guest");
  }

  get pid(): number | null {
    return this.child?.pid ?? this.adoptedPid;
  }
  get isRunning(): boolean {
    return (this.child !== null || this.adoptedPid !== null) && this.exitInfo === null;
  }
  get ownsPoolFile(): boolean {
    return this.ownsPool;
  }
  get qmp(): QmpClient {
    if (!this.qmpClient) throw new Error(`QEMU ${this.instanceId} has no QMP connection (not started)`);
    return this.qmpClient;
  }
  /** False only for a cpr-transfer destination not yet connected (connectQmp). */
  get hasQmp(): boolean {
    return this.qmpClient !== null;
  }

  /**
   * Connects to the QMP of a cpr-transfer destination, which QEMU opens only once it has
   * received the source's cpr state (i.e. after the source's migrate). Idempotent.
   */
  async connectQmp(timeoutMs = 20_000): Promise<QmpClient> {
    if (this.qmpClient) return this.qmpClient;
    const deadline = Date.now() + timeoutMs;
    let lastErr: unknown = null;
    while (Date.now() < deadline) {
      if (!this.isRunning)
        throw new QemuStartError(`QEMU ${this.instanceId} exited before its QMP came up`, this.stderrBuf);
      if (existsSync(this.paths.qmpSocket)) {
        try {
          this.qmpClient ??= await QmpClient.connect(this.paths.qmpSocket, {
            label: `QEMU ${this.instanceId}`,
            timeoutMs: Math.max(1000, deadline - Date.now()),
          });
          return this.qmpClient;
        } catch (e) {
          lastErr = e;
        }
      }
      await sleep(5);
    }
    throw new QemuStartError(
      `QMP of QEMU ${this.instanceId} did not come up within ${timeoutMs} ms${lastErr ? `: ${lastErr}` : ""}`,
      this.stderrBuf,
    );
  }

  /** Last 64 KiB of QEMU's stderr (error messages on failed starts and migrations). */
  get stderr(): string {
    return this.stderrBuf;
  }

  /** This process will no longer delete the pool file (another QEMU took the guest over). */
  releasePoolFile(): void {
    this.ownsPool = false;
    this.persistState();
  }

  /** This process now owns the pool file and deletes it when it stops. */
  adoptPoolFile(): void {
    this.ownsPool = true;
    this.persistState();
  }

  private persistState(): void {
    if (this.cleaned) return;
    this.state.poolFiles = this.ownsPool ? [this.poolFile] : [];
    this.state.pid = this.pid;
    this.state.spec = this.spec;
    writeState(this.spec.runDir, this.state);
  }

  private async launch(timeoutMs: number): Promise<void> {
    // State first: if we crash right after spawning, the pidfile still leads reaping to it.
    this.persistState();
    installExitHook();
    live.add(this);
    const bin = this.spec.qemuBinary ?? DEFAULT_QEMU_BINARY;
    this.log(`starting ${this.instanceId}: ${bin} ${this.args.join(" ")}`);
    const child = spawn(bin, this.args, { stdio: ["ignore", "ignore", "pipe"], shell: false });
    this.child = child;
    // Guests run below the control path that started them (priority.ts): the child
    // inherited this process's raised priority. Again once QMP answers, for the threads
    // QEMU made meanwhile.
    if (child.pid !== undefined) setLevel(child.pid, "guest");
    child.stderr?.on("data", (b: Buffer) => {
      this.stderrBuf = (this.stderrBuf + b.toString("utf8")).slice(-STDERR_TAIL);
    });
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    child.once("exit", (code, signal) => {
      this.exitInfo = { code, signal };
      this.resolveExit(this.exitInfo);
    });
    this.persistState();

    const deadline = Date.now() + timeoutMs;
    let lastErr: unknown = null;
    while (Date.now() < deadline) {
      const failed = await Promise.race([spawnError, sleep(0).then(() => null)]);
      if (failed) throw new QemuStartError(`cannot run ${bin}: ${failed.message}`, "");
      if (this.exitInfo) {
        // Give stderr a moment to drain so the message carries QEMU's reason.
        await sleep(50);
        const why = this.stderrBuf.trim().split("\n").slice(-3).join(" | ");
        throw new QemuStartError(
          `QEMU ${this.instanceId} exited during start-up (${this.exitInfo.code ?? this.exitInfo.signal}): ${why || "no message"}`,
          this.stderrBuf,
        );
      }
      // A cpr-transfer destination is up once its cpr channel listens: its QMP comes only
      // after the source's migrate (connectQmp).
      if (this.spec.incoming === "cpr" && existsSync(cprPaths(this.spec.runDir).cpr)) return;
      if (existsSync(this.paths.qmpSocket)) {
        try {
          this.qmpClient = await QmpClient.connect(this.paths.qmpSocket, {
            label: `QEMU ${this.instanceId}`,
            timeoutMs: Math.max(1000, deadline - Date.now()),
          });
          if (child.pid !== undefined) setLevel(child.pid, "guest");
          return;
        } catch (e) {
          lastErr = e;
        }
      }
      await sleep(50);
    }
    throw new QemuStartError(
      `QMP of QEMU ${this.instanceId} did not come up within ${timeoutMs} ms${lastErr ? `: ${lastErr}` : ""}`,
      this.stderrBuf,
    );
  }

  private async waitExit(ms: number): Promise<boolean> {
    if (!this.isRunning) return true;
    return Promise.race([this.exited.then(() => true), sleep(ms).then(() => false)]);
  }

  /**
   * Graceful stop: QMP quit, then SIGTERM, then SIGKILL, each with a bound; then cleanup.
   * Idempotent and safe to call concurrently.
   */
  stop(opts: StopOptions = {}): Promise<void> {
    this.stopping ??= this.doStop(opts);
    return this.stopping;
  }

  private async doStop(opts: StopOptions): Promise<void> {
    try {
      if (this.isRunning) {
        if (this.qmpClient && !this.qmpClient.isClosed) {
          try {
            await this.qmpClient.quit({ timeoutMs: 2000 });
          } catch (e) {
            this.log(`quit on ${this.instanceId} failed: ${e}`);
          }
        }
        if (!(await this.waitExit(opts.quitTimeoutMs ?? 5000))) {
          this.log(`QEMU ${this.instanceId} ignored quit; SIGTERM`);
          this.signal("SIGTERM");
          if (!(await this.waitExit(opts.termTimeoutMs ?? 5000))) {
            this.log(`QEMU ${this.instanceId} ignored SIGTERM; SIGKILL`);
            this.signal("SIGKILL");
            if (!(await this.waitExit(10_000))) {
              // State stays on disk so that reapOrphans can still find it later.
              throw new Error(`QEMU ${this.instanceId} pid ${this.pid} survived SIGKILL for 10 s`);
            }
          }
        }
      }
    } finally {
      this.cleanup(opts.keepLogs ?? false);
    }
  }

  /** Immediate SIGKILL and cleanup (failed migration destinations, failed starts). */
  async kill(): Promise<void> {
    if (this.isRunning) {
      this.signal("SIGKILL");
      if (!(await this.waitExit(10_000))) {
        throw new Error(`QEMU ${this.instanceId} pid ${this.pid} survived SIGKILL for 10 s`);
      }
    }
    this.cleanup(false);
  }

  /** Synchronous last resort for process exit: no awaiting possible there. */
  killSync(): void {
    if (this.isRunning) {
      try {
        this.signal("SIGKILL");
      } catch {
        // already gone
      }
    }
    this.cleanup(false, true);
  }

  /**
   * Removes the pool file (if owned) and the runtime folder. Only once QEMU is gone, unless
   * forced at process exit: deleting the state of a live QEMU would orphan it for good.
   */
  private cleanup(keepLogs: boolean, force = false): void {
    if (this.cleaned) return;
    const alive =
      this.exitInfo === null &&
      (this.adoptedPid !== null || (this.child !== null && this.child.pid !== undefined));
    if (alive && !force) return;
    this.cleaned = true;
    this.unwatchAdopted();
    live.delete(this);
    this.qmpClient?.close();
    if (this.ownsPool) {
      try {
        unlinkSync(this.poolFile);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.log(`cannot remove ${this.poolFile}: ${e}`);
      }
    }
    if (keepLogs) {
      for (const f of [
        this.paths.qmpSocket,
        this.paths.serialSocket,
        this.paths.pidFile,
        join(this.spec.runDir, "state.json"),
      ]) {
        rmSync(f, { force: true });
      }
    } else {
      rmSync(this.spec.runDir, { recursive: true, force: true });
    }
  }
}

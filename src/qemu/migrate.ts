// Migration primitives between two QemuProcess instances, at the QMP level (no placement or
// networking policy here).
//
// Invariants, whatever happens:
// - Until switchover, the guest belongs to the source. A failed, cancelled, stalled or timed
//   out migration leaves the source running (we `cont` it if QEMU did not) and the
//   destination process killed and cleaned up.
// - After switchover (completed, or post-copy started) the guest belongs to the destination:
//   cancel is refused, and the source is stopped on success.
// - Instant handover: both QEMUs map the same pool file; ownership of the file moves to the
//   destination only once it runs the guest, so no stop() on either side deletes guest RAM
//   that the other still uses.
import { dirname, join } from "node:path";
import { QemuProcess, type StartOptions } from "./process.ts";
import { type MigrationProgress, ProgressTracker } from "./progress.ts";
import type {
  MigrationCapabilities,
  MigrationInfo,
  MigrationParameters,
  MigrationStatus,
  QmpEvent,
} from "./qmp-types.ts";
import { type RamRepair, repairRamFile } from "./ram-repair.ts";
import type { QemuSpec } from "./spec.ts";

export class MigrationError extends Error {
  override name = "MigrationError";
  constructor(
    message: string,
    readonly guestId: string,
    readonly lastInfo: MigrationInfo | null,
  ) {
    super(message);
  }
}
/** QEMU reported status "failed" (error-desc in the message). */
export class MigrationFailedError extends MigrationError {
  override name = "MigrationFailedError";
}
/** Cancelled on request; the guest runs on at the source. */
export class MigrationCancelledError extends MigrationError {
  override name = "MigrationCancelledError";
}
/** Pre-copy made no progress for the stall window and was cancelled. */
export class MigrationStalledError extends MigrationError {
  override name = "MigrationStalledError";
}
export class MigrationTimeoutError extends MigrationError {
  override name = "MigrationTimeoutError";
}
/** Cancel asked after switchover: the guest already runs (or partly runs) at the destination. */
export class MigrationCancelRefusedError extends MigrationError {
  override name = "MigrationCancelRefusedError";
}

/** How a completed migration went (what the agents' API reports of it). */
export interface MigrationFigures {
  /** QEMU's figures (ms): from the migrate command to completion, and the guest's pause. */
  totalTimeMs: number;
  downtimeMs: number;
  setupTimeMs: number;
  /** Our own wall clock from the migrate command to the destination running. */
  wallMs: number;
  transferredBytes: number;
  totalBytes: number;
  passes: number;
  switchedToPostcopy: boolean;
}

export interface MigrationResult extends MigrationFigures {
  kind: "precopy" | "handover";
  guestId: string;
  finalInfo: MigrationInfo;
}

export function migrationFigures(r: MigrationResult): MigrationFigures {
  const { kind: _k, guestId: _g, finalInfo: _f, ...figures } = r;
  return figures;
}

export interface MigrationOptions {
  /** Downtime QEMU aims at when deciding to switch over (ms, QEMU default 300). */
  downtimeLimitMs?: number;
  /** Bandwidth cap in bytes/s. */
  maxBandwidth?: number;
  autoConverge?: boolean;
  /** Enables the postcopy-ram capability on both sides so startPostcopy() is possible. */
  postcopy?: boolean;
  /** What to do when pre-copy stalls: fail (cancel, default), switch to post-copy, or ignore. */
  onStall?: "fail" | "postcopy" | "ignore";
  /** No new low of remaining bytes for this long counts as a stall. Default 30 s. */
  stallTimeoutMs?: number;
  /** Overall bound from the migrate command to completion. Default 10 min. */
  timeoutMs?: number;
  /**
   * No byte sent for this long (in setup or active pre-copy) means the channel is broken,
   * e.g. a cut link: TCP would retry for many minutes without an error. Cancels. Default off.
   */
  noProgressTimeoutMs?: number;
  /** Source pauses in pre-switchover until continueSwitchover() (co-migration barrier). */
  pauseBeforeSwitchover?: boolean;
  onProgress?: (p: MigrationProgress) => void;
  /** Poll interval of query-migrate. Default 250 ms. */
  pollMs?: number;
  /**
   * Stop the source QEMU once the destination runs. Default true. With false the source
   * stays paused (postmigrate) and the caller decides: stop it (and, after a handover,
   * releasePoolFile() first) or `cont` it if the destination never ran.
   */
  stopSourceOnSuccess?: boolean;
  signal?: AbortSignal;
  /**
   * Follow a migration that a previous process (a dead agent) started on `src`, found in
   * this status, instead of starting one: no capabilities, no listen, no migrate command;
   * the same watch, cancel, stall, timeout and recovery rules from here on.
   */
  attach?: MigrationStatus;
  extraCapabilities?: MigrationCapabilities;
  extraParameters?: MigrationParameters;
  /**
   * A cpr-transfer live update (QEMU >= 10, cpr.ts): the destination's cpr channel
   * (unix:path); the migration's uri is its main channel. RAM goes over as fds.
   */
  cprChannel?: string;
  log?: (msg: string) => void;
}

export interface PrecopyOptions extends MigrationOptions {
  /**
   * Where the destination listens, e.g. "tcp:127.0.0.1:0" (default; port 0 lets QEMU pick a
   * free port, read back from the destination) or "tcp:10.0.0.5:4444".
   */
  uri?: string;
  /**
   * Mitigates QEMU 7.2's TCG dirty-tracking race (docs/qemu-tcg-lost-pages.md): the
   * destination is kept paused after loading; once the source completed (postmigrate, RAM
   * frozen) every page of the destination's RAM file that differs from the source's is copied
   * over (ram-repair.ts), then the destination runs. Both RAM files must be on this machine.
   * Adds one read of both files to the downtime. Not with post-copy (the destination runs
   * before it has all pages).
   */
  repairRam?: boolean;
  /** Called with what the RAM repair compared and copied (repairRam). */
  onRamRepair?: (r: RamRepair) => void;
}

const TERMINAL: ReadonlySet<MigrationStatus> = new Set(["completed", "failed", "cancelled"]);
/** Statuses in which the guest already runs (or will run) at the destination. */
const PAST_SWITCHOVER: ReadonlySet<MigrationStatus> = new Set([
  "completed",
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover",
]);

/** QEMU 7.2's own defaults, restored explicitly when a caller does not set them. */
const QEMU_DEFAULT_DOWNTIME_LIMIT_MS = 300;
const QEMU_DEFAULT_MAX_BANDWIDTH = 128 * 1024 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The far side of a migration as the source's job sees it: a QemuProcess of this process
 * (localDestination), or one run by another agent, prepared and finished by whoever
 * orchestrates the move.
 */
export interface MigrationDestination {
  readonly label: string;
  /** Sets the destination's capabilities, starts it listening; returns the URI to migrate to. */
  listen(caps: MigrationCapabilities, uri: string): Promise<string>;
  /** False once the destination is known to be gone: the job then cancels at once. */
  isAlive(): boolean;
  /** Appended to failure messages (e.g. the destination's last stderr lines); may be "". */
  hint(): string;
  /** After the source completed: resolves once the guest runs at the destination. */
  complete(kind: "precopy" | "handover", timeoutMs: number): Promise<void>;
  /** After a failure before switchover: gets rid of the destination. */
  discard(): Promise<void>;
}

/** Sets capabilities on an incoming QEMU and starts listening; returns the actual URI. */
export async function listenIncoming(
  dst: QemuProcess,
  caps: MigrationCapabilities,
  uri: string,
): Promise<string> {
  await dst.qmp.migrateSetCapabilities(caps);
  await dst.qmp.migrateIncoming(uri);
  return resolveListenUri(uri, dst);
}

/** A destination QEMU owned by this process. */
export function localDestination(dst: QemuProcess): MigrationDestination {
  return {
    label: dst.instanceId,
    listen: (caps, uri) => listenIncoming(dst, caps, uri),
    isAlive: () => dst.isRunning,
    hint: () => stderrHint(dst),
    async complete(kind, timeoutMs) {
      await waitDestinationRunning(dst, timeoutMs);
      if (kind === "handover") dst.adoptPoolFile();
    },
    discard: () => dst.kill(),
  };
}

interface JobConfig extends MigrationOptions {
  kind: "precopy" | "handover";
  uri: string;
  capabilities: MigrationCapabilities;
}

/** One running migration; `done` settles exactly once. */
export class MigrationJob {
  readonly done: Promise<MigrationResult>;
  private status: MigrationStatus = "none";
  private lastInfo: MigrationInfo | null = null;
  private cancelRequested: string | null = null;
  private migrateIssued = false;
  private switchedToPostcopy = false;
  private preSwitchoverWaiters: Array<() => void> = [];
  private readonly statusWaiters = new Set<() => void>();
  private wake: (() => void) | null = null;
  private readonly log: (msg: string) => void;

  constructor(
    readonly src: QemuProcess,
    readonly dest: MigrationDestination,
    private readonly cfg: JobConfig,
  ) {
    this.log = cfg.log ?? (() => {});
    this.done = this.run();
    // Callers may only await `done` later; never let it count as an unhandled rejection.
    this.done.catch(() => {});
    cfg.signal?.addEventListener("abort", () => void this.cancel("aborted by signal").catch(() => {}), {
      once: true,
    });
  }

  get currentStatus(): MigrationStatus {
    return this.status;
  }

  /**
   * Cancels before switchover; resolves once the source runs the guest again. Rejects with
   * MigrationCancelRefusedError if the migration already switched over.
   */
  async cancel(reason = "cancelled on request"): Promise<void> {
    if (PAST_SWITCHOVER.has(this.status)) {
      throw new MigrationCancelRefusedError(
        `cannot cancel migration of ${this.src.guestId}: already ${this.status} (guest runs at the destination)`,
        this.src.guestId,
        this.lastInfo,
      );
    }
    this.cancelRequested ??= reason;
    if (this.migrateIssued) await this.src.qmp.migrateCancel().catch(() => {});
    this.wake?.();
    try {
      await this.done;
    } catch (e) {
      if (e instanceof MigrationCancelledError) return;
      throw e;
    }
    throw new MigrationCancelRefusedError(
      `cancel of ${this.src.guestId} came too late: the migration completed`,
      this.src.guestId,
      this.lastInfo,
    );
  }

  /** Switches a running pre-copy to post-copy (needs `postcopy: true`). */
  async startPostcopy(): Promise<void> {
    if (!this.cfg.postcopy) throw new Error("startPostcopy needs the migration started with postcopy: true");
    await this.src.qmp.migrateStartPostcopy();
    this.switchedToPostcopy = true;
    this.wake?.();
  }

  /** Resolves when the source reached pre-switchover (needs `pauseBeforeSwitchover: true`). */
  waitForPreSwitchover(timeoutMs: number): Promise<void> {
    if (!this.cfg.pauseBeforeSwitchover) {
      return Promise.reject(new Error("waitForPreSwitchover needs pauseBeforeSwitchover: true"));
    }
    if (this.status === "pre-switchover") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new MigrationTimeoutError(
              `${this.src.guestId} did not reach pre-switchover within ${timeoutMs} ms`,
              this.src.guestId,
              this.lastInfo,
            ),
          ),
        timeoutMs,
      );
      this.preSwitchoverWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.done.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** Lets a source paused in pre-switchover finish (device state, switchover). */
  async continueSwitchover(): Promise<void> {
    await this.src.qmp.migrateContinue("pre-switchover");
    this.wake?.();
  }

  private async run(): Promise<MigrationResult> {
    const { src, dest, cfg } = this;
    const pollMs = cfg.pollMs ?? 250;
    const timeoutMs = cfg.timeoutMs ?? 600_000;
    // The outgoing status is taken from MIGRATION events, not query-migrate: on a QEMU that
    // was itself once a migration destination, QEMU 7.2's query-migrate reports the status of
    // that old *incoming* migration ("completed") instead of the outgoing one.
    const onMigrationEvent = (e: QmpEvent) => {
      if (e.event === "MIGRATION" && typeof e.data?.status === "string") {
        this.status = e.data.status as MigrationStatus;
        if (this.status === "postcopy-active") this.switchedToPostcopy = true;
        if (this.status === "pre-switchover") for (const w of this.preSwitchoverWaiters.splice(0)) w();
        for (const w of this.statusWaiters) w();
      }
      if (e.event === "MIGRATION" || e.event === "MIGRATION_PASS") this.wake?.();
    };
    let wasRunning = true;
    try {
      let t0: number;
      if (cfg.attach) {
        // Agents migrate running guests only: the source ran when this migration began.
        this.status = cfg.attach;
        if (this.status === "postcopy-active") this.switchedToPostcopy = true;
        this.migrateIssued = true;
        src.qmp.on("event", onMigrationEvent);
        t0 = Date.now();
        this.log(`following the migration of ${src.guestId} (${src.instanceId}), found ${cfg.attach}`);
      } else {
        wasRunning = (await src.qmp.queryStatus()).running;
        // Capabilities and parameters persist in a QEMU process across migrations (a handover
        // destination later becomes a pre-copy source): set every one we manage, every time.
        const srcCaps: MigrationCapabilities = {
          events: true,
          "x-ignore-shared": !!cfg.capabilities["x-ignore-shared"],
          "auto-converge": !!cfg.autoConverge,
          "postcopy-ram": !!cfg.postcopy,
          "pause-before-switchover": !!cfg.pauseBeforeSwitchover,
          ...cfg.extraCapabilities,
        };
        const dstCaps: MigrationCapabilities = {
          events: true,
          "x-ignore-shared": srcCaps["x-ignore-shared"],
          "postcopy-ram": srcCaps["postcopy-ram"],
        };
        await src.qmp.migrateSetCapabilities(srcCaps);
        await src.qmp.migrateSetParameters({
          "downtime-limit": cfg.downtimeLimitMs ?? QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
          "max-bandwidth": Math.round(cfg.maxBandwidth ?? QEMU_DEFAULT_MAX_BANDWIDTH),
          // Only a QEMU started for cpr-transfer (>= 10) knows `mode`; it persists, so reset.
          ...(cfg.cprChannel ? { mode: "cpr-transfer" } : src.spec.auxRamShare ? { mode: "normal" } : {}),
          ...cfg.extraParameters,
        });

        const uri = await dest.listen(dstCaps, cfg.uri);
        if (this.cancelRequested) throw new MigrationCancelledError(this.cancelMessage(), src.guestId, null);

        src.qmp.on("event", onMigrationEvent);
        t0 = Date.now();
        this.log(`migrating ${src.guestId}: ${src.instanceId} -> ${dest.label} via ${uri}`);
        if (cfg.cprChannel) await src.qmp.migrateCpr(uri, cfg.cprChannel);
        else await src.qmp.migrate(uri);
        this.migrateIssued = true;
      }
      const tracker = new ProgressTracker(cfg.stallTimeoutMs ?? 30_000, Date.now());
      // A cancel that arrived while `migrate` was in flight could not reach QEMU yet.
      if (this.cancelRequested) await src.qmp.migrateCancel();

      let info: MigrationInfo;
      let lastSent = -1;
      let lastSentAt = Date.now();
      for (;;) {
        const raw = await src.qmp.queryMigrate();
        info = { ...raw, status: this.status };
        this.lastInfo = info;
        const progress = tracker.update(info, Date.now());
        cfg.onProgress?.(progress);
        if (this.status === "completed") break;
        if (this.status === "failed") {
          throw new MigrationFailedError(
            `migration of ${src.guestId} failed: ${info["error-desc"] ?? "QEMU gave no reason"}${dest.hint()}`,
            src.guestId,
            info,
          );
        }
        if (this.status === "cancelled")
          throw new MigrationCancelledError(this.cancelMessage(), src.guestId, info);
        if (!src.isRunning)
          throw new MigrationFailedError(
            `source QEMU of ${src.guestId} exited during migration`,
            src.guestId,
            info,
          );
        if (!dest.isAlive() && !PAST_SWITCHOVER.has(this.status)) {
          // QEMU notices a dead peer only when its socket errors; do not wait for that.
          await src.qmp.migrateCancel().catch(() => {});
          throw new MigrationFailedError(
            `destination QEMU of ${src.guestId} exited during migration${dest.hint()}`,
            src.guestId,
            info,
          );
        }
        // Disks copied in the same stream (block migration) are progress too: RAM may wait
        // while they go.
        const sent = (info.ram?.transferred ?? 0) + (info.disk?.transferred ?? 0);
        if (sent !== lastSent || (this.status !== "setup" && this.status !== "active")) {
          lastSent = sent;
          lastSentAt = Date.now();
        } else if (
          cfg.noProgressTimeoutMs !== undefined &&
          Date.now() - lastSentAt > cfg.noProgressTimeoutMs
        ) {
          const [was, quietMs] = [this.status, Date.now() - lastSentAt];
          await src.qmp.migrateCancel();
          await this.waitTerminal(30_000);
          throw new MigrationStalledError(
            `migration of ${src.guestId} moved no data for ${quietMs} ms (status ${was}, ` +
              `${sent} bytes sent): the link or the destination is not responding; cancelled${dest.hint()}`,
            src.guestId,
            info,
          );
        }
        if (progress.stalled && !this.switchedToPostcopy) {
          const onStall = cfg.onStall ?? "fail";
          if (onStall === "postcopy" && cfg.postcopy) {
            this.log(
              `${src.guestId}: pre-copy stalled at ${progress.remainingBytes} bytes; switching to post-copy`,
            );
            await this.startPostcopy();
          } else if (onStall !== "ignore") {
            await src.qmp.migrateCancel();
            await this.waitTerminal(30_000);
            throw new MigrationStalledError(
              `pre-copy of ${src.guestId} stalled: the dirty set left at each pass start found no new low for ` +
                `${progress.msSinceImprovement} ms (pass ${progress.pass}, ${fmtRate(progress.remainingBytes).replace("/s", "")} left, ` +
                `dirty rate ${fmtRate(progress.dirtyRateBytesPerSec)}, throughput ${fmtRate(progress.throughputBytesPerSec)}); ` +
                "cancelled. Raise max-bandwidth, enable auto-converge or allow post-copy",
              src.guestId,
              info,
            );
          }
        }
        if (Date.now() - t0 > timeoutMs && !this.switchedToPostcopy) {
          await src.qmp.migrateCancel();
          await this.waitTerminal(30_000);
          throw new MigrationTimeoutError(
            `migration of ${src.guestId} did not complete within ${timeoutMs} ms (status ${this.status}); cancelled`,
            src.guestId,
            info,
          );
        }
        await new Promise<void>((r) => {
          const timer = setTimeout(r, pollMs);
          this.wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        this.wake = null;
      }

      await dest.complete(cfg.kind, 30_000);
      const wallMs = Date.now() - t0;
      info = await finalSourceInfo(src, info);
      const ram = info.ram;
      const result: MigrationResult = {
        kind: cfg.kind,
        guestId: src.guestId,
        totalTimeMs: info["total-time"] ?? wallMs,
        downtimeMs: info.downtime ?? 0,
        setupTimeMs: info["setup-time"] ?? 0,
        wallMs,
        transferredBytes: ram?.transferred ?? 0,
        totalBytes: ram?.total ?? 0,
        passes: ram?.["dirty-sync-count"] ?? 0,
        switchedToPostcopy: this.switchedToPostcopy,
        finalInfo: info,
      };
      if (cfg.stopSourceOnSuccess ?? true) {
        // The destination adopted the pool file in complete(); release after adopting: if we
        // crash in between, both states list the file and reaping removes it; the other
        // order could leak it.
        if (cfg.kind === "handover") src.releasePoolFile();
        await src.stop();
      }
      return result;
    } catch (e) {
      await this.recover(wasRunning, e);
      throw e;
    } finally {
      src.qmp.off("event", onMigrationEvent);
      this.wake = null;
    }
  }

  /** After a failure before switchover: source runs the guest, destination is gone. */
  private async recover(wasRunning: boolean, cause: unknown): Promise<void> {
    const { src, dest } = this;
    if (this.switchedToPostcopy || this.status === "completed") {
      // The guest's state is (partly) at the destination: killing it would lose the guest.
      this.log(
        `migration of ${src.guestId} failed after switchover (${cause}); leaving both QEMUs for inspection`,
      );
      return;
    }
    try {
      if (src.isRunning && !src.qmp.isClosed) {
        if (this.migrateIssued && !TERMINAL.has(this.status)) {
          await src.qmp.migrateCancel().catch(() => {});
          await this.waitTerminal(30_000);
        }
        const rs = await src.qmp.queryStatus();
        if (wasRunning && !rs.running) {
          this.log(`resuming ${src.guestId} at the source (was ${rs.status})`);
          await src.qmp.cont();
        }
      }
    } catch (e) {
      this.log(`could not resume ${src.guestId} at the source: ${e}`);
    } finally {
      await dest.discard().catch((e) => this.log(`could not discard destination ${dest.label}: ${e}`));
    }
  }

  /** Waits (bounded) until the outgoing migration reached completed, failed or cancelled. */
  private async waitTerminal(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!TERMINAL.has(this.status) && Date.now() < deadline && this.src.isRunning) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.statusWaiters.add(() => {
          clearTimeout(t);
          r();
        });
      });
      this.statusWaiters.clear();
    }
  }

  private cancelMessage(): string {
    return `migration of ${this.src.guestId} cancelled (${this.cancelRequested ?? "by QEMU"}); the guest runs on at the source`;
  }
}

function fmtRate(bps: number): string {
  return `${(bps / 1048576).toFixed(1)} MiB/s`;
}

function stderrHint(dst: QemuProcess): string {
  const last = dst.stderr.trim().split("\n").slice(-2).join(" | ");
  return last ? ` (destination said: ${last})` : "";
}

/**
 * QEMU announces "completed" before it computes total-time and downtime (they are filled in
 * a moment later by the migration thread); poll briefly until they are there.
 */
async function finalSourceInfo(src: QemuProcess, last: MigrationInfo): Promise<MigrationInfo> {
  const deadline = Date.now() + 2000;
  let info = last;
  for (;;) {
    const raw = await src.qmp.queryMigrate();
    info = { ...raw, status: "completed" };
    if ((raw.downtime ?? 0) > 0 || Date.now() > deadline) return info;
    await sleep(10);
  }
}

async function waitDestinationRunning(dst: QemuProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await dst.qmp.queryStatus();
    if (st.running) return;
    if (Date.now() > deadline) {
      throw new MigrationFailedError(
        `destination ${dst.instanceId} did not start running within ${timeoutMs} ms after migration (status ${st.status})`,
        dst.guestId,
        null,
      );
    }
    await sleep(5);
  }
}

/** For tcp URIs with port 0, asks the destination which port it actually listens on. */
async function resolveListenUri(uri: string, dst: QemuProcess): Promise<string> {
  const m = /^tcp:(.+):0$/.exec(uri);
  if (!m) return uri;
  const addrs = (await dst.qmp.queryMigrate())["socket-address"] ?? [];
  const inet = addrs.find((a) => a.type === "inet") as { port?: string } | undefined;
  if (!inet?.port)
    throw new Error(`destination ${dst.instanceId} did not report its listening port for ${uri}`);
  return `tcp:${m[1]}:${inet.port}`;
}

/**
 * A local destination whose RAM is made equal to the frozen source's before it runs
 * (PrecopyOptions.repairRam). `stop` while the destination is still inmigrate clears QEMU's
 * autostart, so it stays paused after loading instead of running.
 */
export function repairingDestination(
  src: QemuProcess,
  dst: QemuProcess,
  onRepair: (r: RamRepair) => void = () => {},
): MigrationDestination {
  const local = localDestination(dst);
  return {
    ...local,
    async listen(caps, uri) {
      if ((await dst.qmp.queryStatus()).status !== "inmigrate")
        throw new Error(`RAM repair needs destination ${dst.instanceId} waiting for incoming migration`);
      await dst.qmp.stop();
      return local.listen(caps, uri);
    },
    async complete(kind, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      // The source's `completed` can precede the destination's end of loading.
      for (;;) {
        const [s, d] = [await src.qmp.queryStatus(), await dst.qmp.queryStatus()];
        if (s.status === "postmigrate" && d.status === "paused") break;
        if (Date.now() > deadline)
          throw new MigrationFailedError(
            `RAM repair: source ${s.status}, destination ${d.status} after ${timeoutMs} ms (want postmigrate, paused)`,
            dst.guestId,
            null,
          );
        await sleep(5);
      }
      onRepair(await repairRamFile(src.poolFile, dst.poolFile));
      await dst.qmp.cont();
      await local.complete(kind, Math.max(1000, deadline - Date.now()));
    },
  };
}

/** Starts a pre-copy migration from `src` to `dst` (started with incoming: "defer"). */
export function startPrecopy(src: QemuProcess, dst: QemuProcess, opts: PrecopyOptions = {}): MigrationJob {
  if (opts.repairRam && opts.postcopy)
    throw new Error("repairRam needs the destination frozen until switchover: not with postcopy");
  const dest = opts.repairRam ? repairingDestination(src, dst, opts.onRamRepair) : localDestination(dst);
  return new MigrationJob(src, dest, {
    ...opts,
    kind: "precopy",
    uri: opts.uri ?? "tcp:127.0.0.1:0",
    capabilities: {},
  });
}

export interface OutgoingOptions extends MigrationOptions {
  kind: "precopy" | "handover";
  /** The URI the destination listens on (a tcp port 0 is resolved by dest.listen). */
  uri: string;
}

/**
 * Starts a migration to any destination (e.g. one run by another agent). A handover sets
 * x-ignore-shared on both sides: the destination must map the same pool file.
 */
export function startMigration(
  src: QemuProcess,
  dest: MigrationDestination,
  opts: OutgoingOptions,
): MigrationJob {
  return new MigrationJob(src, dest, {
    ...opts,
    // cpr-transfer skips fd-passed RAM by itself; x-ignore-shared would change the stream.
    capabilities: { "x-ignore-shared": opts.kind === "handover" && !opts.cprChannel },
  });
}

/** Pre-copy (optionally switching to post-copy) and wait for the result. */
export function precopy(
  src: QemuProcess,
  dst: QemuProcess,
  opts: PrecopyOptions = {},
): Promise<MigrationResult> {
  return startPrecopy(src, dst, opts).done;
}

export interface DestinationTarget {
  /** Where the destination's runtime folder goes. Default: next to the source's. */
  stateDir?: string;
  /** Per-side differences (e.g. tap name, poolDir for a pre-copy). Guest shape must match. */
  spec?: Partial<Omit<QemuSpec, "guestId" | "memoryMiB" | "cpus" | "image">>;
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

/**
 * Starts an incoming QEMU for `src`'s guest: same devices, `-incoming defer`. With
 * `attachPool` it maps the source's pool file (instant handover), else it makes its own.
 */
export function startDestination(
  src: QemuProcess,
  target: DestinationTarget = {},
  attachPool = false,
): Promise<QemuProcess> {
  const { instanceId: _i, runDir: _r, incoming: _inc, ...base } = src.spec;
  const spec: QemuSpec = { ...base, ...target.spec };
  if (attachPool && spec.poolDir !== src.spec.poolDir) {
    throw new Error("an instant handover destination must use the source's poolDir");
  }
  const opts: StartOptions = {
    stateDir: target.stateDir ?? dirname(src.spec.runDir),
    spec,
    incoming: "defer",
    poolFile: attachPool ? "attach" : "create",
    startTimeoutMs: target.startTimeoutMs,
    log: target.log,
  };
  return QemuProcess.start(opts);
}

export interface HandoverResult extends MigrationResult {
  /** The QEMU now running the guest (owner of the pool file). */
  dst: QemuProcess;
}

/**
 * Zero-copy relocation on one server: a destination QEMU maps the same RAM file, RAM is
 * skipped (x-ignore-shared) and only device state crosses a unix socket.
 */
export async function instantHandover(
  src: QemuProcess,
  target: DestinationTarget = {},
  opts: Omit<MigrationOptions, "postcopy" | "onStall" | "autoConverge"> = {},
): Promise<HandoverResult> {
  const dst = await startDestination(src, target, true);
  const job = new MigrationJob(src, localDestination(dst), {
    pollMs: 2,
    timeoutMs: 60_000,
    ...opts,
    kind: "handover",
    uri: `unix:${join(dst.spec.runDir, "migrate.sock")}`,
    capabilities: { "x-ignore-shared": true },
  });
  const result = await job.done;
  return { ...result, dst };
}

/**
 * Co-migration barrier: waits until every job (started with pauseBeforeSwitchover) is in
 * pre-switchover, then releases them together, so no guest of the group resumes at its
 * destination before all are ready. If any fails to get there, all are cancelled.
 */
export async function switchoverTogether(
  jobs: readonly MigrationJob[],
  timeoutMs: number,
): Promise<MigrationResult[]> {
  try {
    await Promise.all(jobs.map((j) => j.waitForPreSwitchover(timeoutMs)));
  } catch (e) {
    await Promise.allSettled(jobs.map((j) => j.cancel("co-migration partner failed")));
    throw e;
  }
  await Promise.all(jobs.map((j) => j.continueSwitchover()));
  return Promise.all(jobs.map((j) => j.done));
}

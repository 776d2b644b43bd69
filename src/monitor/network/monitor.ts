// The network monitor of one guest (issue 12, "Monitors" 3): the guest's frames, mirrored by
// its QEMU (qemu/net-mirror.ts), come in over a unix socket or TCP (receiver.ts), wait in a
// bounded queue (queue.ts), go into a TAP device in a network namespace of the monitor's own
// (tap.ts, netns.ts), where Suricata captures them live (suricata.ts) with nestcloud's default
// rules and the tenant's; its EVE alerts (eve.ts) become nestcloud alerts.
//
//   QEMU filter-mirror --socket--> MirrorReceiver --FrameQueue--> TapWriter --TAP--> Suricata
//                                   (always reads)   (drops, counted)     (namespace)   | EVE
//                                                                          onAlert <-- EveTail
//
// Nothing is lost silently: frames dropped by the queue, runts and oversized frames, broken
// streams, refused connections, Suricata's capture drops, refused rules, alerts over the rate
// bound and unreadable EVE lines are all reported as alerts of this monitor (at most one of a
// kind per reportIntervalMs, with the counts since the last), and so is the loss of the IDS.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Alert, alert, type Channel, type Evidence, type Severity } from "../alert.ts";
import { DEFAULT_NETWORK_RULES } from "../assets.ts";
import { EveTail, type EveTailCounts, eveAlertToAlert, parseEveLine } from "./eve.ts";
import { createNetns, deleteNetns } from "./netns.ts";
import { FrameQueue, type FrameQueueCounts, type FrameQueueLimits } from "./queue.ts";
import { type MirrorAddress, MirrorReceiver, type ReceiverCounts, type ReceiverEvent } from "./receiver.ts";
import { type RuleLoad, SuricataProcess } from "./suricata.ts";
import { TapWriter, type TapWriterCounts } from "./tap.ts";

export interface NetworkMonitorOptions {
  /** The monitored guest (alerts' target). */
  target: string;
  channel: Channel;
  /** The monitor's own folder: Suricata's configuration and logs, the default socket. */
  runDir: string;
  /** Where QEMU's mirror connects (default: unix socket <runDir>/mirror.sock). */
  listen?: MirrorAddress;
  /** The tenant's rule files (absolute paths), loaded next to nestcloud's defaults. */
  ruleFiles?: readonly string[];
  /** Load nestcloud's default rules (default true). */
  defaultRules?: boolean;
  homeNet?: string;
  queue?: Partial<FrameQueueLimits>;
  maxConnections?: number;
  /** IDS alerts passed on per second at most; the rest are counted and reported (default 100). */
  maxAlertsPerSecond?: number;
  /** How often the monitor's own counts are reported at most (default 1000 ms). */
  reportIntervalMs?: number;
  /** Short id naming the namespace (ncnm-<id>) and the TAP device (nctap-<id>); default random. */
  id?: string;
  /**
   * An existing namespace to run the IDS in (a security VM's own, made and removed by its
   * owner); default: one of the monitor's own, ncnm-<id>, made at start and removed at stop.
   */
  netns?: string;
  onAlert: (a: Alert) => void;
  /** Every mirrored frame as it arrives (measurements), before it is queued. */
  onFrame?: (frame: Buffer, at: number) => void;
  suricataBinary?: string;
  /** EVE file rotation bound (default 16 MiB). */
  maxEveFileBytes?: number;
  suricataStartTimeoutMs?: number;
}

export interface NetworkMonitorStats {
  receiver: ReceiverCounts;
  queue: FrameQueueCounts;
  tap: TapWriterCounts;
  eve: EveTailCounts & { invalid: number };
  rules: RuleLoad;
  /** Suricata's capture (AF_PACKET) totals from its last stats record. */
  capture: { packets: number | null; drops: number | null };
  alerts: { passed: number; suppressed: number; own: number };
}

export const NETWORK_MONITOR_ID_RE = /^[a-z0-9]{1,8}$/;

export class NetworkMonitor {
  readonly netns: string;
  readonly tapName: string;
  private readonly receiver: MirrorReceiver;
  private tap: TapWriter | null = null;
  private suricata: SuricataProcess | null = null;
  private tail: EveTail | null = null;
  private readonly queue: FrameQueue;
  private boundAddress: MirrorAddress | null = null;
  private reportTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private netnsMade = false;
  private readonly capture = { packets: null as number | null, drops: null as number | null };
  private readonly counts = { passed: 0, suppressed: 0, own: 0, invalid: 0 };
  private window = { start: 0, n: 0 };
  /** What was last reported, per counter. */
  private reported: Record<string, number> = {};
  private lastInvalid = "";

  private constructor(private readonly o: NetworkMonitorOptions) {
    const id = o.id ?? randomBytes(3).toString("hex");
    if (!NETWORK_MONITOR_ID_RE.test(id))
      throw new Error(`monitor id ${JSON.stringify(id)} must match ${NETWORK_MONITOR_ID_RE}`);
    this.netns = o.netns ?? `ncnm-${id}`;
    this.tapName = `nctap-${id}`;
    this.queue = new FrameQueue(o.queue);
    this.receiver = new MirrorReceiver({
      queue: this.queue,
      maxConnections: o.maxConnections,
      onEvent: (e) => this.onReceiverEvent(e),
      onFrame: o.onFrame,
    });
  }

  /** A rotated credential for a TLS listener (see MirrorReceiver.setCredentials). */
  setCredentials(c: { ca: string; cert: string; key: string }): void {
    this.receiver.setCredentials(c);
  }

  /** Starts everything; once it resolves, frames arriving at `address` are inspected. */
  static async start(o: NetworkMonitorOptions): Promise<NetworkMonitor> {
    const m = new NetworkMonitor(o);
    try {
      await m.init();
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  private async init(): Promise<void> {
    const o = this.o;
    mkdirSync(o.runDir, { recursive: true });
    if (!o.netns) {
      await createNetns(this.netns);
      this.netnsMade = true;
    }
    this.tap = await TapWriter.start({ netns: this.netns, tap: this.tapName });
    const ruleFiles = [...(o.defaultRules === false ? [] : [DEFAULT_NETWORK_RULES]), ...(o.ruleFiles ?? [])];
    const dir = join(o.runDir, "suricata");
    rmSync(join(dir, "suricata.pid"), { force: true });
    this.suricata = await SuricataProcess.start({
      dir,
      netns: this.netns,
      iface: this.tapName,
      ruleFiles,
      homeNet: o.homeNet,
      binary: o.suricataBinary,
      startTimeoutMs: o.suricataStartTimeoutMs,
    });
    const rules = this.suricata.rules;
    if (rules.failed > 0 || rules.loaded === 0)
      this.own(
        rules.loaded === 0 ? "critical" : "warning",
        `Suricata refused ${rules.failed} of ${rules.failed + rules.loaded} rules`,
        {
          kind: "rules-refused",
          loaded: rules.loaded,
          failed: rules.failed,
          errors: rules.errors,
        },
      );
    this.watchExit("Suricata", this.suricata.child);
    this.watchExit("the TAP writer", this.tap.child);
    this.tail = new EveTail({
      file: this.suricata.eveFile,
      onLine: (line) => this.onEveLine(line),
      reopen: () => this.suricata?.reopenLogs(),
      maxFileBytes: o.maxEveFileBytes,
    });
    this.tail.start();
    this.tap.pump(this.queue);
    this.boundAddress = await this.receiver.listen(
      o.listen ?? { type: "unix", path: join(o.runDir, "mirror.sock") },
    );
    this.reportTimer = setInterval(() => this.report(), o.reportIntervalMs ?? 1000);
  }

  /** Where QEMU's mirror connects. */
  get address(): MirrorAddress {
    if (!this.boundAddress) throw new Error("the network monitor is not listening");
    return this.boundAddress;
  }

  /** Pids of the processes this monitor started (Suricata, the TAP writer). */
  get pids(): { suricata: number | null; tapWriter: number | null } {
    return { suricata: this.suricata?.pid ?? null, tapWriter: this.tap?.pid ?? null };
  }

  stats(): NetworkMonitorStats {
    return {
      receiver: this.receiver.counts(),
      queue: this.queue.counts(),
      tap: this.tap?.counts() ?? { written: 0, writtenBytes: 0, stalls: 0 },
      eve: {
        ...(this.tail?.counts() ?? { lines: 0, bytes: 0, oversizedLines: 0, rotations: 0 }),
        invalid: this.counts.invalid,
      },
      rules: this.suricata?.rules ?? { files: 0, loaded: 0, failed: 0, errors: [] },
      capture: { ...this.capture },
      alerts: { passed: this.counts.passed, suppressed: this.counts.suppressed, own: this.counts.own },
    };
  }

  private onEveLine(line: string): void {
    const r = parseEveLine(line);
    if (r.type === "invalid") {
      this.counts.invalid++;
      this.lastInvalid = r.reason;
      return;
    }
    if (r.type === "stats") {
      if (r.kernelPackets !== null) this.capture.packets = r.kernelPackets;
      if (r.kernelDrops !== null) this.capture.drops = r.kernelDrops;
      return;
    }
    if (r.type !== "alert") return;
    const now = Date.now();
    if (now - this.window.start >= 1000) this.window = { start: now, n: 0 };
    if (++this.window.n > (this.o.maxAlertsPerSecond ?? 100)) {
      this.counts.suppressed++;
      return;
    }
    this.counts.passed++;
    this.o.onAlert(eveAlertToAlert(r.alert, { target: this.o.target, channel: this.o.channel, time: now }));
  }

  private onReceiverEvent(e: ReceiverEvent): void {
    if (e.type === "stream-error")
      this.own("warning", `mirror stream broken (${e.code}): connection closed`, {
        kind: "stream-error",
        code: e.code,
        length: e.length ?? null,
        message: e.message,
      });
    else if (e.type === "closed" && !this.stopping && this.receiver.counts().open === 0)
      this.own("info", `mirror stream closed after ${e.frames} frames: no stream from the target now`, {
        kind: "stream-closed",
        frames: e.frames,
      });
  }

  private watchExit(what: string, child: ChildProcess): void {
    child.once("exit", (code, signal) => {
      if (this.stopping) return;
      this.own("critical", `network monitor lost its IDS: ${what} exited (${code ?? signal})`, {
        kind: "ids-lost",
        process: what,
        code: code ?? null,
        signal: signal ?? null,
      });
    });
  }

  /** The monitor's own alert (not Suricata's). */
  private own(severity: Severity, summary: string, evidence: Evidence): void {
    this.counts.own++;
    this.o.onAlert(
      alert({
        time: Date.now(),
        target: this.o.target,
        monitor: "network",
        channel: this.o.channel,
        severity,
        summary,
        evidence: { source: "monitor", ...evidence },
      }),
    );
  }

  /** Counts that grew since the last report, each reported once per interval. */
  private report(): void {
    const s = this.stats();
    const grew = (key: string, now: number | null): number => {
      if (now === null) return 0;
      const d = now - (this.reported[key] ?? 0);
      this.reported[key] = now;
      return Math.max(d, 0);
    };
    const dropped = grew("dropped", s.queue.dropped);
    if (dropped > 0)
      this.own("warning", `dropped ${dropped} mirrored frames: the IDS fell behind (queue full)`, {
        kind: "frames-dropped",
        dropped,
        droppedTotal: s.queue.dropped,
        queueMaxFrames: this.queue.limits.maxFrames,
        queueMaxBytes: this.queue.limits.maxBytes,
      });
    const oversized = grew("oversized", s.receiver.oversized);
    const runts = grew("runts", s.receiver.runts);
    if (oversized + runts > 0)
      this.own("warning", `${oversized} oversized and ${runts} runt frames not inspected`, {
        kind: "frames-uninspected",
        oversized,
        runts,
      });
    const refused = grew("refused", s.receiver.refused);
    if (refused > 0)
      this.own("warning", `refused ${refused} mirror connections (over ${this.receiver.maxConnections})`, {
        kind: "connections-refused",
        refused,
      });
    const capDrops = grew("captureDrops", s.capture.drops);
    if (capDrops > 0)
      this.own("warning", `Suricata dropped ${capDrops} packets at capture`, {
        kind: "capture-drops",
        dropped: capDrops,
        droppedTotal: s.capture.drops,
      });
    const suppressed = grew("suppressed", s.alerts.suppressed);
    if (suppressed > 0)
      this.own(
        "warning",
        `${suppressed} IDS alerts not passed on (over ${this.o.maxAlertsPerSecond ?? 100} per second)`,
        {
          kind: "alerts-suppressed",
          suppressed,
        },
      );
    const bad = grew("badEve", s.eve.invalid + s.eve.oversizedLines);
    if (bad > 0)
      this.own("warning", `${bad} EVE records unreadable`, {
        kind: "eve-unreadable",
        invalid: s.eve.invalid,
        oversizedLines: s.eve.oversizedLines,
        lastReason: this.lastInvalid,
      });
  }

  /**
   * Stops by pid everything it started: the receiver (QEMU's mirror connections close; QEMU
   * drops the frames while none is connected), the TAP writer (its device goes with it),
   * Suricata (after the last alerts are read), the namespace. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.reportTimer) {
      clearInterval(this.reportTimer);
      this.report(); // what grew since the last report
    }
    this.reportTimer = null;
    this.stopping = true;
    await this.receiver.close();
    await this.tap?.stop(this.queue);
    await this.suricata?.stop();
    await this.tail?.close();
    if (this.netnsMade) await deleteNetns(this.netns);
    this.netnsMade = false;
  }
}

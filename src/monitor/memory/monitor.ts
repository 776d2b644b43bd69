/**
 * The memory monitor (issue 12, "Monitors" 1): the introspection library (src/vmi) run
 * continuously against one guest. At start it finds the guest's kernel in its memory and takes
 * a baseline (processes, modules, syscall table, hidden tasks, kernel text hash); every period
 * it looks again and alerts what changed (snapshot.ts decides), with evidence.
 *
 * The memory comes from an opener the caller gives (`open`): the guest's RAM file through a
 * descriptor the host-VM agent passed (local), or any channel that yields PhysicalMemory
 * (a page server over a unix socket or TLS). A round that cannot read is the loss of the
 * source: alerted once (critical), the source is closed and opened again next period; when
 * it answers again that is alerted too, and a kernel that is not the baseline's (a reboot)
 * gets a new baseline, also alerted.
 *
 * Bounded: a round reads at most `maxTasks` tasks and modules and has a time budget; at most
 * MAX_ITEM_FINDINGS alerts of one kind per round; evidence lists are cut by alert(). State is
 * two snapshots (baseline, previous round).
 */
import {
  checkSyscallTable,
  compareText,
  discoverKernel,
  findHiddenTasks,
  hashKernelText,
  Kernel,
  kernelImageVaToPa,
  listModules,
  listProcesses,
  type PhysicalMemory,
  type ProfileCache,
  readPhys,
  type TextHash,
  VmiError,
} from "../../vmi/index.ts";
import { type Alert, alert, type Channel, type Evidence, type Severity } from "../alert.ts";
import { compareSnapshots, type Finding, type MemorySnapshot } from "./snapshot.ts";
import { jumpLabelSites, maskedChunk, type PatchSite, SITE_SLACK } from "./text-patches.ts";

/** How long after a task is first seen hidden it is looked for again. */
const HIDDEN_RECHECK_MS = 250;
/** Chunks of kernel text read and hashed between two turns of the event loop. */
const YIELD_EVERY_CHUNKS = 16;
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/** The baseline's text with the kernel's own patch sites masked (text-patches.ts). */
interface PatchedTextBaseline {
  readonly key: string;
  readonly sites: readonly PatchSite[];
  /** Masked digest per chunk offset. */
  readonly masked: ReadonlyMap<number, string>;
}

/** Guest memory through some channel; closed when the monitor lets go of it. */
export interface MemorySource {
  readonly memory: PhysicalMemory;
  close(): void;
}

/** Opens the target's memory (called again after a loss). */
export type MemoryOpener = () => Promise<MemorySource>;

export interface MemoryMonitorOptions {
  target: string;
  channel: Channel;
  open: MemoryOpener;
  /** Time between the end of a round and the start of the next (default 2000 ms). */
  periodMs?: number;
  /** Tasks/modules walked at most per round (default 16384). */
  maxTasks?: number;
  /** Time budget of each walk (default 10 s). */
  walkTimeoutMs?: number;
  profileCache?: ProfileCache;
  onAlert: (a: Alert) => void;
  /** After every round (tests, measurements). */
  onRound?: (r: MemoryRoundReport) => void;
  now?: () => number;
}

export interface MemoryRoundReport {
  round: number;
  kind: "baseline" | "check" | "failed";
  ms: number;
  processes: number;
  modules: number;
  findings: Finding[];
  error: string | null;
}

export interface MemoryMonitorStats {
  rounds: number;
  failedRounds: number;
  alerts: number;
  /** The source is lost now (alerted, being reopened). */
  lost: boolean;
  lastRoundMs: number | null;
}

export class MemoryMonitor {
  private source: MemorySource | null = null;
  private kernel: Kernel | null = null;
  private baseline: MemorySnapshot | null = null;
  private baselineText: TextHash | null = null;
  private baselinePatched: PatchedTextBaseline | null = null;
  private prev: MemorySnapshot | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<MemoryRoundReport> | null = null;
  private stopped = false;
  private lostSince: number | null = null;
  private readonly counts: MemoryMonitorStats = {
    rounds: 0,
    failedRounds: 0,
    alerts: 0,
    lost: false,
    lastRoundMs: null,
  };
  private readonly now: () => number;

  constructor(private readonly o: MemoryMonitorOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Starts the loop: a round now (the baseline), then one every period. */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stats(): MemoryMonitorStats {
    return { ...this.counts, lost: this.lostSince !== null };
  }

  /** One round now (waits for one under way first). The loop calls it; tests may too. */
  async round(): Promise<MemoryRoundReport> {
    while (this.running) await this.running.catch(() => {});
    this.running = this.doRound();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  /**
   * Opens the source again now (new credentials: make before break). The new one is opened
   * first, between rounds; only then is the old one closed. The kernel's facts carry over (the
   * same guest), so no round is lost and no new baseline is taken. Opening fails: the old
   * source stays, the error is thrown.
   */
  async reopen(): Promise<void> {
    const next = await this.o.open();
    // Swapped between rounds (a round under way keeps reading the old source to its end).
    for (let r = this.running as Promise<unknown> | null; r; r = this.running as Promise<unknown> | null)
      await r.catch(() => {});
    const old = this.source;
    const k = this.kernel;
    this.source = next;
    this.kernel = k ? new Kernel(next.memory, k.facts, k.symbols, k.profile, undefined, {}) : null;
    try {
      old?.close();
    } catch {}
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
    this.drop();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.round().finally(() => this.schedule(this.o.periodMs ?? 2000));
    }, ms);
  }

  private drop(): void {
    try {
      this.source?.close();
    } catch {}
    this.source = null;
    this.kernel = null;
  }

  private emit(severity: Severity, summary: string, evidence: Evidence): void {
    this.counts.alerts++;
    this.o.onAlert(
      alert({
        time: this.now(),
        target: this.o.target,
        monitor: "memory",
        channel: this.o.channel,
        severity,
        summary,
        evidence,
      }),
    );
  }

  private async doRound(): Promise<MemoryRoundReport> {
    const t0 = this.now();
    const round = ++this.counts.rounds;
    try {
      if (!this.source) this.source = await this.o.open();
      this.kernel ??= await discoverKernel(this.source.memory, { profileCache: this.o.profileCache });
      const { snap, text } = await this.snapshot(this.kernel);
      const ms = this.now() - t0;
      this.counts.lastRoundMs = ms;
      if (this.lostSince !== null) {
        this.emit("info", `memory source back after ${this.now() - this.lostSince} ms`, {
          kind: "source-back",
          lostMs: this.now() - this.lostSince,
        });
        this.lostSince = null;
      }
      if (!this.baseline || snap.kernelKey !== this.baseline.kernelKey) {
        const rebaseline = this.baseline !== null;
        this.baseline = snap;
        this.baselineText = text;
        this.baselinePatched = await this.patchedTextBaseline(this.kernel, text);
        this.prev = null;
        this.emit(
          rebaseline ? "warning" : "info",
          rebaseline
            ? "another kernel instance (the guest rebooted?): new baseline"
            : `baseline: ${snap.processes.size} processes, ${snap.modules.size} modules`,
          {
            kind: rebaseline ? "rebaseline" : "baseline",
            kernel: snap.kernelKey,
            processes: snap.processes.size,
            modules: snap.modules.size,
            // What the kernel already had at start is not repeated later: say it now.
            syscallFindings: snap.syscalls.map((s) => `${s.nr} ${s.problem} ${s.symbol ?? s.address}`),
            hiddenTasks: snap.hidden.map((h) => `${h.pid} ${h.comm}`),
          },
        );
        if (snap.hidden.length > 0 || snap.syscalls.length > 0)
          this.emit("critical", "the baseline already has hidden tasks or syscall findings", {
            kind: "baseline-suspicious",
            hidden: snap.hidden.length,
            syscalls: snap.syscalls.length,
          });
        const r = this.report(round, "baseline", ms, snap, []);
        return r;
      }
      const findings = compareSnapshots(this.baseline, this.prev, snap);
      for (const f of findings) this.emit(f.severity, f.summary, { kind: f.kind, ...f.evidence });
      this.prev = snap;
      return this.report(round, "check", ms, snap, findings);
    } catch (e) {
      return this.failed(round, t0, e);
    }
  }

  private failed(round: number, t0: number, e: unknown): MemoryRoundReport {
    this.counts.failedRounds++;
    const code = e instanceof VmiError ? e.code : "ERROR";
    const message = (e as Error)?.message ?? String(e);
    if (this.lostSince === null) {
      this.lostSince = this.now();
      this.emit(
        code === "KERNEL_NOT_READY" ? "info" : "critical",
        `memory monitor lost its view of the guest (${code}): ${message}`,
        { kind: "source-lost", code, message },
      );
    }
    this.drop();
    const r: MemoryRoundReport = {
      round,
      kind: "failed",
      ms: this.now() - t0,
      processes: 0,
      modules: 0,
      findings: [],
      error: `${code}: ${message}`,
    };
    this.o.onRound?.(r);
    return r;
  }

  private report(
    round: number,
    kind: MemoryRoundReport["kind"],
    ms: number,
    snap: MemorySnapshot,
    findings: Finding[],
  ): MemoryRoundReport {
    const r = {
      round,
      kind,
      ms,
      processes: snap.processes.size,
      modules: snap.modules.size,
      findings,
      error: null,
    };
    this.o.onRound?.(r);
    return r;
  }

  /**
   * A task newly seen hidden is looked for again a moment later and kept only if still
   * hidden: a round's reads of the task list and of the pid IDR are not one instant, so a task
   * forked or reaped in between is briefly in one and not the other (seen on a real guest
   * starting a process every second: "pid 738 (sh) is not on the task list (seen in pid-idr)").
   * A task hidden on purpose stays hidden.
   */
  private async stillHidden(
    k: Kernel,
    q: { maxEntries: number; timeoutMs: number },
    first: Awaited<ReturnType<typeof findHiddenTasks>>,
  ): Promise<Awaited<ReturnType<typeof findHiddenTasks>>> {
    const key = (h: { pid: number; comm: string }) => `${h.pid}:${h.comm}`;
    const known = new Set((this.prev ?? this.baseline)?.hidden.map(key) ?? []);
    if (!first.hidden.some((h) => !known.has(key(h)))) return first;
    await new Promise((r) => setTimeout(r, HIDDEN_RECHECK_MS));
    const again = new Set((await findHiddenTasks(k, q)).hidden.map(key));
    return { ...first, hidden: first.hidden.filter((h) => known.has(key(h)) || again.has(key(h))) };
  }

  /** Reads [offset - slack, offset + len + slack) of the text, clipped to it. */
  private async readText(k: Kernel, text: TextHash, offsets: readonly number[]) {
    const start = BigInt(text.start);
    const pa = kernelImageVaToPa(start, k.facts.physBase, text.length);
    const spans = offsets.map((o) => {
      const from = Math.max(0, o - SITE_SLACK);
      return { from, to: Math.min(text.length, o + text.chunk + SITE_SLACK) };
    });
    const bytes = await readPhys(
      k.phys,
      spans.map((x) => ({ addr: pa + x.from, len: x.to - x.from })),
    );
    return spans.map((x, i) => ({ from: x.from, bytes: bytes[i] }));
  }

  /**
   * The baseline's chunks with the kernel's jump-label sites masked. A kernel whose jump table
   * cannot be read gets none: every changed chunk is then alerted as before.
   */
  private async patchedTextBaseline(k: Kernel, text: TextHash): Promise<PatchedTextBaseline | null> {
    try {
      const ts = k.symbols.lookup("__start___jump_table");
      const te = k.symbols.lookup("__stop___jump_table");
      if (ts === undefined || te === undefined || te <= ts || te - ts > 16n * 1024n * 1024n) return null;
      const table = await k.read(ts, Number(te - ts));
      const sites = jumpLabelSites(table, ts, BigInt(text.start), text.length);
      const offsets = text.chunks.map((_, i) => i * text.chunk);
      const masked = new Map<number, string>();
      for (let b = 0; b < offsets.length; b += YIELD_EVERY_CHUNKS) {
        await yieldToLoop();
        const batch = offsets.slice(b, b + YIELD_EVERY_CHUNKS);
        const read = await this.readText(k, text, batch);
        for (const [i, o] of batch.entries()) {
          const len = Math.min(text.chunk, text.length - o);
          masked.set(o, maskedChunk(read[i].bytes, read[i].from, o, len, sites).digest);
        }
      }
      return { key: text.key, sites, masked };
    } catch {
      return null;
    }
  }

  /**
   * Of the chunks that differ from the baseline, those that still differ once the kernel's
   * own patching is set aside (a jump-label site holding its NOP or a jump to its target).
   */
  private async tampered(
    k: Kernel,
    text: TextHash,
    changed: readonly { offset: number; symbol?: string }[],
  ): Promise<readonly { offset: number; symbol?: string }[]> {
    const base = this.baselinePatched;
    if (changed.length === 0 || !base || base.key !== text.key) return changed;
    const read = await this.readText(
      k,
      text,
      changed.map((c) => c.offset),
    );
    return changed.filter((c, i) => {
      const len = Math.min(text.chunk, text.length - c.offset);
      const m = maskedChunk(read[i].bytes, read[i].from, c.offset, len, base.sites);
      return m.badSites.length > 0 || m.digest !== base.masked.get(c.offset);
    });
  }

  private async snapshot(k: Kernel): Promise<{ snap: MemorySnapshot; text: TextHash }> {
    const q = { maxEntries: this.o.maxTasks ?? 16_384, timeoutMs: this.o.walkTimeoutMs ?? 10_000 };
    // Between steps the event loop gets a turn: a local source reads synchronously, and the
    // service's heartbeats (its watchdog kills it after 6 s of silence) must not wait for a
    // whole round on a loaded machine.
    const ps = await listProcesses(k, q);
    await yieldToLoop();
    const mods = await listModules(k, q);
    await yieldToLoop();
    const sys = await checkSyscallTable(k);
    await yieldToLoop();
    const hidden = await this.stillHidden(k, q, await findHiddenTasks(k, q));
    await yieldToLoop();
    const text = await hashKernelText(k);
    await yieldToLoop();
    const textReport = compareText(k, text, this.baselineText ?? undefined);
    // Another kernel instance (reboot): its text is compared with nothing yet.
    const sameKernel = this.baselineText?.key === text.key;
    return {
      text,
      snap: {
        kernelKey: text.key,
        processes: new Map(
          ps.map((p) => [
            p.pid,
            { comm: p.comm, ppid: p.ppid, uid: p.uid ?? null, kernelThread: p.kernelThread },
          ]),
        ),
        modules: new Map(mods.map((m) => [m.name, { base: `0x${m.base.toString(16)}`, size: m.size }])),
        hidden: hidden.hidden.map((h) => ({ pid: h.pid, tgid: h.tgid, comm: h.comm, seenIn: h.seenIn })),
        syscalls: sys.findings.map((f) => ({
          nr: f.nr,
          address: `0x${f.address.toString(16)}`,
          problem: f.problem,
          symbol: f.symbol ?? null,
        })),
        textChanged: sameKernel
          ? (await this.tampered(k, text, textReport.changed)).map((c) => ({
              offset: c.offset,
              symbol: c.symbol ?? null,
            }))
          : [],
      },
    };
  }
}

/**
 * The console end of a host-VM agent: a guest's logged serial port (a `serial` device with
 * `log: true`) to the console clients, end to end encrypted (src/console/protocol.ts), over
 * a WebSocket the controller's relay opens (routes/console.ts).
 *
 * - Output comes from the port's log file, not from QEMU's socket: the log has every byte
 *   the guest wrote, whether or not anyone was connected, and it is one stream across moves
 *   (an instant handover keeps the file; a pre-copy continues the source's log before the
 *   guest resumes, incoming.ts). So a byte's offset in the log is its position in the
 *   guest's serial stream everywhere, and a client resumes at an offset: replay and live
 *   output are the same read. A fresh client gets the recent tail (`tailBytes`); a resume
 *   further back than `scrollbackBytes` is cut there (the skipped bytes are announced).
 *   Sending stops while the relay has `highWaterBytes` unsent, and goes on from the file
 *   when it drained: a slow reader never holds the guest up (QEMU writes the file anyway).
 * - Keystrokes go into QEMU's socket of the port (connected while someone may type; what
 *   QEMU sends there is read and dropped). Each carries its session's input seq; the agent
 *   records the highest delivered seq per session in the guest's folder before writing
 *   (`<port>.console-inputs.json`: the destination of an instant handover reads the same
 *   file) and acknowledges it, and drops seqs it knows were delivered (a seq may skip ahead:
 *   records the relay dropped because their client did not hold the keyboard).
 * - While the guest migrates away (an outgoing migration from its start to its confirm),
 *   keystrokes wait and the clients are told ("moving"); if the guest stays, they go on
 *   ("staying"); once it left, the sessions end with the last acknowledgement and "moved"
 *   (close code 4001), and the relay re-attaches the client where the guest runs now.
 * - Made before broken, before the switchover: when a migration is about to start (its input
 *   drain), each session tells the relay in plaintext where the guest goes ("moving" and the
 *   destination agent's URL, which the relay knows anyway). The relay opens a standby
 *   session there and the client handshakes with it; the relay answers "standby-ready" (or
 *   "no-standby"), and the migration starts once every session is ready or after
 *   `standbyWaitMs` (the guest runs meanwhile: this delays the move, not the guest). At the
 *   switchover the relay switches upstream beneath the client's connection, so the output's
 *   path has no connection and no handshake left on it.
 * - Made before broken: the destination of a move takes a session for the guest it is about
 *   to run (an incoming not yet decided, `arrivingHere`) as soon as the relay connects after
 *   "moved", so the handshake overlaps the destination's finish; the session starts (its
 *   acknowledgement, "start", the replay) once the guest runs here, when the log has been
 *   continued and the delivered keystrokes are known. If the guest does not come (the move
 *   was rolled back), the session ends "moved" without a destination and the relay searches.
 *
 * The identity key (ECDSA P-256) is made at the agent's first start and kept 0600 beside its
 * QEMUs' folder, so a restarted agent keeps it. The ticket key comes from the agents' token.
 */

import type { FSWatcher } from "node:fs";
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  watch,
  writeFileSync,
} from "node:fs";
import { connect, type Socket } from "node:net";
import { dirname, join } from "node:path";
import type { WebSocket } from "ws";
import {
  acceptClient,
  CLOSE,
  ConsoleProtocolError,
  decodeInput,
  deriveTicketKey,
  encodeAck,
  encodeNotice,
  encodeOutput,
  fingerprint,
  generateSigningKey,
  MAX_RECORD_PLAINTEXT,
  type Notice,
  RECORD,
  type Resume,
  type SecureChannel,
  type SigningKey,
  signingKeyFromPem,
  signingKeyToPem,
} from "../../console/index.ts";
import type { ConsoleInputs, GuestConfig } from "../api-types.ts";
import type { HostVmAgentConfig } from "../config.ts";
import { inputsPath, readInputs, writeInputs } from "./console-inputs.ts";
import { deviceEndpoints, serialLogOf } from "./devices.ts";
import { unreadByPeer } from "./socket-unread.ts";
import type { HostVm } from "./state.ts";

export interface ConsoleOptions {
  /** What a fresh client gets of the past. */
  tailBytes?: number;
  /** How far back a resuming client may ask for. */
  scrollbackBytes?: number;
  /** Unsent bytes towards the relay beyond which output waits. */
  highWaterBytes?: number;
  /** Keystrokes one session may have waiting (a move) before it is closed to start over. */
  maxQueuedInputBytes?: number;
  /** How often sessions look at the log, the guest's place and the socket. */
  tickMs?: number;
  /** A client must send its hello within this. */
  helloTimeoutMs?: number;
  /** Before a migration starts: how long to wait for the relay's standby sessions at the destination. */
  standbyWaitMs?: number;
}

const OUTPUT_CHUNK = MAX_RECORD_PLAINTEXT - 8;
/** Between looks at whether QEMU read the keystroke in flight. */
const SETTLE_POLL_MS = 2;
/** The hub's tick while its guest migrates. */
const FAST_TICK_MS = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The close reason of a "moved" session: where the guest went (the destination agent's URL,
 * which the relay knows already: no secret), so the relay connects there at once.
 */
/** The destination agent a migration was told (tests' stand-ins may have no request). */
function destinationOf(m: { req?: { destination?: { url: string } } }): string | undefined {
  return m.req?.destination?.url;
}

export function movedReason(destinationUrl: string | undefined): string {
  return destinationUrl ? `moved to ${destinationUrl}` : "moved";
}

/** An incoming migration here that may run guest `guestId` and has not handed it over yet. */
function arrivingHere(host: HostVm, guestId: string): GuestConfig | null {
  for (const m of host.incoming.values())
    if (m.req.guest.guestId === guestId && m.arriving) return m.req.guest;
  return null;
}

/**
 * The configuration of guest `guestId` for its console here: the guest running here, or the
 * one arriving (a session opens now and starts once it runs here); null: neither.
 */
export function consoleGuestConfig(host: HostVm, guestId: string): GuestConfig | null {
  return host.guests.get(guestId)?.config ?? arrivingHere(host, guestId);
}

/** The agent's identity key file (beside its QEMUs' folder, like its image folder). */
export function identityPath(cfg: HostVmAgentConfig): string {
  return join(dirname(cfg.qemuDir), "console-identity.pem");
}

export function loadOrCreateIdentity(path: string): SigningKey {
  if (existsSync(path)) return signingKeyFromPem(readFileSync(path, "utf8"));
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const k = generateSigningKey();
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, signingKeyToPem(k), { mode: 0o600 });
  renameSync(tmp, path);
  return k;
}

export class ConsoleService {
  readonly identity: SigningKey;
  readonly ticketKey: Buffer;
  private readonly hubs = new Map<string, SerialHub>();
  readonly opts: Required<ConsoleOptions>;

  constructor(
    readonly host: HostVm,
    token: string,
    opts: ConsoleOptions = {},
  ) {
    this.identity = loadOrCreateIdentity(identityPath(host.cfg));
    this.ticketKey = deriveTicketKey(token);
    this.opts = {
      tailBytes: opts.tailBytes ?? 16 * 1024,
      scrollbackBytes: opts.scrollbackBytes ?? 1024 * 1024,
      highWaterBytes: opts.highWaterBytes ?? 256 * 1024,
      maxQueuedInputBytes: opts.maxQueuedInputBytes ?? 64 * 1024,
      tickMs: opts.tickMs ?? 50,
      helloTimeoutMs: opts.helloTimeoutMs ?? 10_000,
      standbyWaitMs: opts.standbyWaitMs ?? 1500,
    };
  }

  info(): { publicKey: string; fingerprint: string } {
    return {
      publicKey: this.identity.publicRaw.toString("base64url"),
      fingerprint: fingerprint(this.identity.publicRaw),
    };
  }

  /** Sessions open now, per guest and port (status, tests). */
  sessions(): Array<{ guestId: string; deviceId: string; sessions: number }> {
    return [...this.hubs.values()].map((h) => ({
      guestId: h.guestId,
      deviceId: h.deviceId,
      sessions: h.size,
    }));
  }

  /** A relay's WebSocket for guest `guestId`'s port `deviceId` (the route checked both exist). */
  serve(guestId: string, deviceId: string, ws: WebSocket): void {
    // Refused before the upgrade too (routes/console.ts): one that got through meanwhile ends here.
    if (this.restarting) {
      ws.close(CLOSE.restarting, "the agent restarts");
      return;
    }
    const key = `${guestId}/${deviceId}`;
    let hub = this.hubs.get(key);
    if (!hub) {
      hub = new SerialHub(this, guestId, deviceId, () => this.hubs.delete(key));
      this.hubs.set(key, hub);
    }
    hub.add(ws);
  }

  /**
   * Before a migration of `guestId` starts: no keystroke is written to its ports any more,
   * and the ones written are waited for (at most `timeoutMs`) until QEMU read them, so the
   * switchover finds none in a socket buffer. Returns the release (call it once the
   * migration started: from then the migration itself holds input back).
   */
  async drainInput(guestId: string, timeoutMs = 2000, destinationUrl?: string): Promise<() => void> {
    const hubs = [...this.hubs.values()].filter((h) => h.guestId === guestId);
    const t0 = Date.now();
    for (const h of hubs) {
      h.holds++;
      // Look often from now on: "moved" should follow the switchover promptly.
      h.fastTicks(true);
      if (destinationUrl) h.offerStandby(destinationUrl);
    }
    const deadline = t0 + timeoutMs;
    const standbyDeadline = t0 + Math.min(timeoutMs, this.opts.standbyWaitMs);
    while (
      (Date.now() < deadline && hubs.some((h) => !h.settle())) ||
      (Date.now() < standbyDeadline && hubs.some((h) => !h.standbysReady()))
    )
      await sleep(2);
    if (destinationUrl && hubs.length > 0)
      this.host.log.info(
        {
          guest: guestId,
          ms: Date.now() - t0,
          standbys: hubs.every((h) => h.standbysReady()) ? "ready" : "not all ready",
        },
        "console drained before migrating",
      );
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const h of hubs) {
        h.holds--;
        h.released();
      }
    };
  }

  /** Set by handOff: the agent is about to exit, new sessions are refused (503 before the upgrade). */
  restarting = false;

  /**
   * Before the agent exits for a restart (rejuvenation: its QEMUs stay, its successor adopts
   * them and serves their consoles from the same logs): as before a migration, no keystroke is
   * written any more, and the one QEMU has not read yet is waited for (at most `timeoutMs`) and
   * recorded, so that the successor drops it when the client sends it again (an exit between
   * QEMU's read and the record would have it typed twice). Then every session ends with its
   * output so far, its last acknowledgement and "moving" (the client holds new keystrokes until
   * the successor's "start"), close 4002: the relay re-attaches at the successor.
   */
  async handOff(timeoutMs = 1000): Promise<void> {
    this.restarting = true;
    const hubs = [...this.hubs.values()];
    for (const h of hubs) h.holds++;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && hubs.some((h) => !h.settle())) await sleep(2);
    for (const h of hubs) h.end({ kind: "moving" }, CLOSE.restarting, "the agent restarts");
  }

  closeAll(): void {
    for (const h of [...this.hubs.values()])
      h.end({ kind: "ended", reason: "the agent is shutting down" }, 1001);
  }
}

/** One logged serial port of one guest with its console sessions. */
class SerialHub {
  private readonly sessions = new Set<AgentSession>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private sock: Socket | null = null;
  private sockPath: string | null = null;
  private migrating = false;
  /** The guest is arriving here (an incoming): sessions wait to start until it runs here. */
  private awaitingArrival = false;
  /** Drains in progress (a migration about to start): nothing is written meanwhile. */
  holds = 0;
  /**
   * The keystroke written to QEMU's socket and not yet read by QEMU (one at a time): it is
   * recorded and acknowledged once QEMU took it (socket-unread.ts), while the guest runs.
   * One that QEMU never took before the guest left goes to the destination instead: the
   * client sends it again, unacknowledged.
   */
  private inFlight: { session: AgentSession; seq: number; at: number } | null = null;

  /** The seq in flight for a client session (0: none). */
  inFlightSeq(sessionKey: string): number {
    return this.inFlight?.session.sessionKey === sessionKey ? this.inFlight.seq : 0;
  }
  private settleTimer: NodeJS.Timeout | null = null;
  /** Fast checks while a migration runs, so "moved" follows the switchover promptly. */
  private fastTimer: NodeJS.Timeout | null = null;
  /** Keystroke delivery, one at a time (the socket connects lazily). */
  private delivering: Promise<void> = Promise.resolve();
  readonly logPath: string;
  private readonly inputsPath: string;

  constructor(
    private readonly svc: ConsoleService,
    readonly guestId: string,
    readonly deviceId: string,
    private readonly onEmpty: () => void,
  ) {
    const config = consoleGuestConfig(svc.host, guestId);
    if (!config) throw new Error(`no guest ${guestId} here`);
    this.logPath = serialLogOf(svc.host.cfg, config, deviceId)!;
    this.awaitingArrival = !svc.host.guests.has(guestId);
    this.inputsPath = inputsPath(svc.host.cfg, guestId, deviceId);
  }

  get size(): number {
    return this.sessions.size;
  }

  get log() {
    return this.svc.host.log;
  }

  /** The guest runs here (sessions may start: its log is the stream's, its keystrokes are known). */
  here(): boolean {
    return this.svc.host.guests.has(this.guestId);
  }

  add(ws: WebSocket): void {
    const s = new AgentSession(this, this.svc, ws);
    this.sessions.add(s);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), this.svc.opts.tickMs);
      this.timer.unref();
      this.watch();
    }
  }

  remove(s: AgentSession): void {
    this.sessions.delete(s);
    this.closeIfIdle();
  }

  /**
   * Closes the hub once no session is left and no keystroke is in flight (one QEMU has not
   * read yet is settled first, so a client that comes back does not type it twice).
   */
  private closeIfIdle(): void {
    if (this.sessions.size > 0) return;
    if (this.inFlight && !this.settle() && this.svc.host.guests.has(this.guestId)) {
      this.deliver();
      return;
    }
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.fastTimer) clearInterval(this.fastTimer);
    this.fastTimer = null;
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    this.inFlight = null;
    this.watcher?.close();
    this.watcher = null;
    this.sock?.destroy();
    this.sock = null;
    this.onEmpty();
  }

  /** inotify on the log for prompt output; the tick catches what it misses. */
  private watch(): void {
    if (this.watcher || !existsSync(this.logPath)) return;
    try {
      this.watcher = watch(this.logPath, { persistent: false }, () => this.pumpAll());
      this.watcher.on("error", () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null;
    }
  }

  pumpAll(): void {
    for (const s of this.sessions) s.pump();
  }

  /** The log's size now (0 before QEMU made it). */
  logSize(): number {
    try {
      return statSync(this.logPath).size;
    } catch {
      return 0;
    }
  }

  /** The guest's outgoing migration under way (from its start to its confirm), if any. */
  private migration() {
    for (const m of this.svc.host.outgoing.values()) {
      if (
        m.guest.guestId === this.guestId &&
        (m.phase === "running" ||
          m.phase === "pre-switchover" ||
          m.phase === "postcopy" ||
          m.phase === "completed")
      )
        return m;
    }
    return null;
  }

  private migratingNow(): boolean {
    return this.migration() !== null;
  }

  /** Each session tells the relay where the guest goes (the relay makes a standby there). */
  offerStandby(url: string): void {
    for (const s of this.sessions) s.offerStandby(url);
  }

  /** Whether every session that was offered a standby has one (or was told there is none). */
  standbysReady(): boolean {
    return [...this.sessions].every((s) => s.standby !== "offered");
  }

  /** A drain ended: input goes on unless a migration holds it; the fast tick only while one runs. */
  released(): void {
    if (!this.migratingNow() && this.holds === 0) this.fastTicks(false);
    this.deliver();
  }

  fastTicks(on: boolean): void {
    if (on && !this.fastTimer) {
      this.fastTimer = setInterval(() => this.tick(), FAST_TICK_MS);
      this.fastTimer.unref();
    } else if (!on && this.fastTimer) {
      clearInterval(this.fastTimer);
      this.fastTimer = null;
    }
  }

  private tick(): void {
    this.watch();
    const g = this.svc.host.guests.get(this.guestId);
    if (!g) {
      if (this.awaitingArrival && arrivingHere(this.svc.host, this.guestId)) {
        // Look often: the sessions start as soon as the guest runs here.
        this.fastTicks(true);
        return;
      }
      const left = [...this.svc.host.outgoing.values()].find(
        (m) => m.guest.guestId === this.guestId && m.phase === "confirmed",
      );
      if (left) this.end({ kind: "moved" }, CLOSE.moved, movedReason(destinationOf(left)));
      // The guest did not come (its move was rolled back): the relay looks for it.
      else if (this.awaitingArrival) this.end({ kind: "moved" }, CLOSE.moved, movedReason(undefined));
      else this.end({ kind: "ended", reason: `guest ${this.guestId} was deleted` }, CLOSE.ended);
      return;
    }
    if (this.awaitingArrival) {
      this.awaitingArrival = false;
      if (!this.migrating) this.fastTicks(false);
      for (const s of this.sessions) s.begin();
    }
    const m = this.migration();
    const to = m ? destinationOf(m) : undefined;
    if (m && m.phase === "completed" && to) {
      // The source stopped and handed the guest over; the orchestrator finishes it at the
      // destination now. The relay is told where, so it connects there at once instead of
      // waiting for this source's confirm and searching every agent (if the move is rolled
      // back after all, the relay finds the guest here again).
      this.end({ kind: "moved" }, CLOSE.moved, movedReason(to));
      return;
    }
    const migrating = m !== null;
    if (migrating !== this.migrating) {
      this.migrating = migrating;
      for (const s of this.sessions) {
        s.notice({ kind: migrating ? "moving" : "staying" });
        // The relay drops its standby at the destination.
        if (!migrating) s.hint({ t: "staying" });
      }
      if (migrating && !this.fastTimer) {
        this.fastTimer = setInterval(() => this.tick(), FAST_TICK_MS);
        this.fastTimer.unref();
      }
      if (!migrating) {
        if (this.fastTimer) clearInterval(this.fastTimer);
        this.fastTimer = null;
        this.deliver();
      }
    }
    // Queued keystrokes too: a guest that just arrived may take them only a moment after its sessions began.
    if (this.inFlight || [...this.sessions].some((x) => x.queue.length > 0)) this.deliver();
    this.pumpAll();
  }

  /** Ends every session: the output up to now, the last acknowledgement, then the notice. */
  end(n: Notice, code: number, reason?: string): void {
    for (const s of [...this.sessions]) s.finish(n, code, reason);
  }

  // ---- keystrokes ------------------------------------------------------------------------

  /** The highest delivered input seq of each session (from the guest's folder). */
  readInputs(): ConsoleInputs {
    return readInputs(this.inputsPath);
  }

  private writeInput(session: string, seq: number): void {
    writeInputs(this.inputsPath, { ...this.readInputs(), [session]: { seq, at: Date.now() } });
  }

  /** Delivers what sessions have queued, unless the guest migrates or does not run. */
  deliver(): void {
    this.delivering = this.delivering
      .then(() => this.deliverNow())
      .catch((e) => {
        this.log.warn(
          { guest: this.guestId, serial: this.deviceId, err: (e as Error).message },
          "console input",
        );
      });
  }

  /** Whether the guest's serial may take keystrokes now: it runs here and does not move. */
  private accepting(): boolean {
    const g = this.svc.host.guests.get(this.guestId);
    return this.holds === 0 && g?.state === "running" && !this.migratingNow();
  }

  /**
   * Whether no keystroke waits to be read by QEMU (settling the one in flight if QEMU took
   * it). QEMU reads its socket into the guest's UART only while the guest runs here: after
   * the switchover a keystroke in flight stays unacknowledged and goes to the destination.
   */
  settle(): boolean {
    const f = this.inFlight;
    if (!f) return true;
    const sock = this.sock;
    if (!sock || sock.destroyed) {
      // QEMU's end went away (the guest stopped, or QEMU died): the keystroke may or may not
      // have been read; it stays unacknowledged, so the client sends it again.
      this.inFlight = null;
      return true;
    }
    const g = this.svc.host.guests.get(this.guestId);
    const m = this.migration();
    const runsHere =
      g !== undefined && (g.state === "running" || (g.state === "migrating" && m?.phase === "running"));
    if (!runsHere) return false;
    const unread = unreadByPeer(sock);
    if (unread !== null && unread > 0) return false;
    // Recorded before it is acknowledged: the destination of a move drops it when resent.
    const key = f.session.sessionKey!;
    this.writeInput(key, f.seq);
    this.inFlight = null;
    // The client's session may have reconnected meanwhile (a new agent session, same key).
    for (const x of new Set([f.session, ...this.sessions])) {
      if (x.sessionKey !== key) continue;
      x.delivered = Math.max(x.delivered, f.seq);
      x.ack();
    }
    return true;
  }

  private async deliverNow(): Promise<void> {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = null;
    for (;;) {
      if (!this.settle()) {
        if (this.sessions.size === 0 && !this.svc.host.guests.has(this.guestId)) {
          this.closeIfIdle();
          return;
        }
        // QEMU reads as the guest drains its UART: look again shortly (then at each tick:
        // a hung guest reads nothing for a long time).
        if (this.inFlight && Date.now() - this.inFlight.at < 200) {
          this.settleTimer = setTimeout(() => this.deliver(), SETTLE_POLL_MS);
          this.settleTimer.unref();
        }
        return;
      }
      if (this.sessions.size === 0) {
        this.closeIfIdle();
        return;
      }
      if (!this.accepting()) return;
      const s = [...this.sessions].find((x) => x.queue.length > 0);
      if (!s) return;
      const sock = await this.socket();
      if (!sock || !this.accepting() || this.inFlight) return;
      const k = s.queue.shift()!;
      s.queuedBytes -= k.bytes.length;
      this.inFlight = { session: s, seq: k.seq, at: Date.now() };
      sock.write(k.bytes);
    }
  }

  /** QEMU's socket of the port, connected on demand (null while the guest does not run). */
  private async socket(): Promise<Socket | null> {
    const g = this.svc.host.guests.get(this.guestId);
    if (!g?.qemu?.isRunning || g.state !== "running") return null;
    const path = deviceEndpoints(this.svc.host.cfg, g.config, g.qemu).find(
      (e) => e.id === this.deviceId,
    )?.socket;
    if (!path) return null;
    if (this.sock && this.sockPath === path && !this.sock.destroyed) return this.sock;
    this.sock?.destroy();
    const sock = await new Promise<Socket | null>((resolve) => {
      const c = connect(path, () => resolve(c));
      c.once("error", () => resolve(null));
    });
    if (!sock) return null;
    // QEMU sends the guest's output here too: the log has it, so it is read and dropped.
    sock.on("data", () => {});
    sock.on("error", () => {});
    sock.on("close", () => {
      if (this.sock === sock) this.sock = null;
    });
    this.sock = sock;
    this.sockPath = path;
    return sock;
  }
}

/** One client's end-to-end session on one serial port. */
class AgentSession {
  private channel: SecureChannel | null = null;
  /** The next log offset to send. */
  private offset = 0;
  private control = false;
  private closed = false;
  private helloTimer: NodeJS.Timeout | null;
  sessionKey: string | null = null;
  delivered = 0;
  queue: Array<{ seq: number; bytes: Buffer }> = [];
  queuedBytes = 0;
  private fd: number | null = null;
  /**
   * A standby for the next move (made before broken): "offered" once told the relay where the
   * guest goes, "ready" or "none" when the relay answered; null: not asked.
   */
  standby: "offered" | "ready" | "none" | null = null;
  /** Handshaken for a guest arriving here: where the client asked to resume, until it runs here. */
  private waiting: { resume: Resume; sub: string; tenant: string } | null = null;

  constructor(
    private readonly hub: SerialHub,
    private readonly svc: ConsoleService,
    private readonly ws: WebSocket,
  ) {
    ws.on("message", (data, isBinary) => this.onMessage(toBuffer(data), isBinary));
    ws.on("close", () => this.dispose());
    ws.on("error", () => this.dispose());
    this.helloTimer = setTimeout(
      () => this.close(CLOSE.refused, "no client hello in time"),
      svc.opts.helloTimeoutMs,
    );
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    try {
      if (!isBinary) {
        this.relayHint(data);
        return;
      }
      if (!this.channel) this.accept(data);
      else this.input(data);
    } catch (e) {
      const refused = e instanceof ConsoleProtocolError;
      this.hub.log.warn(
        { guest: this.hub.guestId, serial: this.hub.deviceId, code: refused ? e.code : "error" },
        `console session refused: ${(e as Error).message}`,
      );
      this.close(refused && !this.channel ? CLOSE.refused : 1008, (e as Error).message);
    }
  }

  /**
   * The relay's plaintext answers to an offered standby ("standby-ready", "no-standby"): they
   * only decide how long a migration waits before it starts (bounded), so a relay that lies
   * delays or hastens a move and learns nothing. Anything else is refused as before.
   */
  private relayHint(data: Buffer): void {
    let t: unknown;
    try {
      t = data.length <= 64 ? (JSON.parse(data.toString("utf8")) as { t?: unknown }).t : undefined;
    } catch {
      t = undefined;
    }
    if (t === "standby-ready" || t === "no-standby") {
      if (this.standby === "offered") this.standby = t === "standby-ready" ? "ready" : "none";
      return;
    }
    throw new ConsoleProtocolError("bad-message", "the console speaks binary messages only");
  }

  /** Tells the relay where the guest is about to go (a session that runs here). */
  offerStandby(url: string): void {
    if (this.closed || !this.channel || this.waiting) return;
    this.standby = "offered";
    this.hint({ t: "moving", to: url });
  }

  /** A plaintext message to the relay (nothing secret: where the guest goes, or that it stays). */
  hint(m: { t: "moving"; to: string } | { t: "staying" }): void {
    if (this.closed || !this.channel) return;
    if (m.t === "staying") this.standby = null;
    this.ws.send(JSON.stringify(m));
  }

  private accept(hello: Buffer): void {
    const a = acceptClient(hello, {
      identity: this.svc.identity,
      ticketKey: this.svc.ticketKey,
      guest: this.hub.guestId,
      device: this.hub.deviceId,
      nowSeconds: Date.now() / 1000,
    });
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.channel = a.channel;
    this.control = a.claims.control;
    this.sessionKey = a.hello.sessionId.toString("base64url");
    this.ws.send(a.answer);
    this.waiting = { resume: a.hello.resume, sub: a.claims.sub, tenant: a.claims.tenant };
    if (this.hub.here()) this.begin();
  }

  /**
   * The session's start once the guest runs here: the keystrokes delivered so far (a move's
   * destination has them only now), where the output resumes, the acknowledgement, "start".
   */
  begin(): void {
    const w = this.waiting;
    if (!w || this.closed) return;
    this.waiting = null;
    this.delivered = this.hub.readInputs()[this.sessionKey!]?.seq ?? 0;
    this.queue = this.queue.filter((k) => k.seq > this.delivered);
    this.queuedBytes = this.queue.reduce((n, k) => n + k.bytes.length, 0);
    const size = this.hub.logSize();
    const { tailBytes, scrollbackBytes } = this.svc.opts;
    let from: number;
    let skipped = 0;
    let reset = false;
    if (w.resume.from === "tail") from = Math.max(0, size - tailBytes);
    else if (w.resume.offset > size) {
      // The stream is shorter than what the client saw (a log that could not be continued).
      from = Math.max(0, size - tailBytes);
      reset = true;
    } else {
      from = Math.max(w.resume.offset, size - scrollbackBytes, 0);
      skipped = from - w.resume.offset;
    }
    this.offset = from;
    this.hub.log.info(
      {
        guest: this.hub.guestId,
        serial: this.hub.deviceId,
        sub: w.sub,
        tenant: w.tenant,
        control: this.control,
        from,
        skipped,
      },
      "console session attached",
    );
    this.send(RECORD.ack, encodeAck(this.delivered));
    this.notice({ kind: "start", from, skipped, control: this.control, ...(reset ? { reset } : {}) });
    this.pump();
    if (this.queue.length > 0) this.hub.deliver();
  }

  private input(msg: Buffer): void {
    const { type, plaintext } = this.channel!.open(msg);
    if (type !== RECORD.input)
      throw new ConsoleProtocolError("wrong-direction", `record type ${type} from a client`);
    const { seq, bytes } = decodeInput(plaintext);
    if (!this.control) {
      this.notice({ kind: "refused", reason: "this console ticket may only watch" });
      return;
    }
    const last = Math.max(
      this.delivered,
      this.hub.inFlightSeq(this.sessionKey!),
      this.queue[this.queue.length - 1]?.seq ?? 0,
    );
    if (seq <= last) {
      // Delivered (or waiting) already: a resend after a move.
      this.ack();
      return;
    }
    // A seq past the next one: records the relay dropped (sent without the keyboard); they
    // are never delivered, the ones after them are.
    this.queue.push({ seq, bytes });
    this.queuedBytes += bytes.length;
    if (this.queuedBytes > this.svc.opts.maxQueuedInputBytes) {
      // Start over: the client sends what is unacknowledged again on its next session.
      this.close(1011, "too many keystrokes waiting");
      return;
    }
    this.hub.deliver();
  }

  ack(): void {
    this.send(RECORD.ack, encodeAck(this.delivered));
  }

  notice(n: Notice): void {
    if (this.channel) this.send(RECORD.notice, encodeNotice(n));
  }

  private send(type: (typeof RECORD)[keyof typeof RECORD], payload: Buffer): void {
    if (this.closed || !this.channel) return;
    this.ws.send(this.channel.seal(type, payload));
  }

  /** Sends the log from `offset` while the relay keeps up. */
  pump(): void {
    if (this.closed || !this.channel || this.waiting) return;
    const size = this.hub.logSize();
    if (size < this.offset) {
      // The log was replaced by a shorter one: nothing sensible to resume; start at its end.
      this.offset = size;
      return;
    }
    while (this.offset < size && this.ws.bufferedAmount < this.svc.opts.highWaterBytes) {
      const n = Math.min(OUTPUT_CHUNK, size - this.offset);
      const buf = Buffer.alloc(n);
      const got = this.read(buf, this.offset);
      if (got <= 0) return;
      this.send(RECORD.output, encodeOutput(this.offset, buf.subarray(0, got)));
      this.offset += got;
    }
  }

  private read(buf: Buffer, at: number): number {
    try {
      if (this.fd === null) this.fd = openSync(this.hub.logPath, "r");
      // A log replaced under us (a new file at the same path) is read from the new one.
      if (fstatSync(this.fd).ino !== statSync(this.hub.logPath).ino) {
        closeSync(this.fd);
        this.fd = openSync(this.hub.logPath, "r");
      }
      return readSync(this.fd, buf, 0, buf.length, at);
    } catch {
      return 0;
    }
  }

  /** The end of this session on this agent: the rest of the output, the acks, the notice. */
  finish(n: Notice, code: number, reason?: string): void {
    if (this.closed) return;
    if (this.channel) {
      if (!this.waiting) {
        this.pump();
        this.ack();
      }
      this.notice(n);
    }
    this.close(code, reason ?? (n.kind === "ended" ? n.reason : n.kind));
  }

  private close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason.slice(0, 120));
    this.dispose();
  }

  private dispose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.hub.remove(this);
  }
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * The relay between console clients and the agent that holds a guest's serial port (the
 * controller runs it behind GET /api/vms/:id/console; no I/O here: the transports come in as
 * Pipes). It never decrypts anything: it forwards the protocol's binary messages as they are
 * (protocol.ts), reads only their kind and record type, and logs only sizes and events.
 *
 * - One agent connection per client: each client has its own end-to-end session with the
 *   agent. When the agent connection ends because the guest moved (or the agent went away),
 *   the relay finds where the guest runs now, connects there, sends the client the new
 *   agent's identity key and a fresh ticket (re-checking that the client's token is still
 *   good), and the client handshakes again; output resumes at the client's byte offset and
 *   unacknowledged keystrokes are sent again (see client.ts).
 * - Made before broken: when a migration starts, the source agent tells the relay (a text
 *   message, nothing secret: the destination agent's URL, which the relay knows) where the
 *   guest goes. The relay opens a standby connection there at once, and the client handshakes
 *   with that agent (a second end-to-end channel) while the source still streams. When the
 *   source lets go ("moved" to that agent), the relay switches upstream beneath the same client
 *   connection: "switched", then the standby's records; no search, no new connection and no
 *   handshake on the output's path. A standby that cannot be made is dropped and the move
 *   falls back to the re-attach above.
 * - Several clients may watch one serial port; one holds the keyboard. The relay forwards
 *   input records from the holder only (the type is visible, the content is not); taking
 *   the keyboard is an explicit request, and everyone is told who holds it.
 * - Bounded: a client that does not read is disconnected once `maxClientBufferBytes` wait
 *   unsent to it (counted); nothing waits for it, so it never slows the guest (the agent
 *   streams from the serial port's log and bounds its own sending too).
 */
import type { ClientToRelay, RelayToClient } from "./client.ts";
import { fingerprint as fingerprintOf, KIND, MAX_MESSAGE, MAX_TICKET, peek, RECORD } from "./protocol.ts";

/** A message transport (a WebSocket, or a test's fake). */
export interface Pipe {
  send(data: Buffer | string): void;
  /** Bytes queued but not yet sent. */
  readonly bufferedAmount: number;
  close(code: number, reason: string): void;
}

export interface AgentTarget {
  readonly hostVm: string;
  /** The agent's identity key (uncompressed P-256 point). */
  readonly identity: Buffer;
}

export interface AgentHandlers {
  onMessage(data: Buffer, isBinary: boolean): void;
  onClose(code: number, reason: string): void;
}

/** Who a client is (from its token) and what its attach message said. */
export interface Viewer {
  readonly id: number;
  /** A token id or label: for tickets and logs (never a secret). */
  readonly sub: string;
  readonly tenant: string;
  /** May type at all (else watch only). */
  readonly control: boolean;
  /** What stillAllowed checks again (a bearer header): never logged, never forwarded. */
  readonly credential?: string;
  key: string | null;
  session: string | null;
}

export interface RelayDeps<T extends AgentTarget> {
  /**
   * Where the guest runs now (null: nowhere yet, e.g. mid-move). `movedTo`: the agent a move
   * named (see movedTo()): look there only.
   */
  locate(guest: string, movedTo?: string): Promise<T | null>;
  /** Opens the agent's console endpoint for the guest's serial port (rejects if it refuses). */
  connect(target: T, guest: string, device: string, handlers: AgentHandlers): Promise<Pipe>;
  /** A ticket for this viewer's key at this agent. */
  ticket(viewer: Viewer, target: T, guest: string, device: string): string;
  /** Whether the viewer may still use the console (its token not revoked or expired). */
  stillAllowed(viewer: Viewer): Promise<boolean>;
  log?: (event: string, fields: Record<string, string | number | boolean>) => void;
}

export interface RelayOptions {
  /** A client with this much unsent is disconnected. */
  maxClientBufferBytes?: number;
  /** How long to look for the guest after its agent connection ended. */
  reattachTimeoutMs?: number;
  /** Between tries while looking. */
  retryMs?: number;
  /** Between tries at the agent a move named (the guest is about to run there). */
  movedRetryMs?: number;
  /** How long to look only at the agent a move named before searching every agent. */
  movedSearchMs?: number;
  /** A client that sends no hello within this after the agent is named is disconnected. */
  handshakeTimeoutMs?: number;
  /** Clients per serial port. */
  maxViewers?: number;
}

/** Close codes: the agent's (4001-4004) and the relay's own (4005-4009). */
export const CLOSE = {
  /** agent: the guest left this host VM. */
  moved: 4001,
  /** agent: it restarts (rejuvenation); its successor adopts the guest: re-attach there. */
  restarting: 4002,
  /** agent: the handshake was refused (ticket, signature). */
  refused: 4003,
  /** agent: the guest or its serial port is gone. */
  ended: 4004,
  /** relay: the client broke the relay's rules (unexpected message, too large). */
  badClient: 4005,
  /** relay: the guest could not be reached again in time. */
  unreachable: 4006,
  /** relay: the client's token is no longer valid. */
  revoked: 4007,
  /** relay: the client did not read (too much unsent). */
  tooSlow: 4008,
  /** relay: too many clients on this serial port. */
  full: 4009,
} as const;

export interface RelayStats {
  /** Clients connected now. */
  clients: number;
  attaches: number;
  reattaches: number;
  slowClientsDropped: number;
  inputDroppedNotHolder: number;
  messagesDroppedWhileSwitching: number;
  /** Standby connections made (a migration started), and the ones switched to. */
  standbys: number;
  standbySwitches: number;
  bytesToClients: number;
  bytesToAgents: number;
}

type State = "attach" | "connecting" | "handshaking" | "open" | "closed";

/** A connection to the agent a migrating guest goes to, made before the source lets go. */
interface Standby<T> {
  readonly url: string;
  state: "connecting" | "handshaking" | "open";
  pipe: Pipe | null;
  target: T | null;
  helloSent: boolean;
  /** What the standby agent sent after its hello (its session's start): held until the switch. */
  held: Buffer[];
  heldBytes: number;
}

/** The largest text message an agent may send the relay (a migration's destination). */
const MAX_AGENT_TEXT = 512;

class Link<T extends AgentTarget> {
  state: State = "attach";
  agent: Pipe | null = null;
  target: T | null = null;
  helloSent = false;
  wantsKeyboard = false;
  handshakeTimer: NodeJS.Timeout | null = null;
  standby: Standby<T> | null = null;
  /** Between the switch to a standby and the client's "switched": its input records are sealed for the source. */
  awaitingSwitchAck = false;
  /** Bumped on each agent connection, so late events of an old one are ignored. */
  epoch = 0;
  constructor(
    readonly viewer: Viewer,
    readonly client: Pipe,
    readonly room: Room<T>,
  ) {}
}

class Room<T extends AgentTarget> {
  readonly links = new Set<Link<T>>();
  holder: Link<T> | null = null;
  constructor(
    readonly guest: string,
    readonly device: string,
  ) {}
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The destination agent an agent's "moved" close names (its reason: "moved to <agent URL>";
 * the relay knows that URL already, so the agent tells it nothing new), or undefined.
 */
export function movedTo(code: number, reason: string): string | undefined {
  if (code !== CLOSE.moved) return undefined;
  const m = /^moved to (https?:\/\/\S{1,200})$/.exec(reason);
  return m?.[1];
}

export class ConsoleRelay<T extends AgentTarget> {
  private readonly rooms = new Map<string, Room<T>>();
  private nextViewer = 1;
  readonly stats: RelayStats = {
    clients: 0,
    attaches: 0,
    reattaches: 0,
    slowClientsDropped: 0,
    inputDroppedNotHolder: 0,
    messagesDroppedWhileSwitching: 0,
    standbys: 0,
    standbySwitches: 0,
    bytesToClients: 0,
    bytesToAgents: 0,
  };
  private readonly maxClientBuffer: number;
  private readonly reattachTimeoutMs: number;
  private readonly retryMs: number;
  private readonly movedRetryMs: number;
  private readonly movedSearchMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxViewers: number;

  constructor(
    private readonly deps: RelayDeps<T>,
    opts: RelayOptions = {},
  ) {
    this.maxClientBuffer = opts.maxClientBufferBytes ?? 1024 * 1024;
    this.reattachTimeoutMs = opts.reattachTimeoutMs ?? 60_000;
    this.retryMs = opts.retryMs ?? 250;
    this.movedRetryMs = opts.movedRetryMs ?? 15;
    this.movedSearchMs = opts.movedSearchMs ?? 3000;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxViewers = opts.maxViewers ?? 16;
  }

  /** The largest message a client may send (the transport should refuse larger ones itself). */
  static readonly maxClientMessage = Math.max(MAX_MESSAGE, MAX_TICKET + 512);

  /**
   * A client connected for `guest`'s serial port `device`. Returns the handlers the
   * transport calls with the client's messages and its close.
   */
  open(
    guest: string,
    device: string,
    who: Omit<Viewer, "id" | "key" | "session">,
    client: Pipe,
  ): { onMessage(data: Buffer, isBinary: boolean): void; onClose(): void } {
    const key = `${guest}\u0000${device}`;
    let room = this.rooms.get(key);
    if (!room) this.rooms.set(key, (room = new Room<T>(guest, device)));
    const link = new Link<T>({ ...who, id: this.nextViewer++, key: null, session: null }, client, room);
    if (room.links.size >= this.maxViewers) {
      client.close(CLOSE.full, `at most ${this.maxViewers} clients per serial port`);
      link.state = "closed";
      if (room.links.size === 0) this.rooms.delete(key);
      return { onMessage() {}, onClose() {} };
    }
    room.links.add(link);
    this.stats.clients++;
    this.log("client connected", link);
    return {
      onMessage: (data, isBinary) => this.fromClient(link, data, isBinary),
      onClose: () => this.close(link, null),
    };
  }

  /** Clients per serial port now (for tests and metrics). */
  viewers(guest: string, device: string): number {
    return this.rooms.get(`${guest}\u0000${device}`)?.links.size ?? 0;
  }

  private log(event: string, link: Link<T>, extra: Record<string, string | number | boolean> = {}): void {
    this.deps.log?.(event, {
      guest: link.room.guest,
      device: link.room.device,
      viewer: link.viewer.id,
      sub: link.viewer.sub,
      ...(link.target ? { hostVm: link.target.hostVm } : {}),
      ...extra,
    });
  }

  private toClient(link: Link<T>, m: RelayToClient | Buffer): void {
    if (link.state === "closed") return;
    const data = Buffer.isBuffer(m) ? m : JSON.stringify(m);
    if (link.client.bufferedAmount + data.length > this.maxClientBuffer) {
      this.stats.slowClientsDropped++;
      this.log("client too slow: disconnected", link, { unsent: link.client.bufferedAmount });
      this.close(link, {
        code: CLOSE.tooSlow,
        reason: `not reading: ${link.client.bufferedAmount} bytes unsent`,
      });
      return;
    }
    this.stats.bytesToClients += data.length;
    link.client.send(data);
  }

  private toAgent(link: Link<T>, data: Buffer): void {
    if (!link.agent) return;
    if (link.agent.bufferedAmount + data.length > this.maxClientBuffer) {
      this.log("agent not reading: client disconnected", link, { unsent: link.agent.bufferedAmount });
      this.close(link, { code: CLOSE.unreachable, reason: "the guest's agent is not reading" });
      return;
    }
    this.stats.bytesToAgents += data.length;
    link.agent.send(data);
  }

  private fromClient(link: Link<T>, data: Buffer, isBinary: boolean): void {
    if (link.state === "closed") return;
    if (!isBinary) {
      let m: ClientToRelay;
      try {
        m = JSON.parse(data.toString("utf8")) as ClientToRelay;
      } catch {
        this.close(link, { code: CLOSE.badClient, reason: "text messages must be JSON" });
        return;
      }
      this.control(link, m);
      return;
    }
    const { kind, type } = peek(data);
    if (kind === KIND.clientHello) {
      const sb = link.standby;
      if (link.state === "open" && sb?.state === "handshaking" && !sb.helloSent && sb.pipe) {
        sb.helloSent = true;
        this.stats.bytesToAgents += data.length;
        sb.pipe.send(data);
        return;
      }
      if (link.state !== "handshaking" || link.helloSent) {
        this.stats.messagesDroppedWhileSwitching++;
        return;
      }
      link.helloSent = true;
      this.toAgent(link, data);
      return;
    }
    if (kind === KIND.record && type === RECORD.input) {
      if (link.room.holder !== link) {
        this.stats.inputDroppedNotHolder++;
        this.toClient(link, { t: "not-holder" });
        return;
      }
      if (link.state !== "open" || link.awaitingSwitchAck) {
        // Sealed for an agent connection that is gone: the client sends them again.
        this.stats.messagesDroppedWhileSwitching++;
        return;
      }
      this.toAgent(link, data);
      return;
    }
    this.close(link, { code: CLOSE.badClient, reason: `unexpected message (kind ${kind}, type ${type})` });
  }

  private control(link: Link<T>, m: ClientToRelay): void {
    const room = link.room;
    if (m.t === "attach") {
      if (link.state !== "attach" || typeof m.key !== "string" || typeof m.session !== "string") {
        this.close(link, { code: CLOSE.badClient, reason: "attach once, with key and session" });
        return;
      }
      if (m.key.length > 128 || m.session.length > 64) {
        this.close(link, { code: CLOSE.badClient, reason: "attach: key or session too long" });
        return;
      }
      link.viewer.key = m.key;
      link.viewer.session = m.session;
      link.wantsKeyboard = m.keyboard !== false;
      if (link.wantsKeyboard && link.viewer.control && room.holder === null) room.holder = link;
      this.stats.attaches++;
      void this.attach(link, null);
      this.keyboardChanged(room);
    } else if (m.t === "take") {
      if (!link.viewer.control) {
        this.toClient(link, { t: "error", message: "this token may only watch" });
        return;
      }
      room.holder = link;
      this.log("keyboard taken", link);
      this.keyboardChanged(room);
    } else if (m.t === "release") {
      if (room.holder === link) room.holder = null;
      this.keyboardChanged(room);
    } else if (m.t === "switched") {
      link.awaitingSwitchAck = false;
    } else {
      this.close(link, { code: CLOSE.badClient, reason: "unknown text message" });
    }
  }

  private keyboardChanged(room: Room<T>): void {
    for (const l of room.links)
      if (l.state !== "attach")
        this.toClient(l, { t: "keyboard", holder: room.holder === l, viewers: room.links.size });
  }

  /** Finds the guest and connects to its agent (again, after a move: `why`). */
  private async attach(link: Link<T>, why: string | null, hint?: string): Promise<void> {
    const { guest, device } = link.room;
    link.state = "connecting";
    link.helloSent = false;
    const epoch = ++link.epoch;
    if (why !== null) {
      this.stats.reattaches++;
      this.toClient(link, { t: "reattaching", reason: why });
    }
    const started = Date.now();
    const deadline = started + this.reattachTimeoutMs;
    let last = "the guest runs nowhere";
    if (why !== null && !(await this.deps.stillAllowed(link.viewer))) {
      this.close(link, { code: CLOSE.revoked, reason: "the token is no longer valid" });
      return;
    }
    let checked = Date.now();
    let namedTarget: T | null = null;
    while (link.state === "connecting" && link.epoch === epoch) {
      // Checked again while looking (a long search must not outlive a revoked token).
      if (why !== null && Date.now() - checked > 1000) {
        checked = Date.now();
        if (!(await this.deps.stillAllowed(link.viewer))) {
          this.close(link, { code: CLOSE.revoked, reason: "the token is no longer valid" });
          return;
        }
      }
      // The destination a move named first (the guest starts there in a moment); if it does
      // not show up there (a move rolled back), every agent is searched.
      const there = hint !== undefined && Date.now() - started < this.movedSearchMs ? hint : undefined;
      try {
        // At the named agent its key is asked once; then only the connection is tried again
        // (the agent refuses it until the guest runs there).
        const target =
          there !== undefined
            ? (namedTarget ??= await this.deps.locate(guest, there))
            : await this.deps.locate(guest);
        if (target && link.state === "connecting") {
          const agent = await this.deps.connect(target, guest, device, {
            onMessage: (data, isBinary) => {
              if (link.epoch !== epoch || link.state === "closed") return;
              this.fromAgent(link, data, isBinary);
            },
            onClose: (code, reason) => this.agentClosed(link, epoch, code, reason),
          });
          if (link.state !== "connecting" || link.epoch !== epoch) {
            agent.close(1000, "client gone");
            return;
          }
          link.agent = agent;
          link.target = target;
          link.state = "handshaking";
          this.log(why === null ? "attached" : "reattached", link, {
            ...(why !== null ? { ms: Date.now() - started, atNamedAgent: there !== undefined } : {}),
          });
          link.handshakeTimer = setTimeout(() => {
            if (link.epoch === epoch && link.state === "handshaking")
              this.close(link, { code: CLOSE.badClient, reason: "no handshake in time" });
          }, this.handshakeTimeoutMs);
          this.toClient(link, {
            t: "agent",
            hostVm: target.hostVm,
            identity: target.identity.toString("base64url"),
            fingerprint: fingerprintOf(target.identity),
            ticket: this.deps.ticket(link.viewer, target, guest, device),
          });
          return;
        }
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        this.log("guest unreachable", link, { why: last });
        this.close(link, {
          code: CLOSE.unreachable,
          reason: `cannot reach the guest's console: ${last}`,
        });
        return;
      }
      await sleep(there !== undefined ? this.movedRetryMs : this.retryMs);
    }
  }

  /** A message from the client's current agent: records go on; text is a hint for the relay. */
  private fromAgent(link: Link<T>, data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      this.agentHint(link, data);
      return;
    }
    if (link.state === "handshaking" && peek(data).kind === KIND.agentHello) {
      link.state = "open";
      if (link.handshakeTimer) clearTimeout(link.handshakeTimer);
    }
    this.toClient(link, data);
  }

  /**
   * The source agent's hints (plaintext, nothing secret): "moving" to an agent (the guest's
   * migration started; a standby connection is made there) or "staying" (it failed).
   */
  private agentHint(link: Link<T>, data: Buffer): void {
    if (data.length > MAX_AGENT_TEXT) return;
    let m: { t?: unknown; to?: unknown };
    try {
      m = JSON.parse(data.toString("utf8")) as typeof m;
    } catch {
      return;
    }
    if (m.t === "moving" && typeof m.to === "string" && /^https?:\/\/\S{1,200}$/.test(m.to))
      void this.makeStandby(link, m.to);
    else if (m.t === "staying") this.dropStandby(link, "the guest stays");
  }

  /** Connects to the agent the guest is moving to, and lets the client handshake with it. */
  private async makeStandby(link: Link<T>, url: string): Promise<void> {
    if (link.standby) {
      if (link.standby.url === url && link.standby.state === "open") this.hintAgent(link, "standby-ready");
      return;
    }
    if (link.state !== "open") {
      this.hintAgent(link, "no-standby");
      return;
    }
    const { guest, device } = link.room;
    const sb: Standby<T> = {
      url,
      state: "connecting",
      pipe: null,
      target: null,
      helloSent: false,
      held: [],
      heldBytes: 0,
    };
    link.standby = sb;
    const current = () => link.standby === sb && link.state !== "closed";
    try {
      // As at a re-attach: a revoked token gets no ticket for another agent.
      if (!(await this.deps.stillAllowed(link.viewer))) throw new Error("the token is no longer valid");
      const target = current() ? await this.deps.locate(guest, url) : null;
      if (!target || !current()) throw new Error("the destination agent is not known");
      const pipe = await this.deps.connect(target, guest, device, {
        onMessage: (data, isBinary) => {
          if (link.state === "closed") return;
          if (link.agent === pipe) this.fromAgent(link, data, isBinary);
          else if (link.standby === sb && isBinary) this.fromStandby(link, sb, data);
        },
        onClose: (code, reason) => {
          if (link.agent === pipe) this.agentClosed(link, link.epoch, code, reason);
          else if (link.standby === sb) this.dropStandby(link, `the destination agent closed (${code})`);
        },
      });
      if (!current()) {
        pipe.close(1000, "not needed");
        return;
      }
      sb.pipe = pipe;
      sb.target = target;
      sb.state = "handshaking";
      this.stats.standbys++;
      this.log("standby", link, { standbyHostVm: target.hostVm });
      this.toClient(link, {
        t: "standby",
        hostVm: target.hostVm,
        identity: target.identity.toString("base64url"),
        fingerprint: fingerprintOf(target.identity),
        ticket: this.deps.ticket(link.viewer, target, guest, device),
      });
    } catch (e) {
      if (link.standby !== sb) return;
      link.standby = null;
      this.log("no standby", link, { why: (e as Error).message.slice(0, 120) });
      this.hintAgent(link, "no-standby");
    }
  }

  /** Tells the client's current agent how its standby went (plaintext: it only times the move). */
  private hintAgent(link: Link<T>, t: "standby-ready" | "no-standby"): void {
    if (link.state === "open") link.agent?.send(JSON.stringify({ t }));
  }

  /** The standby agent's messages: its hello goes to the client now, the rest waits for the switch. */
  private fromStandby(link: Link<T>, sb: Standby<T>, data: Buffer): void {
    if (sb.state === "handshaking" && peek(data).kind === KIND.agentHello) {
      sb.state = "open";
      this.toClient(link, data);
      // The source may let the guest go now.
      this.hintAgent(link, "standby-ready");
      return;
    }
    if (sb.state !== "open") return;
    sb.held.push(data);
    sb.heldBytes += data.length;
    if (sb.heldBytes > this.maxClientBuffer) {
      this.dropStandby(link, "the standby agent sent too much before the switch");
      return;
    }
    // The standby's session started: the guest runs at the destination, so the source is done
    // (its guest stopped before this one could run). Its last records need not be waited for:
    // the standby replays from the offset the client gave when keying it (the same stream), and
    // the client drops bytes it has by offset. Switch now rather than at the source's "moved".
    if (link.state === "open") {
      const source = link.agent;
      this.switchToStandby(link, sb);
      source?.close(1000, "switched to the destination");
    }
  }

  private dropStandby(link: Link<T>, why: string): void {
    const sb = link.standby;
    if (!sb) return;
    link.standby = null;
    sb.pipe?.close(1000, "standby not needed");
    this.log("standby dropped", link, { why });
    this.hintAgent(link, "no-standby");
    if (sb.state !== "connecting") this.toClient(link, { t: "standby-dropped" });
  }

  /**
   * The source let go towards the standby's agent, or the standby's session started: it
   * becomes the client's agent connection (same client WebSocket), and what it sent meanwhile
   * follows "switched".
   */
  private switchToStandby(link: Link<T>, sb: Standby<T>): void {
    link.standby = null;
    const epoch = ++link.epoch;
    link.agent = sb.pipe;
    link.target = sb.target;
    link.helloSent = sb.helloSent;
    link.state = sb.state === "open" ? "open" : "handshaking";
    link.awaitingSwitchAck = true;
    this.stats.reattaches++;
    this.stats.standbySwitches++;
    // A re-attach at the agent the move named, made before the source let go.
    this.log("reattached", link, { atNamedAgent: true, viaStandby: true });
    this.toClient(link, { t: "switched" });
    for (const m of sb.held) this.toClient(link, m);
    if (link.handshakeTimer) clearTimeout(link.handshakeTimer);
    if (link.state === "handshaking")
      link.handshakeTimer = setTimeout(() => {
        if (link.epoch === epoch && link.state === "handshaking")
          this.close(link, { code: CLOSE.badClient, reason: "no handshake in time" });
      }, this.handshakeTimeoutMs);
  }

  private agentClosed(link: Link<T>, epoch: number, code: number, reason: string): void {
    if (link.epoch !== epoch || link.state === "closed") return;
    link.agent = null;
    if (link.handshakeTimer) clearTimeout(link.handshakeTimer);
    this.log("agent connection ended", link, { code });
    const sb = link.standby;
    if (sb && code === CLOSE.moved && movedTo(code, reason) === sb.url && sb.state !== "connecting") {
      this.switchToStandby(link, sb);
      return;
    }
    this.dropStandby(link, "the source ended otherwise");
    if (code === CLOSE.ended || code === CLOSE.refused) {
      this.toClient(link, { t: "error", message: reason || "the console ended" });
      this.close(link, { code, reason: reason || "the console ended" });
      return;
    }
    void this.attach(
      link,
      code === CLOSE.moved
        ? "the guest moved"
        : code === CLOSE.restarting
          ? "its agent restarts"
          : `its agent connection ended (${code})`,
      movedTo(code, reason),
    );
  }

  private close(link: Link<T>, how: { code: number; reason: string } | null): void {
    if (link.state === "closed") return;
    link.state = "closed";
    link.epoch++;
    if (link.handshakeTimer) clearTimeout(link.handshakeTimer);
    link.standby?.pipe?.close(1000, "client gone");
    link.standby = null;
    link.agent?.close(1000, "client gone");
    link.agent = null;
    if (how) link.client.close(how.code, how.reason.slice(0, 120));
    const room = link.room;
    if (room.links.delete(link)) this.stats.clients--;
    this.log("client gone", link, how ? { code: how.code } : {});
    if (room.holder === link) {
      room.holder = null;
      this.keyboardChanged(room);
    }
    if (room.links.size === 0) this.rooms.delete(`${room.guest}\u0000${room.device}`);
  }

  /** Closes every client (shutdown). */
  closeAll(reason: string): void {
    for (const room of [...this.rooms.values()])
      for (const l of [...room.links]) this.close(l, { code: 1001, reason });
  }
}

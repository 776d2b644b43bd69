/**
 * A console client's session (pure: no I/O; the CLI, tests and later the dashboard give it
 * the messages and send what it returns). It lives as long as the user's console: across
 * every agent the guest moves to, it keeps
 *
 * - where the output stands: `nextOffset`, the first byte of the guest's serial stream not
 *   yet shown. Every (re)attach asks the agent to resume there, and output records are cut
 *   to what is new, so a byte is never shown twice; a record that starts past it is a gap
 *   (counted in `lostBytes`: beyond the scrollback, or the stream was reset);
 * - the keystrokes not yet acknowledged, with their input sequence numbers. The agent
 *   acknowledges a keystroke once it wrote it to the serial port (and remembered its seq
 *   beside the port's log, where the next agent finds it); after a move the unacknowledged
 *   ones are sent again under the new keys, and an agent drops a seq it delivered already,
 *   so each is delivered exactly once.
 *
 * The controller's relay speaks to the client in JSON text messages (RelayToClient); the
 * binary messages are the protocol's (protocol.ts), end to end with the agent.
 *
 * Browser-safe (WebCrypto through subtle.ts, Uint8Array, no node: imports): the CLI and the
 * dashboard run this same session. WebCrypto is asynchronous, so every call answers a
 * Promise<Step>; calls are processed one after another in the order they were made (a
 * record's sequence number is its place in that order), so a caller that sends each Step as
 * its promise resolves keeps the wire in order.
 */
import {
  type WebClientHandshake as ClientHandshakeT,
  generateWebSigningKey,
  randomBytes,
  WebClientHandshake,
  type WebSecureChannel,
  type WebSigningKey,
  webFingerprint,
} from "./subtle.ts";
import {
  ConsoleProtocolError,
  decodeAckBytes,
  decodeNoticeBytes,
  decodeOutputBytes,
  encodeInputBytes,
  fromBase64,
  KIND,
  MAX_RECORD_PLAINTEXT,
  type Notice,
  RECORD,
  toBase64,
} from "./wire.ts";

/** What a client sends the relay as text. */
export type ClientToRelay =
  /** First message: the client's signing key and session id (base64url), and whether it wants the keyboard. */
  | { t: "attach"; key: string; session: string; keyboard: boolean }
  /** Takes the keyboard from whoever holds it (explicit take-over). */
  | { t: "take" }
  /** Gives the keyboard up. */
  | { t: "release" }
  /**
   * The client took the standby channel (after the relay's "switched"): what it sends from
   * now on is sealed for the destination, so the relay stops dropping input records.
   */
  | { t: "switched" };

/** What the relay sends a client as text. */
export type RelayToClient =
  /**
   * The agent the guest runs at now: its identity key (base64url point) and fingerprint, and
   * the ticket for this client's key. The client answers with a fresh ClientHello.
   */
  | { t: "agent"; hostVm: string; identity: string; fingerprint: string; ticket: string }
  /** The guest is moving (or its agent went away): the relay looks for it and sends "agent" again. */
  | { t: "reattaching"; reason: string }
  /**
   * Made before broken: the guest is moving to this agent, which waits for it. Like "agent",
   * the client answers with a ClientHello (resuming at its offset) and keeps the agent's
   * answer as its next channel while the current one still carries the source's output.
   */
  | { t: "standby"; hostVm: string; identity: string; fingerprint: string; ticket: string }
  /**
   * The source let go (all its output forwarded): what follows comes from the standby agent.
   * The client switches to the standby channel (and answers "switched").
   */
  | { t: "switched" }
  /** The standby agent is gone (the guest stayed, or it refused): the current channel goes on. */
  | { t: "standby-dropped" }
  /** Whether this client holds the keyboard now, and how many watch. */
  | { t: "keyboard"; holder: boolean; viewers: number }
  /** Input this client sent while not holding the keyboard was dropped. */
  | { t: "not-holder" }
  /** The relay ends the console (the message says why). */
  | { t: "error"; message: string };

export type ClientEvent =
  | { kind: "output"; bytes: Uint8Array; offset: number }
  | { kind: "gap"; from: number; to: number }
  | { kind: "attached"; hostVm: string; fingerprint: string; control: boolean; replayFrom: number }
  | { kind: "notice"; notice: Notice }
  | { kind: "relay"; message: RelayToClient };

export interface Step {
  /** Binary messages to send to the relay (hello, records). */
  send: Uint8Array[];
  /** Text messages to send to the relay. */
  sendText: ClientToRelay[];
  events: ClientEvent[];
}
const step = (): Step => ({ send: [], sendText: [], events: [] });

export interface ClientSessionOptions {
  /** Whether to ask for the keyboard at once. */
  keyboard?: boolean;
  /** Pin the agents' identity keys: refuse any other (fingerprints). Empty: trust the controller's. */
  pinned?: readonly string[];
  /** Resume the output here instead of the recent tail. */
  resumeOffset?: number;
}

interface PendingHandshake {
  hs: ClientHandshakeT;
  identity: Uint8Array;
  hostVm: string;
  fp: string;
}

export class ConsoleClientSession {
  private signingKey: Promise<WebSigningKey> | null = null;
  readonly sessionId: Uint8Array = randomBytes(16);
  /** The first byte of the guest's serial stream not yet shown (null: nothing received yet). */
  nextOffset: number | null;
  /** Bytes the stream skipped (beyond the scrollback, or a reset stream). */
  lostBytes = 0;
  /** Keystrokes delivered by the agents (acknowledged). */
  ackedSeq = 0;
  private nextSeq = 1;
  private unacked: Array<{ seq: number; bytes: Uint8Array }> = [];
  private handshake: PendingHandshake | null = null;
  private channel: WebSecureChannel | null = null;
  /** A standby agent's handshake under way while the current channel carries on (made before broken). */
  private standby: PendingHandshake | null = null;
  /** The standby agent's channel, taken once the relay says "switched". */
  private next: { channel: WebSecureChannel; hostVm: string; fp: string } | null = null;
  /** Whether the agent lets this session type (its ticket allows it). */
  control = false;
  /** Keystrokes wait while the guest moves (the agent said "moving"). */
  private held = false;
  /** The highest seq sent on the current channel. */
  private sentUpTo = 0;
  hostVm: string | null = null;
  agentFingerprint: string | null = null;
  /** Whether this client holds the keyboard (the relay says; null until it did). */
  holder: boolean | null = null;
  /** Calls run one after another (WebCrypto is asynchronous; the wire is ordered). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ClientSessionOptions = {}) {
    this.nextOffset = opts.resumeOffset ?? null;
  }

  private serial(f: (s: Step) => Promise<void> | void): Promise<Step> {
    const run = this.queue.then(async () => {
      const s = step();
      await f(s);
      return s;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  /** A handshake with the agent the relay named (its key checked against the pinned ones). */
  private async handshakeWith(m: {
    hostVm: string;
    identity: string;
    ticket: string;
  }): Promise<PendingHandshake> {
    const identity = fromBase64(m.identity);
    const fp = await webFingerprint(identity);
    if (this.opts.pinned && this.opts.pinned.length > 0 && !this.opts.pinned.includes(fp))
      throw new ConsoleProtocolError(
        "bad-key",
        `the controller named agent key ${fp} for ${m.hostVm}, which is not one of the pinned keys`,
      );
    const hs = await WebClientHandshake.create({
      sessionId: this.sessionId,
      signing: await this.signing(),
      ticket: m.ticket,
      resume: this.nextOffset === null ? { from: "tail" } : { from: "offset", offset: this.nextOffset },
    });
    return { hs, identity, hostVm: m.hostVm, fp };
  }

  private signing(): Promise<WebSigningKey> {
    this.signingKey ??= generateWebSigningKey();
    return this.signingKey;
  }

  /** The first message to the relay (on every new connection to it: the session goes on). */
  start(): Promise<Step> {
    return this.serial(async (s) => {
      const key = await this.signing();
      this.channel = null;
      this.handshake = null;
      this.standby = null;
      this.next = null;
      this.held = false;
      s.sendText.push({
        t: "attach",
        key: toBase64(key.publicRaw),
        session: toBase64(this.sessionId),
        keyboard: this.opts.keyboard ?? true,
      });
    });
  }

  /** Keystrokes not yet acknowledged by an agent. */
  get pending(): number {
    return this.unacked.reduce((n, k) => n + k.bytes.length, 0);
  }

  get ready(): boolean {
    return this.channel !== null;
  }

  /** A text message from the relay. */
  onText(text: string): Promise<Step> {
    return this.serial(async (s) => {
      let m: RelayToClient;
      try {
        m = JSON.parse(text) as RelayToClient;
      } catch {
        throw new ConsoleProtocolError("bad-message", "the relay sent text that is not JSON");
      }
      s.events.push({ kind: "relay", message: m });
      if (m.t === "agent") {
        const pending = await this.handshakeWith(m);
        this.channel = null;
        this.standby = null;
        this.next = null;
        this.handshake = pending;
        s.send.push(pending.hs.hello);
      } else if (m.t === "standby") {
        // The current channel stays; the records after the relay's "switched" are the standby's.
        if (!this.channel) return;
        const pending = await this.handshakeWith(m);
        this.standby = pending;
        this.next = null;
        s.send.push(pending.hs.hello);
      } else if (m.t === "switched") {
        if (this.next) {
          this.channel = this.next.channel;
          this.hostVm = this.next.hostVm;
          this.agentFingerprint = this.next.fp;
          this.next = null;
        } else if (this.standby) {
          // Its answer is still on the way: it finishes as a handshake of its own.
          this.handshake = this.standby;
          this.standby = null;
          this.channel = null;
        } else throw new ConsoleProtocolError("bad-message", "switched without a standby agent");
        // Keystrokes go once the new agent said where it starts (its "start" notice).
        this.held = false;
        this.control = false;
        s.sendText.push({ t: "switched" });
      } else if (m.t === "standby-dropped") {
        this.standby = null;
        this.next = null;
      } else if (m.t === "keyboard") {
        this.holder = m.holder;
      } else if (m.t === "not-holder") {
        // The relay dropped what this client sent without the keyboard: never to be sent again.
        this.holder = false;
        this.unacked = this.unacked.filter((k) => k.seq > this.sentUpTo);
      } else if (m.t === "reattaching") {
        // Records sealed for the old agent are useless to the next one; unacked keys are resent.
        this.channel = null;
        this.handshake = null;
        this.standby = null;
        this.next = null;
      }
    });
  }

  /** A binary message from the relay (from the agent). */
  onBinary(msg: Uint8Array): Promise<Step> {
    return this.serial(async (s) => {
      if (msg[0] === KIND.agentHello && !this.handshake && this.standby) {
        const { hs, identity, hostVm, fp } = this.standby;
        this.next = { channel: await hs.finish(msg, identity), hostVm, fp };
        this.standby = null;
        return;
      }
      if (msg[0] === KIND.agentHello) {
        if (!this.handshake) throw new ConsoleProtocolError("bad-message", "an agent hello nobody asked for");
        const { hs, identity, hostVm, fp } = this.handshake;
        this.channel = await hs.finish(msg, identity);
        this.handshake = null;
        this.hostVm = hostVm;
        this.agentFingerprint = fp;
        this.held = false;
        // Keystrokes go once the agent said where it starts and whether this session may type.
        this.control = false;
        return;
      }
      if (!this.channel) throw new ConsoleProtocolError("bad-message", "a record before the handshake");
      const { type, plaintext } = await this.channel.open(msg);
      if (type === RECORD.output) {
        const { offset, bytes } = decodeOutputBytes(plaintext);
        this.output(s, offset, bytes);
      } else if (type === RECORD.ack) {
        this.acked(decodeAckBytes(plaintext));
      } else {
        const notice = decodeNoticeBytes(plaintext);
        s.events.push({ kind: "notice", notice });
        if (notice.kind === "start") {
          this.control = notice.control;
          if (notice.reset) this.nextOffset = notice.from;
          if (this.nextOffset !== null && notice.from > this.nextOffset) {
            this.lostBytes += notice.from - this.nextOffset;
            s.events.push({ kind: "gap", from: this.nextOffset, to: notice.from });
          }
          if (this.nextOffset === null || notice.from > this.nextOffset) this.nextOffset = notice.from;
          s.events.push({
            kind: "attached",
            hostVm: this.hostVm ?? "",
            fingerprint: this.agentFingerprint ?? "",
            control: notice.control,
            replayFrom: notice.from,
          });
          // Whatever the previous agent did not acknowledge goes to this one (it drops seqs it
          // knows were delivered).
          this.sentUpTo = this.ackedSeq;
          await this.flush(s);
        } else if (notice.kind === "moving") this.held = true;
        else if (notice.kind === "staying") {
          this.held = false;
          await this.flush(s);
        }
      }
    });
  }

  private output(s: Step, offset: number, bytes: Uint8Array): void {
    const next = this.nextOffset ?? offset;
    if (offset > next) {
      this.lostBytes += offset - next;
      s.events.push({ kind: "gap", from: next, to: offset });
    }
    const skip = Math.max(0, next - offset);
    if (skip < bytes.length) {
      const fresh = bytes.subarray(skip);
      s.events.push({ kind: "output", bytes: fresh, offset: offset + skip });
      this.nextOffset = offset + bytes.length;
    } else if (this.nextOffset === null) this.nextOffset = offset + bytes.length;
  }

  /** Sends the unacknowledged keystrokes this channel has not carried yet. */
  private async flush(s: Step): Promise<void> {
    if (!this.channel || !this.control || this.held) return;
    for (const k of this.unacked) if (k.seq > this.sentUpTo) s.send.push(await this.seal(k.seq, k.bytes));
  }

  private acked(seq: number): void {
    if (seq > this.ackedSeq) this.ackedSeq = seq;
    this.unacked = this.unacked.filter((k) => k.seq > this.ackedSeq);
  }

  /** Keystrokes: numbered, kept until acknowledged, sent at once if the channel is up (dropped while another client holds the keyboard). */
  type(bytes: Uint8Array): Promise<Step> {
    return this.serial(async (s) => {
      if (this.holder === false) {
        // Watching: keystrokes are not sent (take the keyboard first).
        s.events.push({ kind: "relay", message: { t: "not-holder" } });
        return;
      }
      for (let at = 0; at < bytes.length; at += MAX_RECORD_PLAINTEXT - 8) {
        this.unacked.push({ seq: this.nextSeq++, bytes: bytes.slice(at, at + MAX_RECORD_PLAINTEXT - 8) });
      }
      await this.flush(s);
    });
  }

  private seal(seq: number, bytes: Uint8Array): Promise<Uint8Array> {
    this.sentUpTo = Math.max(this.sentUpTo, seq);
    return this.channel!.seal(RECORD.input, encodeInputBytes(seq, bytes));
  }
}

// A small typed QMP client over a unix socket.
//
// Protocol (docs/interop/qmp-spec): newline-delimited JSON. The server greets with
// {"QMP":...}; we answer qmp_capabilities; then every {"execute","arguments","id"} gets exactly
// one {"return"|"error","id"} with the same id, and {"event"} messages may arrive at any
// time in between. Everything that can go wrong surfaces as one of the typed errors below,
// never as an uncaught exception: QEMU can die mid-command, and a corrupt or hostile peer
// can send anything.
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { cprMigrateArgs } from "./cpr.ts";
import type {
  MigrationCapabilities,
  MigrationInfo,
  MigrationParameters,
  QmpEvent,
  QmpGreeting,
  StatusInfo,
} from "./qmp-types.ts";

/** QEMU answered a command with {"error": {"class", "desc"}}. */
export class QmpError extends Error {
  override name = "QmpError";
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
    readonly arguments_?: unknown,
  ) {
    super(`QMP command ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** No answer within the command's time bound (the connection stays usable). */
export class QmpTimeoutError extends Error {
  override name = "QmpTimeoutError";
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
    where: string,
  ) {
    super(`QMP command ${command} got no answer from ${where} within ${timeoutMs} ms`);
  }
}

/** The connection is gone (QEMU quit or died, or we closed it); lists what was in flight. */
export class QmpClosedError extends Error {
  override name = "QmpClosedError";
  constructor(
    readonly reason: string,
    readonly pending: readonly string[],
  ) {
    super(
      pending.length > 0
        ? `QMP connection closed (${reason}) with ${pending.length} command(s) pending: ${pending.join(", ")}`
        : `QMP connection closed (${reason})`,
    );
  }
}

/** The peer sent something that is not QMP. The connection is closed: the stream can't be trusted. */
export class QmpProtocolError extends Error {
  override name = "QmpProtocolError";
  constructor(
    message: string,
    readonly line?: string,
  ) {
    super(message);
  }
}

export interface QmpConnectOptions {
  /** Bound for connecting, the greeting and qmp_capabilities together. Default 10 s. */
  timeoutMs?: number;
  /** Default bound for each command. Default 30 s. */
  commandTimeoutMs?: number;
  /** Name used in error messages, e.g. the guest id. Default: the socket path. */
  label?: string;
  /** Lines longer than this are a protocol error. Default 32 MiB (query-qmp-schema is ~200 KiB). */
  maxLineBytes?: number;
}

export interface CommandOptions {
  timeoutMs?: number;
}

interface Pending {
  id: number;
  command: string;
  args: unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const RECENT_EVENTS = 200;

function preview(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}...(${line.length} chars)` : line;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Emits "event" (QmpEvent) for every asynchronous event, and "close" (QmpClosedError) once.
 * "error" is never emitted, so an unhandled error event cannot crash the process.
 */
export class QmpClient extends EventEmitter {
  readonly greeting: QmpGreeting;
  private readonly pending = new Map<number, Pending>();
  private readonly recent: QmpEvent[] = [];
  private nextId = 1;
  private buf = "";
  private closeError: QmpClosedError | null = null;
  /** Set by quit(): the socket closing after it is the expected outcome. */
  private quitting = false;
  readonly closed: Promise<QmpClosedError>;
  private resolveClosed!: (e: QmpClosedError) => void;

  private constructor(
    private readonly sock: Socket,
    greeting: QmpGreeting,
    leftover: string,
    private readonly label: string,
    private readonly commandTimeoutMs: number,
    private readonly maxLineBytes: number,
  ) {
    super();
    this.greeting = greeting;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    sock.on("data", (chunk: Buffer) => this.onData(chunk.toString("utf8")));
    sock.on("error", (e) => this.shutdown(`socket error: ${e.message}`));
    sock.on("close", () => this.shutdown(this.quitting ? "QEMU quit" : "QEMU closed the socket"));
    if (leftover) this.onData(leftover);
    sock.resume();
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const label = opts.label ?? path;
    const maxLineBytes = opts.maxLineBytes ?? 32 * 1024 * 1024;
    const { sock, greeting, leftover } = await readGreeting(path, timeoutMs, label, maxLineBytes);
    const client = new QmpClient(
      sock,
      greeting,
      leftover,
      label,
      opts.commandTimeoutMs ?? 30_000,
      maxLineBytes,
    );
    try {
      await client.execute("qmp_capabilities", undefined, { timeoutMs });
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  get isClosed(): boolean {
    return this.closeError !== null;
  }

  /** Sends one command and resolves with its "return" value. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: CommandOptions = {},
  ): Promise<T> {
    if (this.closeError) return Promise.reject(new QmpClosedError(this.closeError.reason, [command]));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late answer for this id is dropped in onMessage (unknown id).
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs, this.label));
      }, timeoutMs);
      this.pending.set(id, { id, command, args, resolve: resolve as (v: unknown) => void, reject, timer });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) msg.arguments = args;
      this.sock.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /**
   * Resolves with the first event named `name` (and accepted by `predicate`) that arrives
   * after this call, or, with `includeRecent`, one of the last few hundred already received.
   */
  waitForEvent(
    name: string,
    predicate: (e: QmpEvent) => boolean = () => true,
    timeoutMs = 30_000,
    opts: { includeRecent?: boolean } = {},
  ): Promise<QmpEvent> {
    if (opts.includeRecent) {
      const hit = this.recent.find((e) => e.event === name && predicate(e));
      if (hit) return Promise.resolve(hit);
    }
    if (this.closeError)
      return Promise.reject(new QmpClosedError(this.closeError.reason, [`wait for event ${name}`]));
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name) return;
        let ok = false;
        try {
          ok = predicate(e);
        } catch (err) {
          done();
          reject(err as Error);
          return;
        }
        if (!ok) return;
        done();
        resolve(e);
      };
      const onClose = (err: QmpClosedError) => {
        done();
        reject(new QmpClosedError(err.reason, [`wait for event ${name}`]));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no QMP event ${name} from ${this.label} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      this.on("event", onEvent);
      this.on("close", onClose);
    });
  }

  /** The most recent events, oldest first (bounded). */
  recentEvents(): readonly QmpEvent[] {
    return this.recent;
  }

  close(): void {
    this.sock.destroy();
    this.shutdown("closed by client");
  }

  // ---- typed wrappers ------------------------------------------------------------------

  queryStatus(opts?: CommandOptions): Promise<StatusInfo> {
    return this.execute<StatusInfo>("query-status", undefined, opts);
  }

  async stop(opts?: CommandOptions): Promise<void> {
    await this.execute("stop", undefined, opts);
  }

  async cont(opts?: CommandOptions): Promise<void> {
    await this.execute("cont", undefined, opts);
  }

  /** Starts an outgoing migration; returns as soon as QEMU accepted it (it runs in background). */
  async migrate(uri: string, opts?: CommandOptions & { resume?: boolean }): Promise<void> {
    const args: Record<string, unknown> = { uri };
    if (opts?.resume) args.resume = true;
    await this.execute("migrate", args, opts);
  }

  /**
   * Starts a cpr-transfer (QEMU >= 10, `mode` set to cpr-transfer first) to a destination
   * listening at these unix: URIs (cpr.ts); returns once QEMU accepted it.
   */
  async migrateCpr(mainUri: string, cprUri: string, opts?: CommandOptions): Promise<void> {
    await this.execute("migrate", cprMigrateArgs(mainUri, cprUri), opts);
  }

  /** On a QEMU started with `-incoming defer`: starts listening on `uri`. */
  async migrateIncoming(uri: string, opts?: CommandOptions): Promise<void> {
    await this.execute("migrate-incoming", { uri }, opts);
  }

  async migrateCancel(opts?: CommandOptions): Promise<void> {
    await this.execute("migrate_cancel", undefined, opts);
  }

  /** Releases a source paused in `pre-switchover` (pause-before-switchover capability). */
  async migrateContinue(state: "pre-switchover" = "pre-switchover", opts?: CommandOptions): Promise<void> {
    await this.execute("migrate-continue", { state }, opts);
  }

  async migrateSetCapabilities(caps: MigrationCapabilities, opts?: CommandOptions): Promise<void> {
    const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state: !!state }));
    if (capabilities.length === 0) return;
    await this.execute("migrate-set-capabilities", { capabilities }, opts);
  }

  async migrateSetParameters(params: MigrationParameters, opts?: CommandOptions): Promise<void> {
    if (Object.keys(params).length === 0) return;
    await this.execute("migrate-set-parameters", params as Record<string, unknown>, opts);
  }

  queryMigrate(opts?: CommandOptions): Promise<MigrationInfo> {
    return this.execute<MigrationInfo>("query-migrate", undefined, opts);
  }

  async migrateStartPostcopy(opts?: CommandOptions): Promise<void> {
    await this.execute("migrate-start-postcopy", undefined, opts);
  }

  /** Asks QEMU to exit. The socket closing afterwards is expected and not an error. */
  async quit(opts?: CommandOptions): Promise<void> {
    this.quitting = true;
    try {
      await this.execute("quit", undefined, opts);
    } catch (e) {
      // QEMU may close the socket before our read of its {"return":{}}: that is success.
      if (!(e instanceof QmpClosedError)) throw e;
    }
  }

  // ---- wire handling ---------------------------------------------------------------------

  private onData(text: string): void {
    this.buf += text;
    let nl = this.buf.indexOf("\n");
    while (nl >= 0 && !this.closeError) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line !== "") this.onLine(line);
      nl = this.buf.indexOf("\n");
    }
    if (this.buf.length > this.maxLineBytes) {
      this.fail(new QmpProtocolError(`QMP line from ${this.label} exceeds ${this.maxLineBytes} bytes`));
    }
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.fail(new QmpProtocolError(`malformed JSON from QMP ${this.label}: ${preview(line)}`, line));
      return;
    }
    if (!isObject(msg)) {
      this.fail(
        new QmpProtocolError(`QMP message from ${this.label} is not an object: ${preview(line)}`, line),
      );
      return;
    }
    if (typeof msg.event === "string") {
      const ev: QmpEvent = {
        event: msg.event,
        data: isObject(msg.data) ? msg.data : undefined,
        timestamp: msg.timestamp as QmpEvent["timestamp"],
      };
      this.recent.push(ev);
      if (this.recent.length > RECENT_EVENTS) this.recent.shift();
      this.emit("event", ev);
      return;
    }
    if (!("return" in msg) && !("error" in msg)) {
      this.fail(new QmpProtocolError(`unexpected QMP message from ${this.label}: ${preview(line)}`, line));
      return;
    }
    const p = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
    if (!p) return; // answer to a command that already timed out: nobody waits for it
    this.pending.delete(p.id);
    clearTimeout(p.timer);
    if ("error" in msg) {
      const err = isObject(msg.error) ? msg.error : {};
      const cls = typeof err.class === "string" ? err.class : "UnknownError";
      const desc = typeof err.desc === "string" ? err.desc : preview(JSON.stringify(msg.error ?? null));
      p.reject(new QmpError(p.command, cls, desc, p.args));
    } else {
      p.resolve(msg.return);
    }
  }

  /** Protocol violation: reject everything in flight with the cause, then close. */
  private fail(err: QmpProtocolError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new QmpProtocolError(`${err.message} (while waiting for ${p.command})`, err.line));
    }
    this.pending.clear();
    this.sock.destroy();
    this.shutdown(`protocol error: ${err.message}`);
  }

  private shutdown(reason: string): void {
    if (this.closeError) return;
    const names = [...this.pending.values()].map((p) => `${p.command}(#${p.id})`);
    const err = new QmpClosedError(reason, names);
    this.closeError = err;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      // quit's own answer may be lost in the close: that is its success, handled in quit().
      p.reject(new QmpClosedError(`${reason} while waiting for ${p.command}`, names));
    }
    this.pending.clear();
    this.emit("close", err);
    this.resolveClosed(err);
  }
}

/** Connects and reads the greeting line, keeping whatever followed it in the same chunk. */
function readGreeting(
  path: string,
  timeoutMs: number,
  label: string,
  maxLineBytes: number,
): Promise<{ sock: Socket; greeting: QmpGreeting; leftover: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = "";
    const finish = (err: Error | null, greeting?: QmpGreeting, leftover = "") => {
      clearTimeout(timer);
      // Hold further data until the client has attached its own listener.
      sock.pause();
      sock.off("data", onData);
      sock.off("error", onError);
      sock.off("close", onClose);
      if (err) {
        sock.destroy();
        reject(err);
      } else {
        resolve({ sock, greeting: greeting!, leftover });
      }
    };
    const timer = setTimeout(
      () => finish(new QmpTimeoutError("(greeting)", timeoutMs, `${label} at ${path}`)),
      timeoutMs,
    );
    const onError = (e: Error) =>
      finish(new Error(`cannot connect to QMP socket ${path} (${label}): ${e.message}`));
    const onClose = () => finish(new QmpClosedError(`QEMU closed ${path} before greeting`, []));
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) {
        if (buf.length > maxLineBytes) finish(new QmpProtocolError(`QMP greeting from ${label} too long`));
        return;
      }
      const line = buf.slice(0, nl).trim();
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        finish(new QmpProtocolError(`malformed QMP greeting from ${label}: ${preview(line)}`, line));
        return;
      }
      if (!isObject(msg) || !isObject(msg.QMP)) {
        finish(new QmpProtocolError(`expected a QMP greeting from ${label}, got: ${preview(line)}`, line));
        return;
      }
      finish(null, msg as unknown as QmpGreeting, buf.slice(nl + 1));
    };
    sock.on("data", onData);
    sock.on("error", onError);
    sock.on("close", onClose);
  });
}

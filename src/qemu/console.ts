// Client for a guest's serial console (QEMU chardev unix socket server).
//
// The guest prints asynchronous records on the same console as the shell (heartbeats,
// workload reports). Each is written with a single write(2), so even when one lands in the
// middle of a command's output it is a contiguous "NESTCLOUD-XXX ...\r\n" run of bytes: run()
// cuts such records out of the output. Markers around a command are produced by the shell
// itself (echo __NC""S_<id> prints __NCS_<id>), so the terminal's echo of the typed command
// never matches a marker.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";

export class ConsoleTimeoutError extends Error {
  override name = "ConsoleTimeoutError";
  constructor(
    message: string,
    readonly captured: string,
  ) {
    super(message);
  }
}

export class ConsoleClosedError extends Error {
  override name = "ConsoleClosedError";
}

export interface ConsoleOptions {
  label?: string;
  /** Bound for connecting. Default 5 s. */
  timeoutMs?: number;
  /** Lines kept for waitForLine({includeHistory}). Default 2000. */
  historyLines?: number;
  /** Records cut out of run() output. Default: NESTCLOUD-HB/-VERIFY/-DIRTY/-WARN lines. */
  asyncRecord?: RegExp;
}

export interface RunResult {
  output: string;
  exitCode: number;
}

export interface LineMatch {
  line: string;
  match: RegExpExecArray;
}

const DEFAULT_ASYNC_RECORD = /NESTCLOUD-(?:HB|VERIFY|DIRTY|WARN)\b[^\n]*\n/g;
// CSI sequences (colors, cursor queries from the line editor) and the reset "ESC c".
// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes are control characters
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78]/g;

export class SerialConsole extends EventEmitter {
  private readonly history: string[] = [];
  private partial = "";
  /** Raw text since the current run() typed its command. */
  private capture: string | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closedReason: string | null = null;
  private readonly asyncRecord: RegExp;

  private constructor(
    private readonly sock: Socket,
    private readonly label: string,
    private readonly historyLines: number,
    asyncRecord: RegExp,
  ) {
    super();
    this.asyncRecord = new RegExp(
      asyncRecord.source,
      asyncRecord.flags.includes("g") ? asyncRecord.flags : `${asyncRecord.flags}g`,
    );
    sock.on("data", (b: Buffer) => this.onData(b.toString("latin1")));
    sock.on("error", (e) => this.onClose(`socket error: ${e.message}`));
    sock.on("close", () => this.onClose("console socket closed"));
  }

  static connect(path: string, opts: ConsoleOptions = {}): Promise<SerialConsole> {
    const label = opts.label ?? path;
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(
          new ConsoleTimeoutError(`cannot connect to serial console ${label} within ${timeoutMs} ms`, ""),
        );
      }, timeoutMs);
      sock.once("error", (e) => {
        clearTimeout(timer);
        reject(new ConsoleClosedError(`cannot connect to serial console ${label} (${path}): ${e.message}`));
      });
      sock.once("connect", () => {
        clearTimeout(timer);
        sock.removeAllListeners("error");
        resolve(
          new SerialConsole(sock, label, opts.historyLines ?? 2000, opts.asyncRecord ?? DEFAULT_ASYNC_RECORD),
        );
      });
    });
  }

  get isClosed(): boolean {
    return this.closedReason !== null;
  }

  /** Complete lines seen so far (bounded), escapes and carriage returns removed. */
  lines(): readonly string[] {
    return this.history;
  }

  write(text: string): void {
    if (this.closedReason)
      throw new ConsoleClosedError(`serial console ${this.label} is closed: ${this.closedReason}`);
    this.sock.write(text, "latin1");
  }

  close(): void {
    this.sock.destroy();
    this.onClose("closed by client");
  }

  /**
   * Resolves with the first complete line matching `re` that arrives after the call (or,
   * with includeHistory, that is still in the history).
   */
  waitForLine(re: RegExp, timeoutMs: number, opts: { includeHistory?: boolean } = {}): Promise<LineMatch> {
    const test = (line: string): LineMatch | null => {
      re.lastIndex = 0;
      const m = re.exec(line);
      return m ? { line, match: m } : null;
    };
    if (opts.includeHistory) {
      for (const l of this.history) {
        const hit = test(l);
        if (hit) return Promise.resolve(hit);
      }
    }
    if (this.closedReason) {
      return Promise.reject(
        new ConsoleClosedError(`serial console ${this.label} is closed: ${this.closedReason}`),
      );
    }
    return new Promise((resolve, reject) => {
      const onLine = (line: string) => {
        const hit = test(line);
        if (!hit) return;
        done();
        resolve(hit);
      };
      const onClosed = (reason: string) => {
        done();
        reject(
          new ConsoleClosedError(`serial console ${this.label} closed while waiting for ${re}: ${reason}`),
        );
      };
      const timer = setTimeout(() => {
        done();
        const tail = this.history.slice(-5).join(" | ");
        reject(
          new ConsoleTimeoutError(
            `no line matching ${re} on ${this.label} within ${timeoutMs} ms; last lines: ${tail}`,
            tail,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off("line", onLine);
        this.off("closed", onClosed);
      };
      this.on("line", onLine);
      this.on("closed", onClosed);
    });
  }

  /**
   * Types `command` into the guest shell and resolves with its output and exit status.
   * Commands are serialized: one runs at a time, so typed input never lands in another
   * command's output. On timeout, Ctrl-C is sent to get the shell back.
   */
  run(command: string, timeoutMs = 10_000): Promise<RunResult> {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters
    if (/[\x00-\x1f\x7f]/.test(command)) {
      return Promise.reject(new Error("console command must be one line without control characters"));
    }
    const next = this.queue.then(() => this.runOne(command, timeoutMs));
    this.queue = next.catch(() => {});
    return next;
  }

  private runOne(command: string, timeoutMs: number): Promise<RunResult> {
    const id = randomBytes(6).toString("hex");
    const start = `__NCS_${id}`;
    const endRe = new RegExp(`__NCE_${id} (\\d+)`);
    return new Promise((resolve, reject) => {
      const check = () => {
        const text = (this.capture ?? "").replace(ANSI, "");
        const s = text.indexOf(start);
        if (s < 0) return;
        const afterStart = text.indexOf("\n", s);
        if (afterStart < 0) return;
        const body = text.slice(afterStart + 1);
        const m = endRe.exec(body);
        if (!m) return;
        // The end marker ends the line where it appears: if output lacked a final newline,
        // the marker shares its line and what precedes it is output too.
        const output = body.slice(0, m.index).replace(this.asyncRecord, "").replace(/\r/g, "");
        done();
        resolve({ output: output.replace(/\n$/, ""), exitCode: Number(m[1]) });
      };
      const onClosed = (reason: string) => {
        done();
        reject(
          new ConsoleClosedError(
            `serial console ${this.label} closed while running \`${command}\`: ${reason}`,
          ),
        );
      };
      const timer = setTimeout(() => {
        const captured = this.capture ?? "";
        done();
        try {
          this.write("\x03");
        } catch {
          // closed: nothing to interrupt
        }
        reject(
          new ConsoleTimeoutError(
            `\`${command}\` on ${this.label} did not finish within ${timeoutMs} ms`,
            captured.replace(/\r/g, ""),
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.capture = null;
        this.off("data", check);
        this.off("closed", onClosed);
      };
      if (this.closedReason) {
        done();
        reject(new ConsoleClosedError(`serial console ${this.label} is closed: ${this.closedReason}`));
        return;
      }
      this.capture = "";
      this.on("data", check);
      this.on("closed", onClosed);
      this.write(`echo __NC""S_${id}; ${command}; echo __NC""E_${id} $?\n`);
    });
  }

  private onData(text: string): void {
    // Escapes are removed per complete line (and at match time for run()): a slow UART
    // delivers an escape sequence split over several chunks.
    if (this.capture !== null) this.capture += text;
    this.partial += text;
    let nl = this.partial.indexOf("\n");
    while (nl >= 0) {
      const line = this.partial.slice(0, nl).replace(ANSI, "").replace(/\r/g, "");
      this.partial = this.partial.slice(nl + 1);
      this.history.push(line);
      if (this.history.length > this.historyLines) this.history.shift();
      this.emit("line", line);
      nl = this.partial.indexOf("\n");
    }
    // A shell prompt never ends in a newline; bound the partial line anyway.
    if (this.partial.length > 64 * 1024) this.partial = this.partial.slice(-64 * 1024);
    this.emit("data");
  }

  private onClose(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.emit("closed", reason);
  }
}

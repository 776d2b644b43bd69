/**
 * `nestcloud console <vm>`: the guest's console in this terminal, through the controller
 * (GET /api/vms/:id/console), end to end encrypted with the agent that holds the guest's
 * serial port (src/console). The terminal is raw while attached; keystrokes go to the guest.
 *
 * Escape: Ctrl-] (0x1d) then
 *   q   detach (the guest and other viewers go on)
 *   t   take the keyboard (another viewer holds it)
 *   r   release the keyboard
 *   ?   this help
 *   Ctrl-]  a literal Ctrl-]
 *
 * Status lines (attached where, the agent's key fingerprint, moves, the keyboard) go to
 * stderr. A dropped link to the controller is re-established with the same session (output
 * resumes at its byte offset, unacknowledged keystrokes are sent again) for up to 30 s.
 * Without a terminal on stdin (a pipe), input is read as it comes and detaches at its end.
 */
import WebSocket from "ws";
import { CLOSE, type ClientEvent, ConsoleClientSession, type Step } from "../console/index.ts";
import { type ClientOptions, target } from "./client.ts";
import { UsageError } from "./usage.ts";

export interface ConsoleOptions extends ClientOptions {
  port?: string;
  /** Watch only: do not ask for the keyboard. */
  watch?: boolean;
  /** Agent key fingerprints to accept (SHA256:...); any other is refused. */
  pin?: string[];
  /** Print status lines (default: on a terminal). */
  quiet?: boolean;
}

const ESC = 0x1d;
const RETRY_MS = 30_000;
/** Close codes after which reconnecting cannot help. */
const FINAL = new Set<number>([
  CLOSE.refused,
  CLOSE.ended,
  CLOSE.badClient,
  CLOSE.unreachable,
  CLOSE.revoked,
  CLOSE.full,
]);

export async function runConsole(id: string, o: ConsoleOptions): Promise<number> {
  const { url, token } = target(o);
  const session = new ConsoleClientSession({ keyboard: !o.watch, pinned: o.pin ?? [] });
  const tty = process.stdin.isTTY === true;
  const say = (m: string) => {
    if (!o.quiet) process.stderr.write(`${tty ? "\r\n" : ""}[nestcloud] ${m}${tty ? "\r\n" : "\n"}`);
  };
  const wsUrl = `${url.replace(/^http/, "ws")}/api/vms/${encodeURIComponent(id)}/console${o.port ? `?port=${encodeURIComponent(o.port)}` : ""}`;

  let ws: WebSocket | null = null;
  let detached = false;
  let escaped = false;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (finish = r));

  const apply = (s: Step) => {
    for (const e of s.events) event(e);
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const t of s.sendText) ws.send(JSON.stringify(t));
    for (const b of s.send) ws.send(b);
  };
  // The session answers in call order (its WebCrypto work is asynchronous): sending each
  // step as it resolves keeps the wire in order.
  const send = (p: Promise<Step>) =>
    p.then(apply, (e: Error) => {
      say(`console error: ${e.message}`);
      ws?.close(1000, "client error");
      finish(1);
    });
  const event = (e: ClientEvent) => {
    if (e.kind === "output") process.stdout.write(e.bytes);
    else if (e.kind === "gap") say(`${e.to - e.from} bytes of output are gone (beyond the scrollback)`);
    else if (e.kind === "attached")
      say(
        `attached to ${id} at ${e.hostVm} (agent key ${e.fingerprint})${e.control ? "" : ", watching"}; Ctrl-] q detaches, Ctrl-] ? helps`,
      );
    else if (e.kind === "notice") {
      if (e.notice.kind === "moving") say(`${id} is moving: keystrokes wait`);
      else if (e.notice.kind === "refused") say(`input refused: ${e.notice.reason}`);
      else if (e.notice.kind === "ended") say(`the console ended: ${e.notice.reason}`);
    } else if (e.kind === "relay") {
      const m = e.message;
      if (m.t === "reattaching") say(`${m.reason}: following it`);
      // Made before broken: the relay switched to the destination beneath this connection.
      else if (m.t === "switched") say("the guest moved: following it (its session there was ready)");
      else if (m.t === "keyboard")
        say(
          m.holder ? "you hold the keyboard" : `watching (${m.viewers} viewers; Ctrl-] t takes the keyboard)`,
        );
      else if (m.t === "not-holder") say("another viewer holds the keyboard (Ctrl-] t takes it)");
      else if (m.t === "error") say(m.message);
    }
  };

  const keys = (data: Buffer) => {
    const out: number[] = [];
    for (const b of data) {
      if (escaped) {
        escaped = false;
        if (b === 0x71 /* q */ || b === 0x2e /* . */) {
          detached = true;
          ws?.close(1000, "detached");
          finish(0);
          return;
        }
        if (b === 0x74 /* t */) ws?.send(JSON.stringify({ t: "take" }));
        else if (b === 0x72 /* r */) ws?.send(JSON.stringify({ t: "release" }));
        else if (b === ESC) out.push(ESC);
        else say("Ctrl-] then: q detach, t take the keyboard, r release it, Ctrl-] a literal Ctrl-]");
        continue;
      }
      if (b === ESC) escaped = true;
      else out.push(b);
    }
    if (out.length > 0) void send(session.type(Buffer.from(out)));
  };

  let since = Date.now();
  const connect = () => {
    const sock = new WebSocket(wsUrl, {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    ws = sock;
    let refusal: string | null = null;
    sock.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        let msg = body;
        try {
          msg = (JSON.parse(body) as { error?: string }).error ?? body;
        } catch {
          // not JSON
        }
        refusal = `${res.statusCode} ${msg}`.trim();
        sock.terminate();
      });
    });
    sock.on("open", () => {
      since = Date.now();
      void send(session.start());
    });
    sock.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      void send(isBinary ? session.onBinary(buf) : session.onText(buf.toString("utf8")));
    });
    sock.on("error", () => {});
    sock.on("close", (code, reason) => {
      if (detached || ws !== sock) return;
      if (refusal) {
        say(`the controller refused the console: ${refusal}`);
        return finish(1);
      }
      if (FINAL.has(code)) {
        say(`console closed: ${reason.toString() || code}`);
        return finish(1);
      }
      if (Date.now() - since > RETRY_MS) {
        say(`lost the controller (${code}); giving up`);
        return finish(1);
      }
      say(`lost the controller (${code}); reconnecting`);
      setTimeout(connect, 1000).unref();
    });
  };

  if (tty) process.stdin.setRawMode(true);
  process.stdin.on("data", keys);
  process.stdin.on("end", () => {
    if (tty) return;
    // Piped input: detach once everything typed is acknowledged (or after 10 s).
    const started = Date.now();
    const wait = setInterval(() => {
      if ((session.pending === 0 && session.ready) || Date.now() - started > 10_000) {
        clearInterval(wait);
        detached = true;
        ws?.close(1000, "detached");
        finish(0);
      }
    }, 50);
  });
  process.stdin.resume();
  connect();
  try {
    return await done;
  } finally {
    process.stdin.off("data", keys);
    if (tty) process.stdin.setRawMode(false);
    // Done with it (a pipe left open would keep the process alive).
    process.stdin.destroy();
    if (!o.quiet && tty) process.stderr.write("\r\n");
  }
}

export function checkFingerprints(pins: string[]): string[] {
  for (const p of pins)
    if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(p))
      throw new UsageError(`--pin ${p}: expected SHA256:<43 base64 characters> (as the console prints)`);
  return pins;
}

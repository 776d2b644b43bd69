import "@xterm/xterm/css/xterm.css";
import { Terminal } from "@xterm/xterm";
import { useEffect, useRef, useState } from "react";
import { type ClientEvent, ConsoleClientSession, type Step } from "../../../src/console/client.ts";

/**
 * A guest's serial console in xterm.js, through the controller's WebSocket
 * (GET /api/vms/:id/console, the token as ?token= since a browser's WebSocket sends no
 * headers). The browser is an end of the end-to-end channel: the same client session as the
 * CLI (src/console/client.ts, on WebCrypto) handshakes with the agent holding the serial port,
 * so the controller relays ciphertext only. The session outlives the WebSocket: a dropped link
 * is re-established and output resumes at its byte offset; when the guest moves the relay
 * follows it and the session handshakes with the new agent.
 */

/** Close codes after which reconnecting cannot help (src/console/relay.ts's CLOSE). */
const FINAL = new Set([4003, 4004, 4005, 4006, 4007, 4009]);
const RETRY_MS = 30_000;

interface Status {
  state: "connecting" | "attached" | "moving" | "closed";
  hostVm?: string;
  fingerprint?: string;
  holder?: boolean;
  viewers?: number;
  lostBytes: number;
  message?: string;
}

export function GuestConsole({ guestId, token }: { guestId: string; token: string }) {
  const host = useRef<HTMLDivElement>(null);
  const take = useRef<() => void>(() => {});
  const [status, setStatus] = useState<Status>({ state: "connecting", lostBytes: 0 });

  useEffect(() => {
    const term = new Terminal({
      convertEol: false,
      cursorBlink: true,
      fontSize: 13,
      rows: 24,
      cols: 80,
      scrollback: 2000,
    });
    term.open(host.current!);
    term.focus();
    const session = new ConsoleClientSession({ keyboard: true });
    let ws: WebSocket | null = null;
    let stopped = false;
    let since = Date.now();
    const update = (s: Partial<Status>) =>
      setStatus((old) => ({ ...old, ...s, lostBytes: session.lostBytes }));

    const event = (e: ClientEvent) => {
      if (e.kind === "output") term.write(e.bytes);
      else if (e.kind === "gap") term.write(`\r\n[${e.to - e.from} bytes beyond the scrollback]\r\n`);
      else if (e.kind === "attached")
        update({ state: "attached", hostVm: e.hostVm, fingerprint: e.fingerprint, message: undefined });
      else if (e.kind === "notice") {
        if (e.notice.kind === "moving") update({ state: "moving" });
        else if (e.notice.kind === "ended") update({ message: `the console ended: ${e.notice.reason}` });
        else if (e.notice.kind === "refused") update({ message: `input refused: ${e.notice.reason}` });
      } else if (e.kind === "relay") {
        const m = e.message;
        if (m.t === "keyboard") update({ holder: m.holder, viewers: m.viewers });
        else if (m.t === "reattaching") update({ state: "moving", message: m.reason });
        else if (m.t === "switched") update({ state: "moving", message: "the guest moved" });
        else if (m.t === "not-holder") update({ holder: false });
        else if (m.t === "error") update({ message: m.message });
      }
    };
    const apply = (s: Step) => {
      for (const e of s.events) event(e);
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      for (const t of s.sendText) ws.send(JSON.stringify(t));
      for (const b of s.send) ws.send(b as Uint8Array<ArrayBuffer>);
    };
    // The session answers in call order: sending each step as it resolves keeps the wire in order.
    const send = (p: Promise<Step>) =>
      p.then(apply, (e: Error) => {
        update({ state: "closed", message: `console error: ${e.message}` });
        stopped = true;
        ws?.close(1000, "client error");
      });

    const connect = () => {
      const base = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${location.pathname.replace(/[^/]*$/, "")}`;
      const sock = new WebSocket(
        `${base}api/vms/${encodeURIComponent(guestId)}/console?token=${encodeURIComponent(token)}`,
      );
      sock.binaryType = "arraybuffer";
      ws = sock;
      let opened = false;
      sock.onopen = () => {
        opened = true;
        since = Date.now();
        void send(session.start());
      };
      sock.onmessage = (m) => {
        if (typeof m.data === "string") void send(session.onText(m.data));
        else void send(session.onBinary(new Uint8Array(m.data as ArrayBuffer)));
      };
      sock.onclose = (c) => {
        if (stopped || ws !== sock) return;
        if (!opened) {
          // The upgrade was refused (a browser does not say why: no console for this guest's
          // provider, or the guest is gone).
          update({ state: "closed", message: "the controller refused the console" });
          return;
        }
        if (FINAL.has(c.code) || Date.now() - since > RETRY_MS) {
          update({ state: "closed", message: c.reason || `closed (${c.code})` });
          return;
        }
        update({ state: "connecting", message: "lost the controller: reconnecting" });
        window.setTimeout(() => !stopped && connect(), 1000);
      };
    };
    const typed = term.onData((d) => void send(session.type(new TextEncoder().encode(d))));
    const binary = term.onBinary((d) => {
      const b = new Uint8Array(d.length);
      for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
      void send(session.type(b));
    });
    take.current = () => ws?.send(JSON.stringify({ t: "take" }));
    connect();
    return () => {
      stopped = true;
      typed.dispose();
      binary.dispose();
      ws?.close(1000, "detached");
      term.dispose();
    };
  }, [guestId, token]);

  return (
    <div className="console">
      <div
        className="console-status small"
        data-testid="console-status"
        data-state={status.state}
        data-host-vm={status.hostVm ?? ""}
        data-lost-bytes={status.lostBytes}
        aria-live="polite"
      >
        <span className={`badge badge-${status.state === "attached" ? "completed" : "running"}`}>
          {status.state}
        </span>{" "}
        {status.hostVm && (
          <span>
            at <strong>{status.hostVm}</strong>{" "}
            <span className="muted" title="The agent's key: compare it out of band">
              {status.fingerprint?.slice(0, 20)}…
            </span>
          </span>
        )}{" "}
        {status.holder === false && (
          <button type="button" onClick={() => take.current()} data-testid="console-take">
            Take the keyboard
          </button>
        )}
        {status.holder && status.viewers !== undefined && status.viewers > 1 && (
          <span className="muted">you type · {status.viewers} watch</span>
        )}
        {status.lostBytes > 0 && <span className="error"> {status.lostBytes} bytes lost</span>}
        {status.message && <div className="muted">{status.message}</div>}
      </div>
      <div className="console-terminal" ref={host} data-testid="console-terminal" />
    </div>
  );
}

/**
 * The controller's console relay: GET /api/vms/:id/console (api/routes/console.ts) hands each
 * client's WebSocket to one ConsoleRelay (src/console/relay.ts), which connects to the agent
 * holding the guest's serial port (found through the provider's data plane), issues the
 * client's console tickets and forwards ciphertext both ways; it re-attaches clients when
 * their guest moves. Only planes with consoles (nestcloud's agents) offer them.
 */
import WebSocket from "ws";
import {
  type AgentHandlers,
  type AgentTarget,
  ConsoleRelay,
  deriveTicketKey,
  issueTicket,
  MAX_MESSAGE,
  type Pipe,
  type RelayOptions,
  type Viewer,
} from "../console/index.ts";
import type { ConsoleEndpoint, GuestDataPlane } from "../providers/index.ts";
import { hashToken, tokenId, verifyToken } from "./auth.ts";
import type { Store } from "./store/connect.ts";

/** How long a console ticket lets its key open a session (a new one comes with each attach). */
export const TICKET_SECONDS = 60;

export type ConsoleTarget = AgentTarget & ConsoleEndpoint;

export function consoleRelay(
  plane: GuestDataPlane,
  store: Store,
  log: (event: string, fields: Record<string, string | number | boolean>) => void,
  opts: RelayOptions = {},
): ConsoleRelay<ConsoleTarget> | null {
  const consoles = plane.consoles;
  if (!consoles) return null;
  return new ConsoleRelay<ConsoleTarget>(
    {
      locate: (guest, movedTo) => consoles.locate(guest, movedTo),
      connect: (target, guest, device, handlers) => connectAgent(target, guest, device, handlers),
      ticket: (viewer, _target, guest, device) => {
        const now = Math.floor(Date.now() / 1000);
        return issueTicket(deriveTicketKey(consoles.ticketSecret()), {
          v: 1,
          guest,
          device,
          tenant: viewer.tenant,
          sub: viewer.sub,
          key: viewer.key!,
          session: viewer.session!,
          control: viewer.control,
          iat: now,
          exp: now + TICKET_SECONDS,
        });
      },
      // Revocation and expiry act on a console too: checked again at every re-attach.
      stillAllowed: async (viewer: Viewer) => !!(await verifyToken(store, viewer.credential)),
      log,
    },
    opts,
  );
}

/** The sub of a bearer header: the token's public id. */
export function subOf(header: string | undefined): string {
  const m = /^Bearer\s+(\S{1,512})$/i.exec(header ?? "");
  return m ? tokenId(hashToken(m[1])) : "unknown";
}

/** Opens the agent's console WebSocket for the guest's port; rejects with the agent's refusal. */
export function connectAgent(
  target: ConsoleEndpoint,
  guest: string,
  device: string,
  handlers: AgentHandlers,
): Promise<Pipe> {
  const url = `${target.agentUrl.replace(/^http/, "ws")}/v1/guests/${encodeURIComponent(guest)}/devices/${encodeURIComponent(device)}/console`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${target.token}` },
      maxPayload: MAX_MESSAGE,
      handshakeTimeout: 5000,
      perMessageDeflate: false,
    });
    let open = false;
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      reject(new Error(`${target.hostVm} answered ${res.statusCode}`));
      ws.terminate();
    });
    ws.on("error", (e) => {
      if (!open) reject(e);
    });
    ws.once("open", () => {
      open = true;
      resolve(wsPipe(ws));
    });
    ws.on("message", (data, isBinary) => handlers.onMessage(toBuffer(data), isBinary));
    ws.on("close", (code, reason) => {
      if (open) handlers.onClose(code, reason.toString("utf8"));
    });
  });
}

/** A ws WebSocket as the relay's Pipe. */
export function wsPipe(ws: WebSocket): Pipe {
  return {
    send: (data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    close: (code, reason) => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
    },
  };
}

export function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * GET /api/events: the event bus as server-sent events, filtered to what the token may see.
 *
 * Reconnection: a client sends the id of the last event it saw (Last-Event-ID, a decimal
 * integer). It gets the retained events after that id; if the id is older than what is
 * retained or newer than anything emitted (the controller restarted), it first gets an
 * `event: reset` (reload your state) and then every retained event. A new client (no id)
 * gets the retained events.
 *
 * Limits: a stream whose client does not read is dropped once 1 MiB waits unsent; at most
 * MAX_STREAMS_PER_PRINCIPAL streams per principal and MAX_STREAMS in all (429 beyond).
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Principal } from "./auth.ts";
import { ApiError } from "./errors.ts";
import type { CloudEvent, EventBus } from "./events.ts";

export const MAX_STREAMS = 256;
export const MAX_STREAMS_PER_PRINCIPAL = 16;
const MAX_BUFFERED_BYTES = 1 << 20;
const PING_MS = 15_000;

const open = new Map<string, number>();
let total = 0;

function principalKey(p: Principal): string {
  return p.role === "tenant" ? `tenant:${p.tenant}` : p.role;
}

export async function streamEvents(bus: EventBus, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const p = req.principal;
  const key = principalKey(p);
  if (total >= MAX_STREAMS) throw new ApiError(429, `too many event streams open (${MAX_STREAMS})`);
  if ((open.get(key) ?? 0) >= MAX_STREAMS_PER_PRINCIPAL)
    throw new ApiError(429, `too many event streams open for this token (${MAX_STREAMS_PER_PRINCIPAL})`);
  const header = (req.headers as { "last-event-id"?: string })["last-event-id"];
  const resume = bus.resume(header === undefined ? undefined : Number(header));

  total++;
  open.set(key, (open.get(key) ?? 0) + 1);
  const res = reply.raw;
  let closed = false;
  let unsubscribe = () => {};
  let ping: NodeJS.Timeout | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    total--;
    const n = (open.get(key) ?? 1) - 1;
    if (n > 0) open.set(key, n);
    else open.delete(key);
    unsubscribe();
    clearInterval(ping);
    if (!res.destroyed) res.destroy();
  };
  // Writes to a dead socket report here, not to the emitter.
  res.on("error", close);
  res.on("close", close);

  const write = (chunk: string) => {
    if (closed || res.destroyed || res.writableEnded) return close();
    // A client that stops reading must not make the controller buffer without bound.
    if (res.writableLength > MAX_BUFFERED_BYTES) return close();
    res.write(chunk);
  };
  const visible = (e: CloudEvent) => p.role === "admin" || (p.role === "tenant" && e.tenant === p.tenant);
  const send = (e: CloudEvent) => {
    if (visible(e)) write(`id: ${e.seq}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`);
  };

  reply.hijack();
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  // No id on the reset: it must not move the client's position.
  if (resume.kind === "gap") write(`event: reset\ndata: {"lastSeq":${bus.lastSeq}}\n\n`);
  for (const e of resume.events) send(e);
  unsubscribe = bus.subscribe(send);
  ping = setInterval(() => write(": ping\n\n"), PING_MS);
  if (req.raw.destroyed) close();
  await new Promise<void>((resolve) => {
    if (closed) return resolve();
    res.once("close", () => resolve());
  });
}

/**
 * The HTTP face of a controller: /health (open), the dashboard's static files (open), and
 * everything else behind a bearer token — /api/* (REST + server-sent events), /metrics
 * (Prometheus), /api/openapi.json.
 */
import { existsSync } from "node:fs";
import fastifyStatic from "@fastify/static";
import fastifySwagger from "@fastify/swagger";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { registerRoutes } from "./api/routes.ts";
import { verifyToken } from "./auth.ts";
import type { Controller } from "./controller.ts";
import { ApiError } from "./errors.ts";
import type { CloudEvent } from "./events.ts";

export interface ServerOptions {
  /** Folder with the built dashboard (index.html + assets), served at /. */
  readonly webDir?: string;
  readonly logger?: boolean | object;
}

const OPEN = new Set(["/health"]);

export async function buildServer(c: Controller, opts: ServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? false,
    trustProxy: false,
    bodyLimit: 1 << 20,
    // Unknown fields are mistakes to report, not to drop silently (fastify strips them by default).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array" } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "nestcloud controller API", version: "0.1.0" },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });

  // Tokens are checked on every request outside /health and the static dashboard; a small
  // cache keeps the hot path off the database.
  const cache = new Map<string, { p: Awaited<ReturnType<typeof verifyToken>>; until: number }>();
  app.addHook("onRequest", async (req) => {
    const path = req.url.split("?")[0];
    if (OPEN.has(path)) return;
    if (!path.startsWith("/api/") && path !== "/api" && path !== "/metrics") return;
    // EventSource cannot send headers: the event stream alone also takes ?token=<token>.
    const header =
      req.headers.authorization ??
      (path === "/api/events" ? bearerFromQuery(req.url.slice(path.length + 1)) : undefined);
    const now = Date.now();
    let hit = header ? cache.get(header) : undefined;
    if (!hit || hit.until < now) {
      hit = { p: await verifyToken(c.store, header), until: now + 10_000 };
      if (header) {
        if (cache.size > 1000) cache.clear();
        cache.set(header, hit);
      }
    }
    if (!hit.p) throw new ApiError(401, "missing or invalid bearer token (Authorization: Bearer <token>)");
    req.principal = hit.p;
  });

  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unknown";
    c.metrics.apiSeconds.observe({ route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | ApiError | Error, req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send({ error: err.message });
    const fe = err as FastifyError;
    if (fe.validation) {
      // e.g. "body/memoryMiB must be >= 64" — names the field at fault.
      return reply.code(400).send({ error: fe.message });
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500)
      return reply.code(fe.statusCode).send({ error: fe.message });
    if (err.name === "FencedError")
      return reply.code(503).send({ error: "leadership changed while handling this request; retry" });
    req.log.error({ err }, "request failed");
    return reply.code(500).send({ error: "internal error" });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );

  app.get("/health", async () => ({ status: "ok", leader: c.leader.isLeader, provider: c.provider.name }));

  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", c.metrics.registry.contentType);
    return c.metrics.registry.metrics();
  });

  app.get("/api/openapi.json", async () => app.swagger());

  app.addHook("preHandler", async (req) => {
    if (
      req.url.startsWith("/api/vms") ||
      req.url.startsWith("/api/hostvms") ||
      req.url.startsWith("/api/security-vms")
    )
      await c.freshViews();
  });

  registerRoutes(app, c);

  // Server-sent events, filtered to what the token may see.
  app.get("/api/events", async (req, reply) => {
    const p = req.principal;
    const visible = (e: CloudEvent) => p.role === "admin" || e.tenant === p.tenant;
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    const send = (e: CloudEvent) => {
      if (visible(e)) reply.raw.write(`id: ${e.seq}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`);
    };
    const last = Number(req.headers["last-event-id"] ?? 0);
    for (const e of c.events.since(Number.isFinite(last) ? last : 0)) send(e);
    const unsubscribe = c.events.subscribe(send);
    const ping = setInterval(() => reply.raw.write(": ping\n\n"), 15_000);
    req.raw.on("close", () => {
      clearInterval(ping);
      unsubscribe();
    });
    await new Promise<void>((resolve) => req.raw.on("close", () => resolve()));
    return reply;
  });

  if (opts.webDir && existsSync(opts.webDir)) {
    // wildcard: false routes each file found at start-up, and / to index.html.
    await app.register(fastifyStatic, { root: opts.webDir, prefix: "/", wildcard: false });
  }
  return app;
}

function bearerFromQuery(query: string): string | undefined {
  const token = new URLSearchParams(query).get("token");
  return token ? `Bearer ${token}` : undefined;
}

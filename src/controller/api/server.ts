/**
 * The HTTP face of a controller: /health (open), the dashboard's static files (open), and
 * everything else behind a bearer token — /api/* (REST + server-sent events), /metrics
 * (Prometheus), /api/openapi.json.
 *
 * Authentication is decided from the route the router matched, never from the request's
 * URL string (the router decodes percent-escapes; a string check on the raw URL does not):
 * a route is open only if it says so in its config, every other request — including one
 * that matches no route — needs a valid token, and a route names the roles it admits.
 */
import { existsSync } from "node:fs";
import fastifyStatic from "@fastify/static";
import fastifySwagger from "@fastify/swagger";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import fastifyWebsocket from "@fastify/websocket";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { ConsoleRelay } from "../../console/index.ts";
import { schemaErrorFormatter } from "../../schema/index.ts";
import { type Role, verifyToken } from "../auth.ts";
import type { Controller } from "../controller.ts";
import { ApiError, asApiError } from "../errors.ts";
import type { ApiPlugin, RouteAuth } from "./plugin.ts";
import { cloudRoutes } from "./routes/cloud.ts";
import { consoleRoutes } from "./routes/console.ts";
import { eventRoutes } from "./routes/events.ts";
import { hostVmRoutes } from "./routes/hostvms.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { planRoutes } from "./routes/plans.ts";
import { powerRoutes } from "./routes/power.ts";
import { securityVmRoutes } from "./routes/security-vms.ts";
import { settingsRoutes } from "./routes/settings.ts";
import { systemRoutes } from "./routes/system.ts";
import { tokenRoutes } from "./routes/tokens.ts";
import { vmRoutes } from "./routes/vms.ts";

export interface ServerOptions {
  /** Folder with the built dashboard (index.html + assets), served at /. */
  readonly webDir?: string;
  readonly logger?: boolean | object;
  /** The controller process's log, for what routes report besides requests (the consoles' events). */
  readonly log?: Logger;
}

/** One plugin per resource, each with its routes' request and response schemas. */
const ROUTES: readonly ApiPlugin[] = [
  systemRoutes,
  cloudRoutes,
  hostVmRoutes,
  vmRoutes,
  securityVmRoutes,
  planRoutes,
  migrationRoutes,
  settingsRoutes,
  tokenRoutes,
  eventRoutes,
  consoleRoutes,
  powerRoutes,
];

const DEFAULT_ROLES: readonly Role[] = ["admin", "tenant"];

/** The auth config of the route a request matched; undefined when it matched none. */
function routeAuth(req: FastifyRequest): RouteAuth | undefined {
  // fastify's 404 handler has no route url; its config is not a route's.
  if (req.routeOptions.url === undefined) return undefined;
  return (req.routeOptions.config as { auth?: RouteAuth } | undefined)?.auth ?? {};
}

export async function buildServer(c: Controller, opts: ServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? false,
    trustProxy: false,
    bodyLimit: 1 << 20,
    // Unknown fields are mistakes to report, not to drop silently (fastify strips them by default).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array" } },
    // One error per field; a field with fixed values lists them.
    schemaErrorFormatter,
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: "nestcloud controller API", version: "0.1.0" },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });

  // WebSockets (the consoles): an upgrade goes through the same hooks, auth included.
  // Registered before the auth hook: its own hook marks an upgrade, so that a refused one
  // (401, 404) has its socket closed after the answer.
  await app.register(fastifyWebsocket, { options: { maxPayload: ConsoleRelay.maxClientMessage } });

  // Every token is looked up in the store on every request: revocation and expiry take
  // effect at once, on every controller sharing the store (the lookup is one indexed read).
  app.addHook("onRequest", async (req) => {
    const auth = routeAuth(req);
    if (auth?.open) return;
    const header = req.headers.authorization ?? (auth?.tokenInQuery ? bearerFromQuery(req.url) : undefined);
    const p = await verifyToken(c.store, header);
    if (!p) throw new ApiError(401, "missing or invalid bearer token (Authorization: Bearer <token>)");
    // A request that matched no route gets its 404 only once it has shown a valid token.
    if (auth && !(auth.roles ?? DEFAULT_ROLES).includes(p.role))
      throw new ApiError(403, roleMessage(auth.roles ?? DEFAULT_ROLES));
    req.principal = p;
  });

  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unknown";
    c.metrics.apiSeconds.observe({ route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | ApiError | Error, req, reply) => {
    // The API's own refusals, and a provider's by the kind of error (PROVIDER_ERROR_STATUS).
    const known = asApiError(err);
    if (known) return reply.code(known.status).send({ error: known.message });
    const fe = err as FastifyError;
    if (fe.validation) {
      // e.g. "body/memoryMiB must be >= 64" — names the field at fault (see schemaErrorFormatter).
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

  for (const routes of ROUTES) await app.register(routes, { controller: c, log: opts.log });

  if (opts.webDir && existsSync(opts.webDir)) {
    // wildcard: false routes each file found at start-up, and / to index.html.
    const webDir = opts.webDir;
    await app.register(async (scope) => {
      // The dashboard's files are public (they hold no data): open every route this scope makes.
      scope.addHook("onRoute", (route) => {
        route.config = { ...(route.config ?? {}), auth: { open: true } } as typeof route.config;
      });
      await scope.register(fastifyStatic, { root: webDir, prefix: "/", wildcard: false });
    });
  }
  return app;
}

function bearerFromQuery(url: string): string | undefined {
  const q = url.indexOf("?");
  const token = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get("token");
  return token ? `Bearer ${token}` : undefined;
}

function roleMessage(roles: readonly Role[]): string {
  if (roles.length === 1 && roles[0] === "admin") return "this needs an admin token";
  return `this needs a token with role ${roles.join(" or ")}`;
}

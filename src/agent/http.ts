/**
 * What both agents' HTTP servers share: TypeBox validation (a bad request gets 400 naming
 * the field), bearer-token auth on every route (401), one error shape, QMP failures carried
 * through with the command and QEMU's own text, no keep-alive, and an OpenAPI description
 * of every route with its request and answer schemas (GET /v1/openapi.json). Each agent is
 * this app plus one route plugin per resource (hostvm/routes, server/routes).
 *
 * Why no keep-alive: a client's failed call must say whether the request reached the agent.
 * On a fresh connection "connection refused" proves it did not (the agent is down), which
 * is what lets the orchestrator roll a migration back safely; a pooled connection to a
 * dead agent fails with a reset that could mean either.
 */
import fastifySwagger from "@fastify/swagger";
import {
  type FastifyPluginAsyncTypebox,
  type TypeBoxTypeProvider,
  TypeBoxValidatorCompiler,
} from "@fastify/type-provider-typebox";
import fastifyWebsocket from "@fastify/websocket";
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from "fastify";
import { MigrationCancelRefusedError, QemuSpecError, QemuStartError, QmpError } from "../qemu/index.ts";
import { schemaErrorFormatter } from "../schema/index.ts";
import type { ErrorBody } from "./api-types.ts";
import { bearerMatches } from "./token.ts";

/** An error with an HTTP status and a stable code for the client. */
export class AgentError extends Error {
  override name = "AgentError";
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new AgentError(404, "not_found", what);
export const conflict = (what: string) => new AgentError(409, "conflict", what);

export type App = FastifyInstance<
  import("node:http").Server,
  import("node:http").IncomingMessage,
  import("node:http").ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** A route plugin of an agent: one resource, its routes with request and answer schemas. */
export type RoutePlugin<Options extends object> = FastifyPluginAsyncTypebox<Options>;

export interface AppOptions {
  /** Names the API in its OpenAPI description. */
  title?: string;
  /** Serve WebSocket routes (the host-VM agent's consoles), with this largest message. */
  websocketMaxPayload?: number;
}

export function createApp(token: string, logger: FastifyBaseLogger, opts: AppOptions = {}): App {
  const app = Fastify({
    loggerInstance: logger,
    // Long-polls and lease renewals would drown the log; agents log their own events.
    disableRequestLogging: true,
    bodyLimit: 1024 * 1024,
    // One error per field; a field with fixed values lists them.
    schemaErrorFormatter,
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  // Collects every route registered after it (the agents' route plugins) with its schemas.
  void app.register(fastifySwagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: opts.title ?? "nestcloud agent API", version: "1" },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  app.get("/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  // Before the auth hook: the plugin's own hook marks an upgrade, so that a refused one has
  // its socket closed after the answer.
  if (opts.websocketMaxPayload)
    void app.register(fastifyWebsocket, { options: { maxPayload: opts.websocketMaxPayload } });
  app.addHook("onRequest", async (req, reply) => {
    const ok = bearerMatches(req.headers.authorization, token);
    if (ok !== "ok") {
      const body: ErrorBody = {
        statusCode: 401,
        error: "unauthorized",
        message:
          ok === "missing" ? "missing bearer token (Authorization: Bearer <token>)" : "wrong bearer token",
      };
      return reply.code(401).header("www-authenticate", "Bearer").send(body);
    }
  });
  app.addHook("onSend", async (_req, reply) => {
    reply.header("connection", "close");
  });

  app.setNotFoundHandler((req, reply) => {
    const body: ErrorBody = {
      statusCode: 404,
      error: "not_found",
      message: `no route ${req.method} ${req.url}`,
    };
    reply.code(404).send(body);
  });

  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    const body = errorBody(err);
    if (body.statusCode >= 500) req.log.error({ err, url: req.url }, body.message);
    reply.code(body.statusCode).send(body);
  });
  return app;
}

export function errorBody(err: unknown): ErrorBody {
  if (err instanceof AgentError) return { statusCode: err.statusCode, error: err.code, message: err.message };
  if (err instanceof QmpError) {
    return {
      statusCode: 502,
      error: "qmp_error",
      message: err.message,
      command: err.command,
      errorClass: err.errorClass,
      desc: err.desc,
    };
  }
  if (err instanceof MigrationCancelRefusedError)
    return { statusCode: 409, error: "cancel_refused", message: err.message };
  if (err instanceof QemuSpecError) return { statusCode: 400, error: "bad_guest", message: err.message };
  if (err instanceof QemuStartError) {
    return { statusCode: 500, error: "qemu_start_failed", message: err.message };
  }
  const fe = err as FastifyError;
  if (fe.validation) return { statusCode: 400, error: "bad_request", message: fe.message };
  if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { statusCode: fe.statusCode, error: fe.code ?? "bad_request", message: fe.message };
  }
  return { statusCode: 500, error: "internal", message: (err as Error)?.message ?? String(err) };
}

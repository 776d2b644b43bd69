/**
 * What the API's route plugins share: their type, who may call a route (its `config.auth`,
 * read by the server's auth hook), the tenant a request acts for, and a route's answers.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Principal, Role } from "../auth.ts";
import type { Controller } from "../controller.ts";
import { ApiError } from "../errors.ts";
import { ERRORS } from "./schemas/common.ts";

/** A route plugin: one resource's routes, given the controller (and its process's log). */
export type ApiPlugin = FastifyPluginAsyncTypebox<{ controller: Controller; log?: Logger }>;

/** Who may call a route. Routes say nothing by default: admin and tenant tokens. */
export interface RouteAuth {
  /** No token needed (health, the dashboard's files). */
  readonly open?: boolean;
  /** Roles admitted (default admin and tenant; the route checks tenant scope itself). */
  readonly roles?: readonly Role[];
  /** The token may come as ?token= (EventSource cannot send headers). */
  readonly tokenInQuery?: boolean;
}

declare module "fastify" {
  interface FastifyContextConfig {
    auth?: RouteAuth;
  }
  interface FastifyRequest {
    /** Who sent the request (set by the auth hook; absent on open routes). */
    principal: Principal;
  }
}

/** Route options of an admin-only route (the auth hook refuses other roles with 403). */
export const ADMIN = { config: { auth: { roles: ["admin"] as const } } };

/** A route's answers: its own by status, and the shared error body for 4xx and 5xx. */
export const answers = <R extends object>(ok: R) => ({ ...ok, ...ERRORS });

/** The tenant a request acts for: its own (tenant token) or the one named (admin). */
export function tenantOf(req: FastifyRequest, asked: string | undefined): string {
  const p = req.principal;
  if (p.role === "tenant") {
    if (asked !== undefined && asked !== p.tenant)
      throw new ApiError(403, `a tenant token cannot act for tenant ${asked}`);
    return p.tenant;
  }
  if (p.role !== "admin") throw new ApiError(403, "this needs an admin or tenant token");
  if (!asked) throw new ApiError(400, "body/tenant: required with an admin token");
  return asked;
}

/** The tenant whose things a request sees: its own for a tenant token, else all (undefined). */
export function visibleTenant(req: FastifyRequest): string | undefined {
  return req.principal.role === "tenant" ? req.principal.tenant : undefined;
}

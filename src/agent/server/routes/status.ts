/** The server agent's status and its memory pool. */
import { errorAnswers, PoolSchema, ServerStatusSchema } from "../../api-types.ts";
import type { RoutePlugin } from "../../http.ts";
import type { ServerState } from "../state.ts";

export const statusRoutes: RoutePlugin<{ server: ServerState }> = async (app, { server }) => {
  app.get(
    "/v1/status",
    { schema: { tags: ["status"], response: { 200: ServerStatusSchema, ...errorAnswers() } } },
    async () => server.status(),
  );
  // The pool folder's guest RAM files (also part of the status).
  app.get(
    "/v1/pool",
    { schema: { tags: ["pool"], response: { 200: PoolSchema, ...errorAnswers() } } },
    async () => server.pool(),
  );
};

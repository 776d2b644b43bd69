/** Tokens (admin): made (the secret shown once), listed without secrets, revoked at once. */
import { createToken, listTokens, type Principal, revokeToken } from "../../auth.ts";
import { ApiError, notFound } from "../../errors.ts";
import { ADMIN, type ApiPlugin, answers } from "../plugin.ts";
import { CreatedToken, CreateToken, TokenIdParams, TokenInfo, TokenList } from "../schemas/tokens.ts";

export const tokenRoutes: ApiPlugin = async (app, { controller: c }) => {
  const leaderOnly = () => {
    if (!c.leader.isLeader)
      throw new ApiError(503, "this controller is a follower; send writes to the leader");
  };

  app.post(
    "/api/tokens",
    { ...ADMIN, schema: { body: CreateToken, response: answers({ 201: CreatedToken }) } },
    async (req, reply) => {
      if (req.body.role === "tenant" && !req.body.tenant)
        throw new ApiError(400, "body/tenant: required for a tenant token");
      if (req.body.role !== "tenant" && req.body.tenant)
        throw new ApiError(
          400,
          `body/tenant: only a tenant token has a tenant, not a${req.body.role === "admin" ? "n" : ""} ${req.body.role} token`,
        );
      leaderOnly();
      const principal: Principal =
        req.body.role === "tenant" ? { role: "tenant", tenant: req.body.tenant! } : { role: req.body.role };
      const now = Date.now() / 1000;
      const { token, info } = await createToken(c.store, principal, req.body.label ?? "", {
        now,
        expiresAt: req.body.expiresInSeconds === undefined ? undefined : now + req.body.expiresInSeconds,
      });
      reply.code(201);
      return { token, ...info };
    },
  );

  app.get("/api/tokens", { ...ADMIN, schema: { response: answers({ 200: TokenList }) } }, async () =>
    listTokens(c.store),
  );

  app.delete(
    "/api/tokens/:id",
    { ...ADMIN, schema: { params: TokenIdParams, response: answers({ 200: TokenInfo }) } },
    async (req) => {
      leaderOnly();
      const info = await revokeToken(c.store, req.params.id);
      if (!info) throw notFound("token", req.params.id);
      return info;
    },
  );
};

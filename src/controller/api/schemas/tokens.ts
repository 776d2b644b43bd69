/** Bearer tokens (admin): /api/tokens. */
import { type Static, Type } from "typebox";
import { TOKEN_ROLES } from "./choices.ts";
import { Id, Nullable } from "./common.ts";

export const Role = Type.Enum(TOKEN_ROLES, {
  description: "admin: everything; tenant: its tenant's guests; metrics: GET /metrics only",
});
export type Role = Static<typeof Role>;

export const CreateToken = Type.Object(
  {
    role: Role,
    tenant: Type.Optional(Id),
    label: Type.Optional(Type.String({ maxLength: 200 })),
    expiresInSeconds: Type.Optional(
      Type.Integer({
        minimum: 60,
        maximum: 10 * 365 * 86400,
        description: "the token stops working after this",
      }),
    ),
  },
  { additionalProperties: false },
);

export const TokenIdParams = Type.Object(
  { id: Type.String({ pattern: "^tok_[0-9a-f]{16}$" }) },
  { additionalProperties: false },
);

const info = {
  id: Type.String({ description: "public id: names the token for listing and revoking" }),
  role: Role,
  tenant: Nullable(Type.String()),
  label: Type.String(),
  createdAt: Type.Number({ description: "wall-clock seconds since the epoch" }),
  expiresAt: Nullable(Type.Number()),
  revokedAt: Nullable(Type.Number()),
};

/** A token as listed: never its secret, nor the hash of it. */
export const TokenInfo = Type.Object(info);
export type TokenInfo = Static<typeof TokenInfo>;

export const TokenList = Type.Array(TokenInfo);

/** A token just made: the only answer that holds its secret. */
export const CreatedToken = Type.Object({ token: Type.String(), ...info });

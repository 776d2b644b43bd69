/** Bearer tokens: only their SHA-256 is stored, never the secret. */
import type { Kysely, Selectable } from "kysely";
import type { Role, TokenInfo } from "../../api/schemas/tokens.ts";
import type { Database, TokensTable } from "../schema.ts";

/** A token as stored: its listing, and the hash it is looked up by. */
export interface StoredToken extends TokenInfo {
  readonly hash: string;
}

export class TokenRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(t: StoredToken): Promise<void> {
    await this.db
      .insertInto("tokens")
      .values({
        hash: t.hash,
        id: t.id,
        role: t.role,
        tenant: t.tenant,
        label: t.label,
        created_at: t.createdAt,
        expires_at: t.expiresAt,
        revoked_at: t.revokedAt,
      })
      .execute();
  }

  /** The token with this hash (a role the code does not know comes as it is stored). */
  async byHash(hash: string): Promise<StoredToken | undefined> {
    const row = await this.db.selectFrom("tokens").selectAll().where("hash", "=", hash).executeTakeFirst();
    return row && { ...toInfo(row), hash: row.hash };
  }

  /** Every token, oldest first, without secrets or hashes. */
  async list(): Promise<TokenInfo[]> {
    return (await this.db.selectFrom("tokens").selectAll().orderBy("created_at").execute()).map(toInfo);
  }

  /** Revokes a token by its public id (idempotent); undefined if there is none. */
  async revoke(id: string, at: number): Promise<TokenInfo | undefined> {
    await this.db
      .updateTable("tokens")
      .set({ revoked_at: at })
      .where("id", "=", id)
      .where("revoked_at", "is", null)
      .execute();
    const row = await this.db.selectFrom("tokens").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toInfo(row);
  }
}

function toInfo(row: Selectable<TokensTable>): TokenInfo {
  return {
    id: row.id,
    role: row.role as Role,
    tenant: row.tenant,
    label: row.label,
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
  };
}

/**
 * Bearer tokens with roles. Only a SHA-256 of each token is stored; the plaintext is shown
 * once, when it is made. Admins see and do everything; a tenant token sees and acts on its
 * tenant's guests only; a metrics token reads /metrics and nothing else.
 *
 * Every lookup goes to the store (no cache): a revoked or expired token is refused by the
 * very next request, on every controller sharing the store.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Role, TokenInfo } from "./api/schemas/tokens.ts";
import type { Store } from "./store/connect.ts";

export type Principal =
  | { readonly role: "admin" }
  | { readonly role: "tenant"; readonly tenant: string }
  | { readonly role: "metrics" };

export type { Role, TokenInfo };
export const ROLES: readonly Role[] = ["admin", "tenant", "metrics"];

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** The public id of a token: a prefix of its hash (names it for listing and revoking). */
export function tokenId(hash: string): string {
  return `tok_${hash.slice(0, 16)}`;
}

const wallSeconds = () => Date.now() / 1000;

export async function createToken(
  store: Store,
  principal: Principal,
  label: string,
  opts: { expiresAt?: number; now?: number } = {},
): Promise<{ token: string; info: TokenInfo }> {
  const token = `nc_${randomBytes(24).toString("base64url")}`;
  const hash = hashToken(token);
  const stored = {
    hash,
    id: tokenId(hash),
    role: principal.role,
    tenant: principal.role === "tenant" ? principal.tenant : null,
    label,
    createdAt: opts.now ?? wallSeconds(),
    expiresAt: opts.expiresAt ?? null,
    revokedAt: null,
  };
  await store.repos.tokens.insert(stored);
  const { hash: _, ...info } = stored;
  return { token, info };
}

/** The principal a bearer header stands for, or why it stands for none. */
export async function verifyToken(
  store: Store,
  header: string | undefined,
  now = wallSeconds(),
): Promise<Principal | undefined> {
  const m = /^Bearer\s+(\S{1,512})$/i.exec(header ?? "");
  if (!m) return undefined;
  const hash = hashToken(m[1]);
  const row = await store.repos.tokens.byHash(hash);
  // The lookup is by hash; compare again in constant time for good measure.
  if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return undefined;
  if (row.revokedAt !== null) return undefined;
  if (row.expiresAt !== null && row.expiresAt <= now) return undefined;
  return principalOf(row);
}

function principalOf(row: { role: string; tenant: string | null }): Principal | undefined {
  switch (row.role) {
    case "admin":
      return { role: "admin" };
    case "metrics":
      return { role: "metrics" };
    case "tenant":
      return row.tenant ? { role: "tenant", tenant: row.tenant } : undefined;
    default:
      return undefined; // a role this version does not know grants nothing
  }
}

export async function listTokens(store: Store): Promise<TokenInfo[]> {
  return store.repos.tokens.list();
}

/** Revokes a token by its public id; undefined if there is none. Idempotent. */
export async function revokeToken(
  store: Store,
  id: string,
  now = wallSeconds(),
): Promise<TokenInfo | undefined> {
  return store.repos.tokens.revoke(id, now);
}

/** Can this principal see (and act on) a guest of `tenant`? */
export function mayAccess(p: Principal, tenant: string): boolean {
  return p.role === "admin" || (p.role === "tenant" && p.tenant === tenant);
}

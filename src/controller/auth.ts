/**
 * Bearer tokens with roles. Only a SHA-256 of each token is stored; the plaintext is shown
 * once, when it is made. Admins see and do everything; a tenant token sees and acts on its
 * tenant's guests only.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Store } from "./store/connect.ts";

export type Principal = { readonly role: "admin" } | { readonly role: "tenant"; readonly tenant: string };

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export async function createToken(
  store: Store,
  principal: Principal,
  label: string,
  now: number,
): Promise<string> {
  const token = `nc_${randomBytes(24).toString("base64url")}`;
  await store.db
    .insertInto("tokens")
    .values({
      hash: hashToken(token),
      role: principal.role,
      tenant: principal.role === "tenant" ? principal.tenant : null,
      label,
      created_at: now,
    })
    .execute();
  return token;
}

export async function verifyToken(store: Store, header: string | undefined): Promise<Principal | undefined> {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (!m) return undefined;
  const hash = hashToken(m[1]);
  const row = await store.db.selectFrom("tokens").selectAll().where("hash", "=", hash).executeTakeFirst();
  // The lookup is by hash; compare again in constant time for good measure.
  if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return undefined;
  return row.role === "admin" ? { role: "admin" } : { role: "tenant", tenant: row.tenant ?? "" };
}

/** Can this principal see (and act on) a guest of `tenant`? */
export function mayAccess(p: Principal, tenant: string): boolean {
  return p.role === "admin" || p.tenant === tenant;
}

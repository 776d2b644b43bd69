/**
 * Bearer tokens. A testbed writes one token (0600) that all its agents and clients read;
 * an agent started without one generates its own at start-up and writes it 0600.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export function readToken(file: string): string {
  const t = readFileSync(file, "utf8").trim();
  if (t.length < 16) throw new Error(`token file ${file} holds no usable token`);
  return t;
}

/** Reads the token file, creating it (mode 0600) with a fresh random token if it is missing. */
export function loadOrCreateToken(file: string): string {
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077)
    throw new Error(`token file ${file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  return readToken(file);
}

/** Constant-time comparison of an Authorization header against the token. */
export function bearerMatches(header: string | undefined, token: string): "ok" | "missing" | "wrong" {
  if (!header) return "missing";
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) return "missing";
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b) ? "ok" : "wrong";
}

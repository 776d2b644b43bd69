/**
 * Opens the store: `sqlite:<file>` (or a bare path) for the embedded default, or
 * `postgres://...` for several controllers sharing one database. Migrates the schema.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from "kysely";
import pg from "pg";
import { migrationsFor } from "./migrations.ts";
import { type Repositories, repositories } from "./repositories/index.ts";
import type { Database, StoreKind } from "./schema.ts";

export type { StoreKind };

export interface Store {
  /** The connection (pool); the controller reaches it through the repositories only. */
  readonly db: Kysely<Database>;
  readonly kind: StoreKind;
  readonly url: string;
  /** The repositories on the store's connection. */
  readonly repos: Repositories;
  /** Runs `fn` in one transaction, with the repositories bound to it. */
  transaction<T>(fn: (tx: Repositories) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

export async function openStore(url: string): Promise<Store> {
  let db: Kysely<Database>;
  let kind: StoreKind;
  if (/^postgres(ql)?:\/\//.test(url)) {
    kind = "postgres";
    db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 10 }) }),
    });
  } else {
    kind = "sqlite";
    const file = url.replace(/^sqlite:/, "");
    if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
    const sqlite = new SQLite(file);
    // WAL: readers (API) never wait on the writer (reconciler); NORMAL sync is durable in WAL mode.
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("busy_timeout = 5000");
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  const migrator = new Migrator({ db, provider: migrationsFor(kind) });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    throw new StoreError(
      `cannot migrate the store at ${redact(url)}: ${failed?.migrationName ?? ""} ${String(error ?? "")}`,
    );
  }
  return {
    db,
    kind,
    url,
    repos: repositories(db, kind),
    transaction: (fn) => db.transaction().execute((tx) => fn(repositories(tx, kind))),
    close: () => db.destroy(),
  };
}

/** A URL fit for logs (no password). */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)[^@]*@/, "$1***@");
}

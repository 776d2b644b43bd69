/**
 * A throwaway PostgreSQL server for tests: initdb into a temp folder, listen on a unix
 * socket there only (no TCP), stop and delete on close. Uses Debian's postgresql package;
 * when run as root the server runs as the `postgres` user.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TempPostgres {
  readonly url: string;
  stop(): void;
}

function pgBin(): string {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base))
    throw new Error("PostgreSQL is not installed: apt-get install postgresql (scripts/ensure-deps.sh does)");
  const version = readdirSync(base).sort().at(-1)!;
  return join(base, version, "bin");
}

export function startPostgres(): TempPostgres {
  const bin = pgBin();
  const dir = mkdtempSync(join(tmpdir(), "nestcloud-pg-"));
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]) => {
    const r = asRoot
      ? spawnSync("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args], { encoding: "utf8" })
      : spawnSync(join(bin, cmd), args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  };
  run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
  const port = 54000 + Math.floor(Math.random() * 1000);
  run("pg_ctl", [
    "-D",
    data,
    "-l",
    join(dir, "log"),
    "-w",
    "-o",
    `-p ${port} -k ${dir} -c listen_addresses=''`,
    "start",
  ]);
  run("createdb", ["-h", dir, "-p", String(port), "-U", "postgres", "nestcloud"]);
  return {
    url: `postgres://postgres@localhost/nestcloud?host=${encodeURIComponent(dir)}&port=${port}`,
    stop() {
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

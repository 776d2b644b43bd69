/** `nestcloud up`: the controller and its dashboard (loaded only by that command). */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runController } from "../controller/index.ts";
import { intOption, UsageError } from "./usage.ts";

// Two levels below the package root, in src/cli/ as in dist/ (scripts/build.mjs keeps it so).
const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../web/dist");

/** `--policy-param name=value` pairs as numbers (the policy itself checks names and ranges). */
function policyParams(pairs: readonly string[]): Record<string, number> | undefined {
  if (pairs.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=(.+)$/.exec(p);
    const n = m ? Number(m[2]) : Number.NaN;
    if (!m || !Number.isFinite(n)) throw new UsageError(`--policy-param ${p}: expected name=number`);
    out[m[1]] = n;
  }
  return out;
}

export interface UpCliOptions {
  provider: string;
  db?: string;
  port: string;
  host: string;
  dataDir: string;
  speed: string;
  guests?: string;
  testbed?: string;
  testbedRoot?: string;
  interval?: string;
  policyParam: string[];
}

/** Starts the controller and serves until SIGINT/SIGTERM. */
export async function up(o: UpCliOptions): Promise<void> {
  if (o.provider !== "sim" && o.provider !== "testbed")
    throw new UsageError(`--provider ${o.provider}: expected sim or testbed`);
  if (o.provider === "testbed" && !o.testbed)
    throw new UsageError(
      "--provider testbed needs --testbed <id or folder> (see `nestcloud testbed status`)",
    );
  if (o.provider !== "testbed" && (o.testbed || o.testbedRoot))
    throw new UsageError("--testbed and --testbed-root go with --provider testbed");
  const running = await runController({
    provider: o.provider,
    db: o.db,
    port: intOption("port", o.port, 0, 65535)!,
    host: o.host,
    dataDir: o.dataDir,
    webDir: existsSync(WEB_DIR) ? WEB_DIR : undefined,
    speed: intOption("speed", o.speed, 1, 100000),
    guests: intOption("guests", o.guests, 1, 100000),
    intervalSeconds: intOption("interval", o.interval, 1, 86400),
    testbed: o.testbed,
    testbedRoot: o.testbedRoot,
    policyParams: policyParams(o.policyParam),
  });
  writeFileSync(join(o.dataDir, "url"), `${running.url}\n`);
  process.stdout.write(`nestcloud controller on ${running.url}\n`);
  process.stdout.write(
    `dashboard: ${running.url}/${existsSync(WEB_DIR) ? "" : " (not built: npm run build:web)"}\n`,
  );
  // The secret is printed once, when it is made; afterwards only on request.
  process.stdout.write(
    running.adminTokenIsNew
      ? `admin token: ${running.adminToken}\n`
      : `admin token: unchanged, kept in ${running.adminTokenFile} (show it: nestcloud token show --data-dir ${o.dataDir})\n`,
  );
  await new Promise<void>((done) => {
    const stop = () => {
      void running.close().finally(done);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

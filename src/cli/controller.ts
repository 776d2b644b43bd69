/** `nestcloud up`: the controller and its dashboard (loaded only by that command). */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { redact, runController } from "../controller/index.ts";
import { PolicyError, REJUVENATION_MODES, type RolloutPolicy, validateRollout } from "../planner/index.ts";
import { raiseControlPriority } from "../qemu/index.ts";
import { PROVIDERS } from "./choices.ts";
import { controllerLogger, parseLogFormat } from "./logging.ts";
import { oneOf, wrote } from "./output.ts";
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

function uptime(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
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
  osAuthUrl?: string;
  osProject?: string;
  osCredentials?: string;
  osImage?: string;
  agentTokenFile?: string;
  agentNetwork?: string;
  interval?: string;
  policyParam: string[];
  rolloutMaxAgeHours?: string;
  rolloutVersion?: string;
  rolloutMode: string;
  logFormat: string;
}

/** The rollout asked for (--rollout-max-age-hours or --rollout-version), if any. */
export function rolloutOf(
  o: Pick<UpCliOptions, "rolloutMaxAgeHours" | "rolloutVersion" | "rolloutMode">,
  now: number,
): RolloutPolicy | undefined {
  const mode = oneOf("rollout-mode", o.rolloutMode, REJUVENATION_MODES);
  if (o.rolloutMaxAgeHours !== undefined && o.rolloutVersion !== undefined)
    throw new UsageError("--rollout-max-age-hours and --rollout-version: give one");
  try {
    if (o.rolloutMaxAgeHours !== undefined) {
      const h = Number(o.rolloutMaxAgeHours);
      if (!(h > 0 && h <= 1e6))
        throw new UsageError(`--rollout-max-age-hours ${o.rolloutMaxAgeHours}: expected hours > 0`);
      return validateRollout({ kind: "max-age", maxAgeSeconds: h * 3600, mode });
    }
    if (o.rolloutVersion !== undefined)
      return validateRollout({ kind: "version", version: o.rolloutVersion, installedAt: now, mode });
  } catch (e) {
    if (e instanceof PolicyError) throw new UsageError(`--rollout: ${e.message}`);
    throw e;
  }
  return undefined;
}

/** The openstack provider's flags given (none carries a secret: see providers/openstack/credentials.ts). */
export function openStackFlagsOf(
  o: Pick<
    UpCliOptions,
    "osAuthUrl" | "osProject" | "osCredentials" | "osImage" | "agentTokenFile" | "agentNetwork"
  >,
): {
  authUrl?: string;
  project?: string;
  credentials?: string;
  image?: string;
  agentTokenFile?: string;
  agentNetwork?: string;
} {
  const flags = {
    authUrl: o.osAuthUrl,
    project: o.osProject,
    credentials: o.osCredentials,
    image: o.osImage,
    agentTokenFile: o.agentTokenFile,
    agentNetwork: o.agentNetwork,
  };
  return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
}

/** Starts the controller and serves until SIGINT/SIGTERM, then says so in one line. */
export async function up(o: UpCliOptions): Promise<void> {
  // commander has checked --provider and --log-format (choice); checked again for other callers.
  const provider = oneOf("provider", o.provider, PROVIDERS);
  const log = controllerLogger(parseLogFormat(o.logFormat));
  const startedAt = Date.now();
  if (provider === "testbed" && !o.testbed)
    throw new UsageError(
      "--provider testbed needs --testbed <id or folder> (see `nestcloud testbed status`)",
    );
  if (provider !== "testbed" && (o.testbed || o.testbedRoot))
    throw new UsageError("--testbed and --testbed-root go with --provider testbed");
  const openstack = openStackFlagsOf(o);
  if (provider !== "openstack" && Object.keys(openstack).length > 0)
    throw new UsageError(
      "--os-auth-url, --os-project, --os-credentials, --os-image, --agent-token-file and --agent-network go with --provider openstack",
    );
  // Migrations between agents are orchestrated from here: its hops are on every instant
  // handover's pause, so it runs above the guests when it may (qemu/priority.ts).
  if (provider !== "sim") raiseControlPriority();
  const running = await runController({
    provider,
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
    openstack,
    policyParams: policyParams(o.policyParam),
    // Checked now; a version counts as installed at the provider's clock when it starts.
    rollout: rolloutOf(o, 0) ? (now) => rolloutOf(o, now)! : undefined,
    log,
  });
  const urlFile = join(o.dataDir, "url");
  writeFileSync(urlFile, `${running.url}\n`);
  wrote(resolve(urlFile));
  if (running.adminTokenIsNew) wrote(running.adminTokenFile);
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
  const signal = await new Promise<NodeJS.Signals>((got) => {
    process.once("SIGINT", () => got("SIGINT"));
    process.once("SIGTERM", () => got("SIGTERM"));
  });
  // Shutdown is one line: what stopped, why, after how long (its state stays in the data dir).
  log.level = "error";
  await running.close();
  process.stderr.write(
    `nestcloud: controller stopped (${signal}) after ${uptime(Date.now() - startedAt)}; its state is in ${o.db ? redact(o.db) : o.dataDir}\n`,
  );
}

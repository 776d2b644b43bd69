/**
 * `nestcloud up` (controller + dashboard) and the commands that talk to a running
 * controller's API: servers, hostvms, vms, plans, migrations.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SingleBar } from "cli-progress";
import Table from "cli-table3";
import type { Command } from "commander";
import {
  ADMIN_TOKEN_FILE,
  AUTOMATION_LEVELS,
  MIGRATION_MECHANISMS,
  MIGRATION_STATUSES,
  PLAN_STATUSES,
  redact,
  runController,
  TOKEN_ROLES,
} from "../controller/index.ts";
import { UserError } from "../sim/index.ts";
import { controllerLogger, parseLogFormat } from "./logging.ts";
import { choice, percent, providerTime, wallTime, wrote } from "./output.ts";

const DEFAULT_DATA_DIR = ".nestcloud";
const PROVIDERS = ["sim", "testbed"] as const;
const OUTPUTS = ["table", "json"] as const;
const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../web/dist");

function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`--${name} ${v}: expected an integer from ${min} to ${max}`);
  return n;
}

/** `--policy-param name=value` pairs as numbers (the policy itself checks names and ranges). */
function policyParams(pairs: readonly string[]): Record<string, number> | undefined {
  if (pairs.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=(.+)$/.exec(p);
    const n = m ? Number(m[2]) : Number.NaN;
    if (!m || !Number.isFinite(n)) throw new UserError(`--policy-param ${p}: expected name=number`);
    out[m[1]] = n;
  }
  return out;
}

export function registerController(program: Command): void {
  program
    .command("up")
    .description("start the controller and its dashboard (default: a simulated cloud)")
    .option("--provider <name>", "sim or testbed", choice("provider", PROVIDERS), "sim")
    .option("--db <url>", "sqlite:<file> or postgres://... (default: <data-dir>/nestcloud.db)")
    .option("--port <n>", "HTTP port", "8080")
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--data-dir <dir>", "where the store and the admin token live", DEFAULT_DATA_DIR)
    .option("--speed <n>", "simulated seconds per second (sim provider)", "60")
    .option("--guests <n>", "guest VMs in the simulated cloud (first start only)")
    .option("--testbed <id|folder>", "the testbed to run on (testbed provider): its id or its state folder")
    .option("--testbed-root <dir>", "where testbed state folders live (as `testbed up --root`)")
    .option("--interval <s>", "seconds between planning rounds (default 300 sim, 30 testbed)")
    .option(
      "--policy-param <name=value>",
      "a parameter of the nestcloud policy, e.g. overloadUtilization=0.8 (repeatable)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option("--log-format <format>", "pretty (a terminal's default), json (otherwise), or auto", "auto")
    .action(async (o) => {
      const log = controllerLogger(parseLogFormat(o.logFormat));
      const startedAt = Date.now();
      if (o.provider === "testbed" && !o.testbed)
        throw new UserError(
          "--provider testbed needs --testbed <id or folder> (see `nestcloud testbed status`)",
        );
      if (o.provider !== "testbed" && (o.testbed || o.testbedRoot))
        throw new UserError("--testbed and --testbed-root go with --provider testbed");
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
        policyParams: policyParams(o.policyParam as string[]),
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
    });

  const client = (cmd: Command) =>
    cmd
      .option("--url <url>", "controller URL (default: $NESTCLOUD_URL or the data dir's)")
      .option("--token <token>", "bearer token (default: $NESTCLOUD_TOKEN or the data dir's admin token)")
      .option("--data-dir <dir>", "data dir of a local controller", DEFAULT_DATA_DIR)
      .option("-o, --output <format>", "table or json", choice("output", OUTPUTS), "table");

  client(program.command("servers").description("physical servers and the host VMs on them")).action(
    async (o) => {
      show(o, await api(o, "GET", "/api/servers"), ["id", "cores", "memoryMiB", "hostVmSlots", "hostVms"]);
    },
  );

  const hostvms = program.command("hostvms").description("rented host VMs");
  client(hostvms.command("list", { isDefault: true })).action(async (o) => {
    show(o, cpuAsPercent(o, await api(o, "GET", "/api/hostvms")), [
      "id",
      "type",
      "server",
      "state",
      "guests",
      "memoryUsedMiB",
      "cpu",
    ]);
  });
  client(hostvms.command("acquire").requiredOption("--type <type>").option("--server <id>")).action(
    async (o) => {
      show(
        o,
        [await api(o, "POST", "/api/hostvms", { type: o.type, ...(o.server ? { server: o.server } : {}) })],
        ["plan"],
      );
    },
  );
  client(hostvms.command("release").argument("<id>")).action(async (id, o) => {
    show(o, [await api(o, "DELETE", `/api/hostvms/${encodeURIComponent(id)}`)], ["plan"]);
  });

  const vms = program.command("vms").description("guest VMs");
  client(vms.command("list", { isDefault: true })).action(async (o) => {
    show(o, cpuAsPercent(o, await api(o, "GET", "/api/vms")), [
      "id",
      "tenant",
      "hostVm",
      "server",
      "powerState",
      "memoryMiB",
      "cpu",
    ]);
  });
  client(
    vms
      .command("create")
      .argument("<id>")
      .requiredOption("--mips <n>")
      .requiredOption("--memory <MiB>")
      .option("--vcpus <n>")
      .option("--tenant <tenant>"),
  ).action(async (id, o) => {
    const body = {
      id,
      mipsPerVcpu: Number(o.mips),
      memoryMiB: Number(o.memory),
      ...(o.vcpus ? { vcpus: Number(o.vcpus) } : {}),
      ...(o.tenant ? { tenant: o.tenant } : {}),
    };
    show(o, [await api(o, "POST", "/api/vms", body)], ["id", "tenant", "hostVm", "server"]);
  });
  for (const verb of ["start", "stop"] as const) {
    client(vms.command(verb).argument("<id>")).action(async (id, o) => {
      show(o, [await api(o, "POST", `/api/vms/${encodeURIComponent(id)}/${verb}`)], ["id", "powerState"]);
    });
  }
  client(vms.command("delete").argument("<id>")).action(async (id, o) => {
    await api(o, "DELETE", `/api/vms/${encodeURIComponent(id)}`);
    process.stdout.write(`deleted ${id}\n`);
  });
  client(
    vms
      .command("migrate")
      .argument("<id>")
      .option("--to <hostVm>", "destination host VM (default: the best one, same server first)")
      .option(
        "--mechanism <m>",
        MIGRATION_MECHANISMS.join(", "),
        choice("mechanism", MIGRATION_MECHANISMS),
        "auto",
      )
      .option("--no-wait", "return once started"),
  ).action(async (id, o) => {
    const started = (await api(o, "POST", `/api/vms/${encodeURIComponent(id)}/migrate`, {
      ...(o.to ? { to: o.to } : {}),
      mechanism: o.mechanism,
    })) as { plan: number };
    if (!o.wait) return show(o, [started], ["plan", "guest", "from", "to"]);
    await watchMigration(o, id, started.plan);
  });

  const plans = program.command("plans").description("action plans");
  client(
    plans
      .command("list", { isDefault: true })
      .option("--status <s>", PLAN_STATUSES.join(", "), choice("status", PLAN_STATUSES)),
  ).action(async (o) => {
    const rows = (await api(
      o,
      "GET",
      `/api/plans${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`,
    )) as Array<{ actions: unknown[]; createdAt: number }>;
    const counted = rows.map((p) => ({ ...p, actions: p.actions.length }));
    if (o.output === "json") return show(o, counted, []);
    const clock = await providerClock(o);
    show(
      o,
      counted.map((p) => ({ ...p, created: providerTime(clock, p.createdAt) })),
      ["id", "status", "source", "actions", "created"],
    );
  });
  for (const verb of ["approve", "cancel"] as const) {
    client(plans.command(verb).argument("<id>")).action(async (id, o) => {
      show(o, [await api(o, "POST", `/api/plans/${encodeURIComponent(id)}/${verb}`)], ["id", "status"]);
    });
  }

  const settings = program.command("settings").description("the cloud's settings (automation level)");
  client(settings.command("show", { isDefault: true })).action(async (o) => {
    show(o, [await api(o, "GET", "/api/settings")], ["automation"]);
  });
  client(
    settings
      .command("automation")
      .description("show or set how the planner acts: manual, suggest (plans wait for approval) or automatic")
      .argument("[level]", AUTOMATION_LEVELS.join(", ")),
  ).action(async (level: string | undefined, o) => {
    if (level === undefined) return show(o, [await api(o, "GET", "/api/settings")], ["automation"]);
    if (!(AUTOMATION_LEVELS as readonly string[]).includes(level))
      throw new UserError(`automation ${level}: expected one of ${AUTOMATION_LEVELS.join(", ")}`);
    show(o, [await api(o, "PUT", "/api/settings", { automation: level })], ["automation"]);
  });

  const tokens = program.command("token").description("API tokens: show the admin token, make, list, revoke");
  tokens
    .command("show")
    .description("print the admin token kept in a local controller's data dir")
    .option("--data-dir <dir>", "data dir of a local controller", DEFAULT_DATA_DIR)
    .action((o: { dataDir: string }) => {
      const file = join(o.dataDir, ADMIN_TOKEN_FILE);
      if (!existsSync(file))
        throw new UserError(
          `no admin token in ${o.dataDir} (start the controller there first: nestcloud up)`,
        );
      process.stdout.write(`${readFileSync(file, "utf8").trim()}\n`);
    });
  client(tokens.command("list", { isDefault: true })).action(async (o) => {
    const rows = (await api(o, "GET", "/api/tokens")) as Array<Record<string, number | null>>;
    show(
      o,
      o.output === "json"
        ? rows
        : rows.map((t) => ({
            ...t,
            createdAt: when(t.createdAt),
            expiresAt: when(t.expiresAt),
            revokedAt: when(t.revokedAt),
          })),
      ["id", "role", "tenant", "label", "createdAt", "expiresAt", "revokedAt"],
    );
  });
  client(
    tokens
      .command("create")
      .requiredOption("--role <role>", TOKEN_ROLES.join(", "), choice("role", TOKEN_ROLES))
      .option("--tenant <tenant>", "the tenant of a tenant token")
      .option("--label <text>")
      .option("--expires-in <seconds>", "the token stops working after this many seconds"),
  ).action(async (o) => {
    const made = (await api(o, "POST", "/api/tokens", {
      role: o.role,
      ...(o.tenant ? { tenant: o.tenant } : {}),
      ...(o.label ? { label: o.label } : {}),
      ...(o.expiresIn ? { expiresInSeconds: intOption("expires-in", o.expiresIn, 60, 315360000) } : {}),
    })) as { token: string; id: string };
    if (o.output === "json") return show(o, made, []);
    process.stderr.write(`token ${made.id} made; its secret is shown only now:\n`);
    process.stdout.write(`${made.token}\n`);
  });
  client(tokens.command("revoke").argument("<id>", "the token's id (tok_..., from `token list`)")).action(
    async (id, o) => {
      show(
        o,
        [await api(o, "DELETE", `/api/tokens/${encodeURIComponent(id)}`)],
        ["id", "role", "tenant", "revokedAt"],
      );
    },
  );

  client(
    program
      .command("migrations")
      .description("migrations, newest first")
      .option("--status <s>", MIGRATION_STATUSES.join(", "), choice("status", MIGRATION_STATUSES)),
  ).action(async (o) => {
    const rows = (await api(
      o,
      "GET",
      `/api/migrations${o.status ? `?status=${encodeURIComponent(o.status)}` : ""}`,
    )) as Array<{ progress: number; startedAt: number }>;
    if (o.output === "json") return show(o, rows, []);
    const clock = await providerClock(o);
    show(
      o,
      rows.map((m) => ({
        ...m,
        // Floored: a running migration never shows 100 %.
        progress: `${Math.floor(m.progress * 100)} %`,
        started: providerTime(clock, m.startedAt),
      })),
      ["id", "guest", "from", "to", "mechanism", "status", "progress", "started"],
    );
  });
}

interface ClientOptions {
  url?: string;
  token?: string;
  dataDir: string;
  output: string;
}

function target(o: ClientOptions): { url: string; token: string } {
  const fromFile = (name: string) => {
    const p = join(o.dataDir, name);
    return existsSync(p) ? readFileSync(p, "utf8").trim() : undefined;
  };
  const url = o.url ?? process.env.NESTCLOUD_URL ?? fromFile("url");
  const token = o.token ?? process.env.NESTCLOUD_TOKEN ?? fromFile(ADMIN_TOKEN_FILE);
  if (!url)
    throw new UserError(
      "no controller URL: pass --url, set NESTCLOUD_URL, or run `nestcloud up` in this folder",
    );
  if (!token) throw new UserError("no token: pass --token or set NESTCLOUD_TOKEN");
  return { url: url.replace(/\/$/, ""), token };
}

async function api(o: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const { url, token } = target(o);
  let res: Response;
  try {
    res = await fetch(url + path, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new UserError(`cannot reach the controller at ${url} (${(e as Error).message})`);
  }
  if (res.status === 204) return {};
  const data = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new UserError(`${method} ${path}: ${res.status} ${data.error ?? res.statusText}`);
  return data;
}

function uptime(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** Wall-clock epoch seconds (token times) as a UTC date and time. */
function when(s: number | null | undefined): string {
  return s === null || s === undefined ? "" : wallTime(s);
}

/**
 * How to read the provider's times (plans, migrations): wall-clock Unix seconds, or seconds
 * of a simulated world shown as its day and time. Older controllers do not say: wall-clock.
 */
async function providerClock(o: ClientOptions): Promise<"wall" | "simulated"> {
  const overview = (await api(o, "GET", "/api/overview")) as { clock?: string };
  return overview.clock === "simulated" ? "simulated" : "wall";
}

/** Tables show the `cpu` fraction (load over capacity or guarantee) as a percent; JSON keeps it. */
function cpuAsPercent(o: ClientOptions, rows: unknown): unknown {
  if (o.output === "json") return rows;
  return (rows as Array<{ cpu: number | null }>).map((r) => ({
    ...r,
    cpu: typeof r.cpu === "number" ? percent(r.cpu) : r.cpu,
  }));
}

function show(o: ClientOptions, rows: unknown, columns: string[]): void {
  if (o.output === "json") {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (o.output !== "table") throw new UserError(`--output ${o.output}: expected table or json`);
  const t = new Table({ head: columns, style: { head: [], border: [] } });
  for (const r of rows as Array<Record<string, unknown>>) {
    t.push(
      columns.map((c) => {
        const v = r[c];
        if (Array.isArray(v))
          return v.length > 4 ? `${v.slice(0, 4).join(", ")} (+${v.length - 4})` : v.join(", ");
        if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2);
        return v === null || v === undefined ? "" : String(v);
      }),
    );
  }
  process.stdout.write(`${t.toString()}\n`);
}

/** Follows a guest's migration to its end with a progress bar (remaining time from the ETA). */
async function watchMigration(o: ClientOptions, guest: string, plan: number): Promise<void> {
  const bar = new SingleBar({
    format: `${guest} [{bar}] {percentage}% | {mechanism} | eta {etaSec}s`,
    stream: process.stderr,
  });
  bar.start(100, 0, { mechanism: "", etaSec: "?" });
  const deadline = Date.now() + 10 * 60_000;
  try {
    while (Date.now() < deadline) {
      const migs = (await api(o, "GET", "/api/migrations?limit=200")) as Array<{
        guest: string;
        plan: number | null;
        status: string;
        progress: number;
        mechanism: string;
        detail: { etaSeconds?: number };
        error: string | null;
        to: string;
      }>;
      const m = migs.find((x) => x.guest === guest && x.plan === plan);
      if (m) {
        bar.update(Math.round(m.progress * 100), {
          mechanism: m.mechanism,
          etaSec: Math.round(m.detail.etaSeconds ?? 0),
        });
        if (m.status !== "running") {
          bar.stop();
          if (m.status !== "completed")
            throw new UserError(`migration of ${guest} ${m.status}: ${m.error ?? ""}`);
          process.stdout.write(`${guest} now runs on ${m.to} (${m.mechanism})\n`);
          return;
        }
      } else {
        const p = (await api(o, "GET", `/api/plans/${plan}`)) as {
          status: string;
          actions: Array<{ error: string | null }>;
        };
        if (p.status === "failed")
          throw new UserError(
            `migration of ${guest} failed: ${p.actions
              .map((a) => a.error)
              .filter(Boolean)
              .join("; ")}`,
          );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new UserError(`gave up waiting for the migration of ${guest}`);
  } finally {
    bar.stop();
  }
}

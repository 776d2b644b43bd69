/**
 * The commands that talk to a running controller's API (servers, hostvms, vms, plans,
 * settings, tokens, migrations): requests, tables, readable times and percents, the
 * migration progress bar. Loaded only by those
 * commands (see controller-commands.ts); it must stay light: no controller, no simulator.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { percent, wallTime } from "./output.ts";
import { plainTable } from "./table.ts";
import { UsageError } from "./usage.ts";

/**
 * The admin token's file in a controller's data dir: the controller's ADMIN_TOKEN_FILE
 * (cli.test.ts checks they agree), named here so that a client command need not load the
 * controller to find it.
 */
export const ADMIN_TOKEN_FILE = "admin-token";

/** `token show`: the admin token kept in a local controller's data dir. */
export function tokenShow(o: { dataDir: string }): void {
  const file = join(o.dataDir, ADMIN_TOKEN_FILE);
  if (!existsSync(file))
    throw new UsageError(`no admin token in ${o.dataDir} (start the controller there first: nestcloud up)`);
  process.stdout.write(`${readFileSync(file, "utf8").trim()}\n`);
}

export interface ClientOptions {
  url?: string;
  token?: string;
  dataDir: string;
  output: string;
}

export function target(o: ClientOptions): { url: string; token: string } {
  const fromFile = (name: string) => {
    const p = join(o.dataDir, name);
    return existsSync(p) ? readFileSync(p, "utf8").trim() : undefined;
  };
  const url = o.url ?? process.env.NESTCLOUD_URL ?? fromFile("url");
  const token = o.token ?? process.env.NESTCLOUD_TOKEN ?? fromFile(ADMIN_TOKEN_FILE);
  if (!url)
    throw new UsageError(
      "no controller URL: pass --url, set NESTCLOUD_URL, or run `nestcloud up` in this folder",
    );
  if (!token) throw new UsageError("no token: pass --token or set NESTCLOUD_TOKEN");
  return { url: url.replace(/\/$/, ""), token };
}

export async function api(o: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const { url, token } = target(o);
  let res: HttpAnswer;
  try {
    res = await request(
      new URL(url + path),
      method,
      {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body === undefined ? undefined : JSON.stringify(body),
    );
  } catch (e) {
    throw new UsageError(`cannot reach the controller at ${url} (${(e as Error).message})`);
  }
  if (res.status === 204) return {};
  let data: { error?: string } = {};
  try {
    data = JSON.parse(res.text);
  } catch {
    // Not JSON (e.g. a proxy's error page): the status line tells what happened.
  }
  if (res.status < 200 || res.status > 299)
    throw new UsageError(`${method} ${path}: ${res.status} ${data.error ?? res.statusText}`);
  return data;
}

interface HttpAnswer {
  status: number;
  statusText: string;
  text: string;
}

/**
 * One request through node:http(s). Not fetch: its first use loads undici, which costs a
 * command like `nestcloud vms` more CPU than all the rest of its start-up.
 */
async function request(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<HttpAnswer> {
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new Error(`unsupported protocol ${url.protocol}`);
  const http = url.protocol === "https:" ? await import("node:https") : await import("node:http");
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? "",
          text: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Wall-clock epoch seconds (token times) as a UTC date and time. */
export function when(s: number | null | undefined): string {
  return s === null || s === undefined ? "" : wallTime(s);
}

/**
 * How to read the provider's times (plans, migrations): wall-clock Unix seconds, or seconds
 * of a simulated world shown as its day and time. Older controllers do not say: wall-clock.
 */
export async function providerClock(o: ClientOptions): Promise<"wall" | "simulated"> {
  const overview = (await api(o, "GET", "/api/overview")) as { clock?: string };
  return overview.clock === "simulated" ? "simulated" : "wall";
}

/** Tables show the `cpu` fraction (load over capacity or guarantee) as a percent; JSON keeps it. */
export function cpuAsPercent(o: ClientOptions, rows: unknown): unknown {
  if (o.output === "json") return rows;
  return (rows as Array<{ cpu: number | null }>).map((r) => ({
    ...r,
    cpu: typeof r.cpu === "number" ? percent(r.cpu) : r.cpu,
  }));
}

export async function show(o: ClientOptions, rows: unknown, columns: string[]): Promise<void> {
  if (o.output === "json") {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (o.output !== "table") throw new UsageError(`--output ${o.output}: expected table or json`);
  const cells = (rows as Array<Record<string, unknown>>).map((r) =>
    columns.map((c) => {
      const v = r[c];
      if (Array.isArray(v))
        return v.length > 4 ? `${v.slice(0, 4).join(", ")} (+${v.length - 4})` : v.join(", ");
      if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2);
      return v === null || v === undefined ? "" : String(v);
    }),
  );
  let text = plainTable(columns, cells);
  if (text === undefined) {
    const { default: Table } = await import("cli-table3");
    const t = new Table({ head: columns, style: { head: [], border: [] } });
    for (const r of cells) t.push(r);
    text = t.toString();
  }
  process.stdout.write(`${text}\n`);
}

/** Follows a guest's migration to its end with a progress bar (remaining time from the ETA). */
export async function watchMigration(o: ClientOptions, guest: string, plan: number): Promise<void> {
  // Through `default` (module.exports): the built CLI's chunk of this CommonJS package has no
  // named exports, unlike Node's own import of it.
  const { SingleBar } = (await import("cli-progress")).default;
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
            throw new UsageError(`migration of ${guest} ${m.status}: ${m.error ?? ""}`);
          process.stdout.write(`${guest} now runs on ${m.to} (${m.mechanism})\n`);
          return;
        }
      } else {
        const p = (await api(o, "GET", `/api/plans/${plan}`)) as {
          status: string;
          actions: Array<{ error: string | null }>;
        };
        if (p.status === "failed")
          throw new UsageError(
            `migration of ${guest} failed: ${p.actions
              .map((a) => a.error)
              .filter(Boolean)
              .join("; ")}`,
          );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new UsageError(`gave up waiting for the migration of ${guest}`);
  } finally {
    bar.stop();
  }
}

interface RejuvenateAction {
  status: string;
  error: string | null;
  progress?: { step: string; settled: number; of: number };
  result?: {
    mechanism: string;
    qemu: string;
    spare: string | null;
    guests: Array<{ guest: string; outcome: string; pauseMs: number | null; error: string | null }>;
    maxPauseMs: number | null;
    medianPauseMs: number | null;
    prepareMs: number;
    switchMs: number;
    totalMs: number;
    bytesMoved: number;
    agentRestartMs: number | null;
    replacement?: string | null;
    spareAcquired?: boolean;
    spareReleased?: boolean;
  };
}

/**
 * Follows a host VM's rejuvenation (its plan's one action): progress lines on stderr, then
 * each guest's pause and the mechanism (a table, or the action as JSON with -o json).
 */
export async function watchRejuvenation(o: ClientOptions, hostVm: string, plan: number): Promise<void> {
  const deadline = Date.now() + 30 * 60_000;
  let last = "";
  while (Date.now() < deadline) {
    const p = (await api(o, "GET", `/api/plans/${plan}`)) as { actions: RejuvenateAction[] };
    const a = p.actions[0];
    const line = a?.progress
      ? `${a.progress.step} ${a.progress.settled}/${a.progress.of}`
      : (a?.status ?? "");
    if (line !== last) {
      process.stderr.write(`${hostVm}: ${line}\n`);
      last = line;
    }
    if (a && a.status !== "pending" && a.status !== "running") {
      if (o.output === "json") process.stdout.write(`${JSON.stringify(a, null, 2)}\n`);
      else if (a.result) {
        const r = a.result;
        process.stdout.write(
          `${hostVm} rejuvenated by ${r.mechanism} (${r.qemu})${r.spare ? ` through ${r.spare}` : ""}: ` +
            `max pause ${fmtMs(r.maxPauseMs)}, median ${fmtMs(r.medianPauseMs)}, switchovers ${fmtMs(r.switchMs)}, ` +
            `destinations started in ${fmtMs(r.prepareMs)}, agent restarted in ${fmtMs(r.agentRestartMs)}, ` +
            `total ${fmtMs(r.totalMs)}, ${r.bytesMoved} bytes moved` +
            (r.replacement ? `; replaced by ${r.replacement}` : "") +
            (r.spareAcquired
              ? `; spare ${r.spare} rented for it${r.spareReleased ? " and released" : ""}`
              : "") +
            "\n",
        );
        await show(
          { ...o, output: "table" },
          r.guests.map((g) => ({ ...g, pauseMs: fmtMs(g.pauseMs) })),
          ["guest", "outcome", "pauseMs", "error"],
        );
      }
      if (a.status !== "done")
        throw new UsageError(`rejuvenation of ${hostVm} ${a.status}: ${a.error ?? ""}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new UsageError(`gave up waiting for the rejuvenation of ${hostVm}`);
}

function fmtMs(ms: number | null): string {
  return ms === null ? "-" : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

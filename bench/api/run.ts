/**
 * API throughput (npm run bench:api): a controller with 10,000 guest VMs (simulated
 * provider, automation off so nothing moves), loaded by wrk from a second process.
 * GET /api/vms (first page of 100) against GET /health in the same run; target >= 5,000
 * requests/s for /api/vms, p99 reported. Writes bench/results/api.json and docs section.
 */
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pino from "pino";
import { runController } from "../../src/controller/index.ts";
import { demoWorld, SimProvider } from "../../src/providers/index.ts";
import { machine, table, writeDocsSection, writeResults } from "../lib.ts";

const execFileAsync = promisify(execFile);
const log = (s: string) => process.stderr.write(`${s}\n`);
const GUESTS = 10_000;
const seconds = process.argv.includes("--quick") ? 5 : 15;

function ensureWrk(): void {
  if (spawnSync("wrk", ["-v"]).error) {
    log("installing wrk (Debian package) for the load");
    execFileSync("apt-get", ["install", "-y", "-qq", "wrk"], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  }
}

interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function ms(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v);
  if (!m) return Number.NaN;
  const x = Number(m[1]);
  return m[2] === "us" ? x / 1000 : m[2] === "s" ? x * 1000 : x;
}

/** Runs wrk asynchronously: the controller under test lives in this very process. */
async function wrk(url: string, token: string, path: string): Promise<WrkResult> {
  const { stdout: out } = await execFileAsync(
    "wrk",
    ["-t1", "-c32", `-d${seconds}s`, "--latency", "-H", `Authorization: Bearer ${token}`, url + path],
    {
      encoding: "utf8",
    },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(out)?.[1] ?? "");
  const p99 = ms(/\s99%\s+(\S+)/.exec(out)?.[1] ?? "");
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  return { requestsPerSecond: rps, p50Ms: p50, p99Ms: p99, errors };
}

ensureWrk();
const dir = mkdtempSync(join(tmpdir(), "nestcloud-bench-api-"));
const store = { value: undefined as string | undefined };
const provider = await SimProvider.open(
  { load: async () => store.value, save: async (j) => void (store.value = j) },
  () => demoWorld({ guests: GUESTS, servers: 160, speed: 1 }),
);
const c = await runController({
  provider: "sim",
  providerInstance: provider,
  port: 0,
  dataDir: dir,
  log: pino({ level: "silent" }),
});
try {
  await fetch(`${c.url}/api/settings`, {
    method: "PUT",
    headers: { authorization: `Bearer ${c.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ automation: "manual" }),
  });
  // Wait until the controller has adopted every guest.
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`${c.url}/api/vms?limit=1`, {
      headers: { authorization: `Bearer ${c.adminToken}` },
    });
    if (Number(r.headers.get("x-total-count")) >= GUESTS) break;
    await new Promise((r2) => setTimeout(r2, 200));
  }
  log(`bench:api — ${GUESTS} guests adopted; ${seconds} s of load per route`);
  const health = await wrk(c.url, c.adminToken, "/health");
  log(`  /health ${health.requestsPerSecond.toFixed(0)} req/s`);
  const vms = await wrk(c.url, c.adminToken, "/api/vms");
  log(`  /api/vms ${vms.requestsPerSecond.toFixed(0)} req/s, p99 ${vms.p99Ms} ms`);
  const one = await wrk(c.url, c.adminToken, "/api/vms/vm-5000");
  log(`  /api/vms/vm-5000 ${one.requestsPerSecond.toFixed(0)} req/s`);
  const rows = [
    ["GET /health (no store access)", health],
    ["GET /api/vms (page of 100 of 10,000)", vms],
    ["GET /api/vms/vm-5000", one],
  ] as const;
  const results = {
    date: new Date().toISOString(),
    machine: machine(),
    guests: GUESTS,
    seconds,
    connections: 32,
    routes: Object.fromEntries(rows.map(([n, r]) => [n, r])),
    targetRequestsPerSecond: 5000,
  };
  const file = writeResults("api", results);
  const md = table(
    ["route", "requests/s", "p50 ms", "p99 ms", "non-2xx", "vs /health"],
    rows.map(([n, r]) => [
      n,
      r.requestsPerSecond.toFixed(0),
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      r.errors,
      `${((r.requestsPerSecond / health.requestsPerSecond) * 100).toFixed(0)} %`,
    ]),
  );
  writeDocsSection(
    "bench:api",
    `## API throughput

Command: \`npm run bench:api\` — ${results.date.slice(0, 10)}, ${results.machine}, 2 cores shared by the
controller and the load generator (wrk, 1 thread, 32 connections, ${seconds} s per route), SQLite store,
${GUESTS.toLocaleString("en")} guest VMs, every request authenticated. Target: GET /api/vms >= 5,000 requests/s.

${md}`,
  );
  process.stdout.write(`${md}\nwrote ${file}\n`);
  writeFileSync(join(dir, "done"), "");
} finally {
  await c.close();
  rmSync(dir, { recursive: true, force: true });
}

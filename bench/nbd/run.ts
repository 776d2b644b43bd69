/**
 * NBD read speed (npm run bench:nbd [-- --quick]): nestcloud's own NBD client against libnbd's
 * nbdcopy, reading a whole 64 MiB image (pseudo-random: no holes to skip) served by qemu-nbd
 * (read-only, the same NBD server code as a guest's QEMU), over a unix socket (the local and
 * direct channels of a security VM) and over TCP on loopback (remote, without TLS so far).
 * Each run opens a fresh connection (handshake included). nestcloud reads with readPieces'
 * defaults (1 MiB pieces, 8 in flight, one connection); nbdcopy runs with one connection and
 * one thread (-C 1 -T 1) and with its defaults; both drop the data (nbdcopy's null:).
 * Medians of the runs, the cases taking turns; the bytes nestcloud reads are checked against
 * the image's SHA-256 once per channel.
 *
 * Writes bench/results/nbd.json and the bench:nbd section of docs/benchmarks.md.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { NbdClient, type NbdTransport, tcpTransport, unixTransport } from "../../src/monitor/index.ts";
import { machine, median, table, writeDocsSection, writeResults } from "../lib.ts";

const quick = process.argv.includes("--quick");
const RUNS = quick ? 3 : 7;
const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const log = (s: string) => process.stderr.write(`${s}\n`);

const dir = mkdtempSync(join(tmpdir(), "nc-bench-nbd-"));
const children: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function qemuNbd(image: string, where: string[]): Promise<void> {
  const child = spawn(
    "qemu-nbd",
    ["-r", "-f", "raw", "-x", "img", "--persistent", "--shared=8", ...where, image],
    {
      stdio: "ignore",
    },
  );
  children.push(child);
  await new Promise((r) => setTimeout(r, 500));
  if (child.exitCode !== null) throw new Error(`qemu-nbd ${where.join(" ")} exited (${child.exitCode})`);
}

async function untilConnects(transport: NbdTransport): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await (await NbdClient.connect({ transport, exportName: "img" })).close();
      return;
    } catch (e) {
      if (i > 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** One whole read with nestcloud's client (the data dropped, as nbdcopy's null: does); with
 * `hash`, the SHA-256 of what it read. */
async function nestcloudRead(transport: NbdTransport, hash = false): Promise<string> {
  const c = await NbdClient.connect({ transport, exportName: "img" });
  const h = createHash("sha256");
  for await (const { data } of c.readPieces(0, c.size)) if (hash) h.update(data);
  await c.close();
  return h.digest("hex");
}

interface Row {
  client: string;
  channel: "unix" | "tcp";
  medianMs: number;
  runs: number;
  bytes: number;
  mibPerS: number;
}

async function main(): Promise<void> {
  const image = join(dir, "img.raw");
  writeFileSync(image, randomBytes(SIZE));
  const sha = createHash("sha256").update(readFileSync(image)).digest("hex");
  const sock = join(dir, "nbd.sock");
  const port = await freePort();
  await qemuNbd(image, ["-k", sock]);
  await qemuNbd(image, ["-b", "127.0.0.1", "-p", String(port)]);
  const channels = {
    unix: { transport: unixTransport(sock), uri: `nbd+unix:///img?socket=${sock}` },
    tcp: { transport: tcpTransport("127.0.0.1", port), uri: `nbd://127.0.0.1:${port}/img` },
  } as const;
  for (const ch of Object.values(channels)) await untilConnects(ch.transport);

  type Case = { client: string; channel: keyof typeof channels; run: () => Promise<void> };
  const cases: Case[] = [];
  for (const channel of ["unix", "tcp"] as const) {
    const { transport, uri } = channels[channel];
    const got = await nestcloudRead(transport, true);
    if (got !== sha) throw new Error(`nestcloud read other bytes than the image over ${channel}`);
    cases.push(
      { client: "nestcloud", channel, run: async () => void (await nestcloudRead(transport)) },
      {
        client: "nbdcopy -C 1 -T 1",
        channel,
        run: async () => void execFileSync("nbdcopy", ["-C", "1", "-T", "1", uri, "null:"]),
      },
      {
        client: "nbdcopy (defaults)",
        channel,
        run: async () => void execFileSync("nbdcopy", [uri, "null:"]),
      },
    );
  }
  const times = new Map<Case, number[]>(cases.map((c) => [c, []]));
  for (let r = 0; r < RUNS; r++) {
    for (const c of cases) {
      const t0 = performance.now();
      await c.run();
      times.get(c)!.push(performance.now() - t0);
    }
    log(`run ${r + 1}/${RUNS}`);
  }
  const rows: Row[] = cases.map((c) => {
    const ms = median(times.get(c)!);
    return {
      client: c.client,
      channel: c.channel,
      medianMs: Math.round(ms * 10) / 10,
      runs: RUNS,
      bytes: SIZE,
      mibPerS: Math.round((SIZE / MiB / (ms / 1000)) * 10) / 10,
    };
  });
  const load = loadavg()[0].toFixed(1);
  writeResults("nbd", {
    date: new Date().toISOString(),
    machine: machine(),
    cores: cpus().length,
    load,
    rows,
  });
  const md = [
    "## NBD reads: nestcloud's client against nbdcopy",
    "",
    `Command: \`npm run bench:nbd${quick ? " -- --quick" : ""}\` — ${new Date().toISOString().slice(0, 10)}, ${machine()}, ${cpus().length} cores, load ${load}.`,
    `A whole ${SIZE / MiB} MiB image (no holes) served read-only by qemu-nbd; each run connects afresh (nbdcopy's`,
    `times include starting its process); medians of ${RUNS} runs. nestcloud: 1 MiB requests, 8 in flight, one connection.`,
    "",
    table(
      ["client", "channel", "median ms", "MiB/s"],
      rows.map((r) => [r.client, r.channel, r.medianMs, r.mibPerS]),
    ),
  ].join("\n");
  writeDocsSection("bench:nbd", md);
  process.stdout.write(`${md}\n`);
}

try {
  await main();
} finally {
  for (const c of children) if (c.pid && c.exitCode === null) c.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Introspection speed on one real guest (npm run bench:vmi [-- --quick]): a Debian-kernel guest
 * under QEMU with a few dozen extra processes and its boot modules, its process list and module
 * list read through four channels:
 *   direct            the guest's RAM file (pread);
 *   remote-naive      a page server over TCP, one 4 KiB page per round trip, no cache of any
 *                     kind (the originating research's baseline);
 *   remote-cached     the same plus a client LRU page cache (and page-table cache);
 *   remote-optimized  batching, cache, compression and the server-side list walk (one round trip).
 * The page server is `nestcloud vmi serve` in its own process on loopback, as a server agent
 * would run it. Discovery runs once (direct); remote channels reuse its profile, as a security VM
 * with a cached profile does. Also: BTF parse and kallsyms decode times.
 *
 * Every figure is the median of several repetitions, the channels taking turns. "fresh" times a
 * whole first query on a new client (connect and handshake included, caches empty); "warm" times
 * a query on an established connection (caches are still emptied at the start of every query:
 * the guest runs, so cached pages are only valid for one pass).
 *
 * Writes bench/results/vmi.json and the bench:vmi section of docs/benchmarks.md, and checks the
 * acceptance target (remote-optimized process list <= 1.5x direct).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildGuestImage, QemuProcess, SerialConsole } from "../../src/qemu/index.ts";
import {
  Btf,
  buildProfile,
  connectRemoteMemory,
  decodeKallsyms,
  discoverKernel,
  findVmcoreinfo,
  Kernel,
  KernelImageMemory,
  type KernelOptions,
  kallsymsAnchor,
  kallsymsLocation,
  listModules,
  listProcesses,
  openRamFile,
  type PhysicalMemory,
  profileKey,
  type RemoteMode,
  readBtfBlob,
  readKallsymsBlobs,
} from "../../src/vmi/index.ts";
import {
  listeningPort,
  machine,
  median,
  root,
  stopChild,
  table,
  writeDocsSection,
  writeResults,
} from "../lib.ts";

const quick = process.argv.includes("--quick");
const REPEATS = quick ? 5 : 15;
const PARSE_REPEATS = quick ? 3 : 7;
/** Long-lived processes started in the guest on top of what it runs anyway. */
const EXTRA_PROCESSES = 30;
const log = (s: string) => process.stderr.write(`${s}\n`);
const runStamp = new Date().toISOString();

type Channel = "direct" | `remote-${RemoteMode}`;
type Query = "ps" | "modules";
const CHANNELS: Channel[] = ["direct", "remote-naive", "remote-cached", "remote-optimized"];
const QUERIES: Query[] = ["ps", "modules"];

export interface Row {
  channel: Channel;
  query: Query;
  /** Median ms of a query on a fresh client (connect + handshake + query); direct: open + query. */
  ms: number;
  /** Median ms of a query on an established connection / open file. */
  warmMs: number;
  /** Round trips and bytes on the wire of one query (sent + received; handshake not included). */
  roundTrips: number;
  wireBytes: number;
  /** Round trips and bytes of connecting (TCP connect and HELLO, AUTH/WELCOME, guest lookup). */
  connectRoundTrips: number;
  connectWireBytes: number;
  /** Entries the query returned (median). */
  entries: number;
  repeats: number;
}

interface Sample {
  freshMs: number[];
  warmMs: number[];
  roundTrips: number[];
  wireBytes: number[];
  connectRoundTrips: number[];
  connectWireBytes: number[];
  entries: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `nestcloud vmi serve` for the guest; resolves with its port once it listens. */
async function startServer(
  ramFile: string,
  tokenFile: string,
): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    process.execPath,
    [
      join(root, "bin/nestcloud.js"),
      "vmi",
      "serve",
      "--guest",
      `g=${ramFile}`,
      "--token-file",
      tokenFile,
      "--client-id",
      "bench",
    ],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
  );
  return { child, port: await listeningPort(child) };
}

const MODE_KERNEL_OPTIONS: Record<RemoteMode, KernelOptions> = {
  // Nothing cached, not even page tables: every page is a round trip.
  naive: { ptCache: false },
  cached: {},
  optimized: {},
};

function run(k: Kernel, q: Query): Promise<readonly unknown[]> {
  return q === "ps" ? listProcesses(k) : listModules(k);
}

/** Short-lived processes of the guest's heartbeat loop, as pid:comm. */
const HEARTBEAT = /^\d+:(sleep|init|exe)$/;

/** What must agree across channels: module names; processes as pid:comm. */
function identity(q: Query, xs: readonly unknown[]): Set<string> {
  if (q === "modules") return new Set((xs as { name: string }[]).map((m) => m.name));
  return new Set((xs as { pid: number; comm: string }[]).map((p) => `${p.pid}:${p.comm}`));
}

interface Parse {
  btfBytes: number;
  btfTypes: number;
  btfParseMs: number;
  btfParseAndProfileMs: number;
  kallsymsSymbols: number;
  kallsymsNamesBytes: number;
  kallsymsDecodeMs: number;
  discoveryMs: Record<string, number>;
}

interface GuestInfo {
  kernel: string;
  memoryMiB: number;
  processes: number;
  modules: number;
}

async function main(): Promise<{ rows: Row[]; parse: Parse; guest: GuestInfo }> {
  const stateDir = mkdtempSync(join(tmpdir(), "nc-bench-vmi-"));
  const poolDir = mkdtempSync("/dev/shm/nc-bench-vmi-");
  let guest: QemuProcess | undefined;
  let con: SerialConsole | undefined;
  let server: ChildProcess | undefined;
  let ram: ReturnType<typeof openRamFile> | undefined;
  try {
    const image = await buildGuestImage({ log });
    log(`bench:vmi — booting a ${image.kernelRelease} guest (256 MiB, TCG)`);
    guest = await QemuProcess.start({
      stateDir,
      spec: { guestId: "g", memoryMiB: 256, poolDir, image, bootId: "bench-vmi" },
    });
    con = await SerialConsole.connect(guest.paths.serialSocket, { label: "g" });
    await con.waitForLine(/NESTCLOUD-READY bench-vmi/, 120_000, { includeHistory: true });
    const started = await con.run(
      `i=0; while [ $i -lt ${EXTRA_PROCESSES} ]; do sleep $((5000 + i)) & i=$((i + 1)); done; echo started`,
      30_000,
    );
    if (started.exitCode !== 0) throw new Error(`starting processes: ${started.output}`);
    await sleep(500);

    ram = openRamFile(guest.poolFile);
    const kernel = await discoverKernel(ram.memory);
    log(`  discovered ${kernel.facts.osRelease} in ${JSON.stringify(roundAll(kernel.facts.timings))}`);
    const guestInfo: GuestInfo = {
      kernel: kernel.facts.osRelease,
      memoryMiB: 256,
      processes: (await listProcesses(kernel)).length,
      modules: (await listModules(kernel)).length,
    };
    log(`  ${guestInfo.processes} processes, ${guestInfo.modules} modules`);
    if (guestInfo.modules < 1) throw new Error("the guest has no module loaded");

    // --- parsers: BTF and kallsyms from memory already read ---
    const image2 = new KernelImageMemory(ram.memory, kernel.facts.physBase);
    const btfBytes = await readBtfBlob(image2, kernel.symbols);
    const vmci = await findVmcoreinfo(ram.memory);
    if (!vmci) throw new Error("no VMCOREINFO");
    const blobs = await readKallsymsBlobs(image2, kallsymsLocation(vmci.info));
    const anchor = kallsymsAnchor(vmci.info);
    const release = kernel.facts.osRelease;
    const btfParse: number[] = [];
    const btfProfile: number[] = [];
    const kallsyms: number[] = [];
    let symbols = 0;
    let btfTypes = 0;
    for (let i = 0; i < PARSE_REPEATS; i++) {
      let t = performance.now();
      const btf = Btf.parse(btfBytes);
      btfParse.push(performance.now() - t);
      btfTypes = btf.typeCount;
      t = performance.now();
      buildProfile(Btf.parse(btfBytes), profileKey(release, undefined, btfBytes), release);
      btfProfile.push(performance.now() - t);
      t = performance.now();
      symbols = decodeKallsyms(blobs, { anchor }).symbols.length;
      kallsyms.push(performance.now() - t);
    }
    const parse: Parse = {
      btfBytes: btfBytes.length,
      btfTypes,
      btfParseMs: median(btfParse),
      btfParseAndProfileMs: median(btfProfile),
      kallsymsSymbols: symbols,
      kallsymsNamesBytes: blobs.names.length,
      kallsymsDecodeMs: median(kallsyms),
      discoveryMs: roundAll(kernel.facts.timings),
    };
    log(
      `  BTF ${(btfBytes.length / 1e6).toFixed(1)} MB parse ${parse.btfParseMs.toFixed(1)} ms; kallsyms ${symbols} symbols decode ${parse.kallsymsDecodeMs.toFixed(1)} ms`,
    );

    // --- the page server, in its own process ---
    const token = "bench-vmi-token-0123456789abcdef";
    const tokenFile = join(stateDir, "token");
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const srv = await startServer(guest.poolFile, tokenFile);
    server = srv.child;
    log(`  page server pid ${server.pid} on 127.0.0.1:${srv.port}`);

    const connect = (mode: RemoteMode) =>
      connectRemoteMemory({ host: "127.0.0.1", port: srv.port, token, clientId: "bench", guest: "g", mode });
    const kernelOver = (m: PhysicalMemory, opts: KernelOptions) =>
      new Kernel(m, kernel.facts, kernel.symbols, kernel.profile, undefined, opts);

    const samples = new Map<string, Sample>();
    const sample = (c: Channel, q: Query): Sample => {
      const key = `${c}/${q}`;
      let s = samples.get(key);
      if (!s) {
        s = {
          freshMs: [],
          warmMs: [],
          roundTrips: [],
          wireBytes: [],
          connectRoundTrips: [],
          connectWireBytes: [],
          entries: [],
        };
        samples.set(key, s);
      }
      return s;
    };
    // The reference: what two direct passes a moment apart agree on. The only processes allowed
    // to differ are those of the guest's heartbeat loop, `sleep 1` every second: a fork of init,
    // then busybox re-executing itself (/proc/self/exe), then sleep.
    const reference = new Map<Query, Set<string>>();
    for (const q of QUERIES) {
      const a = identity(q, await run(kernel, q));
      await sleep(1200);
      const b = identity(q, await run(kernel, q));
      reference.set(q, new Set([...a].filter((x) => b.has(x))));
    }
    let mismatches = 0;
    const check = (c: Channel, q: Query, xs: readonly unknown[]) => {
      const ref = reference.get(q) as Set<string>;
      const got = identity(q, xs);
      const missing = [...ref].filter((x) => !got.has(x));
      const extra = [...got].filter((x) => !ref.has(x) && !(q === "ps" && HEARTBEAT.test(x)));
      if (missing.length + extra.length > 0) {
        mismatches++;
        log(`  ${c} ${q}: differs from direct (missing ${missing.join(" ")}; extra ${extra.join(" ")})`);
      }
    };

    /** One fresh-client measurement (and one warm one on the same connection). */
    async function measure(c: Channel, q: Query, record: boolean): Promise<void> {
      const s = sample(c, q);
      if (c === "direct") {
        const t0 = performance.now();
        const rf = openRamFile(guest!.poolFile);
        try {
          const k = kernelOver(rf.memory, {});
          const out = await run(k, q);
          const fresh = performance.now() - t0;
          const t1 = performance.now();
          const again = await run(k, q);
          const warm = performance.now() - t1;
          if (record) {
            s.freshMs.push(fresh);
            s.warmMs.push(warm);
            s.roundTrips.push(0);
            s.wireBytes.push(0);
            s.connectRoundTrips.push(0);
            s.connectWireBytes.push(0);
            s.entries.push(out.length);
          }
          check(c, q, out);
          check(c, q, again);
        } finally {
          rf.close();
        }
        return;
      }
      const mode = c.slice("remote-".length) as RemoteMode;
      const t0 = performance.now();
      const m = await connect(mode);
      try {
        const c0 = { ...m.stats };
        const k = kernelOver(m, MODE_KERNEL_OPTIONS[mode]);
        const out = await run(k, q);
        const fresh = performance.now() - t0;
        const c1 = { ...m.stats };
        const t1 = performance.now();
        const again = await run(k, q);
        const warm = performance.now() - t1;
        if (record) {
          s.freshMs.push(fresh);
          s.warmMs.push(warm);
          s.roundTrips.push(c1.roundTrips - c0.roundTrips);
          s.wireBytes.push(c1.bytesSent + c1.bytesReceived - c0.bytesSent - c0.bytesReceived);
          // TCP connect with the server's HELLO, AUTH/WELCOME, then any request opening the guest.
          s.connectRoundTrips.push(2 + c0.roundTrips);
          s.connectWireBytes.push(c0.bytesSent + c0.bytesReceived);
          s.entries.push(out.length);
        }
        check(c, q, out);
        check(c, q, again);
      } finally {
        m.close();
      }
    }

    // One unrecorded pass over everything (JIT, server start-up), then the recorded ones, the
    // channels taking turns so that a noisy moment hits all of them alike.
    for (const q of QUERIES) for (const c of CHANNELS) await measure(c, q, false);
    for (let i = 0; i < REPEATS; i++) {
      for (const q of QUERIES) for (const c of CHANNELS) await measure(c, q, true);
      if ((i + 1) % 5 === 0) log(`  ${i + 1}/${REPEATS} repetitions`);
    }
    if (mismatches > 0) throw new Error(`${mismatches} results differed from the direct channel`);

    const rows: Row[] = [];
    for (const q of QUERIES)
      for (const c of CHANNELS) {
        const s = sample(c, q);
        rows.push({
          channel: c,
          query: q,
          ms: round(median(s.freshMs), 3),
          warmMs: round(median(s.warmMs), 3),
          roundTrips: median(s.roundTrips),
          wireBytes: median(s.wireBytes),
          connectRoundTrips: median(s.connectRoundTrips),
          connectWireBytes: median(s.connectWireBytes),
          entries: median(s.entries),
          repeats: s.freshMs.length,
        });
      }
    return { rows, parse, guest: guestInfo };
  } finally {
    if (server) await stopChild(server);
    ram?.close();
    con?.close();
    if (guest) await guest.stop().catch(() => guest?.kill());
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(poolDir, { recursive: true, force: true });
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function roundAll(o: Readonly<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v, 1)]));
}

const { rows, parse, guest } = await main();
const get = (c: Channel, q: Query) => rows.find((r) => r.channel === c && r.query === q) as Row;
const ratio = (c: Channel, q: Query, warm = false) =>
  warm ? get(c, q).warmMs / get("direct", q).warmMs : get(c, q).ms / get("direct", q).ms;
const TARGET = 1.5;
const psFresh = ratio("remote-optimized", "ps");
const psWarm = ratio("remote-optimized", "ps", true);
const checks = [
  {
    what: `remote-optimized process list <= ${TARGET}x direct, fresh client (connect included)`,
    measured: `${psFresh.toFixed(2)}x (${get("remote-optimized", "ps").ms.toFixed(2)} vs ${get("direct", "ps").ms.toFixed(2)} ms)`,
    pass: psFresh <= TARGET,
  },
  {
    what: `remote-optimized process list <= ${TARGET}x direct, warm connection`,
    measured: `${psWarm.toFixed(2)}x (${get("remote-optimized", "ps").warmMs.toFixed(2)} vs ${get("direct", "ps").warmMs.toFixed(2)} ms)`,
    pass: psWarm <= TARGET,
  },
];

const fmtBytes = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
const head = [
  "channel",
  "query",
  "entries",
  "fresh ms",
  "warm ms",
  "x direct (fresh / warm)",
  "round trips",
  "wire bytes",
  "connect (round trips, bytes)",
];
const body = rows.map((r) => [
  r.channel,
  r.query,
  r.entries,
  r.ms.toFixed(2),
  r.warmMs.toFixed(2),
  r.channel === "direct"
    ? "1"
    : `${ratio(r.channel, r.query).toFixed(2)} / ${ratio(r.channel, r.query, true).toFixed(2)}`,
  r.roundTrips,
  r.channel === "direct" ? "-" : fmtBytes(r.wireBytes),
  r.channel === "direct" ? "-" : `${r.connectRoundTrips}, ${fmtBytes(r.connectWireBytes)}`,
]);
const parseRows = [
  [
    "BTF parse",
    `${(parse.btfBytes / 1e6).toFixed(2)} MB, ${parse.btfTypes} types`,
    parse.btfParseMs.toFixed(1),
  ],
  ["BTF parse + profile build", "the fields the queries use", parse.btfParseAndProfileMs.toFixed(1)],
  [
    "kallsyms decode",
    `${parse.kallsymsSymbols} symbols, ${(parse.kallsymsNamesBytes / 1e6).toFixed(2)} MB of names`,
    parse.kallsymsDecodeMs.toFixed(1),
  ],
];
const checkRows = checks.map((c) => [c.what, c.measured, c.pass ? "yes" : "NO"]);
const naiveX = ratio("remote-naive", "ps");
const cachedX = ratio("remote-cached", "ps");

const results = {
  date: runStamp,
  machine: machine(),
  quick,
  repeats: REPEATS,
  guest,
  rows,
  parse,
  acceptance: checks,
};
const resultsFile = writeResults("vmi", results);

const md = `## Introspection channels (vmi, real guest)

Command: \`npm run bench:vmi\`${quick ? " (--quick)" : ""} — ${runStamp.slice(0, 10)}, ${machine()}, 2 cores, QEMU under TCG.
One running guest (${guest.kernel}, 256 MiB, ${guest.processes} processes of which ${EXTRA_PROCESSES} extra
\`sleep\`s, ${guest.modules} modules). Direct = its RAM file (pread); remote = \`nestcloud vmi serve\` in its
own process, over TCP on loopback. remote-naive: one 4 KiB page per round trip, no cache at all (the
originating research's baseline, which found remote 15x slower than local); remote-cached: the same with
the client's LRU page cache and page-table cache (the research: 3.6x); remote-optimized: batching, cache,
compression and the server-side list walk. Discovery ran once; remote clients reuse its profile.

Median of ${REPEATS} repetitions, the channels taking turns. "fresh": a new client per query (TCP
connect, handshake and guest lookup included; direct: opening the RAM file); "warm": the next query on
that connection. Every query starts with empty caches (the guest runs, so cached pages are only valid
for one pass). Round trips and wire bytes are per query; connecting costs the extra round trips shown
(TCP connect with the server's HELLO, then AUTH/WELCOME, which also opens the guest).
Every channel returned the same processes and modules as direct.

${table(head, body)}

Process list: remote-naive ${naiveX.toFixed(1)}x direct, remote-cached ${cachedX.toFixed(1)}x, remote-optimized ${psFresh.toFixed(2)}x (fresh) / ${psWarm.toFixed(2)}x (warm).
remote-optimized adds ${(get("remote-optimized", "ps").warmMs - get("direct", "ps").warmMs).toFixed(2)} ms to the list walk on a warm connection (one round
trip, encoding, MACs; the server runs the same walk as direct) and ${(get("remote-optimized", "ps").ms - get("direct", "ps").ms).toFixed(2)} ms on a fresh client
(TCP connect and HELLO, AUTH/WELCOME, then the request). The page cache barely helps the process list: each
task_struct sits on its own pages, so only batching and the server-side walk remove round trips.

Parsers (median of ${PARSE_REPEATS}, input already in memory):

${table(["step", "input", "ms"], parseRows)}

Acceptance (one run):

${table(["target", "measured", "met"], checkRows)}`;
writeDocsSection("bench:vmi", md);
process.stdout.write(
  `${table(head, body)}\n\n${table(["step", "input", "ms"], parseRows)}\n\n${table(["target", "measured", "met"], checkRows)}\n`,
);
process.stdout.write(`wrote ${resultsFile} and docs/benchmarks.md\n`);
if (checks.some((c) => !c.pass)) process.exitCode = 1;

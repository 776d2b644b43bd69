/**
 * Security-VM monitors over their three channels on one real guest (npm run bench:secvm
 * [-- --quick]; with --follow, monitoring across moves instead: follow.ts): the guest of test/support/secvm-target.ts (Debian kernel under QEMU TCG, RAM
 * in /dev/shm, a 64 MiB ext4 data disk it mounts, a user-mode NIC) monitored over
 *   local   the RAM file; NBD and the mirror over unix sockets (same host VM);
 *   direct  the same paths from another host VM of the server (on this one machine the bytes
 *           take the same path: the RAM file and unix sockets cross namespaces);
 *   remote  TLS over TCP on loopback with client certificates: the page server in its own
 *           process, NBD (NBD_OPT_STARTTLS) through the target server's TLS relay to QEMU's
 *           unix socket, the mirror chardev with tls-creds.
 * Monitors (each timed whole, connecting included):
 *   memory-ps            a process list on a fresh connection (RAM file opened / TLS connect,
 *                        resuming the TLS session, and AUTH included); memory-ps-warm: the next
 *                        list on the same connection;
 *   memory-check         hidden tasks, syscall table, module list, kernel text hash (fresh);
 *   disk-read            DISK_READ_MIB of the drive through a read-only export;
 *   integrity-full       a full integrity round (walk, read and hash every file; no scan);
 *   integrity-incremental the next round after 1 % of the files changed in the guest;
 *   malware-scan         a full round with ClamAV (read, hash, scan every file);
 *   packet-detect        from the guest's command sending a DNS query that matches a rule to
 *                        the alert in nestcloud (Suricata live, one monitor per channel).
 * Medians of RUNS runs after one warm-up, the channels taking turns within each run.
 * Writes bench/results/secvm.json and the bench:secvm section of docs/benchmarks.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Channel } from "../../src/monitor/alert.ts";
import {
  type Alert,
  DiskMonitor,
  expectClient,
  expectServer,
  hexSignature,
  NbdClient,
  NetworkMonitor,
  tlsOptions,
  writeSignatureDatabase,
} from "../../src/monitor/index.ts";
import { addNetMirror, openDiskView, removeNetMirror } from "../../src/qemu/index.ts";
import {
  checkSyscallTable,
  connectRemoteMemory,
  discoverKernel,
  findHiddenTasks,
  hashKernelText,
  Kernel,
  listModules,
  listProcesses,
  openRamFile,
  type PhysicalMemory,
  type RemoteMemory,
} from "../../src/vmi/index.ts";
import { freePort, GATEWAY, type SecvmTarget, startSecvmTarget } from "../../test/support/secvm-target.ts";
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
const RUNS = quick ? 5 : 7;
const DISK_READ_MIB = 32;
const MEMORY_WARMUP = 300;
const PHASE_SAMPLES = quick ? 40 : 100;
const DOCS = 240;
const GUEST = "benchguest";
const CHANNELS: Channel[] = ["local", "direct", "remote"];
const MONITORS = [
  "memory-ps",
  "memory-ps-warm",
  "memory-check",
  "disk-read",
  "integrity-full",
  "integrity-incremental",
  "malware-scan",
  "packet-detect",
] as const;
type Monitor = (typeof MONITORS)[number];
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Row {
  monitor: Monitor;
  channel: Channel;
  medianMs: number;
  runs: number;
  /** What the monitor took from its target: NBD bytes read (disk), wire bytes (remote memory). */
  bytes: number | null;
  minMs: number;
  maxMs: number;
}

async function until<T>(what: string, f: () => T | null | undefined | false, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

async function startPageServer(t: SecvmTarget): Promise<{ child: ChildProcess; port: number }> {
  const dir = join(t.stateDir, "pagesrv");
  mkdirSync(dir, { mode: 0o700 });
  writeFileSync(join(dir, "ca-cert.pem"), t.creds.pageServer.caPem);
  writeFileSync(join(dir, "cert.pem"), t.creds.pageServer.certPem);
  writeFileSync(join(dir, "key.pem"), t.creds.pageServer.keyPem, { mode: 0o600 });
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(root, "bench/secvm/page-server.ts"), t.q.poolFile, GUEST, dir],
    { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
  );
  return { child, port: await listeningPort(child) };
}

async function main(): Promise<{ rows: Row[]; info: Record<string, unknown>; phases: MemoryPhases }> {
  log(`bench:secvm — booting the guest (TCG), ${RUNS} runs`);
  const t = await startSecvmTarget({ guestId: GUEST, docs: DOCS, diskMiB: 64, log });
  let page: { child: ChildProcess; port: number } | undefined;
  const netmons = new Map<Channel, NetworkMonitor>();
  const opened: Array<{ close(): void }> = [];
  try {
    const ram = openRamFile(t.q.poolFile);
    opened.push(ram);
    const kernel = await discoverKernel(ram.memory);
    const kernelOver = (m: PhysicalMemory) =>
      new Kernel(m, kernel.facts, kernel.symbols, kernel.profile, undefined, {});
    page = await startPageServer(t);
    const pagePort = page.port;
    log(`  ${kernel.facts.osRelease}; page server pid ${page.child.pid} on 127.0.0.1:${pagePort} (TLS)`);
    // One TLS options object for the security VM (its SecureContext is made once, its TLS
    // session resumed), and the guest's size known in advance as a security VM knows it.
    const remoteTls = {
      ...tlsOptions(t.creds.secvm),
      verifyServer: expectServer("page-server"),
      sessions: new Map<string, Buffer>(),
      guestSize: ram.memory.size,
    };

    /** The guest's memory over a channel, fresh. */
    const memoryOver = async (channel: Channel): Promise<{ m: PhysicalMemory; close(): void }> => {
      if (channel !== "remote") {
        const rf = openRamFile(t.q.poolFile);
        return { m: rf.memory, close: () => rf.close() };
      }
      const m = await connectRemoteMemory({
        host: "127.0.0.1",
        port: pagePort,
        guest: GUEST,
        tls: remoteTls,
      });
      return { m, close: () => m.close() };
    };
    const wire = (m: PhysicalMemory) => {
      const s = (m as RemoteMemory).client?.stats;
      return s ? s.bytesSent + s.bytesReceived : null;
    };

    const db = await writeSignatureDatabase(join(t.stateDir, "clamav"), "bench.ndb", [
      hexSignature("Nestcloud.Bench.Never", Buffer.from("NESTCLOUD-BENCH-NEVER-MATCHES-9f3a")),
    ]);
    const rules = join(t.stateDir, "tenant.rules");
    writeFileSync(
      rules,
      'alert udp any any -> any 53 (msg:"TENANT bench lookup"; content:"BENCH-FORBIDDEN"; nocase; priority:1; sid:1000201; rev:1;)\n',
    );
    const alerts = new Map<Channel, Array<Alert & { at: number }>>();
    for (const channel of CHANNELS) {
      const list: Array<Alert & { at: number }> = [];
      alerts.set(channel, list);
      const listen =
        channel === "remote"
          ? {
              type: "tls" as const,
              host: "127.0.0.1",
              port: await freePort(),
              tls: { ...tlsOptions(t.creds.secvm), authorize: expectClient("qemu", GUEST) },
            }
          : { type: "unix" as const, path: join(t.stateDir, `mirror-${channel}.sock`) };
      netmons.set(
        channel,
        await NetworkMonitor.start({
          target: GUEST,
          channel,
          runDir: join(t.stateDir, `netmon-${channel}`),
          listen,
          ruleFiles: [rules],
          onAlert: (a) => list.push({ ...a, at: performance.now() }),
        }),
      );
    }

    let viewNo = 0;
    let recording: string | undefined;
    const view = async (rotate: boolean, fleece = true) => {
      viewNo++;
      const start = `bench${viewNo}`;
      const v = await openDiskView(t.q.qmp, {
        node: t.diskNode,
        exportId: `bench-v${viewNo}`,
        fleeceFile: fleece ? join(t.stateDir, `fleece-${viewNo}.qcow2`) : undefined,
        rotate: rotate ? { freeze: recording, start } : undefined,
      });
      if (rotate) recording = start;
      return v;
    };
    let changeNo = 0;
    /** 1 % of the files: as many documents, appended to inside the guest. */
    const changeOnePercent = async () => {
      const n = Math.max(1, Math.round(t.files.length / 100));
      changeNo++;
      const cmds = Array.from(
        { length: n },
        (_, i) => `echo change-${changeNo} >> /mnt/home/user/doc${(changeNo * 7 + i * 13) % DOCS}.txt`,
      );
      await t.sh(`${cmds.join("; ")}; sync`);
      return n;
    };

    const samples = new Map<string, { ms: number[]; bytes: Array<number | null> }>();
    const record = (monitor: Monitor, channel: Channel, ms: number, bytes: number | null) => {
      const k = `${monitor}/${channel}`;
      const s = samples.get(k) ?? { ms: [], bytes: [] };
      s.ms.push(ms);
      s.bytes.push(bytes);
      samples.set(k, s);
    };

    async function measure(channel: Channel, keep: boolean): Promise<void> {
      const rec = (m: Monitor, ms: number, bytes: number | null) => {
        if (keep) record(m, channel, ms, bytes);
      };
      // --- memory ---
      {
        const t0 = performance.now();
        const mem = await memoryOver(channel);
        const k = kernelOver(mem.m);
        await listProcesses(k);
        const fresh = performance.now() - t0;
        const w0 = wire(mem.m);
        const t1 = performance.now();
        await listProcesses(k);
        const warm = performance.now() - t1;
        const w1 = wire(mem.m);
        mem.close();
        rec("memory-ps", fresh, w0);
        rec("memory-ps-warm", warm, w0 === null || w1 === null ? null : w1 - w0);
      }
      {
        const t0 = performance.now();
        const mem = await memoryOver(channel);
        const k = kernelOver(mem.m);
        await findHiddenTasks(k);
        await checkSyscallTable(k);
        await listModules(k);
        await hashKernelText(k);
        const ms = performance.now() - t0;
        rec("memory-check", ms, wire(mem.m));
        mem.close();
      }
      // --- disk: the NBD server on the channel's transport first, then the views ---
      const transport = await t.nbdTransport(channel);
      {
        const v = await view(false, false);
        try {
          const t0 = performance.now();
          const c = await NbdClient.connect({ transport, exportName: v.exportName });
          let n = 0;
          for await (const p of c.readPieces(0, DISK_READ_MIB * 1024 * 1024)) n += p.data.length;
          await c.close();
          rec("disk-read", performance.now() - t0, n);
        } finally {
          await v.close();
        }
      }
      {
        const mon = new DiskMonitor({ target: GUEST, channel, clamav: null });
        try {
          let v = await view(true);
          try {
            const t0 = performance.now();
            const r = await mon.round({ transport, exportName: v.exportName, dirtyBitmap: null });
            rec("integrity-full", performance.now() - t0, r.bytesRead);
          } finally {
            await v.close();
          }
          await changeOnePercent();
          v = await view(true);
          try {
            const t0 = performance.now();
            const r = await mon.round({ transport, exportName: v.exportName, dirtyBitmap: v.frozenBitmap });
            if (r.mode !== "incremental") throw new Error(`incremental round was ${r.mode}: ${r.reason}`);
            rec("integrity-incremental", performance.now() - t0, r.bytesRead);
          } finally {
            await v.close();
          }
        } finally {
          await mon.close();
        }
      }
      {
        const mon = new DiskMonitor({
          target: GUEST,
          channel,
          clamav: { databases: [db], scratchParent: t.stateDir },
        });
        const v = await view(false);
        try {
          const t0 = performance.now();
          const r = await mon.round({ transport, exportName: v.exportName, dirtyBitmap: null });
          if (r.filesScanned === 0) throw new Error("nothing scanned");
          rec("malware-scan", performance.now() - t0, r.bytesRead);
        } finally {
          await v.close();
          await mon.close();
        }
      }
      // --- network ---
      {
        const mon = netmons.get(channel) as NetworkMonitor;
        const list = alerts.get(channel) as Array<Alert & { at: number }>;
        const addr = mon.address;
        const id = `benchm-${channel}`;
        const conns = mon.stats().receiver.connections;
        await addNetMirror(t.q.qmp, {
          id,
          netdev: "nic-n0",
          to:
            addr.type === "tls"
              ? { type: "inet", host: "127.0.0.1", port: addr.port, tlsCreds: "nc-tls-client" }
              : { type: "unix", path: (addr as { path: string }).path },
        });
        try {
          await until("the mirror connection", () => mon.stats().receiver.connections > conns, 10_000);
          await sleep(200);
          const name = `bench-forbidden-${channel}-${Date.now()}.example`;
          const seen = list.length;
          const t0 = performance.now();
          await t.sh(`(timeout 3 nslookup ${name} ${GATEWAY} >/dev/null 2>&1 &)`);
          const a = await until(
            `the alert over ${channel}`,
            () => list.slice(seen).find((x) => x.evidence.signatureId === 1000201),
            30_000,
          );
          rec("packet-detect", a.at - t0, null);
          await sleep(3200); // the query's retries end before the next channel's turn
        } finally {
          await removeNetMirror(t.q.qmp, id);
        }
      }
    }

    // Memory warm-up: a monitor and a page server run continuously, so both sides' code is
    // compiled (JIT) by the time they matter; a few hundred process lists bring the RAM-file
    // path, the client and the page server (its own process) to that state alike.
    for (const channel of CHANNELS) {
      const mem = await memoryOver(channel);
      const k = kernelOver(mem.m);
      for (let i = 0; i < MEMORY_WARMUP; i++) await listProcesses(k);
      mem.close();
    }

    for (let run = 0; run <= RUNS; run++) {
      const order = CHANNELS.map((_, i) => CHANNELS[(i + run) % CHANNELS.length]);
      for (const channel of order) await measure(channel, run > 0);
      log(`  run ${run}${run === 0 ? " (warm-up)" : ""} done (${order.join(", ")})`);
    }

    // Memory phases of the remote channel (after the runs, same guest): what a fresh process
    // list costs beyond the direct one.
    const phases = await memoryPhases(memoryOver, kernelOver);

    const rows: Row[] = [];
    for (const monitor of MONITORS) {
      for (const channel of CHANNELS) {
        const s = samples.get(`${monitor}/${channel}`);
        if (!s) continue;
        const bytes = s.bytes.every((b) => b !== null) ? median(s.bytes as number[]) : null;
        rows.push({
          monitor,
          channel,
          medianMs: round2(median(s.ms)),
          runs: s.ms.length,
          bytes,
          minMs: round2(Math.min(...s.ms)),
          maxMs: round2(Math.max(...s.ms)),
        });
      }
    }
    const info = {
      kernel: kernel.facts.osRelease,
      memoryMiB: 256,
      diskMiB: 64,
      files: t.files.length,
      changedPerRound: Math.max(1, Math.round(t.files.length / 100)),
      diskReadMiB: DISK_READ_MIB,
      processes: (await listProcesses(kernel)).length,
    };
    return { rows, info, phases };
  } finally {
    for (const o of opened) o.close();
    for (const m of netmons.values()) await m.stop().catch((e) => log(`netmon stop: ${e}`));
    if (page) await stopChild(page.child);
    await t.close();
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export interface MemoryPhases {
  samples: number;
  /** Direct: a process list over an already open RAM file. */
  directWarmMs: number;
  /** Direct: opening the RAM file and a process list. */
  directFreshMs: number;
  /** Remote: TLS connect (session resumed) and the first reply (an `info`). */
  tlsConnectMs: number;
  /** Remote: one `info` round trip on an open connection (no server work). */
  roundTripMs: number;
  /** Remote: a process list on an open connection, and the server's share of it (its `us`). */
  warmMs: number;
  warmServerMs: number;
  /** Remote: connect and a process list. */
  freshMs: number;
  warmBytes: number;
}

async function memoryPhases(
  memoryOver: (c: Channel) => Promise<{ m: PhysicalMemory; close(): void }>,
  kernelOver: (m: PhysicalMemory) => Kernel,
): Promise<MemoryPhases> {
  const n = PHASE_SAMPLES;
  const times = async (f: () => Promise<unknown>) => {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await f();
      ms.push(performance.now() - t0);
    }
    return round3(median(ms));
  };
  const direct = await memoryOver("direct");
  const kd = kernelOver(direct.m);
  const directWarmMs = await times(() => listProcesses(kd));
  direct.close();
  const directFreshMs = await times(async () => {
    const d = await memoryOver("direct");
    await listProcesses(kernelOver(d.m));
    d.close();
  });
  const info = (m: PhysicalMemory) => {
    const r = m as RemoteMemory;
    return r.client.request({ op: "info", guest: r.guest });
  };
  const tlsConnectMs = await times(async () => {
    const r = await memoryOver("remote");
    await info(r.m);
    r.close();
  });
  const remote = await memoryOver("remote");
  const roundTripMs = await times(() => info(remote.m));
  const kr = kernelOver(remote.m);
  const stats = (remote.m as RemoteMemory).client.stats;
  const us0 = stats.serverUs;
  const b0 = stats.bytesSent + stats.bytesReceived;
  const warmMs = await times(() => listProcesses(kr));
  const warmServerMs = round3((stats.serverUs - us0) / 1000 / n);
  const warmBytes = Math.round((stats.bytesSent + stats.bytesReceived - b0) / n);
  remote.close();
  const freshMs = await times(async () => {
    const r = await memoryOver("remote");
    await listProcesses(kernelOver(r.m));
    r.close();
  });
  return {
    samples: n,
    directWarmMs,
    directFreshMs,
    tlsConnectMs,
    roundTripMs,
    warmMs,
    warmServerMs,
    freshMs,
    warmBytes,
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

interface Target {
  what: string;
  ratio: number;
  limit: number;
  detail: string;
}

function targets(rows: Row[]): Target[] {
  const ms = (m: Monitor, c: Channel) =>
    rows.find((r) => r.monitor === m && r.channel === c)?.medianMs ?? NaN;
  const out: Target[] = [];
  const ratio = (what: string, a: number, b: number, limit: number, detail: string) =>
    out.push({ what, ratio: a / b, limit, detail: `${detail}: ${a.toFixed(2)} / ${b.toFixed(2)} ms` });
  ratio(
    "memory-ps remote / direct, fresh connection",
    ms("memory-ps", "remote"),
    ms("memory-ps", "direct"),
    1.2,
    "fresh",
  );
  ratio(
    "memory-ps remote / direct, warm",
    ms("memory-ps-warm", "remote"),
    ms("memory-ps-warm", "direct"),
    1.1,
    "warm",
  );
  for (const m of ["disk-read", "integrity-full", "malware-scan", "packet-detect"] as const)
    ratio(`${m} remote / local`, ms(m, "remote"), ms(m, "local"), 1.1, m);
  for (const c of CHANNELS)
    ratio(
      `integrity-incremental / integrity-full (${c})`,
      ms("integrity-incremental", c),
      ms("integrity-full", c),
      0.1,
      c,
    );
  for (const m of MONITORS) ratio(`${m} direct / local`, ms(m, "direct"), ms(m, "local"), 1.05, m);
  return out;
}

/** The channels bench's figures, table and docs section. */
async function report(): Promise<void> {
  const { rows, info, phases } = await main();
  const goals = targets(rows);
  const stamp = new Date().toISOString();
  const file = writeResults("secvm", {
    date: stamp,
    machine: machine(),
    runs: RUNS,
    quick,
    guest: info,
    rows,
    targets: goals,
    memoryPhases: phases,
  });
  const fmtBytes = (b: number | null) =>
    b === null ? "-" : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
  const byMonitor = MONITORS.map((m) => {
    const r = (c: Channel) => rows.find((x) => x.monitor === m && x.channel === c);
    const local = r("local")?.medianMs ?? NaN;
    return [
      m,
      ...CHANNELS.map((c) => r(c)?.medianMs.toFixed(2) ?? "-"),
      ((r("direct")?.medianMs ?? NaN) / local).toFixed(2),
      ((r("remote")?.medianMs ?? NaN) / local).toFixed(2),
      ...CHANNELS.map((c) => fmtBytes(r(c)?.bytes ?? null)),
    ];
  });
  const head = [
    "monitor",
    "local ms",
    "direct ms",
    "remote ms",
    "direct / local",
    "remote / local",
    "bytes local",
    "bytes direct",
    "bytes remote",
  ];
  const tbl = table(head, byMonitor);
  const goalTbl = table(
    ["target", "measured", "limit", "met"],
    goals.map((g) => [
      g.what,
      `${g.ratio.toFixed(3)}x (${g.detail})`,
      `<= ${g.limit}x`,
      g.ratio <= g.limit ? "yes" : "NO",
    ]),
  );
  const p = phases;
  const phaseTbl = table(
    ["phase (medians of " + p.samples + ")", "ms", "of direct warm"],
    [
      ["direct: process list, RAM file open", p.directWarmMs.toFixed(3), "1.00x"],
      [
        "direct: open the RAM file + process list",
        p.directFreshMs.toFixed(3),
        (p.directFreshMs / p.directWarmMs).toFixed(2) + "x",
      ],
      [
        "remote: TLS connect (resumed) + first reply",
        p.tlsConnectMs.toFixed(3),
        (p.tlsConnectMs / p.directWarmMs).toFixed(2) + "x",
      ],
      [
        "remote: one round trip (info)",
        p.roundTripMs.toFixed(3),
        (p.roundTripMs / p.directWarmMs).toFixed(2) + "x",
      ],
      [
        `remote: process list on an open link (${p.warmBytes} B on the wire)`,
        p.warmMs.toFixed(3),
        (p.warmMs / p.directWarmMs).toFixed(2) + "x",
      ],
      [
        "  of which the page server's walk",
        p.warmServerMs.toFixed(3),
        (p.warmServerMs / p.directWarmMs).toFixed(2) + "x",
      ],
      [
        "remote: connect + process list",
        p.freshMs.toFixed(3),
        (p.freshMs / p.directFreshMs).toFixed(2) + "x of direct fresh",
      ],
    ],
  );
  process.stdout.write(`${tbl}\n\n${goalTbl}\n\n${phaseTbl}\n`);
  const load = (await import("node:os")).loadavg()[0].toFixed(1);
  writeDocsSection(
    "bench:secvm",
    `## Security-VM monitors over local, direct and remote channels

Command: \`npm run bench:secvm\` — ${stamp.slice(0, 10)}, ${machine()}, 2 cores shared with other work (load ${load} at the end), QEMU under TCG.
One guest (${info.kernel}, 256 MiB, ${info.processes} processes; a 64 MiB ext4 data disk with ${info.files} files,
mounted). local: the guest's RAM file, NBD and the mirror over unix sockets; direct: the same paths from another
host VM of the server (on one machine the bytes take the same path, so direct only differs by noise); remote: TLS 1.3
over TCP on loopback with client certificates (a per-testbed CA; each security VM's certificate names its targets):
the page server in its own process (TLS session resumed, AUTH without a proof, no per-frame MAC), NBD with
NBD_OPT_STARTTLS through the target server's TLS relay (NbdTlsRelay, here in the bench's process) to QEMU's unix
socket, the mirror (QEMU's chardev as TLS client, nodelay).
Each figure is a median of ${RUNS} runs after one warm-up, the channels taking turns; every step is timed whole,
connecting included. memory-ps: a process list on a fresh connection; memory-ps-warm: the next one on it;
memory-check: hidden tasks, syscall table, module list, kernel text hash; disk-read: ${DISK_READ_MIB} MiB of the drive;
integrity-full: a full round (walk, read and hash every file); integrity-incremental: the next round after
${info.changedPerRound} files (1 %) changed in the guest; malware-scan: a full round with ClamAV; packet-detect:
from the guest's command sending a DNS query matching a tenant's rule to the alert (Suricata live; the serial
console's round trip is part of it). Bytes: read over NBD (disk), on the wire (remote memory).

The research measured remote against local with hardware virtualization (memory 15x naive, 3.6x optimized;
disk access 1.03x; integrity 1.08x; malware scan 0.87x; attack detection 1.02x); these figures come from TCG
on a shared 2-core machine, where the guest's own work is emulated and slow.

${tbl}

${goalTbl}

Memory phases (after the runs, same guest; ${p.samples} samples each, medians; ${MEMORY_WARMUP} process lists per channel
before the runs bring both sides' code to its compiled steady state, as a running monitor and page server are):

${phaseTbl}`,
  );
  log(`wrote ${file}`);
}

// --follow: monitoring across moves under the controller (follow.ts), a bench of its own.
if (process.argv.includes("--follow")) await (await import("./follow.ts")).runFollow(quick);
else await report();

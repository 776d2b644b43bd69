/**
 * Rejuvenation of one host VM on the testbed (npm run bench:rejuvenation): 8 guests of
 * 256 MiB (smaller than the guests, so that 8 boot under TCG; the handover's cost
 * does not grow with RAM), each running the write-verify workload over 8 MiB, on one host VM.
 * Rows, in this order on the same guests:
 *   in-place   every guest live-updated into a fresh QEMU on its host VM (x-ignore-shared),
 *              then the agent restarted;
 *   evacuate   every guest handed over to the spare host VM of the same server, the agent
 *              restarted, the guests handed back;
 *   reboot     for reference: every guest's QEMU stopped and the guest booted again (what
 *              renewing the hypervisor costs without live update);
 *   precopy    pre-copy evacuation of the same guests to another server (2 at a time, the
 *              128 MiB/s link cap of bench:migration), the usual way to empty a host.
 *   in-place (cpr-transfer)  when QEMU 10 is installed (scripts/ensure-qemu10.sh, or
 *              `-- --qemu10 <binary>`): the same guests booted again on a testbed whose
 *              agents run QEMU 10, live-updated in place by cpr-transfer (RAM handed over
 *              as fds). Its own testbed, after the first one is down: one set of guests at a time.
 * Per row: guests, max and median pause per guest, total (in-place/evacuate: first
 * switchover to last guest settled, destinations pre-started; their start-up and the agent's
 * restart are given apart), bytes moved (the migration channels) and bytes on the source
 * server's network interface. After each row every guest must run once with no lost write.
 * Writes bench/results/rejuvenation.json and the bench:rejuvenation section of
 * docs/benchmarks.md, and checks the targets.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  agentLauncher,
  endpointOf,
  hostVmClient,
  MigrationOrchestrator,
  Rejuvenator,
  serverClient,
  testbedToken,
} from "../../src/agent/index.ts";
import { buildGuestImage, qemuVersion, raiseControlPriority } from "../../src/qemu/index.ts";
import { checkTestbedSpec, down, type TestbedSpec, type TestbedState, up } from "../../src/testbed/index.ts";
import { machine, median, table, writeDocsSection, writeResults } from "../lib.ts";

const log = (s: string) => process.stderr.write(`${s}\n`);
const MiB = 1024 * 1024;
/** `-- --guests N` (default 8): fewer when the machine is too loaded to boot 8 under TCG. */
const guestsArg = process.argv.indexOf("--guests");
const GUEST_COUNT = guestsArg > 0 ? Math.max(1, Math.min(16, Number(process.argv[guestsArg + 1]) || 8)) : 8;
const GUESTS = Array.from({ length: GUEST_COUNT }, (_, i) => `r${i + 1}`);
const GUEST_MIB = 256;
/**
 * `-- --in-place-only`: only the in-place rows (7.2 and cpr-transfer), compared with each
 * other; written to rejuvenation-in-place.json, docs/benchmarks.md left alone.
 */
const IN_PLACE_ONLY = process.argv.includes("--in-place-only");
const qemu10Arg = process.argv.indexOf("--qemu10");
const QEMU10 =
  qemu10Arg > 0
    ? process.argv[qemu10Arg + 1]
    : resolve(import.meta.dirname, "../../.cache/qemu10/bin/qemu-system-x86_64");
const MAX_BANDWIDTH = 128 * MiB;

interface Row {
  method: string;
  guests: number;
  maxPauseMs: number;
  medianPauseMs: number;
  totalMs: number;
  bytesMoved: number;
  networkBytes: number | null;
  /** in-place / evacuate: destinations started before any pause; agent restart. */
  prepareMs: number | null;
  agentRestartMs: number | null;
  mechanism: string;
  intact: boolean;
}

const spec = {
  servers: [
    {
      name: "a",
      hostVms: [
        { name: "h1", memoryMiB: 4096 },
        { name: "h2", memoryMiB: 4096 },
      ],
    },
    { name: "b", hostVms: [{ name: "h1", memoryMiB: 4096 }] },
  ],
};

async function netBytes(state: TestbedState): Promise<number | null> {
  const i = (await serverClient(state, "a").status()).iface;
  return i ? i.rxBytes + i.txBytes : null;
}

/** Every guest runs at `server/hostVm`, in one QEMU, heart-beating, with no lost write. */
async function intact(state: TestbedState, server: string, hostVm: string): Promise<boolean> {
  const c = hostVmClient(state, server, hostVm);
  const st = await c.status();
  let ok = true;
  for (const g of GUESTS) {
    const s = st.guests.find((x) => x.guestId === g);
    if (s?.state !== "running") {
      log(`  ${g}: ${s?.state ?? "missing"} at ${server}/${hostVm}`);
      ok = false;
      continue;
    }
    const v = await c.exec(g, { command: "nc-wl status verify", timeoutMs: 20_000 }).catch((e) => ({
      output: String(e),
    }));
    if (!/state=ok .*lost=0/.test(v.output) || (s.verify?.lostLines ?? 0) > 0) {
      log(`  ${g}: verify ${v.output.trim()}`);
      ok = false;
    }
  }
  return ok;
}

/** Boots the guests on a/h1 (two at a time), then starts their verify workloads. */
async function bootGuests(state: TestbedState): Promise<void> {
  const h1 = hostVmClient(state, "a", "h1");
  const queue = [...GUESTS];
  await Promise.all(
    [0, 1].map(async () => {
      for (let g = queue.shift(); g; g = queue.shift())
        await h1.createGuest({ guestId: g, memoryMiB: GUEST_MIB });
    }),
  );
  // The workloads once all are up: a busy guest would slow the others' boots.
  for (const g of GUESTS) await h1.startWorkload(g, { kind: "verify", mib: 8 });
}

/** One in-place or evacuate rejuvenation of a/h1 as a row. */
async function rejuvenationRow(state: TestbedState, mode: "in-place" | "evacuate"): Promise<Row> {
  const rej = new Rejuvenator(testbedToken(state), { log: () => {} });
  const n0 = await netBytes(state);
  const r = await rej.rejuvenate({
    hostVm: endpointOf(state, "a", "h1"),
    mode,
    ...(mode === "evacuate" ? { spare: endpointOf(state, "a", "h2") } : {}),
    prepareParallel: 2,
    switchParallel: 4,
  });
  const n1 = await netBytes(state);
  const moves = [...r.out.moves, ...(r.back?.moves ?? [])];
  const pauses = moves.flatMap((m) => (m.pauseMs === null ? [] : [m.pauseMs]));
  if (!r.ok)
    log(`  not every guest moved: ${moves.filter((m) => m.outcome !== "moved").map((m) => m.error)}`);
  return {
    method: mode === "in-place" ? `in-place (${r.mechanism})` : `evacuate (instant handover, ${r.mechanism})`,
    guests: r.out.moves.length,
    maxPauseMs: Math.max(...pauses),
    medianPauseMs: median(pauses),
    totalMs: r.out.switchMs + (r.back?.switchMs ?? 0),
    bytesMoved: r.bytesMoved,
    networkBytes: n0 !== null && n1 !== null ? n1 - n0 : null,
    prepareMs: r.out.prepareMs + (r.back?.prepareMs ?? 0),
    agentRestartMs: r.agent?.restartMs ?? null,
    mechanism: r.mechanism,
    intact: r.ok && (await intact(state, "a", "h1")),
  };
}

/** The cpr-transfer row: the guests on a one-host-VM testbed whose agents run QEMU 10. */
async function cprRow(
  image: Awaited<ReturnType<typeof buildGuestImage>>,
): Promise<{ row: Row; qemu: string }> {
  const v10 = await qemuVersion(QEMU10);
  const root = mkdtempSync(join(tmpdir(), "nc-bench-rej10-"));
  const state = await up(
    checkTestbedSpec({ servers: [{ name: "a", hostVms: [{ name: "h1", memoryMiB: 4096 }] }] }) as TestbedSpec,
    { launcher: agentLauncher({ image, qemuBinary: QEMU10 }), root, log: () => {} },
  );
  try {
    log(`booting ${GUESTS.length} guests on a/h1 under ${v10.text}`);
    await bootGuests(state);
    log("in-place by cpr-transfer...");
    const row = await rejuvenationRow(state, "in-place");
    log(`  ${JSON.stringify(row)}`);
    return { row, qemu: v10.text };
  } finally {
    const rep = await down(state);
    if (rep.problems.length) log(`teardown problems: ${rep.problems.join("; ")}`);
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  // The orchestrator runs in this process, as in the controller: above the guests (priority.ts).
  const priority = raiseControlPriority();
  log(
    `control path nice ${priority.control}, guests ${priority.guest}${priority.raised ? "" : " (not raised)"}`,
  );
  const v = await qemuVersion();
  const image = await buildGuestImage();
  const root = mkdtempSync(join(tmpdir(), "nc-bench-rej-"));
  const state = await up(checkTestbedSpec(spec) as TestbedSpec, {
    launcher: agentLauncher({ image }),
    root,
    log: () => {},
  });
  const rows: Row[] = [];
  try {
    const h1 = hostVmClient(state, "a", "h1");
    log(`booting ${GUESTS.length} guests of ${GUEST_MIB} MiB on a/h1 (${v.text})`);
    await bootGuests(state);

    for (const mode of IN_PLACE_ONLY ? (["in-place"] as const) : (["in-place", "evacuate"] as const)) {
      log(`${mode}...`);
      rows.push(await rejuvenationRow(state, mode));
      log(`  ${JSON.stringify(rows.at(-1))}`);
    }

    if (!IN_PLACE_ONLY) log("reboot...");
    // The reference row: a reboot that does not finish on a loaded machine (a boot past the
    // agent's 180 s) is reported, and the rows after it are still measured.
    if (!IN_PLACE_ONLY) {
      const t0 = performance.now();
      const pauses: number[] = [];
      const q = [...GUESTS];
      const rebooted = await Promise.all(
        [0, 1].map(async () => {
          for (let g = q.shift(); g; g = q.shift()) {
            const t = performance.now();
            await h1.stopGuest(g);
            await h1.startGuest(g);
            pauses.push(performance.now() - t);
          }
        }),
      ).then(
        () => true,
        (e: Error) => {
          log(`  reboot row not measured: ${e.message}`);
          return false;
        },
      );
      if (rebooted) {
        rows.push({
          method: "reboot (QEMU stopped, guest booted again)",
          guests: GUESTS.length,
          maxPauseMs: Math.max(...pauses),
          medianPauseMs: median(pauses),
          totalMs: performance.now() - t0,
          bytesMoved: 0,
          networkBytes: null,
          prepareMs: null,
          agentRestartMs: null,
          mechanism: "reboot",
          intact: await intact(state, "a", "h1"),
        });
        log(`  ${JSON.stringify(rows.at(-1))}`);
      }
    }

    if (!IN_PLACE_ONLY) log("pre-copy evacuation to server b...");
    if (!IN_PLACE_ONLY) {
      const orch = new MigrationOrchestrator(testbedToken(state), { log: () => {} });
      const n0 = await netBytes(state);
      const t0 = performance.now();
      const pauses: number[] = [];
      let bytes = 0;
      const q = [...GUESTS];
      const evacuated = await Promise.all(
        [0, 1].map(async () => {
          for (let g = q.shift(); g; g = q.shift()) {
            const o = await orch.migrate({
              guestId: g,
              from: endpointOf(state, "a", "h1"),
              to: endpointOf(state, "b", "h1"),
              mechanism: "precopy",
              options: { maxBandwidth: MAX_BANDWIDTH },
            });
            if (o.downtimeMs !== null) pauses.push(o.downtimeMs);
            bytes += o.transferredBytes;
          }
        }),
      ).then(
        () => true,
        (e: Error) => {
          log(`  pre-copy row not measured: ${e.message}`);
          return false;
        },
      );
      const n1 = await netBytes(state);
      if (evacuated)
        rows.push({
          method: "pre-copy evacuation to another server",
          guests: GUESTS.length,
          maxPauseMs: Math.max(...pauses),
          medianPauseMs: median(pauses),
          totalMs: performance.now() - t0,
          bytesMoved: bytes,
          networkBytes: n0 !== null && n1 !== null ? n1 - n0 : null,
          prepareMs: null,
          agentRestartMs: null,
          mechanism: "precopy",
          intact: await intact(state, "b", "h1"),
        });
      log(`  ${JSON.stringify(rows.at(-1))}`);
    }
  } finally {
    const rep = await down(state);
    if (rep.problems.length) log(`teardown problems: ${rep.problems.join("; ")}`);
    rmSync(root, { recursive: true, force: true });
  }
  let qemu10: string | null = null;
  if (existsSync(QEMU10)) {
    const c = await cprRow(image);
    // Next to the 7.2 in-place row, which it compares with.
    rows.splice(1, 0, c.row);
    qemu10 = c.qemu;
  } else log(`no QEMU 10 at ${QEMU10} (scripts/ensure-qemu10.sh): no cpr-transfer row`);

  const f = (x: number | null, d = 1) => (x === null ? "-" : x.toFixed(d));
  const head = [
    "method",
    "guests",
    "max pause ms",
    "median pause ms",
    "total ms",
    "bytes moved",
    "network bytes",
    "destinations started ms",
    "agent restart ms",
    "intact",
  ];
  const body = rows.map((r) => [
    r.method,
    r.guests,
    f(r.maxPauseMs),
    f(r.medianPauseMs),
    f(r.totalMs, 0),
    r.bytesMoved,
    r.networkBytes ?? "-",
    f(r.prepareMs, 0),
    f(r.agentRestartMs, 0),
    r.intact ? "yes" : "NO",
  ]);
  const t = table(head, body);
  process.stdout.write(`${t}\n\n`);
  const pre = rows.find((r) => r.mechanism === "precopy");
  const targets: string[] = [];
  for (const r of pre ? rows.filter((x) => x.prepareMs !== null) : []) {
    const ratio = pre!.totalMs / r.totalMs;
    targets.push(
      `${r.method}: max pause ${f(r.maxPauseMs)} ms (target <= 50: ${r.maxPauseMs <= 50 ? "met" : "MISSED"}), ` +
        `total ${f(r.totalMs, 0)} ms for ${r.guests} guests (target <= 1000: ${r.totalMs <= 1000 ? "met" : "MISSED"}), ` +
        `${ratio.toFixed(0)}x shorter than pre-copy evacuation (target >= 50x: ${ratio >= 50 ? "met" : "MISSED"}), ` +
        `${r.bytesMoved} bytes through the migration channels (unix sockets), ${r.networkBytes ?? "?"} bytes on the server's interface ` +
        `(guest RAM ${GUESTS.length} x ${GUEST_MIB} MiB: none of it on a network)`,
    );
  }
  const inPlace72 = rows.find((r) => r.method === "in-place (x-ignore-shared)");
  const cpr = rows.find((r) => r.mechanism === "cpr-transfer");
  if (inPlace72 && cpr)
    targets.push(
      `cpr-transfer (${qemu10}) against x-ignore-shared (${v.text}), in place: max pause ` +
        `${(cpr.maxPauseMs / inPlace72.maxPauseMs).toFixed(2)}x, median ${(cpr.medianPauseMs / inPlace72.medianPauseMs).toFixed(2)}x, ` +
        `total ${(cpr.totalMs / inPlace72.totalMs).toFixed(2)}x, bytes ${(cpr.bytesMoved / inPlace72.bytesMoved).toFixed(2)}x`,
    );
  for (const l of targets) process.stdout.write(`${l}\n`);
  writeResults(IN_PLACE_ONLY ? "rejuvenation-in-place" : "rejuvenation", {
    machine: machine(),
    controlPriority: priority,
    qemu: v.text,
    qemu10,
    guestMiB: GUEST_MIB,
    rows,
    targets,
  });
  if (IN_PLACE_ONLY) return;
  writeDocsSection(
    "bench:rejuvenation",
    [
      "## Rejuvenation (`npm run bench:rejuvenation`)",
      "",
      `${GUESTS.length} guests of ${GUEST_MIB} MiB (smaller than the issue's, so that 8 boot under TCG; a handover's cost does not grow with RAM), each writing and verifying 8 MiB, on one host VM of a testbed server; ${v.text}, TCG, 2 cores shared with other work (${machine()}). ` +
        `Agents and the orchestrator ran at nice ${priority.control}, the guests at ${priority.guest} (NESTCLOUD_CONTROL_PRIORITY; src/qemu/priority.ts). ` +
        "Total for in-place and evacuate is the switchover phase (destinations started first; their start-up and the agent's restart are the columns after); for evacuate it is both ways. " +
        (qemu10
          ? `The cpr-transfer row ran the same guests booted again on a testbed whose agents run ${qemu10} (scripts/ensure-qemu10.sh: bookworm-backports in a private prefix).`
          : "cpr-transfer (QEMU >= 10, scripts/ensure-qemu10.sh) was not installed for this run: no row for it."),
      "",
      t,
      "",
      ...targets.map((l) => `- ${l}`),
    ].join("\n"),
  );
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

/**
 * The console across moves, on real guests (npm run bench:console [-- --moves N] [--quick]
 * [--only instant|precopy|postcopy|co-migration|in-place|evacuate]):
 * `nestcloud up --provider testbed` with server a (host VMs h1, h2) and server b (h1), guest
 * g1 of 192 MiB. A console client (the same ConsoleClientSession as the CLI and the
 * dashboard, end to end through the controller's relay) attaches; in the guest a background
 * loop prints a numbered line every 50 ms ("O<n>") and `cat` echoes what the client types,
 * a numbered line every 100 ms ("I<n>"). Then N moves of each mechanism: instant handovers
 * a-h1 <-> a-h2, pre-copies and post-copies a-h1 <-> b-h1, co-migrations with a partner guest
 * g2 a-h1 <-> a-h2 (lock-step, instant), in-place rejuvenations of g1's host VM (a fresh QEMU
 * each, then its agent restarted under the console) and evacuations of it (through the other
 * host VM of server a, replaced by a fresh one), one after another.
 *
 * Per mechanism: bytes out (guest -> client) and in (typed), bytes lost and duplicated each
 * way (numbers missing or seen twice, plus the session's own count of skipped bytes), and
 * the longest stall of the output stream at the client during a move, beside the guest's
 * pause as the agents measured it (the controller's log). Baseline of the same run: the
 * longest gap between output events over an idle stretch with no move (ratio quoted).
 * At the end the client's whole output must be the serial log's tail, byte for byte.
 * Targets: lost = duplicated = 0 both ways for every mechanism; for instant moves the
 * stall <= the guest's pause + 100 ms (per move).
 *
 * Writes bench/results/console.json and the bench:console section of docs/benchmarks.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  bringUpConsoleBed,
  ConsoleBedClient,
  type ConsoleBedParts,
  coMigrateWithPartner,
  createPartner,
  migrateG1 as moveG1,
  rejuvenateHostVm,
  serialLogOfG1,
} from "../../test/integration/console-bed.ts";
import { tearDown } from "../../test/integration/testbed-helpers.ts";
import { stopGently, until } from "../../test/support/controller-process.ts";
import { machine, table, writeDocsSection, writeResults } from "../lib.ts";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const movesArg = argv.indexOf("--moves");
const MOVES = movesArg >= 0 ? Number(argv[movesArg + 1]) : quick ? 3 : 10;
/** `--only instant` (or precopy, postcopy): one mechanism; its figures are printed, the docs and results left as they are. */
const onlyArg = argv.indexOf("--only");
const ONLY = onlyArg >= 0 ? argv[onlyArg + 1] : undefined;
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Mechanism = "instant" | "precopy" | "postcopy" | "co-migration" | "in-place" | "evacuate";
/** The host VMs migrations go between (a rejuvenation may replace g1's: `where` is any id). */
type HostName = "a-h1" | "a-h2" | "b-h1";

/**
 * One move's stall split at the client's marks (console-bed.ts): the source's last output
 * before its "moved" notice -> that notice (the guest stops, the move completes, the source
 * agent ends the session) -> the relay reached the destination agent ("agent": it retried
 * until the guest ran there; made before broken: "switched" to the standby session keyed
 * before the move) -> the new handshake done, or the standby's start ("attached") -> the
 * first output after.
 */
interface Phases {
  toMovedMs: number;
  toAgentMs: number;
  handshakeMs: number;
  toFirstOutputMs: number;
}
const PHASES: Array<[keyof Phases, string]> = [
  ["toMovedMs", "last output -> moved (or switched)"],
  ["toAgentMs", "moved -> relay at destination"],
  ["handshakeMs", "handshake (standby: its start)"],
  ["toFirstOutputMs", "attached -> first output"],
];

function phasesOf(cl: ConsoleBedClient, from: number): Phases | null {
  const mark = (what: string, after: number) => cl.marks.find((m) => m.what === what && m.at >= after)?.at;
  // The source's "moved", or the switch to the standby if that came first (the standby's session
  // started: the relay switched without waiting for the source's last records).
  const ends = [mark("moved", from), mark("switched", from)].filter((x): x is number => x !== undefined);
  if (ends.length === 0) return null;
  const moved = Math.min(...ends);
  const agent = mark("switched", moved) ?? mark("agent", moved);
  const attached = agent === undefined ? undefined : mark("attached", agent);
  const first = attached === undefined ? undefined : cl.times.find((t) => t >= attached);
  const last = cl.times.filter((t) => t >= from && t <= moved).pop() ?? from;
  if (agent === undefined || attached === undefined || first === undefined) return null;
  return {
    toMovedMs: Math.round(moved - last),
    toAgentMs: Math.round(agent - moved),
    handshakeMs: Math.round(attached - agent),
    toFirstOutputMs: Math.round(first - attached),
  };
}

interface Row {
  mechanism: Mechanism;
  moves: number;
  bytesOut: number;
  bytesIn: number;
  lostBytes: number;
  duplicatedBytes: number;
  maxStallMs: number;
  /** The longest guest pause among these moves (agents' measurement), ms. */
  maxPauseMs: number | null;
  /** Per move: the output stall minus the guest's pause (ms); the instant target is <= 100. */
  maxStallOverPauseMs: number | null;
  lostBytesOut: number;
  lostBytesIn: number;
  duplicatedBytesOut: number;
  duplicatedBytesIn: number;
}

/** Lines `<P><n>` of a stream: numbers missing (with their bytes) and seen twice. */
function account(text: string, prefix: string, from: number, to: number) {
  const seen = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`(?<=^|\\n)${prefix}(\\d+)\\r?\\n`, "g"))) {
    const n = Number(m[1]);
    seen.set(n, (seen.get(n) ?? 0) + 1);
  }
  let lost = 0;
  let dup = 0;
  const bytes = (n: number) => `${prefix}${n}\r\n`.length;
  for (let n = from; n <= to; n++) {
    const c = seen.get(n) ?? 0;
    if (c === 0) lost += bytes(n);
    if (c > 1) dup += (c - 1) * bytes(n);
  }
  return { lost, dup };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "nestcloud-bench-console-"));
  const held: ConsoleBedParts = {};
  let client: ConsoleBedClient | undefined;
  try {
    log("bringing up the testbed (servers a: h1, h2; b: h1) and the controller");
    const {
      bed: b,
      ctl: c,
      tenant,
    } = await bringUpConsoleBed(dir, held, {
      serverB: true,
      log: "info",
      bootMs: 90_000,
    });
    let where: string = "a-h1";
    const serialLog = () => serialLogOfG1(b);

    client = new ConsoleBedClient(c.url, tenant, log);
    const cl = client;
    cl.connect();
    await until("attached", async () => (cl.attaches > 0 ? true : undefined), 30_000, 50);
    // The printer in the background, `cat` in the foreground echoing the typed lines once.
    cl.type(
      "stty -echo; (o=0; while :; do echo O$o; o=$((o+1)); sleep 0.05; done) & sleep 0.3; echo READY-$((2*21)); cat\r",
    );
    await until("the workload running", async () => (/READY-42\r?\n/.test(cl.text()) ? true : undefined));
    let typed = 0;
    const typedBytes = () => typed;
    const typer = setInterval(() => {
      const line = `I${typed}\r`;
      typed++;
      cl.type(line);
    }, 100);
    // Bytes typed, per line: "I<n>\r".
    let bytesTyped = 0;
    const lineBytes = (n: number) => `I${n}\r`.length;

    // Baseline: an idle stretch (no move).
    await sleep(2000);
    const idleFrom = performance.now();
    await sleep(10_000);
    const idleTimes = cl.times.filter((t) => t >= idleFrom);
    let idleMaxGap = 0;
    for (let i = 1; i < idleTimes.length; i++)
      idleMaxGap = Math.max(idleMaxGap, idleTimes[i] - idleTimes[i - 1]);
    log(`idle: longest gap between output events ${idleMaxGap.toFixed(0)} ms over 10 s`);

    const plan: Array<[Mechanism, HostName[]]> = [
      ["instant", ["a-h2", "a-h1"]],
      ["precopy", ["b-h1", "a-h1"]],
      ["postcopy", ["b-h1", "a-h1"]],
      ["co-migration", ["a-h2", "a-h1"]],
      ["in-place", []],
      ["evacuate", []],
    ];
    if (ONLY !== undefined) plan.splice(0, plan.length, ...plan.filter(([m]) => m === ONLY));
    if (plan.length === 0) throw new Error(`--only: no mechanism ${ONLY}`);
    /** A migration through the API, awaited; the guest's pause as the agents measured it. */
    const migrateG1 = async (to: string, mechanism: "instant" | "precopy" | "postcopy") => {
      const { pausedMs } = await moveG1(c, to, mechanism);
      where = to;
      return pausedMs;
    };
    let partner = false;
    /** One move of `mechanism` (to `to` for migrations); g1's pause, if known. */
    const moveOnce = async (mechanism: Mechanism, to: string): Promise<number | null> => {
      if (mechanism === "instant" || mechanism === "precopy" || mechanism === "postcopy")
        return migrateG1(to, mechanism);
      if (mechanism === "co-migration") {
        // Both on server a's h1 first (not measured: an odd count of moves before may have left
        // g1 elsewhere), the partner made once beside it.
        if (!partner) {
          if (where !== "a-h1") await migrateG1("a-h1", where.startsWith("a-") ? "instant" : "precopy");
          await createPartner(c, "g2", "a-h1");
          partner = true;
        }
        const m = await coMigrateWithPartner(b, "g2", where.slice(2), to.slice(2));
        if (!m.lockStep) throw new Error("co-migration: a guest ran at its destination before both stopped");
        where = to;
        return m.pausedMs;
      }
      const a = await rejuvenateHostVm(c, where, mechanism);
      if (a.status !== "done") throw new Error(`${mechanism} rejuvenation of ${where}: ${a.error}`);
      where = a.result?.replacement ?? where;
      const g1 = a.result?.guests.filter((g) => g.guest === "g1" && g.pauseMs !== null) ?? [];
      return g1.length > 0 ? Math.max(...g1.map((g) => g.pauseMs!)) : null;
    };
    const rows: Row[] = [];
    const perMove: Array<{
      mechanism: Mechanism;
      to: string;
      stallMs: number;
      pauseMs: number | null;
      phases: Phases | null;
      standby: boolean;
      /** After this move the client's output was the serial log (where the guest runs) up to its offset. */
      logExact: boolean;
    }> = [];
    /** The client's whole output against the log where the guest runs now, up to its offset. */
    const sameAsLog = async () => {
      const o = cl.text();
      // The stream's offset just past what the client was shown (the session's own offset may
      // be ahead of its shown text by a record still on its way to the screen).
      const e = (cl.firstOffset ?? 0) + o.length;
      const l = await serialLog();
      return l.length >= e && l.slice(e - o.length, e) === o;
    };
    for (const [mechanism, targets] of plan) {
      const outFrom = cl.text().length;
      const typedFrom = typedBytes();
      const lostSession0 = cl.session.lostBytes;
      let maxStall = 0;
      let maxPause: number | null = null;
      let maxOver: number | null = null;
      for (let k = 0; k < MOVES; k++) {
        // Back and forth between the two (an odd count leaves the guest at the far one); a
        // rejuvenation renews the host VM g1 is on (an evacuation ends on its replacement).
        const to: string = targets.length === 0 ? where : where === targets[0] ? targets[1] : targets[0];
        const t0 = performance.now();
        const pauseMs = await moveOnce(mechanism, to);
        // Output keeps coming after the move; the stall is the longest gap in [t0, now + 1.5 s].
        await sleep(1500);
        const ts = cl.times.filter((t) => t >= t0);
        let stall = ts.length > 0 ? ts[0] - t0 : performance.now() - t0;
        for (let i = 1; i < ts.length; i++) stall = Math.max(stall, ts[i] - ts[i - 1]);
        const phases = phasesOf(cl, t0);
        // Through a standby session keyed before the move (made before broken), or a re-attach.
        const standby = cl.marks.some((x) => x.what === "switched" && x.at >= t0);
        const logExact = await sameAsLog();
        perMove.push({ mechanism, to, stallMs: stall, pauseMs, phases, standby, logExact });
        maxStall = Math.max(maxStall, stall);
        if (pauseMs !== null) {
          maxPause = Math.max(maxPause ?? 0, pauseMs);
          maxOver = Math.max(maxOver ?? -Infinity, stall - pauseMs);
        }
        log(
          `  ${mechanism} #${k + 1} -> ${to}: output stalled ${stall.toFixed(0)} ms, guest paused ${pauseMs ?? "?"} ms; output = log ${logExact}; ${standby ? "standby" : "re-attach"}; ${phases ? PHASES.map(([k, n]) => `${n} ${phases[k]}`).join(", ") : "phases not seen"}`,
        );
      }
      // Let the last lines arrive and the typed ones be echoed.
      await sleep(1500);
      const seg = cl.text().slice(outFrom);
      const os = [...seg.matchAll(/(?<=^|\n)O(\d+)\r?\n/g)].map((x) => Number(x[1]));
      const is = [...seg.matchAll(/(?<=^|\n)I(\d+)\r?\n/g)].map((x) => Number(x[1]));
      const out = account(seg, "O", os[0] ?? 0, os[os.length - 1] ?? -1);
      const inp = account(seg, "I", is[0] ?? 0, is[is.length - 1] ?? -1);
      const typedIn = typedBytes() - typedFrom;
      let inBytes = 0;
      for (let n = typedFrom; n < typedFrom + typedIn; n++) inBytes += lineBytes(n);
      bytesTyped += inBytes;
      const lostOut = out.lost + (cl.session.lostBytes - lostSession0);
      rows.push({
        mechanism,
        moves: MOVES,
        bytesOut: seg.length,
        bytesIn: inBytes,
        lostBytes: lostOut + inp.lost,
        duplicatedBytes: out.dup + inp.dup,
        maxStallMs: Math.round(maxStall),
        maxPauseMs: maxPause,
        maxStallOverPauseMs: maxOver === null ? null : Math.round(maxOver),
        lostBytesOut: lostOut,
        lostBytesIn: inp.lost,
        duplicatedBytesOut: out.dup,
        duplicatedBytesIn: inp.dup,
      });
      log(`${mechanism}: ${JSON.stringify(rows[rows.length - 1])}`);
    }
    clearInterval(typer);
    await sleep(2000);
    // Every typed line echoed once overall; the whole output is the serial log's tail.
    const all = cl.text();
    const allIn = account(all, "I", 0, typed - 1);
    const serial = await serialLog();
    // The guest prints on: compare up to the client's offset (the log may have grown since).
    const end = (cl.firstOffset ?? 0) + all.length;
    const tailExact = serial.length >= end && serial.slice(end - all.length, end) === all;
    log(
      `typed ${typed} lines (${bytesTyped} bytes in the moves' windows); overall in: lost ${allIn.lost}, duplicated ${allIn.dup}`,
    );
    log(`the client's output (${all.length} bytes) is the serial log's tail byte for byte: ${tailExact}`);

    const head = [
      "mechanism",
      "moves",
      "bytes out",
      "bytes in",
      "lost (out/in)",
      "duplicated (out/in)",
      "max stall ms",
      "max guest pause ms",
      "stall - pause ms (max)",
      "stall / idle gap",
    ];
    const tableRows = rows.map((r) => [
      r.mechanism,
      r.moves,
      r.bytesOut,
      r.bytesIn,
      `${r.lostBytesOut} / ${r.lostBytesIn}`,
      `${r.duplicatedBytesOut} / ${r.duplicatedBytesIn}`,
      r.maxStallMs,
      r.maxPauseMs ?? "?",
      r.maxStallOverPauseMs ?? "?",
      `${(r.maxStallMs / idleMaxGap).toFixed(1)}x`,
    ]);
    const printed = table(head, tableRows);
    process.stdout.write(`${printed}\n`);
    // Where a move's stall goes: per mechanism, median and max of each phase (ms).
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? 0;
    const phaseRows = plan.map(([mechanism]) => {
      const ps = perMove.filter((m) => m.mechanism === mechanism && m.phases).map((m) => m.phases!);
      const pauses = perMove
        .filter((m) => m.mechanism === mechanism && m.pauseMs !== null)
        .map((m) => m.pauseMs!);
      return [
        mechanism,
        ps.length,
        perMove.filter((m) => m.mechanism === mechanism && m.standby).length,
        `${med(pauses)} / ${Math.max(0, ...pauses)}`,
        ...PHASES.map(([k]) => `${med(ps.map((p) => p[k]))} / ${Math.max(0, ...ps.map((p) => p[k]))}`),
      ];
    });
    const phaseTable = table(
      ["mechanism", "moves seen", "via standby", "guest pause", ...PHASES.map(([, n]) => n)],
      phaseRows,
    );
    process.stdout.write(`stall by phase, median / max ms:\n${phaseTable}\n`);
    const targets = rows.map((r) => ({
      mechanism: r.mechanism,
      noLossNoDuplicates: r.lostBytes === 0 && r.duplicatedBytes === 0,
      stallWithinPausePlus100:
        r.mechanism === "instant" ? r.maxStallOverPauseMs !== null && r.maxStallOverPauseMs <= 100 : null,
    }));
    for (const t of targets)
      process.stdout.write(
        `target ${t.mechanism}: lost = duplicated = 0 ${t.noLossNoDuplicates ? "met" : "MISSED"}${t.stallWithinPausePlus100 === null ? "" : `; stall <= pause + 100 ms ${t.stallWithinPausePlus100 ? "met" : "MISSED"}`}\n`,
      );
    if (ONLY !== undefined) return;
    const stamp = new Date().toISOString();
    const file = writeResults("console", {
      source: `bench:console ${stamp.slice(0, 10)}${quick ? " --quick" : ""}, QEMU 7.2 TCG on the testbed (${machine()})`,
      rows,
      baseline: { idleSeconds: 10, idleMaxGapMs: Math.round(idleMaxGap) },
      perMove: perMove.map((m) => ({ ...m, stallMs: Math.round(m.stallMs) })),
      overall: {
        typedLines: typed,
        lostBytesIn: allIn.lost,
        duplicatedBytesIn: allIn.dup,
        outputIsSerialLogTail: tailExact,
      },
      targets,
    });
    log(`wrote ${file}`);
    writeDocsSection(
      "bench:console",
      `## Console across moves (npm run bench:console)

${stamp.slice(0, 10)}, QEMU 7.2 under TCG on the testbed (${machine()}), guest of 192 MiB; a
console client through the controller's relay (end to end encrypted) while the guest prints
a numbered line every 50 ms and echoes a numbered line typed every 100 ms; ${MOVES} moves of
each mechanism (instant a-h1 <-> a-h2; pre-copy and post-copy a-h1 <-> b-h1; co-migration
with a partner a-h1 <-> a-h2; rejuvenation of g1's host VM in place, and by evacuation). Stall: the
longest gap in the client's output during a move; pause: the guest's pause as the agents
measured it. Baseline of the same run: the longest gap over 10 idle seconds, ${Math.round(idleMaxGap)} ms
(the last column is the ratio). The whole output was the serial log's tail byte for byte:
${tailExact ? "yes" : "NO"}.

${printed}

Where the stall goes (median / max ms per phase, at the client: the source's last output to its
"moved" notice, to the relay reaching the destination agent, the new handshake, to the first
output after it):

${phaseTable}

Targets: lost = duplicated = 0 both ways (${targets.map((t) => `${t.mechanism} ${t.noLossNoDuplicates ? "met" : "missed"}`).join(", ")});
instant: stall <= pause + 100 ms for every move (${targets[0]?.stallWithinPausePlus100 ? "met" : "missed"}).
`,
    );
  } finally {
    client?.close();
    if (held.ctl) await stopGently(held.ctl);
    await tearDown(held.bed);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

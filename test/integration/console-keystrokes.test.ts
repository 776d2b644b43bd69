// Keystrokes across every kind of move, exactly once, on a real guest (QEMU under TCG):
// `nestcloud up --provider testbed` (server a: h1, h2; server b: h1), guest g1 at a-h1, one
// console client through the controller's relay (the session the CLI and the dashboard run).
// In the guest a background loop prints a numbered line every 50 ms ("O<n>") and `cat` (with
// echo off) prints back each line typed once; the client types a numbered line every 100 ms
// ("K<n>") without pause while the guest moves: two instant handovers (a-h1 -> a-h2 -> a-h1),
// two pre-copies and two post-copies (a-h1 -> b-h1 -> a-h1). Then every typed line came back
// exactly once (none lost, none twice), the guest's numbered output is whole and single, after
// every move the client's output is the serial log where the guest runs now, up to the client's
// offset, byte for byte (a post-copy's destination takes the source's last lines while the
// source waits before the switch), and after each move the relay went straight to the agent the
// move named (no search). The output stall of each instant move
// is measured beside the guest's pause (diagnostics; bench/console has the figures).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { api, stopGently, until } from "../support/controller-process.ts";
import { bringUpConsoleBed, ConsoleBedClient as Client, type ConsoleBedParts } from "./console-bed.ts";
import { tearDown } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-console-keys-it-"));
const held: ConsoleBedParts = {};
let client: Client | undefined;
let typer: NodeJS.Timeout | undefined;

after(async () => {
  if (typer) clearInterval(typer);
  client?.close();
  if (held.ctl) await stopGently(held.ctl);
  await tearDown(held.bed);
  rmSync(dir, { recursive: true, force: true });
});

const HOST = { "a-h1": ["a", "h1"], "a-h2": ["a", "h2"], "b-h1": ["b", "h1"] } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How often each `<prefix><n>` line occurs in `text`, for n in [0, upTo). */
function counts(text: string, prefix: string, upTo: number): { missing: number[]; twice: number[] } {
  const seen = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`(?<=^|\\n)${prefix}(\\d+)\\r?\\n`, "g")))
    seen.set(Number(m[1]), (seen.get(Number(m[1])) ?? 0) + 1);
  const missing: number[] = [];
  const twice: number[] = [];
  for (let n = 0; n < upTo; n++) {
    const c = seen.get(n) ?? 0;
    if (c === 0) missing.push(n);
    if (c > 1) twice.push(n);
  }
  return { missing, twice };
}

test("keystrokes typed without pause across instant, pre-copy and post-copy moves are each echoed by the guest exactly once; after every move the client's output is the serial log byte for byte; the relay re-attaches at the agent the move named", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const { bed: b, ctl: c, tenant } = await bringUpConsoleBed(dir, held, { serverB: true });
  let where: keyof typeof HOST = "a-h1";
  const logOfG1 = async () => {
    const [s, h] = HOST[where];
    const st = await b.client(s, h).guest("g1");
    return readFileSync(st.endpoints.find((e) => e.id === "console")!.log!).toString("latin1");
  };
  client = new Client(c.url, tenant);
  const cl = client;
  cl.connect();
  await until("attached", async () => (cl.attaches > 0 ? true : undefined), 30_000, 50);
  cl.type(
    "stty -echo; (o=0; while :; do echo O$o; o=$((o+1)); sleep 0.05; done) & sleep 0.3; echo READY-$((2*21)); cat\r",
  );
  await until("the printer and cat running", async () =>
    /READY-42\r?\n/.test(cl.text()) ? true : undefined,
  );
  const from = cl.text().length;
  let typed = 0;
  typer = setInterval(() => cl.type(`K${typed++}\r`), 100);
  phase("typing a numbered line every 100 ms");

  const moves: Array<[keyof typeof HOST, "instant" | "precopy" | "postcopy"]> = [
    ["a-h2", "instant"],
    ["a-h1", "instant"],
    ["b-h1", "precopy"],
    ["a-h1", "precopy"],
    ["b-h1", "postcopy"],
    ["a-h1", "postcopy"],
  ];
  const reattachedBefore = (c.output().match(/"atNamedAgent":true/g) ?? []).length;
  // The client's output against the serial log where the guest runs now: the log may have grown
  // since, but up to the client's offset it is what the client was shown, byte for byte (a later
  // viewer's replay reads the same log).
  const sameAsLog = async (after: string) => {
    const o = cl.text();
    const e = cl.session.nextOffset ?? 0;
    const l = await logOfG1();
    assert.ok(
      l.length >= e,
      `after ${after}: the log (${l.length} bytes) holds everything the client was shown (${e})`,
    );
    const at = l.slice(e - o.length, e);
    if (at !== o) {
      let i = 0;
      while (i < o.length && at[i] === o[i]) i++;
      assert.fail(
        `after ${after}: the client's output differs from the serial log at byte ${e - o.length + i} ` +
          `(client ${JSON.stringify(o.slice(i, i + 40))}, log ${JSON.stringify(at.slice(i, i + 40))})`,
      );
    }
  };
  for (const [to, mechanism] of moves) {
    await sleep(1500);
    const typedBefore = typed;
    const m0 = performance.now();
    const moved = await api(c, "POST", "/api/vms/g1/migrate", { to, mechanism });
    assert.equal(moved.status, 202, JSON.stringify(moved.body));
    const plan = moved.body.plan as number;
    const m = await until(
      `${mechanism} to ${to}`,
      async () => {
        const list = (await api(c, "GET", "/api/migrations")).body as Array<{
          id: string;
          plan: number;
          status: string;
        }>;
        const x = list.find((y) => y.plan === plan);
        if (x?.status === "failed") throw new Error(`migration failed: ${JSON.stringify(x)}`);
        return x?.status === "completed" ? x : undefined;
      },
      300_000,
      100,
    );
    where = to;
    await sleep(1500);
    const ts = cl.times.filter((x) => x >= m0);
    let stall = ts.length > 0 ? ts[0] - m0 : performance.now() - m0;
    for (let i = 1; i < ts.length; i++) stall = Math.max(stall, ts[i] - ts[i - 1]);
    const paused = new RegExp(`migration ${m.id} of g1 .* guest paused (\\d+) ms`).exec(c.output())?.[1];
    phase(
      `${mechanism} -> ${to}: ${typed - typedBefore} lines typed during it; output stalled ${stall.toFixed(0)} ms, guest paused ${paused ?? "?"} ms`,
    );
    await sameAsLog(`the ${mechanism} to ${to}`);
  }
  clearInterval(typer);
  typer = undefined;
  const last = typed;
  await until(
    "every typed line echoed",
    async () => (counts(cl.text().slice(from), "K", last).missing.length === 0 ? true : undefined),
    30_000,
    200,
  ).catch(() => {});
  await sleep(1000);
  const out = cl.text();
  const keys = counts(out.slice(from), "K", last);
  assert.deepEqual(keys.missing, [], `of ${last} typed lines none is lost`);
  assert.deepEqual(keys.twice, [], `of ${last} typed lines none is echoed twice`);
  const os = [...out.slice(from).matchAll(/(?<=^|\n)O(\d+)\r?\n/g)].map((x) => Number(x[1]));
  assert.ok(os.length > 100, `the guest printed on (${os.length} lines)`);
  const outs = counts(out, "O", os[os.length - 1] + 1);
  assert.deepEqual(
    outs.missing.filter((n) => n >= os[0]),
    [],
    "no line of the guest's output is lost",
  );
  assert.deepEqual(outs.twice, [], "no line of the guest's output is shown twice");
  // Once more at the end, with every typed line echoed.
  await sameAsLog("all the moves");
  assert.equal(cl.session.lostBytes, 0);
  const named = (c.output().match(/"atNamedAgent":true/g) ?? []).length - reattachedBefore;
  assert.ok(named >= moves.length, `after each move the relay re-attached at the named agent (${named})`);
  phase(`${last} lines typed, each echoed once; ${os.length} lines printed, each shown once`);
  for (const line of c.output().split("\n"))
    if (/console: (reattached|agent connection ended)/.test(line)) t.diagnostic(line.slice(0, 300));
});

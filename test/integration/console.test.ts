// The console on a real guest (QEMU under TCG): `nestcloud up --provider testbed` on one
// server with two host VMs; a guest made through the API (it gets a logged `console` serial
// port, ttyS1, where the guest image runs a shell); a tenant runs `nestcloud console g1`
// (the real CLI, its stdin a pipe): it reads the shell, types a command and reads what it
// computed; the guest prints a numbered sequence while it moves by instant handover through
// the API, and a command typed during the move runs once. Afterwards the CLI's output is the
// guest's serial stream byte for byte (nothing lost, nothing twice), and neither marker (one
// typed, one printed) is in the controller's log.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { spawnConsole } from "../support/console-cli.ts";
import { api, stopGently, until } from "../support/controller-process.ts";
import { bringUpConsoleBed, type ConsoleBedParts } from "./console-bed.ts";
import { heartbeatOf, qemuPidsOf, tearDown } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-console-it-"));
const held: ConsoleBedParts = {};
let cli: ChildProcess | undefined;

after(async () => {
  if (cli && cli.exitCode === null && cli.signalCode === null) {
    const gone = new Promise((r) => cli!.once("exit", r));
    cli.kill("SIGKILL");
    await gone;
  }
  if (held.ctl) await stopGently(held.ctl);
  await tearDown(held.bed);
  rmSync(dir, { recursive: true, force: true });
});

test("a tenant's console on a real guest: attach, type, read, and an instant handover loses and repeats nothing", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const { bed: b, ctl: c, tenant } = await bringUpConsoleBed(dir, held);
  phase(`controller on ${c.url}`);
  const other = (await api(c, "POST", "/api/tokens", { role: "tenant", tenant: "globex" })).body
    .token as string;
  phase("g1 runs at a-h1");

  // Another tenant: refused before anything is relayed (as if the guest did not exist).
  const refused = spawnConsole(["g1", "--url", c.url, "--token", other]);
  assert.equal(await refused.exit, 1);
  assert.match(refused.stderr(), /404 guest VM g1 not found/);

  // The tenant's console: the real CLI, typing through a pipe.
  const run = spawnConsole(["g1", "--url", c.url, "--token", tenant]);
  cli = run.child;
  const stdout = () => run.stdout().toString("latin1");
  await until(
    "attached",
    async () => (/attached to g1 at a-h1/.test(run.stderr()) ? true : undefined),
    30_000,
    100,
  );
  const fingerprint = /agent key (SHA256:\S+)\)/.exec(run.stderr())?.[1];
  phase(`attached at a-h1 (agent key ${fingerprint})`);

  // Typed, computed by the guest's shell: the marker typed never appears as computed.
  const TYPED = "TYPEDMARK";
  run.type(`echo ${TYPED}-$((6*7))-OK\r`);
  await until(
    "the shell's answer",
    async () => (stdout().includes(`${TYPED}-42-OK`) ? true : undefined),
    30_000,
    100,
  );
  phase("typed and read");

  // The guest prints a numbered sequence on its console while it moves.
  // The terminal's echo is off meanwhile, so that what is typed during the loop does not land
  // between its lines (the shell's line editor shows it once the loop is done).
  const N = 600;
  run.type(
    `stty -echo; i=0; while [ $i -lt ${N} ]; do echo "SEQ-$i-GUESTMARK"; i=$((i+1)); sleep 0.02; done; stty echo\r`,
  );
  await until(
    "the sequence running",
    async () => (stdout().includes("SEQ-20-") ? true : undefined),
    30_000,
    50,
  );
  const hb = await heartbeatOf(b, "g1", "a", "h1");
  const moved = await api(c, "POST", "/api/vms/g1/migrate", { to: "a-h2", mechanism: "instant" });
  assert.equal(moved.status, 202, JSON.stringify(moved.body));
  // Typed during the move: the shell runs it once the loop ends.
  run.type("echo DURING-$((40+2))-MOVE\r");
  await until(
    "the migration done",
    async () => {
      const list = (await api(c, "GET", "/api/migrations")).body as Array<{ guest: string; status: string }>;
      const m = list.find((x) => x.guest === "g1");
      if (m?.status === "failed") throw new Error(`migration failed: ${JSON.stringify(m)}`);
      return m?.status === "completed" ? m : undefined;
    },
    120_000,
    200,
  );
  phase("moved to a-h2");
  // One QEMU runs the guest, at a-h2, and it did not reboot (its heartbeat goes on).
  const st = await b.client("a", "h2").guest("g1");
  assert.equal(st.state, "running");
  assert.deepEqual(qemuPidsOf(b, "g1"), [st.pid]);
  await until(
    "the heartbeat goes on at a-h2",
    async () => ((await heartbeatOf(b, "g1", "a", "h2")) > hb ? true : undefined),
    15_000,
    250,
  );
  await until(
    "the sequence's end",
    async () => (stdout().includes(`SEQ-${N - 1}-`) ? true : undefined),
    60_000,
    100,
  );
  await until(
    "the command typed during the move",
    async () => (stdout().includes("DURING-42-MOVE") ? true : undefined),
    30_000,
    100,
  );
  assert.match(run.stderr(), /following it/, "the CLI was told the guest moved");
  assert.match(run.stderr(), /attached to g1 at a-h2/);
  phase("sequence complete at a-h2");

  // Detach (Ctrl-] q); the CLI exits 0.
  await new Promise((r) => setTimeout(r, 500));
  run.type("\x1dq");
  assert.equal(await run.exit, 0, run.stderr());

  // Nothing lost, nothing twice: the CLI's output is the serial stream from where it started.
  const status = await b.client("a", "h2").guest("g1");
  const logFile = status.endpoints.find((e) => e.id === "console")!.log!;
  const log = readFileSync(logFile).toString("latin1");
  const out = stdout();
  assert.ok(out.length > 2000, `the CLI printed the session (${out.length} bytes)`);
  assert.equal(
    log.slice(log.length - out.length),
    out,
    "the CLI's output is the tail of the serial log, byte for byte",
  );
  const seq = [...out.matchAll(/SEQ-(\d+)-GUESTMARK/g)].map((m) => Number(m[1]));
  assert.deepEqual(
    seq,
    Array.from({ length: N }, (_, i) => i),
    "every number once, in order",
  );
  // The command typed during the move ran once (keystrokes repeated would run it twice, or
  // garble it).
  assert.equal(out.split("\nDURING-42-MOVE").length - 1, 1, "run once");

  // The relay counted the client, its re-attach after the move, and that it is gone.
  const metrics = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${c.token}` } });
  const text = await metrics.text();
  assert.match(text, /nestcloud_console_relay\{stat="reattaches"\} 1\n/);
  assert.match(text, /nestcloud_console_relay\{stat="clients"\} 0\n/);
  assert.match(text, /nestcloud_console_relay\{stat="slowClientsDropped"\} 0\n/);

  // The controller relayed all of it and logged none of it.
  const controllerLog = c.output();
  assert.match(controllerLog, /console: reattached/, "the controller logs the relay's events");
  for (const marker of [TYPED, "GUESTMARK", "DURING-"])
    assert.equal(controllerLog.includes(marker), false, `${marker} is not in the controller's log`);
  phase("checked");
});

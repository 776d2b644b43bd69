// The virtual AMT on a real guest (QEMU under TCG, one shared guest): `nestcloud up
// --provider testbed`, guest g1 of tenant acme made through the API. The guest powers itself
// off from inside (`poweroff -f`): QEMU stays (-no-shutdown), the log says so, and power on
// through the API boots it again (a new NESTCLOUD-READY). The guest is made to hang on
// purpose (a kernel panic: its pvpanic device reports it, QEMU holds it stopped) and a reset
// through the API brings it back. Then hung without a panic: a real-time task spins on the
// only vCPU (nc-workload hang) and starves every other one; the heartbeat stops, what the
// tenant types on the console is not echoed, QEMU runs and no pvpanic comes; a reset through
// the API brings it back. busybox has no ACPI handler, so a graceful shutdown is
// reported ignored, and --force powers it off hard. Boot into rescue (a marker on the kernel
// command line, read back inside the guest) and back. Each action is in the guest's event log
// with who asked; another tenant gets 404 and leaves no trace.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { api, stopGently, until } from "../support/controller-process.ts";
import { bringUpConsoleBed, ConsoleBedClient, type ConsoleBedParts } from "./console-bed.ts";
import { heartbeatOf, tearDown } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-amt-it-"));
const held: ConsoleBedParts = {};
let consoleClient: ConsoleBedClient | undefined;

after(async () => {
  consoleClient?.close();
  if (held.ctl) await stopGently(held.ctl);
  await tearDown(held.bed);
  rmSync(dir, { recursive: true, force: true });
});

interface LoggedEvent {
  id: number;
  kind: string;
  actor: string | null;
  detail: string;
}

/** Boots under TCG on a loaded 2-core machine take from seconds to minutes. */
const BOOT_MS = 240_000;

test("virtual AMT on a real guest: off from inside, on, panic and reset, hung without a panic and reset, shutdown ignored then forced, rescue and back", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const { bed, ctl, tenant } = await bringUpConsoleBed(dir, held, { bootMs: BOOT_MS });
  const acme = (method: string, path: string, body?: unknown) =>
    api({ url: ctl.url, token: tenant }, method, path, body);
  const agent = bed.client("a", "h1");
  const events = async () => (await acme("GET", "/api/vms/g1/events?limit=1000")).body as LoggedEvent[];
  /** The newest event of `kind` after event `since` (ids grow). */
  const eventAfter = (kind: string, since: number, ms = BOOT_MS) =>
    until(
      `${kind} after event ${since}`,
      async () => (await events()).find((e) => e.kind === kind && e.id > since),
      ms,
      500,
    );
  const lastId = async () => (await events())[0]?.id ?? 0;
  const power = async (body: Record<string, unknown>) => {
    const r = await acme("POST", "/api/vms/g1/power", body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { power: string; boot: string; outcome: string; detail: string };
  };
  const guestRuns = (what: string) =>
    until(
      what,
      async () => {
        const r = await agent
          .exec("g1", { command: "echo ALIVE-$((20+22))", timeoutMs: 5000 })
          .catch(() => null);
        return r?.output.includes("ALIVE-42") ? true : undefined;
      },
      BOOT_MS,
      1000,
    );
  phase("g1 runs at a-h1");

  // Inventory: what the guest is and boots.
  const inv = (await acme("GET", "/api/vms/g1/inventory")).body;
  assert.equal(inv.cpus, 1);
  assert.equal(inv.memoryMiB, 192);
  assert.deepEqual(inv.serials, [{ id: "console", logged: true }]);
  assert.match(inv.commandLine, /console=ttyS0.*nestcloud\.bootid=\S+/);
  assert.equal(inv.boot, "normal");
  assert.equal(inv.power, "on");
  assert.equal(inv.pvpanic, true);
  assert.equal(inv.qemuStatus, "running");

  // Another tenant: 404, and nothing happens.
  const other = (await api(ctl, "POST", "/api/tokens", { role: "tenant", tenant: "globex" })).body
    .token as string;
  const refused = await api({ url: ctl.url, token: other }, "POST", "/api/vms/g1/power", { action: "off" });
  assert.equal(refused.status, 404);

  // 1. The guest powers itself off; QEMU is kept, the API shows it off.
  const pid = (await agent.guest("g1")).pid;
  let mark = await lastId();
  await agent.exec("g1", { command: "poweroff -f", timeoutMs: 3000 }).catch(() => {});
  await eventAfter("guest.powered-off", mark, 60_000);
  // Live from its agent (the guests list follows at the controller's next audit).
  const offInv = (await acme("GET", "/api/vms/g1/inventory")).body;
  assert.equal(offInv.power, "off");
  assert.equal((await acme("GET", "/api/vms/g1/inventory")).body.qemuStatus, "shutdown");
  assert.equal((await agent.guest("g1")).pid, pid, "the same QEMU process (-no-shutdown)");
  phase("powered off from inside");

  // 2. Power on through the API: it boots again.
  mark = await lastId();
  assert.equal((await power({ action: "on" })).power, "on");
  await eventAfter("guest.booted", mark);
  await guestRuns("g1 answers after power on");
  phase("powered on and booted");

  // 3. A hung guest: a kernel panic, reported by pvpanic; QEMU holds it. Reset brings it back.
  mark = await lastId();
  await agent
    .exec("g1", { command: "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger", timeoutMs: 3000 })
    .catch(() => {});
  const panic = await eventAfter("guest.panicked", mark, 60_000);
  assert.equal(panic.actor, null);
  assert.equal((await acme("GET", "/api/vms/g1/inventory")).body.power, "panicked");
  const notRunning = await agent.exec("g1", { command: "echo NO", timeoutMs: 2000 }).catch((e: Error) => e);
  assert.ok(notRunning instanceof Error, "a panicked guest does not answer");
  mark = await lastId();
  assert.equal((await power({ action: "reset" })).power, "on");
  await eventAfter("guest.booted", mark);
  await guestRuns("g1 answers after the reset");
  phase("panicked, reset, booted");

  // 4. A hung guest without a panic: a SCHED_FIFO 99 task spins on the only vCPU with the
  // kernel's RT throttling off. The tenant's console answers first, then neither the heartbeat
  // nor the console's echo comes; QEMU runs and no pvpanic event comes; a reset brings it back.
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const tty = new ConsoleBedClient(ctl.url, tenant);
  consoleClient = tty;
  tty.connect();
  await until("the console attached", async () => (tty.attaches > 0 ? true : undefined), 60_000, 100);
  tty.type("echo TTY-$((40+2))-UP\r");
  await until("the console answers", async () => (/TTY-42-UP/.test(tty.text()) ? true : undefined), 60_000);
  const hb = () => heartbeatOf(bed, "g1", "a", "h1");
  const beat = await hb();
  await until("the heartbeat advances", async () => ((await hb()) > beat ? true : undefined), 60_000, 500);
  mark = await lastId();
  await agent.exec("g1", { command: "nc-workload hang", timeoutMs: 3000 }).catch(() => {});
  // A heartbeat already on its way may still land: the guest is hung once two readings 8 s apart agree.
  const stoppedAt = await until(
    "the heartbeat stops",
    async () => {
      const before = await hb();
      await sleep(8000);
      return (await hb()) === before ? before : undefined;
    },
    90_000,
    0,
  );
  tty.type("echo HUNG-$((40+3))-ECHO\r");
  const hungExec = await agent.exec("g1", { command: "echo NO", timeoutMs: 3000 }).catch((e: Error) => e);
  assert.ok(hungExec instanceof Error, "a hung guest does not answer");
  await sleep(5000);
  assert.equal(tty.text().includes("HUNG-"), false, "nothing typed on the console is echoed");
  assert.equal(await hb(), stoppedAt, "no heartbeat while hung");
  const hungInv = (await acme("GET", "/api/vms/g1/inventory")).body;
  assert.equal(hungInv.power, "on", "hung, not panicked");
  assert.equal(hungInv.qemuStatus, "running");
  assert.equal(
    (await events()).some((e) => e.id > mark && e.kind === "guest.panicked"),
    false,
    "no pvpanic event",
  );
  tty.close();
  consoleClient = undefined;
  phase(`hung (heartbeat stopped at ${stoppedAt}, no echo, QEMU running, no panic)`);
  mark = await lastId();
  assert.equal((await power({ action: "reset" })).power, "on");
  const rebooted = await eventAfter("guest.booted", mark);
  await guestRuns("g1 answers after the reset of the hung guest");
  await until(
    "the heartbeat is back",
    async () => ((await hb()) !== stoppedAt ? true : undefined),
    60_000,
    500,
  );
  const hungReset = (await events()).find((e) => e.kind === "power.reset" && e.id > mark);
  assert.ok(hungReset && hungReset.id < rebooted.id, "the reset is logged before the boot it caused");
  phase("hung guest reset, booted");

  // 5. Graceful shutdown: busybox has no ACPI handler, so it is reported ignored; then forced.
  const ignored = await power({ action: "shutdown", waitMs: 3000 });
  assert.equal(ignored.outcome, "ignored");
  assert.equal(ignored.power, "on");
  const forced = await power({ action: "shutdown", waitMs: 2000, force: true });
  assert.equal(forced.outcome, "forced");
  assert.equal(forced.power, "off");
  phase("shutdown ignored, then forced");

  // 6. Boot into rescue (from off): the marker is on the command line the guest booted.
  mark = await lastId();
  const rescue = await power({ action: "rescue", append: "RESCUEMARK=1" });
  assert.equal(rescue.boot, "rescue");
  const rescued = await eventAfter("guest.booted", mark);
  assert.match(rescued.detail, /rescue boot/);
  await guestRuns("g1 answers in rescue");
  const cmdline = (await agent.exec("g1", { command: "cat /proc/cmdline" })).output;
  assert.match(cmdline, /nestcloud\.rescue=1 RESCUEMARK=1/);
  assert.equal((await acme("GET", "/api/vms/g1/inventory")).body.boot, "rescue");
  phase("rescue boot");

  // 7. And back.
  mark = await lastId();
  assert.equal((await power({ action: "normal" })).boot, "normal");
  await eventAfter("guest.booted", mark);
  await guestRuns("g1 answers after booting normally");
  const normal = (await agent.exec("g1", { command: "cat /proc/cmdline" })).output;
  assert.doesNotMatch(normal, /rescue/);
  phase("normal boot again");

  // The log: every action with who asked (newest first), the guest's own events without.
  const log = await events();
  const actions = log.filter((e) => e.kind.startsWith("power."));
  assert.deepEqual(
    actions.map((e) => e.kind),
    [
      "power.normal",
      "power.rescue",
      "power.shutdown",
      "power.shutdown",
      "power.reset",
      "power.reset",
      "power.on",
    ],
  );
  for (const e of actions) assert.match(e.actor!, /^tenant:acme \(tok_[0-9a-f]{16}\)$/);
  assert.match(actions[2].detail, /^forced:/);
  assert.match(actions[3].detail, /^ignored:/);
  for (const e of log.filter((x) => x.kind.startsWith("guest."))) assert.equal(e.actor, null);
  // globex's refused attempt left nothing.
  assert.equal(log.filter((e) => e.detail.includes("globex") || e.actor?.includes("globex")).length, 0);
  phase("event log checked");
});

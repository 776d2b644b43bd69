// The console on a real guest (QEMU under TCG) beyond the instant handover of console.test.ts:
// `nestcloud up --provider testbed`, server a with two host VMs and server b with one, guest g1
// made through the API at a-h1. In order:
// - bad input: an unknown guest and another tenant's guest are refused before any upgrade; a
//   frame larger than the relay accepts closes that client only;
// - a client that detaches during a migration and a new one that attaches after it: the
//   replay is the serial log's tail byte for byte, with what the guest printed meanwhile;
// - a client attached through a pre-copy (a-h2 -> b-h1) and a post-copy (b-h1 -> a-h1) while the guest prints a
//   numbered sequence: its output is the serial stream byte for byte (nothing lost, nothing
//   twice) and a command typed during each move runs once;
// - a client that never reads while the guest prints a bulk: the guest's serial does not wait
//   for it (the same bulk takes about as long as with one reader, who reads all of it).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import WebSocket from "ws";
import { ConsoleClientSession, type Step } from "../../src/console/index.ts";
import { type ConsoleCli, spawnConsole } from "../support/console-cli.ts";
import { api, stopGently, until } from "../support/controller-process.ts";
import { bringUpConsoleBed, type ConsoleBedParts } from "./console-bed.ts";
import { tearDown } from "./testbed-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-console-moves-it-"));
const held: ConsoleBedParts = {};
const clis: ConsoleCli[] = [];
const sockets: WebSocket[] = [];

after(async () => {
  for (const s of sockets) s.terminate();
  for (const c of clis) await c.kill();
  if (held.ctl) await stopGently(held.ctl);
  await tearDown(held.bed);
  rmSync(dir, { recursive: true, force: true });
});

const HOST = { "a-h1": ["a", "h1"], "a-h2": ["a", "h2"], "b-h1": ["b", "h1"] } as const;

test("console across moves and against bad clients: detach and re-attach mid-move, pre-copy, post-copy, oversized frames, other tenants, a client that never reads", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const { bed: b, ctl: c, tenant } = await bringUpConsoleBed(dir, held, { serverB: true });
  const other = (await api(c, "POST", "/api/tokens", { role: "tenant", tenant: "globex" })).body
    .token as string;
  phase("g1 runs at a-h1");
  let where: keyof typeof HOST = "a-h1";
  const logOfG1 = async () => {
    const [s, h] = HOST[where];
    const st = await b.client(s, h).guest("g1");
    return readFileSync(st.endpoints.find((e) => e.id === "console")!.log!).toString("latin1");
  };
  const cli = (token = tenant) => {
    const r = spawnConsole(["g1", "--url", c.url, "--token", token]);
    clis.push(r);
    return r;
  };
  const attached = (r: ConsoleCli, hostVm: string, n = 1) =>
    until(
      `attached at ${hostVm}`,
      async () => (r.stderr().split(`attached to g1 at ${hostVm}`).length - 1 >= n ? true : undefined),
      30_000,
      100,
    );
  const migrate = async (to: string, mechanism: string) => {
    const moved = await api(c, "POST", "/api/vms/g1/migrate", { to, mechanism });
    assert.equal(moved.status, 202, JSON.stringify(moved.body));
    const plan = moved.body.plan as number;
    return async () => {
      const m = await until(
        `the ${mechanism} move to ${to}`,
        async () => {
          const list = (await api(c, "GET", "/api/migrations")).body as Array<{
            plan: number;
            status: string;
            mechanism: string;
          }>;
          const m = list.find((x) => x.plan === plan);
          if (m?.status === "failed") throw new Error(`migration failed: ${JSON.stringify(m)}`);
          return m?.status === "completed" ? m : undefined;
        },
        180_000,
        200,
      );
      assert.equal(m.mechanism, mechanism);
      where = to as keyof typeof HOST;
      return m;
    };
  };

  // ---- bad input ---------------------------------------------------------------------------
  const raw = (path: string, token: string) =>
    new Promise<{ status: number }>((resolve) => {
      const ws = new WebSocket(`${c.url.replace(/^http/, "ws")}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      ws.once("unexpected-response", (_req, res) => {
        resolve({ status: res.statusCode ?? 0 });
        ws.terminate();
      });
      ws.once("open", () => {
        resolve({ status: 101 });
        ws.close();
      });
      ws.once("error", () => {});
    });
  assert.equal((await raw("/api/vms/no-such-guest/console", tenant)).status, 404, "an unknown guest");
  assert.equal((await raw("/api/vms/g1/console", other)).status, 404, "another tenant's guest");
  assert.equal((await raw("/api/vms/g1/console", "nc_not-a-token")).status, 401, "a bad token");
  const refused = cli(other);
  assert.equal(await refused.exit, 1);
  assert.match(refused.stderr(), /404 guest VM g1 not found/);

  // An oversized frame closes that client (1009) and nobody else's console.
  const watcher = cli();
  await attached(watcher, "a-h1");
  const big = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${c.url.replace(/^http/, "ws")}/api/vms/g1/console`, {
      headers: { authorization: `Bearer ${tenant}` },
    });
    sockets.push(ws);
    ws.once("open", () => ws.send(Buffer.alloc(4 * 1024 * 1024, 0x10)));
    ws.once("close", (code) => resolve(code));
    ws.once("error", () => {});
  });
  assert.equal(big, 1009, "a 4 MiB frame is refused as too big");
  watcher.type("echo WATCHER-$((2+3))-ALIVE\r");
  await until("the first client goes on", async () =>
    /WATCHER-5-ALIVE/.test(watcher.text()) ? true : undefined,
  );
  phase("bad input refused; the other client goes on");

  // ---- detach during a migration, attach after it ---------------------------------------------
  const N = 150;
  const sequence = (tag: string, n = N) =>
    `stty -echo; i=0; while [ $i -lt ${n} ]; do echo "${tag}-$i-GUESTMARK"; i=$((i+1)); sleep 0.03; done; stty echo\r`;
  watcher.type(sequence("DSEQ"));
  await until("the sequence running", async () => (watcher.text().includes("DSEQ-10-") ? true : undefined));
  const done1 = await migrate("a-h2", "instant");
  assert.equal(await watcher.detach(), 0, "detached during the move");
  const seen1 = watcher.text();
  await done1();
  await until("the sequence's end in the log", async () =>
    (await logOfG1()).includes(`DSEQ-${N - 1}-GUESTMARK`) ? true : undefined,
  );
  const back = cli();
  await attached(back, "a-h2");
  await new Promise((r) => setTimeout(r, 1000));
  const log1 = await logOfG1();
  const replay = back.text();
  assert.equal(replay.length, Math.min(16 * 1024, log1.length), "a new client gets 16 KiB of tail");
  assert.equal(
    log1.slice(log1.length - replay.length),
    replay,
    "the replay is the log's tail, byte for byte",
  );
  assert.ok(log1.includes(seen1.slice(-2000)), "what the first client saw is in the same stream");
  assert.deepEqual(
    [...replay.matchAll(/DSEQ-(\d+)-GUESTMARK/g)].map((m) => Number(m[1])),
    Array.from({ length: N }, (_, i) => i),
    "the replay has every number printed, including those printed while nobody was attached",
  );
  phase("detached during an instant move; the replay after it is exact");

  // ---- pre-copy and post-copy with a client attached ----------------------------------------
  for (const [to, mechanism, tag] of [
    ["b-h1", "precopy", "PRE"],
    ["a-h1", "postcopy", "POST"],
  ] as const) {
    const start = back.text().length;
    back.type(sequence(`${tag}SEQ`, 400));
    await until(`${tag}: the sequence running`, async () =>
      back.text().includes(`${tag}SEQ-10-`) ? true : undefined,
    );
    const done = await migrate(to, mechanism);
    back.type(`echo ${tag}-DURING-$((40+2))-MOVE\r`);
    await done();
    await attached(back, to);
    await until(
      `${tag}: the sequence's end and the command typed during the move`,
      async () =>
        back.text().includes(`${tag}SEQ-399-`) && back.text().includes(`${tag}-DURING-42-MOVE`)
          ? true
          : undefined,
      120_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 500));
    const out = back.text();
    const log = await logOfG1();
    assert.equal(
      log.slice(log.length - out.length),
      out,
      `${mechanism}: the client's output is the log's tail`,
    );
    assert.deepEqual(
      [...out.slice(start).matchAll(new RegExp(`${tag}SEQ-(\\d+)-GUESTMARK`, "g"))].map((m) => Number(m[1])),
      Array.from({ length: 400 }, (_, i) => i),
      `${mechanism}: every number once, in order`,
    );
    assert.equal(out.split(`\n${tag}-DURING-42-MOVE`).length - 1, 1, `${mechanism}: the command ran once`);
    phase(`${mechanism} to ${to}: nothing lost, nothing twice`);
  }

  // ---- a client that never reads ------------------------------------------------------------
  // The guest prints the same bulk twice: once with only the reading client, once with a
  // second client that stopped reading. The second takes about as long: the serial port does
  // not wait for a slow client (the relay's own bound, dropping a client with 1 MiB unsent, is
  // shown in test/console-relay.test.ts: a serial port under TCG prints too slowly here to
  // fill the kernel's loopback buffers and that megabyte in a test's time).
  const KB = Number(process.env.NESTCLOUD_CONSOLE_BULK_KB ?? 256);
  const bulk = async (tag: string) => {
    const t1 = Date.now();
    back.type(`head -c ${KB * 1024} /dev/zero | tr '\\0' x; echo; echo ${tag}-$((3*5))-DONE\r`);
    await until(
      `the reading client got the bulk (${tag})`,
      async () => (back.text().includes(`${tag}-15-DONE`) ? true : undefined),
      300_000,
      100,
    );
    return (Date.now() - t1) / 1000;
  };
  const alone = await bulk("BULKA");
  const stalled = await stalledClient(c.url, tenant);
  sockets.push(stalled.ws);
  const withStalled = await bulk("BULKB");
  phase(
    `${KB} KiB printed in ${alone.toFixed(1)} s with one reader, ${withStalled.toFixed(1)} s with a client that does not read (${(withStalled / alone).toFixed(2)}x)`,
  );
  assert.ok(
    withStalled <= alone * 1.5 + 2,
    `the guest's serial does not wait for a client that does not read (${withStalled.toFixed(1)} s vs ${alone.toFixed(1)} s)`,
  );
  const outBulk = back.text();
  const logBulk = await logOfG1();
  assert.equal(
    logBulk.slice(logBulk.length - outBulk.length) === outBulk,
    true,
    "the reading client's output is still the log's tail, byte for byte",
  );
  // The reader goes on typing.
  back.type("echo AFTER-BULK-$((7*6))\r");
  await until("the reader types on", async () => (back.text().includes("AFTER-BULK-42") ? true : undefined));
  back.type("\x1dq");
  assert.equal(await back.exit, 0);
});

/** A client that attaches (handshake and all) and then stops reading its socket. */
async function stalledClient(url: string, token: string) {
  const session = new ConsoleClientSession({ keyboard: false });
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/api/vms/g1/console`, {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  let code: number | null = null;
  const closed = new Promise<number>((r) => ws.once("close", (c) => r((code = c))));
  const send = (s: Step) => {
    for (const m of s.sendText) ws.send(JSON.stringify(m));
    for (const m of s.send) ws.send(m);
  };
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => void session.start().then(send));
    ws.on("message", (data, isBinary) => {
      const buf = data as Buffer;
      void (isBinary ? session.onBinary(buf) : session.onText(buf.toString("utf8"))).then((s) => {
        send(s);
        if (s.events.some((e) => e.kind === "attached")) {
          // Stop reading: what the relay sends piles up in the kernel, then in its buffer.
          (ws as unknown as { _socket: { pause(): void } })._socket.pause();
          resolve();
        }
      });
    });
    ws.once("error", reject);
  });
  return { ws, closedCode: () => (code !== null ? Promise.resolve(code) : closed) };
}

// The console without QEMU: two real host-VM agents (HTTP + WebSocket on loopback) whose
// guest is a stand-in (its serial log is a file the test appends to, its serial socket a
// unix server that records what it receives, as QEMU's chardev would), the controller's
// relay (src/console/relay.ts with the controller's agent connector) and the client session,
// wired through in-memory pipes that capture everything the relay forwards. Covers: replay
// and live output, keystrokes delivered and acknowledged, the relay seeing ciphertext only
// (markers), a move from one agent to the other with no byte lost or duplicated and each
// keystroke delivered once, a slow client dropped, one keyboard holder, refused tickets.
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import pino from "pino";
import { GuestRuntime } from "../src/agent/hostvm/guest-runtime.ts";
import { buildHostVmAgent, type HostVmAgent } from "../src/agent/index.ts";
import {
  CLOSE,
  ConsoleClientSession,
  ConsoleRelay,
  deriveTicketKey,
  fingerprint,
  issueTicket,
  type Pipe,
  type Viewer,
} from "../src/console/index.ts";
import { type ConsoleTarget, connectAgent } from "../src/controller/console.ts";
import type { QemuProcess } from "../src/qemu/index.ts";

const TOKEN = "x".repeat(43);
const dir = mkdtempSync(join(tmpdir(), "nc-console-"));
const pool = join(dir, "pool");
const logFile = join(pool, "guests", "g1", "console.serial.log");
/** Everything the agents log, as text: no marker may appear in it either. */
const agentLogs: string[] = [];
const logSink = new Writable({
  write(chunk, _enc, done) {
    agentLogs.push(chunk.toString());
    done();
  },
});

interface FakeHost {
  agent: HostVmAgent;
  url: string;
  name: string;
  /** What "QEMU" received on the serial socket. */
  received: Buffer[];
  server: Server;
  sockets: Socket[];
  runDir: string;
  /** Whether "QEMU" reads its serial socket (false: what is written stays in the socket). */
  reading(on: boolean): void;
}
const hosts: FakeHost[] = [];

async function startHost(name: string): Promise<FakeHost> {
  const hdir = join(dir, name);
  const runDir = join(hdir, "run");
  mkdirSync(runDir, { recursive: true });
  const agent = buildHostVmAgent(
    {
      role: "hostvm",
      testbedId: "t",
      server: "s1",
      hostVm: name,
      address: "127.0.0.1",
      poolDir: pool,
      qemuDir: join(hdir, "qemu"),
      tokenFile: join(dir, "token"),
      readyFile: join(hdir, "ready"),
      serverAgentUrl: "http://127.0.0.1:9",
      memoryMiB: 1024,
      cpus: 1,
      image: { kernel: "/nonexistent/vmlinuz", initrd: "/nonexistent/initrd" },
    },
    TOKEN,
    pino({ level: "trace" }, logSink),
    { console: { tickMs: 20 } },
  );
  const url = await agent.app.listen({ host: "127.0.0.1", port: 0 });
  const received: Buffer[] = [];
  const sockets: Socket[] = [];
  let readingNow = true;
  const server = createServer((s) => {
    sockets.push(s);
    if (!readingNow) (s as unknown as { _handle: { readStop(): void } })._handle.readStop();
    // QEMU sends the guest's output to a connected client too: the agent must drain it.
    s.write("output QEMU also sends to the socket\n");
    s.on("data", (d) => received.push(d));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(join(runDir, "s-console.sock"), r));
  const reading = (on: boolean) => {
    readingNow = on;
    // On the handle: a paused stream would still read the kernel's buffer into its own.
    for (const s of sockets) {
      const handle = (s as unknown as { _handle: { readStart(): void; readStop(): void } | null })._handle;
      if (s.destroyed || !handle) continue;
      if (on) handle.readStart();
      else handle.readStop();
    }
  };
  const h = { agent, url, name, received, server, sockets, runDir, reading };
  hosts.push(h);
  return h;
}

/** The guest runs at `h` now (a stand-in GuestRuntime: running, its QEMU's runtime folder). */
function placeGuest(h: FakeHost): void {
  const host = h.agent.consoles.host;
  const g = new GuestRuntime(host.ctx, {
    guestId: "g1",
    memoryMiB: 128,
    devices: [{ kind: "serial", id: "console", log: true }],
  });
  g.state = "running";
  g.qemu = { isRunning: true, spec: { runDir: h.runDir } } as unknown as QemuProcess;
  host.guests.set("g1", g);
}

/** The guest starts migrating away from `h` (as an outgoing migration in its first phase). */
function startMove(h: FakeHost, to?: FakeHost): { confirm(): void; fail(): void; complete(): void } {
  const host = h.agent.consoles.host;
  const m = {
    migrationId: "m1",
    guest: { guestId: "g1" },
    phase: "running",
    done: () => false,
    ...(to ? { req: { destination: { url: to.url } } } : {}),
  };
  host.outgoing.set("m1", m as never);
  return {
    confirm() {
      m.phase = "confirmed";
      host.guests.delete("g1");
    },
    fail() {
      m.phase = "failed";
    },
    complete() {
      m.phase = "completed";
    },
  };
}

let A: FakeHost;
let B: FakeHost;

before(async () => {
  mkdirSync(join(pool, "guests", "g1"), { recursive: true });
  appendFileSync(logFile, "");
  A = await startHost("h1");
  B = await startHost("h2");
});

after(async () => {
  for (const h of hosts) {
    for (const s of h.sockets) s.destroy();
    h.server.close();
    await h.agent.app.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, f: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Every locate the relay made: the agent a move named, or null (a search). */
const locateCalls: Array<string | null> = [];

/** Where the relay finds the guest: the agent a move named, else whichever fake host has it. */
async function locate(_guest: string, movedTo?: string): Promise<ConsoleTarget | null> {
  locateCalls.push(movedTo ?? null);
  const h =
    movedTo !== undefined
      ? hosts.find((x) => x.url === movedTo)
      : hosts.find((x) => x.agent.consoles.host.guests.has("g1"));
  if (!h) return null;
  return { hostVm: h.name, agentUrl: h.url, token: TOKEN, identity: h.agent.consoles.identity.publicRaw };
}

/** Everything that passed through the relay, and what it logged. */
const captured: Array<Buffer | string> = [];
const relayLogs: string[] = [];

function makeRelay(opts: { secret?: string; maxClientBufferBytes?: number } = {}) {
  return new ConsoleRelay<ConsoleTarget>(
    {
      locate,
      connect: async (target, guest, device, handlers) => {
        const pipe = await connectAgent(target, guest, device, {
          onMessage: (d, bin) => {
            captured.push(Buffer.from(d));
            handlers.onMessage(d, bin);
          },
          onClose: handlers.onClose,
        });
        return {
          send: (d) => {
            captured.push(typeof d === "string" ? d : Buffer.from(d));
            pipe.send(d);
          },
          get bufferedAmount() {
            return pipe.bufferedAmount;
          },
          close: (c, r) => pipe.close(c, r),
        };
      },
      ticket: (v: Viewer, _t, guest, device) =>
        issueTicket(deriveTicketKey(opts.secret ?? TOKEN), {
          v: 1,
          guest,
          device,
          tenant: v.tenant,
          sub: v.sub,
          key: v.key!,
          session: v.session!,
          control: v.control,
          iat: Date.now() / 1000,
          exp: Date.now() / 1000 + 60,
        }),
      stillAllowed: async () => true,
      log: (event, fields) => relayLogs.push(`${event} ${JSON.stringify(fields)}`),
    },
    { retryMs: 20, maxClientBufferBytes: opts.maxClientBufferBytes },
  );
}

/** A client attached through the relay by in-memory pipes. */
function attach(
  relay: ConsoleRelay<ConsoleTarget>,
  opts: { keyboard?: boolean; control?: boolean; session?: ConsoleClientSession } = {},
) {
  const session = opts.session ?? new ConsoleClientSession({ keyboard: opts.keyboard ?? true });
  const output: Buffer[] = [];
  const notices: string[] = [];
  const relayMessages: Array<{ t: string }> = [];
  let closed: { code: number; reason: string } | null = null;
  let dropFromRelay = false;
  const client = {
    session,
    output,
    notices,
    relayMessages,
    text: () => Buffer.concat(output).toString("latin1"),
    get closed() {
      return closed;
    },
    /** Messages from the relay are lost from now on (a broken link). */
    cut() {
      dropFromRelay = true;
    },
    bufferedAmount: 0,
    errors: [] as string[],
    type(s: string) {
      const p = session.type(Buffer.from(s));
      run(p);
      // The session's calls are asynchronous (WebCrypto): await this to see its effect.
      return p;
    },
    take() {
      handlers.onMessage(Buffer.from(JSON.stringify({ t: "take" })), false);
    },
    /** A binary message as a modified client would send it. */
    raw(b: Buffer) {
      handlers.onMessage(b, true);
    },
  };
  const pipe: Pipe = {
    send(d) {
      captured.push(typeof d === "string" ? d : Buffer.from(d));
      if (dropFromRelay) return;
      // Delivered asynchronously, like a socket.
      setImmediate(() => {
        try {
          if (typeof d === "string") run(session.onText(d));
          else run(session.onBinary(Buffer.from(d)));
        } catch (e) {
          client.errors.push((e as Error).message);
        }
      });
    },
    get bufferedAmount() {
      return client.bufferedAmount;
    },
    close(code, reason) {
      closed = { code, reason };
    },
  };
  const handlers = relay.open(
    "g1",
    "console",
    { sub: "tok_test", tenant: "acme", control: opts.control ?? true },
    pipe,
  );
  function run(p: ReturnType<ConsoleClientSession["start"]>) {
    p.then(apply, (e: Error) => client.errors.push(e.message));
  }
  function apply(step: Awaited<ReturnType<ConsoleClientSession["start"]>>) {
    for (const e of step.events) {
      if (e.kind === "output") output.push(Buffer.from(e.bytes));
      if (e.kind === "notice") notices.push(e.notice.kind);
      if (e.kind === "relay") relayMessages.push(e.message);
    }
    for (const t of step.sendText) {
      const b = Buffer.from(JSON.stringify(t));
      captured.push(b.toString());
      handlers.onMessage(b, false);
    }
    for (const b of step.send) {
      captured.push(Buffer.from(b));
      handlers.onMessage(Buffer.from(b), true);
    }
  }
  run(session.start());
  return Object.assign(client, { close: () => handlers.onClose() });
}

const received = (h: FakeHost) => Buffer.concat(h.received).toString("latin1");
const GUEST_MARKER = "GUEST-PRINTED-MARKER-5d1e";
const TYPED_MARKER = "TYPED-BY-CLIENT-MARKER-a9c4";

test("replay, live output and keystrokes end to end; the relay forwards ciphertext only", async () => {
  placeGuest(A);
  appendFileSync(logFile, `boot line 1\n${GUEST_MARKER} before attach\n`);
  const relay = makeRelay();
  const c = attach(relay);
  await until("the replay", () => c.text().includes("before attach"));
  assert.equal(c.session.hostVm, "h1");
  assert.equal(c.session.agentFingerprint, fingerprint(A.agent.consoles.identity.publicRaw));
  appendFileSync(logFile, `${GUEST_MARKER} live\n`);
  await until("live output", () => c.text().includes(`${GUEST_MARKER} live\n`));
  c.type(`echo ${TYPED_MARKER}\r`);
  await until("the keystrokes at the serial socket", () => received(A) === `echo ${TYPED_MARKER}\r`);
  await until("the acknowledgement", () => c.session.ackedSeq === 1);
  assert.equal(c.session.pending, 0);
  assert.equal(c.text(), `boot line 1\n${GUEST_MARKER} before attach\n${GUEST_MARKER} live\n`);

  // What the relay forwarded (both ways), its own messages, and everyone's logs.
  const relayed = captured.map((x) => (typeof x === "string" ? Buffer.from(x) : x));
  assert.ok(relayed.length > 6, "the capture saw the traffic");
  for (const marker of [GUEST_MARKER, TYPED_MARKER, "boot line", "echo "]) {
    const forms = [
      Buffer.from(marker),
      Buffer.from(marker, "utf16le"),
      Buffer.from(Buffer.from(marker).toString("base64").slice(0, 16)),
      Buffer.from(Buffer.from(marker).toString("hex")),
    ];
    for (const needle of forms)
      assert.equal(
        relayed.some((b) => b.includes(needle)),
        false,
        `${marker} (as ${needle.toString("latin1").slice(0, 12)}...) never passes through the relay`,
      );
    assert.equal(relayLogs.join("\n").includes(marker), false, `${marker} is not in the relay's log`);
    assert.equal(agentLogs.join("").includes(marker), false, `${marker} is not in the agents' log`);
  }
  c.close();
});

test("the guest moves: the client follows, no byte lost or duplicated, each keystroke delivered once", async () => {
  A.received.length = 0;
  B.received.length = 0;
  const relay = makeRelay();
  const first = attach(relay);
  await until("attached at h1", () => first.notices.includes("start"));
  // A numbered stream the "guest" keeps printing across the move.
  let n = 0;
  let printing = true;
  const printer = (async () => {
    while (printing) {
      appendFileSync(logFile, `line ${n++} ${"x".repeat(n % 7)}\n`);
      await sleep(2);
    }
  })();
  first.type("k1\r");
  await until("k1 delivered and acknowledged", () => received(A) === "k1\r" && first.session.ackedSeq === 1);
  // The client's link breaks: k2 reaches the agent, its acknowledgement never the client.
  first.cut();
  first.type("k2\r");
  await until("k2 delivered at h1", () => received(A) === "k1\rk2\r");
  const move = startMove(A);
  await sleep(60);
  // Sent while the guest moves: the source holds it (never writes it).
  first.type("k3\r");
  await sleep(60);
  placeGuest(B);
  move.confirm();
  await sleep(100);
  first.close();
  // The client reconnects with the same session: it resumes at its offset, at h2.
  const second = attach(relay, { session: first.session });
  await until(
    "attached at h2",
    () => second.notices.includes("start") && second.session.hostVm === "h2",
    10_000,
  );
  await until("k3 delivered at h2", () => received(B).includes("k3\r"));
  await until("everything acknowledged", () => second.session.pending === 0);
  printing = false;
  await printer;
  assert.equal(received(A), "k1\rk2\r", "h1 wrote k1 and k2 once, and not k3 (the guest was moving)");
  assert.equal(received(B), "k3\r", "h2 wrote k3 only: k2 is recorded as delivered beside the log");
  const log = readFileSync(logFile).toString("latin1");
  await until("all output", () => Buffer.concat([...first.output, ...second.output]).length === log.length);
  assert.equal(
    Buffer.concat([...first.output, ...second.output]).toString("latin1"),
    log,
    "every byte of the serial stream once, in order, across the move",
  );
  assert.equal(second.session.lostBytes, 0);
  assert.ok(n > 20, `the guest printed throughout (${n} lines)`);
  second.close();
});

test("a move that fails: held keystrokes go on at the source", async () => {
  const relay = makeRelay();
  const c = attach(relay);
  await until("attached", () => c.notices.includes("start") && c.session.hostVm === "h2");
  B.received.length = 0;
  const move = startMove(B);
  await until("told the guest moves", () => c.notices.includes("moving"));
  c.type("held\r");
  await sleep(100);
  assert.equal(received(B), "", "nothing is written while the guest moves");
  move.fail();
  await until("delivered once the move failed", () => received(B) === "held\r");
  assert.ok(c.notices.includes("staying"));
  B.agent.consoles.host.outgoing.delete("m1");
  c.close();
});

test("a move that names its destination: the source lets go at completion, the relay connects to that agent only, and a keystroke QEMU has not read goes there", async () => {
  const relay = makeRelay();
  const c = attach(relay);
  await until("attached at h2", () => c.notices.includes("start") && c.session.hostVm === "h2");
  await until("nothing pending", () => c.session.pending === 0);
  A.received.length = 0;
  B.received.length = 0;
  // h2's "QEMU" stops reading its serial socket (a guest that does not drain its UART).
  B.reading(false);
  c.type("unread\r");
  await sleep(150);
  const unacked = c.session.pending;
  assert.equal(unacked, "unread\r".length, "written to the socket but not read: not acknowledged");
  const move = startMove(B, A);
  await until("told the guest moves", () => c.notices.includes("moving"));
  locateCalls.length = 0;
  move.complete();
  await until("the source let go", () => c.relayMessages.some((m) => m.t === "reattaching"));
  await sleep(100);
  // The guest runs at h1 now; until then h1 refused the connection (no guest there).
  placeGuest(A);
  await until("attached at h1", () => c.session.hostVm === "h1" && c.session.pending === 0, 10_000);
  move.confirm();
  assert.ok(locateCalls.length >= 1);
  assert.deepEqual(
    [...new Set(locateCalls)],
    [A.url],
    "only the named agent was asked (once for its key), never a search of every agent",
  );
  assert.ok(relayLogs.some((l) => l.startsWith("reattached") && l.includes('"atNamedAgent":true')));
  assert.equal(received(A), "unread\r", "the keystroke h2's QEMU never read went to h1, once");
  B.reading(true);
  B.agent.consoles.host.outgoing.delete("m1");
  c.close();
  // The tests after this one find the guest at h2, as before it.
  A.agent.consoles.host.guests.delete("g1");
  placeGuest(B);
});

for (const order of ["the source lets go first", "the destination runs the guest first"] as const)
  test(`made before broken (${order}): the move waits until the client's session at the destination is keyed, then the relay switches upstream beneath the same client connection (no reconnect, no byte lost or duplicated, a keystroke typed meanwhile delivered once, ciphertext only)`, async () => {
    A.received.length = 0;
    B.received.length = 0;
    const relay = makeRelay();
    const c = attach(relay);
    await until("attached at h2", () => c.notices.includes("start") && c.session.hostVm === "h2");
    let n = 0;
    let printing = true;
    const printer = (async () => {
      while (printing) {
        appendFileSync(logFile, `${GUEST_MARKER} standby ${n++}\n`);
        await sleep(3);
      }
    })();
    // The destination is prepared (an incoming that will run the guest), as before a real move.
    const incoming = {
      req: {
        guest: { guestId: "g1", memoryMiB: 128, devices: [{ kind: "serial", id: "console", log: true }] },
      },
      arriving: true,
    };
    A.agent.consoles.host.incoming.set("m2", incoming as never);
    const relayMessagesBefore = c.relayMessages.length;
    const release = await B.agent.consoles.drainInput("g1", 2000, A.url);
    assert.equal(relay.stats.standbys, 1, "the standby was made before the migration started");
    assert.ok(
      c.relayMessages.slice(relayMessagesBefore).some((m) => m.t === "standby"),
      "the client was given the destination's key and a ticket",
    );
    await until("the client's hello reached h1", () =>
      A.agent.consoles.sessions().some((x) => x.sessions === 1),
    );
    const move = startMove(B, A);
    release();
    await until("told the guest moves", () => c.notices.includes("moving"));
    c.type(`${TYPED_MARKER} during\r`);
    await sleep(30);
    // The switchover: the source completed, the guest runs at h1.
    // The source's agent may notice its completion after the destination runs the guest: then
    // the standby's start switches the client, and the source's last records are not needed.
    if (order === "the source lets go first") move.complete();
    else B.agent.consoles.host.guests.get("g1")!.state = "migrating";
    await sleep(20);
    placeGuest(A);
    incoming.arriving = false;
    if (order === "the destination runs the guest first") {
      await until("switched", () => c.relayMessages.some((m) => m.t === "switched"));
      move.complete();
    }
    await until("switched", () => c.relayMessages.some((m) => m.t === "switched"));
    await until(
      "started at h1 with the keystroke delivered",
      () =>
        c.session.hostVm === "h1" &&
        c.notices.filter((x) => x === "start").length === 2 &&
        c.session.pending === 0,
      10_000,
    );
    move.confirm();
    printing = false;
    await printer;
    const log = readFileSync(logFile).toString("latin1");
    await until("all output", () => c.session.nextOffset === log.length);
    const end = c.session.nextOffset!;
    assert.equal(
      c.text(),
      log.slice(end - c.text().length, end),
      "the serial stream once, in order, across the move",
    );
    assert.equal(c.session.lostBytes, 0);
    assert.ok(n > 10, `the guest printed throughout (${n} lines)`);
    // (h2 may still read what the previous test left unread in its socket: only this keystroke counts.)
    assert.equal(
      received(B).includes(TYPED_MARKER),
      false,
      "the source did not write it (the guest was moving)",
    );
    assert.equal(received(A), `${TYPED_MARKER} during\r`, "the destination wrote the keystroke once");
    assert.equal(
      c.relayMessages.slice(relayMessagesBefore).some((m) => m.t === "reattaching" || m.t === "agent"),
      false,
      "the client saw no re-attach: one connection, the relay switched beneath it",
    );
    assert.equal(relay.stats.standbySwitches, 1);
    assert.equal(c.errors.length, 0, c.errors.join("; "));
    if (order === "the destination runs the guest first")
      assert.equal(c.notices.includes("moved"), false, "switched before the source's last records");
    const relayed = captured.map((x) => (typeof x === "string" ? Buffer.from(x) : x));
    for (const marker of [GUEST_MARKER, TYPED_MARKER])
      assert.equal(
        relayed.some((b) => b.includes(Buffer.from(marker))),
        false,
        `${marker} never in the clear`,
      );
    c.close();
    B.agent.consoles.host.outgoing.delete("m1");
    A.agent.consoles.host.incoming.delete("m2");
    // The tests after this one find the guest at h2, as before it.
    A.agent.consoles.host.guests.delete("g1");
    placeGuest(B);
  });

test("made before broken, the guest stays: the standby is dropped and the source goes on", async () => {
  B.received.length = 0;
  const relay = makeRelay();
  const c = attach(relay);
  await until("attached at h2", () => c.notices.includes("start") && c.session.hostVm === "h2");
  const incoming = {
    req: {
      guest: { guestId: "g1", memoryMiB: 128, devices: [{ kind: "serial", id: "console", log: true }] },
    },
    arriving: true,
  };
  A.agent.consoles.host.incoming.set("m3", incoming as never);
  const release = await B.agent.consoles.drainInput("g1", 2000, A.url);
  assert.equal(relay.stats.standbys, 1);
  const move = startMove(B, A);
  release();
  await until("told the guest moves", () => c.notices.includes("moving"));
  c.type("stays\r");
  move.fail();
  await until("told the standby is gone", () => c.relayMessages.some((m) => m.t === "standby-dropped"));
  await until("delivered at the source", () => received(B) === "stays\r" && c.session.pending === 0);
  appendFileSync(logFile, "after the failed move\n");
  await until("output goes on", () => c.text().endsWith("after the failed move\n"));
  await until("h1's standby session ended", () => A.agent.consoles.sessions().every((x) => x.sessions === 0));
  assert.equal(relay.stats.standbySwitches, 0);
  assert.equal(c.errors.length, 0, c.errors.join("; "));
  c.close();
  B.agent.consoles.host.outgoing.delete("m1");
  A.agent.consoles.host.incoming.delete("m3");
});

test("a client that does not read is dropped; the agent and the guest go on", async () => {
  const relay = makeRelay({ maxClientBufferBytes: 64 * 1024 });
  const slow = attach(relay);
  const fine = attach(relay, { keyboard: false });
  await until("attached", () => slow.notices.includes("start") && fine.notices.includes("start"));
  slow.bufferedAmount = 10 * 1024 * 1024;
  appendFileSync(logFile, "more output\n");
  await until("the slow client dropped", () => slow.closed);
  assert.equal(slow.closed?.code, CLOSE.tooSlow);
  assert.equal(relay.stats.slowClientsDropped, 1);
  await until("the other viewer still gets output", () => fine.text().endsWith("more output\n"));
  assert.equal(relay.viewers("g1", "console"), 1);
  fine.close();
});

test("several viewers, one keyboard: the relay forwards the holder's input only, until another takes it over", async () => {
  B.received.length = 0;
  const relay = makeRelay();
  const one = attach(relay);
  await until("one attached", () => one.notices.includes("start"));
  const two = attach(relay);
  await until("two attached", () => two.notices.includes("start") && two.session.holder === false);
  assert.equal(one.session.holder, true);
  // The client knows it watches and sends nothing ...
  await two.type("from two\r");
  assert.equal(two.session.pending, 0);
  // ... and a client that sends anyway (an input record) is dropped by the relay.
  two.raw(Buffer.concat([Buffer.from([0x10, 0x81]), Buffer.alloc(8), Buffer.alloc(30, 1)]));
  await until("two told it does not hold the keyboard", () =>
    two.relayMessages.some((m) => m.t === "not-holder"),
  );
  assert.equal(relay.stats.inputDroppedNotHolder, 1);
  one.type("from one\r");
  await until("one's input delivered", () => received(B) === "from one\r");
  two.take();
  await until(
    "one told it lost the keyboard",
    () => one.session.holder === false && two.session.holder === true,
  );
  two.type("two again\r");
  await until("two's input delivered", () => received(B) === "from one\rtwo again\r");
  one.type("ignored\r");
  await sleep(100);
  assert.equal(received(B), "from one\rtwo again\r");
  one.close();
  two.close();
});

test("refused: a ticket from another cloud; a watch-only viewer never gets the keyboard", async () => {
  const relay = makeRelay({ secret: "another cloud's secret" });
  const c = attach(relay);
  await until("closed", () => c.closed);
  assert.equal(c.closed?.code, CLOSE.refused);
  assert.match(c.closed!.reason, /MAC does not verify/);
  const watch = attach(makeRelay(), { control: false });
  await until("attached", () => watch.notices.includes("start"));
  assert.equal(watch.session.control, false);
  B.received.length = 0;
  watch.take();
  await until("told it may only watch", () => watch.relayMessages.some((m) => m.t === "error"));
  assert.equal(watch.session.holder, false);
  await watch.type("nope\r");
  await sleep(100);
  assert.equal(watch.session.pending, 0, "nothing sent without the keyboard");
  assert.equal(received(B), "");
  watch.close();
});

test("the agent restarts under an open console (rejuvenation): the keystroke QEMU read is recorded before its sessions end (4002), new sessions are refused until its successor serves, and the client re-attaches there with nothing typed twice and no byte lost", async () => {
  B.received.length = 0;
  const relay = makeRelay();
  const c = attach(relay);
  await until("attached at h2", () => c.notices.includes("start") && c.session.hostVm === "h2");
  await until("nothing pending", () => c.session.pending === 0);
  // h2's "QEMU" reads the keystroke only after the agent was asked to go: it is in flight then.
  B.reading(false);
  c.type("inflight\r");
  await sleep(150);
  assert.equal(
    c.session.pending,
    "inflight\r".length,
    "written to the socket but not read: not acknowledged",
  );
  const handOff = B.agent.consoles.handOff();
  await sleep(50);
  B.reading(true);
  await handOff;
  await until("the session ended: the agent restarts", () =>
    relayLogs.some((l) => l.startsWith("agent connection ended") && l.includes(`"code":${CLOSE.restarting}`)),
  );
  assert.equal(c.session.pending, 0, "the keystroke QEMU read was acknowledged before the session ended");
  assert.ok(c.notices.includes("moving"), "the client was told to hold new keystrokes");
  // The guest prints on while no agent serves it; the agent on its way out refuses the relay.
  appendFileSync(logFile, "while the agent restarts\n");
  c.type("typed meanwhile\r");
  await sleep(200);
  assert.equal(
    B.agent.consoles.sessions().reduce((n, s) => n + s.sessions, 0),
    0,
    "no session while restarting",
  );
  // Its successor (here the same agent serving again) adopts the guest.
  B.agent.consoles.restarting = false;
  await until(
    "re-attached with the output written meanwhile",
    () =>
      c.notices.filter((n) => n === "start").length === 2 && c.text().endsWith("while the agent restarts\n"),
    10_000,
  );
  await until("everything acknowledged", () => c.session.pending === 0);
  assert.equal(received(B), "inflight\rtyped meanwhile\r", "each keystroke written once, in order");
  const log = readFileSync(logFile).toString("latin1");
  assert.equal(log.slice(log.length - c.text().length), c.text(), "the output is the log's, no byte twice");
  assert.equal(c.session.lostBytes, 0);
  assert.equal(c.errors.length, 0, c.errors.join("; "));
  c.close();
});

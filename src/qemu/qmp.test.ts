// QmpClient against a fake QMP server (node:net) that speaks the documented protocol:
// greeting, qmp_capabilities, {"return"|"error", "id"} answers and asynchronous events.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { QmpClient, QmpClosedError, QmpError, QmpProtocolError, QmpTimeoutError } from "./qmp.ts";

type Handler = (
  msg: { execute: string; arguments?: Record<string, unknown>; id?: unknown },
  sock: Socket,
) => void;

const GREETING = JSON.stringify({
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "fake" }, capabilities: ["oob"] },
});

let dir: string;
let n = 0;
const servers: Server[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), "nc-qmp-test-"));
});
after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a fake server; `handler` answers each command after qmp_capabilities. */
async function fakeQmp(handler: Handler, opts: { greeting?: string } = {}): Promise<string> {
  const path = join(dir, `qmp${n++}.sock`);
  const server = createServer((sock) => {
    sock.write(`${opts.greeting ?? GREETING}\n`);
    let buf = "";
    sock.on("data", (chunk) => {
      buf += chunk.toString();
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (msg.execute === "qmp_capabilities") sock.write(`${JSON.stringify({ return: {}, id: msg.id })}\n`);
        else handler(msg, sock);
        nl = buf.indexOf("\n");
      }
    });
    sock.on("error", () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return path;
}

const reply = (sock: Socket, obj: unknown) => sock.write(`${JSON.stringify(obj)}\n`);

test("greeting, typed return values and request ids", async () => {
  const path = await fakeQmp((msg, sock) => {
    if (msg.execute === "query-status")
      reply(sock, { return: { running: true, status: "running" }, id: msg.id });
    else reply(sock, { return: {}, id: msg.id });
  });
  const qmp = await QmpClient.connect(path);
  assert.equal(qmp.greeting.QMP.version.qemu.major, 7);
  const st = await qmp.queryStatus();
  assert.deepEqual(st, { running: true, status: "running" });
  await qmp.stop();
  qmp.close();
});

test("answers are matched by id even when they arrive out of order", async () => {
  const held: Array<{ id: unknown; sock: Socket; name: string }> = [];
  const path = await fakeQmp((msg, sock) => {
    held.push({ id: msg.id, sock, name: msg.execute });
    if (held.length === 2) {
      for (const h of [...held].reverse()) reply(h.sock, { return: { name: h.name }, id: h.id });
    }
  });
  const qmp = await QmpClient.connect(path);
  const [a, b] = await Promise.all([
    qmp.execute<{ name: string }>("first"),
    qmp.execute<{ name: string }>("second"),
  ]);
  assert.equal(a.name, "first");
  assert.equal(b.name, "second");
  qmp.close();
});

test("QEMU errors become QmpError naming the command, class and description", async () => {
  const path = await fakeQmp((msg, sock) =>
    reply(sock, {
      error: { class: "GenericError", desc: "The incoming migration has already been started" },
      id: msg.id,
    }),
  );
  const qmp = await QmpClient.connect(path);
  await assert.rejects(qmp.migrateIncoming("tcp:127.0.0.1:0"), (e: unknown) => {
    assert.ok(e instanceof QmpError);
    assert.equal(e.command, "migrate-incoming");
    assert.equal(e.errorClass, "GenericError");
    assert.match(e.message, /migrate-incoming.*GenericError.*already been started/);
    return true;
  });
  qmp.close();
});

test("per-command timeout rejects with QmpTimeoutError and a late answer is ignored", async () => {
  let late: (() => void) | undefined;
  const path = await fakeQmp((msg, sock) => {
    if (msg.execute === "slow") late = () => reply(sock, { return: { late: true }, id: msg.id });
    else reply(sock, { return: { ok: true }, id: msg.id });
  });
  const qmp = await QmpClient.connect(path);
  await assert.rejects(qmp.execute("slow", undefined, { timeoutMs: 50 }), (e: unknown) => {
    assert.ok(e instanceof QmpTimeoutError);
    assert.match(e.message, /slow.*50 ms/);
    return true;
  });
  late?.();
  assert.deepEqual(await qmp.execute("fast"), { ok: true });
  qmp.close();
});

test("events are emitted and waitForEvent filters by name and predicate", async () => {
  const path = await fakeQmp((msg, sock) => {
    reply(sock, { return: {}, id: msg.id });
    for (const status of ["setup", "active", "completed"]) {
      reply(sock, { event: "MIGRATION", data: { status }, timestamp: { seconds: 1, microseconds: 2 } });
    }
  });
  const qmp = await QmpClient.connect(path);
  const seen: string[] = [];
  qmp.on("event", (e) => seen.push(String(e.data?.status)));
  const waiting = qmp.waitForEvent("MIGRATION", (e) => e.data?.status === "completed", 2000);
  await qmp.migrate("unix:/nowhere");
  const ev = await waiting;
  assert.equal(ev.data?.status, "completed");
  assert.deepEqual(seen, ["setup", "active", "completed"]);
  // includeRecent finds an event that arrived before the call.
  const old = await qmp.waitForEvent("MIGRATION", (e) => e.data?.status === "setup", 10, {
    includeRecent: true,
  });
  assert.equal(old.data?.status, "setup");
  await assert.rejects(qmp.waitForEvent("NEVER", undefined, 30), /no QMP event NEVER/);
  qmp.close();
});

test("QEMU dying with commands pending names the pending commands", async () => {
  const path = await fakeQmp((msg, sock) => {
    if (msg.execute === "query-migrate") sock.destroy();
  });
  const qmp = await QmpClient.connect(path);
  const p1 = qmp.execute("migrate", { uri: "tcp:x" });
  const p2 = qmp.queryMigrate();
  for (const p of [p1, p2]) {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof QmpClosedError);
      assert.match(e.message, /migrate\(#\d+\)/);
      assert.match(e.message, /query-migrate\(#\d+\)/);
      return true;
    });
  }
  const closed = await qmp.closed;
  assert.ok(closed instanceof QmpClosedError);
  await assert.rejects(qmp.queryStatus(), /QMP connection closed.*query-status/);
});

test("malformed JSON from the server fails pending commands with QmpProtocolError, no crash", async () => {
  const path = await fakeQmp((_msg, sock) => sock.write('{"return": {oops\n'));
  const qmp = await QmpClient.connect(path);
  await assert.rejects(qmp.queryStatus(), (e: unknown) => {
    assert.ok(e instanceof QmpProtocolError);
    assert.match(e.message, /malformed JSON.*query-status/);
    return true;
  });
  assert.equal(qmp.isClosed, true);
});

test("non-object and unknown-shape messages are protocol errors", async () => {
  for (const bad of ["[1,2,3]", '"hello"', '{"hello": 1}', "null"]) {
    const path = await fakeQmp((_msg, sock) => sock.write(`${bad}\n`));
    const qmp = await QmpClient.connect(path);
    await assert.rejects(qmp.execute("anything"), QmpProtocolError, `for ${bad}`);
  }
});

test("an overlong line without newline is a protocol error", async () => {
  const path = await fakeQmp((_msg, sock) => sock.write("x".repeat(5000)));
  const qmp = await QmpClient.connect(path, { maxLineBytes: 1000 });
  await assert.rejects(qmp.execute("anything"), /exceeds 1000 bytes/);
});

test("a bad greeting is rejected", async () => {
  const path = await fakeQmp(() => {}, { greeting: '{"nope": true}' });
  await assert.rejects(QmpClient.connect(path), /expected a QMP greeting/);
  const path2 = await fakeQmp(() => {}, { greeting: "garbage" });
  await assert.rejects(QmpClient.connect(path2), /malformed QMP greeting/);
});

test("connecting to a missing socket gives a clear error", async () => {
  await assert.rejects(
    QmpClient.connect(join(dir, "missing.sock"), { label: "guest-x" }),
    /cannot connect.*guest-x/,
  );
});

test("quit resolves even when the server closes without answering", async () => {
  const path = await fakeQmp((msg, sock) => {
    if (msg.execute === "quit") sock.destroy();
  });
  const qmp = await QmpClient.connect(path);
  await qmp.quit();
  const closed = await qmp.closed;
  assert.match(closed.reason, /QEMU quit/);
});

// Page server and client over real loopback TCP, serving synthetic guests: authentication in both
// directions, per-client guest lists (a request for another guest's memory is refused),
// integrity of frames, bounds, and the three access styles giving the same answers.
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer, connect as netConnect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  BufferPhysicalMemory,
  connectRemoteMemory,
  discoverKernel,
  findHiddenTasks,
  Kernel,
  listModules,
  listProcesses,
  openRamFile,
  PageClient,
  PageServer,
  QueryError,
  RemoteError,
  type RemoteMemory,
  RemoteServerMemory,
  VmiError,
} from "../index.ts";
import { L, SyntheticGuest } from "../kernel/synthetic-guest.testkit.ts";
import { encodeFrame, KIND } from "./protocol.ts";

const TOKEN = "test-token-0123456789abcdef";
const OTHER = "other-token-0123456789abcdef";
const host = "127.0.0.1";
const g1 = new SyntheticGuest();
const g2 = new SyntheticGuest({ tasks: [{ pid: 1, comm: "secret-init", ppid: 0 }] });
const server = new PageServer({
  clients: [
    { id: "monitor-a", token: TOKEN, guests: ["g1"] },
    { id: "monitor-b", token: OTHER, guests: ["g2"] },
  ],
  guests: new Map([
    ["g1", new BufferPhysicalMemory(g1.ram)],
    ["g2", new BufferPhysicalMemory(g2.ram)],
  ]),
  limits: { maxBatch: 512, maxListNodes: 4096, handshakeTimeoutMs: 500 },
});
let port = 0;
const opened: { close(): void }[] = [];

before(async () => {
  port = (await server.listen()).port;
});
after(async () => {
  for (const o of opened) o.close();
  await server.close();
});

async function open(opts: Partial<Parameters<typeof connectRemoteMemory>[0]> = {}): Promise<RemoteMemory> {
  const m = await connectRemoteMemory({
    host,
    port,
    token: TOKEN,
    clientId: "monitor-a",
    guest: "g1",
    ...opts,
  });
  opened.push(m);
  return m;
}

function isCode(code: string) {
  return (e: unknown) => e instanceof VmiError && e.code === code;
}

describe("authentication and authorization", () => {
  test("a client with the right token reads its guest", async () => {
    const m = await open();
    assert.ok(m instanceof RemoteServerMemory);
    assert.equal(m.size, g1.ram.length);
    const [b] = await m.read([{ addr: 3 * 1024 * 1024 + 0x58, len: 10 }]);
    assert.equal(Buffer.from(b).toString("latin1"), "OSRELEASE=");
  });

  test("a wrong token, an unknown client id and another client's token are refused", async () => {
    const before = server.stats.authFailures;
    await assert.rejects(open({ token: "wrong-token-0123456789abcdef" }), isCode("REMOTE_AUTH"));
    await assert.rejects(open({ clientId: "nobody" }), isCode("REMOTE_AUTH"));
    await assert.rejects(open({ token: OTHER }), isCode("REMOTE_AUTH"));
    assert.equal(server.stats.authFailures, before + 3);
  });

  test("a request for another guest's memory is refused with a typed error; the session goes on", async () => {
    const client = await PageClient.connect({ host, port, token: TOKEN, clientId: "monitor-a" });
    opened.push(client);
    const forbidden = server.stats.forbidden;
    await assert.rejects(RemoteServerMemory.open(client, { guest: "g2" }), isCode("REMOTE_FORBIDDEN"));
    await assert.rejects(
      RemoteServerMemory.open(client, { guest: "no-such-guest" }),
      isCode("REMOTE_FORBIDDEN"),
    );
    // Raw requests naming g2 are refused too, whatever the op.
    for (const op of ["read", "find", "walk", "vread", "hash"]) {
      await assert.rejects(
        client.request({ op, guest: "g2", n: 0 }, new Uint8Array(0)),
        isCode("REMOTE_FORBIDDEN"),
      );
    }
    assert.equal(server.stats.forbidden, forbidden + 7);
    const mine = await RemoteServerMemory.open(client, { guest: "g1" });
    assert.equal((await mine.read([{ addr: 0, len: 16 }]))[0].length, 16);
    // monitor-b sees only g2.
    const b = await open({ clientId: "monitor-b", token: OTHER, guest: "g2" });
    const k = await discoverKernel(b);
    assert.deepEqual(
      (await listProcesses(k)).map((p) => p.comm),
      ["secret-init"],
    );
  });

  test("a guest named in the handshake is opened there: no info round trip, refusal at connect", async () => {
    const m = await open();
    assert.equal(m.stats.roundTrips, 0);
    assert.equal(m.size, g1.ram.length);
    const forbidden = server.stats.forbidden;
    const failures = server.stats.authFailures;
    await assert.rejects(open({ guest: "g2" }), isCode("REMOTE_FORBIDDEN"));
    await assert.rejects(open({ guest: "no-such-guest" }), isCode("REMOTE_FORBIDDEN"));
    assert.equal(server.stats.forbidden, forbidden + 2);
    // The token is checked first: a wrong one learns nothing about which guests exist.
    await assert.rejects(open({ guest: "g2", token: OTHER }), isCode("REMOTE_AUTH"));
    assert.equal(server.stats.forbidden, forbidden + 2);
    assert.equal(server.stats.authFailures, failures + 1);
  });

  test("the client refuses a server that cannot prove it knows the token", async () => {
    const fake = new PageServer({
      clients: [{ id: "monitor-a", token: "impostor-0123456789abcdef", guests: ["g1"] }],
    });
    const p = (await fake.listen()).port;
    // The impostor rejects our proof first; a server that accepted anything would fail our check.
    await assert.rejects(
      connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "monitor-a", guest: "g1" }),
      isCode("REMOTE_AUTH"),
    );
    await fake.close();
    const liar = await rawServer((sock) => {
      sock.write(
        encodeFrame(KIND.HELLO, 0, {
          proto: "nestcloud-vmi",
          version: 1,
          nonce: Buffer.alloc(32).toString("base64"),
        }),
      );
      sock.once("data", () => sock.write(encodeFrame(KIND.WELCOME, 0, { proof: "00".repeat(32) })));
    });
    await assert.rejects(
      connectRemoteMemory({ host, port: liar.port, token: TOKEN, guest: "g1" }),
      isCode("REMOTE_AUTH"),
    );
    liar.server.close();
  });

  test("tokens shorter than 16 bytes are refused", () => {
    assert.throws(
      () => new PageServer({ clients: [{ id: "x", token: "short", guests: [] }] }),
      isCode("REMOTE_AUTH"),
    );
  });
});

async function rawServer(
  onConn: (s: import("node:net").Socket) => void,
): Promise<{ server: Server; port: number }> {
  const srv = createServer((s) => {
    s.on("error", () => {});
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  const a = srv.address();
  return { server: srv, port: typeof a === "object" && a ? a.port : 0 };
}

/** Opens `n` TCP connections that never say a word; resolves once each connected or was closed. */
async function idleConnections(p: number, n: number, localAddress?: string) {
  const socks = Array.from({ length: n }, () => {
    const s = netConnect({ port: p, host, ...(localAddress ? { localAddress } : {}) });
    s.on("error", () => {});
    return s;
  });
  await Promise.all(
    socks.map((s) => new Promise<void>((r) => (s.connecting ? s.once("connect", r).once("close", r) : r()))),
  );
  return socks;
}

describe("connections that never authenticate", () => {
  const guest = new SyntheticGuest();
  // The client connects from 127.0.0.1 (loopback's default source address).
  const listOf = async (p: number) => {
    const m = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g" });
    try {
      return (await listProcesses(await discoverKernel(m))).map((x) => x.comm);
    } finally {
      m.close();
    }
  };
  const serve = async (limits: Partial<PageServer["limits"]> = {}) => {
    const srv = new PageServer({
      clients: [{ id: "c", token: TOKEN, guests: ["g"] }],
      guests: new Map([["g", new BufferPhysicalMemory(guest.ram)]]),
      limits,
    });
    return { srv, port: (await srv.listen()).port };
  };

  test("while 500 idle connections are open, a real client lists the guest's processes", async () => {
    const { srv, port: p } = await serve(); // default limits
    const idle = await idleConnections(p, 500);
    try {
      const counts = srv.connectionCounts;
      assert.ok(counts.unauthenticated <= srv.limits.maxUnauthenticated, JSON.stringify(counts));
      const t0 = Date.now();
      assert.deepEqual(await listOf(p), ["init", "kthreadd", "rcu_gp", "sh", "sleep"]);
      assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);
      assert.ok(srv.stats.evicted >= 500 - srv.limits.maxUnauthenticated, `evicted ${srv.stats.evicted}`);
    } finally {
      for (const s of idle) s.destroy();
      await srv.close();
    }
  });

  test("a peer that keeps reconnecting from another address never takes a client's handshake slot", async () => {
    const { srv, port: p } = await serve({ handshakeTimeoutMs: 60_000 });
    let stop = false;
    let opened = 0;
    const socks: import("node:net").Socket[] = [];
    // 200 at a time from 127.0.0.2, each reopened as soon as the server closes it.
    const openOne = () => {
      const sock = netConnect({ port: p, host, localAddress: "127.0.0.2" }).resume();
      sock.on("error", () => {});
      sock.once("close", () => {
        if (!stop) openOne();
      });
      socks.push(sock);
      opened++;
      return sock;
    };
    const first = Array.from({ length: 200 }, openOne);
    await Promise.all(first.map((x) => new Promise<void>((r) => x.once("connect", r).once("close", r))));
    try {
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await listOf(p), ["init", "kthreadd", "rcu_gp", "sh", "sleep"]);
      }
      assert.ok(srv.connectionCounts.unauthenticated <= srv.limits.maxUnauthenticatedPerSource + 1);
      assert.ok(opened > 200, `the flood reconnected (${opened} connections)`);
    } finally {
      stop = true;
      for (const s of socks) s.destroy();
      await srv.close();
    }
  });

  test("idle peers are cut at the handshake deadline; authenticated clients are bounded apart", async () => {
    const { srv, port: p } = await serve({ handshakeTimeoutMs: 300, maxConnections: 2 });
    try {
      const idle = await idleConnections(p, 4);
      const t0 = Date.now();
      await Promise.all(
        idle.map((s) => new Promise((r) => (s.destroyed ? r(null) : s.resume().once("close", r)))),
      );
      assert.ok(Date.now() - t0 < 3000, "handshake deadline");
      const a = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g" });
      const b = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g" });
      assert.deepEqual(srv.connectionCounts, { authenticated: 2, unauthenticated: 0 });
      await assert.rejects(
        connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g" }),
        (e: unknown) =>
          isCode("REMOTE_LIMIT")(e) && /server busy: 2 clients are connected/.test((e as Error).message),
      );
      assert.equal(srv.stats.busy, 1);
      a.close();
      await new Promise((r) => setTimeout(r, 100));
      const c = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g" });
      assert.equal(c.size, guest.ram.length);
      b.close();
      c.close();
    } finally {
      await srv.close();
    }
  });
});

describe("integrity and bounds", () => {
  test("an unauthenticated peer cannot make the server buffer a big frame; silence is cut off", async () => {
    // resume(): a paused socket never sees the server's FIN.
    const closed = (sock: import("node:net").Socket) =>
      new Promise<void>((r) => sock.resume().once("close", () => r()));
    const big = netConnect(port, host);
    big.on("error", () => {});
    const bigClosed = closed(big);
    big.write(Buffer.from([0x00, 0x10, 0x00, 0x00])); // claims a 1 MiB frame before auth
    await bigClosed;
    const silent = netConnect(port, host);
    silent.on("error", () => {});
    const t0 = Date.now();
    await closed(silent);
    assert.ok(Date.now() - t0 < 3000, "handshake timeout closes the connection");
  });

  test("a tampered frame breaks the MAC and the connection is dropped", async () => {
    const client = await PageClient.connect({ host, port, token: TOKEN, clientId: "monitor-a" });
    opened.push(client);
    // Replay a well-formed but unauthenticated request on the session: the MAC check fails.
    const sock = (client as unknown as { sock: import("node:net").Socket }).sock;
    sock.write(encodeFrame(KIND.REQUEST, 99, { op: "info", guest: "g1" }, undefined, 0));
    await assert.rejects(
      client.request({ op: "info", guest: "g1" }),
      (e: unknown) => e instanceof RemoteError,
    );
  });

  test("batches and list walks above the server's limits are refused with REMOTE_LIMIT", async () => {
    const m = await open({ mode: "naive" });
    const ranges = Array.from({ length: 600 }, (_, i) => ({ addr: i * 8, len: 8 }));
    await assert.rejects(
      m.client.request({ op: "read", guest: "g1", n: 600 }, Buffer.alloc(600 * 12)),
      isCode("REMOTE_LIMIT"),
    );
    // The client splits what it sends by the limits the server advertised.
    assert.equal((await (await open({ mode: "optimized" })).read(ranges)).length, 600);
    const walk = { head: "0xffffffff83900040", linkOffset: 64, reads: [], derefs: [], maxNodes: 5000 };
    const space = { root: 0x1000, levels: 4, physBase: "0x0" };
    await assert.rejects(
      m.client.request({ op: "walk", guest: "g1", space, spec: walk }),
      isCode("REMOTE_LIMIT"),
    );
  });

  test("a search is bounded in bytes: overlapping regions cannot multiply the work", async () => {
    const m = await open();
    const size = g1.ram.length;
    const whole = { start: 0, end: size };
    const needle = Buffer.from("OSRELEASE=").toString("base64");
    // 64 copies of the whole memory (what checkFind allows) would scan 64 x its size.
    await assert.rejects(
      m.client.request({ op: "find", guest: "g1", needle, regions: Array(64).fill(whole) }),
      (e: unknown) =>
        isCode("REMOTE_LIMIT")(e) &&
        (e as Error).message.includes(
          `find over ${64 * size} bytes exceeds the server's limit of ${size} bytes`,
        ),
    );
    await assert.rejects(
      m.client.request({ op: "find", guest: "g1", needle, regions: [whole, { start: 0, end: 1 }] }),
      isCode("REMOTE_LIMIT"),
    );
    // The memory once, in pieces or whole, is fine.
    const halves = [
      { start: 0, end: size / 2 },
      { start: size / 2, end: size },
    ];
    assert.deepEqual(
      await (m as RemoteServerMemory).findBytes(Buffer.from("OSRELEASE="), { regions: halves }),
      [3 * 1024 * 1024 + 0x58],
    );
    assert.deepEqual(await (m as RemoteServerMemory).findBytes(Buffer.from("OSRELEASE=")), [
      3 * 1024 * 1024 + 0x58,
    ]);
    // Malformed regions are a typed refusal, not an internal error.
    await assert.rejects(
      m.client.request({ op: "find", guest: "g1", needle, regions: [null] }),
      isCode("MEM_BAD_REQUEST"),
    );
  });

  test("a search is bounded in wall time: it stops with QUERY_TIMEOUT and says how far it got", async () => {
    // 2 GiB of (sparse) guest RAM in a real file: scanning it takes far longer than 30 ms.
    const dir = mkdtempSync(join(tmpdir(), "nc-vmi-find-"));
    const path = join(dir, "big.ram");
    const fd = openSync(path, "w");
    ftruncateSync(fd, 2 * 1024 * 1024 * 1024);
    closeSync(fd);
    const rf = openRamFile(path);
    const srv = new PageServer({
      clients: [{ id: "c", token: TOKEN, guests: ["big"] }],
      guests: new Map([["big", rf.memory]]),
      limits: { opTimeoutMs: 30 },
    });
    try {
      const p = (await srv.listen()).port;
      const m = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "big" });
      opened.push(m);
      const t0 = Date.now();
      await assert.rejects(
        (m as RemoteServerMemory).findBytes(Buffer.from("not in there")),
        (e: unknown) =>
          isCode("QUERY_TIMEOUT")(e) &&
          /search stopped after \d+ ms: time limit reached with \d+ of 2147483648 bytes scanned/.test(
            (e as Error).message,
          ),
      );
      assert.ok(Date.now() - t0 < 5000, `stopped after ${Date.now() - t0} ms`);
      // The connection is still usable afterwards.
      assert.equal((await m.read([{ addr: 0, len: 8 }]))[0].length, 8);
    } finally {
      await srv.close();
      rf.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a server that never answers makes requests time out", async () => {
    const mute = await rawServer((sock) => {
      sock.write(
        encodeFrame(KIND.HELLO, 0, {
          proto: "nestcloud-vmi",
          version: 1,
          nonce: Buffer.alloc(32).toString("base64"),
        }),
      );
    });
    await assert.rejects(
      PageClient.connect({ host, port: mute.port, token: TOKEN, connectTimeoutMs: 300 }),
      isCode("REMOTE_TIMEOUT"),
    );
    mute.server.close();
  });
});

describe("access styles", () => {
  test("naive, cached and optimized give the direct answers; round trips shrink", async () => {
    const direct = await discoverKernel(new BufferPhysicalMemory(g1.ram));
    const want = {
      ps: await listProcesses(direct),
      mods: await listModules(direct),
      hidden: await findHiddenTasks(direct),
    };
    const trips: Record<string, number> = {};
    for (const mode of ["naive", "cached", "optimized"] as const) {
      const m = await open({ mode });
      const k =
        mode === "optimized"
          ? await discoverKernel(m)
          : new Kernel(m, direct.facts, direct.symbols, direct.profile, undefined, {
              translation: "pagewalk",
            });
      const t0 = m.stats.roundTrips;
      assert.deepEqual(await listProcesses(k), want.ps, mode);
      trips[mode] = m.stats.roundTrips - t0;
      assert.deepEqual(await listModules(k), want.mods, mode);
      assert.deepEqual(await findHiddenTasks(k), want.hidden, mode);
    }
    assert.equal(trips.optimized, 1, "one round trip: the server walks the list");
    assert.ok(trips.naive > trips.cached, `naive ${trips.naive} > cached ${trips.cached}`);
  });

  test("optimized discovery searches and compresses at the server", async () => {
    const m = await open();
    const k = await discoverKernel(m);
    assert.equal(k.facts.path, "vmcoreinfo");
    // 64 MiB of RAM searched without moving it, BTF and kallsyms compressed.
    assert.ok(m.stats.bytesReceived < 1024 * 1024, `received ${m.stats.bytesReceived} bytes`);
    assert.ok(m.stats.roundTrips < 20, `${m.stats.roundTrips} round trips`);
  });

  test("hostile memory errors cross the wire with their class and code", async () => {
    const g = new SyntheticGuest();
    const srv = new PageServer({
      clients: [{ id: "c", token: TOKEN, guests: ["g3"] }],
      guests: new Map([["g3", new BufferPhysicalMemory(g.ram)]]),
    });
    const p = (await srv.listen()).port;
    const m = await connectRemoteMemory({ host, port: p, token: TOKEN, clientId: "c", guest: "g3" });
    const k = await discoverKernel(m);
    const t = (g.tasks.get(3) as bigint) + BigInt(L.task.tasks);
    g.u64(t, (g.tasks.get(2) as bigint) + BigInt(L.task.tasks));
    await assert.rejects(
      listProcesses(k),
      (e: unknown) => e instanceof QueryError && e.code === "QUERY_LIST_CYCLE",
    );
    g.u64(t, 0x4141414141414141n);
    await assert.rejects(listProcesses(k, { retries: 0 }), isCode("QUERY_BAD_POINTER"));
    m.close();
    await srv.close();
  });
});

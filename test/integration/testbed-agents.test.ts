// Real QEMU (TCG) on a namespaced testbed: two servers, host-VM agents in slices. One
// guest (verify workload) moves by instant handover between host VMs of one server, then
// by pre-copy across the two server namespaces, all through the agents' HTTP APIs. Plus
// the APIs' answers to bad input, missing tokens and QMP errors.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { AgentHttpError, serverClient } from "../../src/agent/index.ts";
import { infraStatus } from "../../src/testbed/index.ts";
import {
  assertOneIntactCopy,
  clientWithToken,
  heartbeatOf,
  qemuPidsOf,
  testbedFixture,
} from "./testbed-helpers.ts";

const bed = testbedFixture({ a: ["h1", "h2"], b: ["h1"] }, ["g1"]);

test("testbed: one namespace per server, a pool folder each, agents in their slices", async (t) => {
  const st = await infraStatus(bed.state);
  t.diagnostic(`mode ${st.mode} ${st.subnet ?? ""}; cgroups ${st.cgroups.mode}: ${st.cgroups.note}`);
  for (const w of st.warnings) t.diagnostic(`warning: ${w}`);
  assert.equal(st.mode, "netns", "this machine allows network namespaces (CI runs as root)");
  assert.deepEqual(Object.values(st.namespaces), [true, true, true]);
  assert.ok(st.servers.every((s) => s.agentAlive) && st.hostVms.every((h) => h.agentAlive));
  assert.ok(
    st.hostVms.every((h) => h.supervisorAlive && h.agentRestarts === 0),
    "each agent under its supervisor",
  );
  for (const s of bed.state.servers) assert.ok(existsSync(s.poolDir), `pool folder ${s.poolDir}`);
  const a = await serverClient(bed.state, "a").status();
  assert.equal(a.iface?.name, "eth0", "the server agent reads its own namespace's interface");
  assert.deepEqual(
    a.hostVms.map((h) => [h.name, h.reservedMiB]),
    [
      ["h1", 256],
      ["h2", 0],
    ],
  );
});

test("API: no token or a wrong one gets 401 on every route", async () => {
  for (const token of ["", "not-the-token-at-all-0123456789"]) {
    const c = clientWithToken(bed, "a", "h1", token);
    for (const call of [() => c.status(), () => c.guest("g1"), () => c.exec("g1", { command: "true" })]) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof AgentHttpError);
        assert.equal(e.status, 401);
        assert.match(e.body.message, token ? /wrong bearer token/ : /missing bearer token/);
        return true;
      });
    }
  }
});

test("API: malformed requests get 400 naming the field", async () => {
  const c = bed.client("a", "h1");
  const cases: Array<[string, string, unknown, RegExp]> = [
    ["POST", "/v1/guests", { guestId: "g9", memoryMiB: 8 }, /body\/memoryMiB must be >= 64/],
    ["POST", "/v1/guests", { guestId: "Bad Name", memoryMiB: 128 }, /body\/guestId must match pattern/],
    ["POST", "/v1/guests", { memoryMiB: 128 }, /guestId/],
    ["POST", "/v1/guests", { guestId: "g9", memoryMiB: 128, color: "red" }, /body\/color/],
    [
      "POST",
      "/v1/incoming",
      { migrationId: "m1", guest: { guestId: "g9", memoryMiB: 128 }, mode: "teleport" },
      /body\/mode/,
    ],
    [
      "POST",
      "/v1/guests/g1/exec",
      { command: "" },
      /body\/command must have at least 1 characters|body\/command/,
    ],
  ];
  for (const [method, path, body, re] of cases) {
    await assert.rejects(c.call(method, path, body), (e: unknown) => {
      assert.ok(e instanceof AgentHttpError, `${method} ${path}: ${e}`);
      assert.equal(e.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.match(e.body.message, re);
      return true;
    });
  }
  await assert.rejects(c.guest("nosuch"), (e: unknown) => e instanceof AgentHttpError && e.status === 404);
});

test("API: QMP errors surface with the command and QEMU's own error text", async () => {
  const c = bed.client("a", "h1");
  await assert.rejects(
    c.qmp("g1", { execute: "migrate-incoming", arguments: { uri: "tcp:127.0.0.1:0" } }),
    (e: unknown) => {
      assert.ok(e instanceof AgentHttpError);
      assert.equal(e.status, 502);
      assert.equal(e.body.error, "qmp_error");
      assert.equal(e.body.command, "migrate-incoming");
      assert.equal(e.body.errorClass, "GenericError");
      assert.match(e.body.desc ?? "", /incoming/i, "QEMU's own text");
      assert.match(e.body.message, /QMP command migrate-incoming failed: GenericError: /);
      return true;
    },
  );
  const ok = await c.qmp("g1", { execute: "query-status" });
  assert.equal((ok.return as { status: string }).status, "running");
});

test("instant handover through the agents: same pool file, device state only, accounting moves", async (t) => {
  const before = await bed.client("a", "h1").guest("g1");
  const poolFile = before.poolFile;
  const hb = await heartbeatOf(bed, "g1", "a", "h1");
  const r = await bed.orch.migrate({ guestId: "g1", from: bed.ep("a", "h1"), to: bed.ep("a", "h2") });
  t.diagnostic(
    `instant 256 MiB: total ${r.totalMs?.toFixed(1)} ms, guest paused ${r.downtimeMs?.toFixed(1)} ms ` +
      `(QEMU: total ${r.qemu?.totalTimeMs} ms, downtime ${r.qemu?.downtimeMs} ms), ${r.transferredBytes} bytes, prepare ${r.prepareMs.toFixed(0)} ms`,
  );
  assert.equal(r.mechanism, "instant");
  assert.ok(r.transferredBytes < 2 * 1024 * 1024, `only device state moved (${r.transferredBytes} bytes)`);
  const after = await assertOneIntactCopy(bed, "g1", "a", "h2", hb);
  assert.equal(after.poolFile, poolFile, "the destination maps the same pool file");
  assert.ok(after.ownsPoolFile, "the destination owns the pool file now");
  assert.ok(existsSync(poolFile!));
  await assert.rejects(
    bed.client("a", "h1").guest("g1"),
    (e: unknown) => e instanceof AgentHttpError && e.status === 404,
  );
  const a = await serverClient(bed.state, "a").status();
  assert.deepEqual(
    a.hostVms.map((h) => [h.name, h.reservedMiB, h.pendingMiB]),
    [
      ["h1", 0, 0],
      ["h2", 256, 0],
    ],
    "memory accounting moved from h1 to h2",
  );
  assert.equal(a.handovers.at(-1)?.state, "committed");
});

test("pre-copy across two server namespaces: RAM crosses the link, the guest runs on", async (t) => {
  const a0 = (await serverClient(bed.state, "a").status()).iface!;
  const hb = await heartbeatOf(bed, "g1", "a", "h2");
  const oldPool = (await bed.client("a", "h2").guest("g1")).poolFile!;
  let lastEta = Number.POSITIVE_INFINITY;
  const r = await bed.orch.migrate({
    guestId: "g1",
    from: bed.ep("a", "h2"),
    to: bed.ep("b", "h1"),
    onProgress: (p) => {
      if (p.etaMs !== null) {
        assert.ok(p.etaMs <= lastEta, "ETA never runs backwards");
        lastEta = p.etaMs;
      }
    },
  });
  const a1 = (await serverClient(bed.state, "a").status()).iface!;
  const sent = a1.txBytes - a0.txBytes;
  t.diagnostic(
    `pre-copy 256 MiB a -> b: total ${r.totalMs?.toFixed(0)} ms, guest paused ${r.downtimeMs?.toFixed(1)} ms, ` +
      `QMP ${r.transferredBytes} bytes, eth0 of a sent ${sent} bytes, ${r.qemu?.passes} passes`,
  );
  assert.equal(r.mechanism, "precopy");
  assert.ok(r.transferredBytes > 16 * 1024 * 1024, "RAM was copied");
  assert.ok(sent >= r.transferredBytes, "the bytes crossed server a's interface");
  const after = await assertOneIntactCopy(bed, "g1", "b", "h1", hb);
  assert.notEqual(after.poolFile, oldPool);
  assert.equal(existsSync(oldPool), false, "the source's pool file is gone with its QEMU");
  assert.deepEqual(qemuPidsOf(bed, "g1"), [after.pid]);
  const [sa, sb] = await Promise.all([
    serverClient(bed.state, "a").status(),
    serverClient(bed.state, "b").status(),
  ]);
  assert.equal(sa.hostVms.find((h) => h.name === "h2")?.reservedMiB, 0);
  assert.equal(sb.hostVms.find((h) => h.name === "h1")?.reservedMiB, 256);
});

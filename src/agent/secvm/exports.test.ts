// The direct and remote channels' exports: who may be granted what is decided before any QMP (refusals
// here need no QEMU), ids name the target and the grantee, and the request shapes keep a
// grantee's mirror inside a security VM's folder. The QEMU side is tested on real guests in
// test/integration/secvm-direct.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import Value from "typebox/value";
import { CreateSecVmBody, CreateSecVmExportBody, type CreateSecVmExportRequest } from "../api-types.ts";
import type { HostVm } from "../hostvm/state.ts";
import { AgentError, notFound } from "../http.ts";
import { exportIdOf, SecVmExports } from "./exports.ts";

const host = {
  cfg: { testbedId: "tb", server: "s1", hostVm: "h1" },
  where: "s1/h1",
  guestOf: (id: string) => {
    throw notFound(`no guest ${id} on host VM s1/h1`);
  },
  log: { info() {}, warn() {} },
} as unknown as HostVm;

const req = (
  over: Partial<CreateSecVmExportRequest["grantee"]> = {},
  nic = false,
): CreateSecVmExportRequest => ({
  guestId: "ga",
  memory: true,
  ...(nic ? { nic: "n0" } : {}),
  channel: "direct",
  grantee: { secvmId: "sa", server: "s1", hostVm: "h2", uid: 0x40000123, ...over },
});

async function refused(r: CreateSecVmExportRequest, status: number, text: RegExp): Promise<void> {
  await assert.rejects(new SecVmExports(host).create(r), (e: unknown) => {
    assert.ok(e instanceof AgentError);
    assert.equal(e.statusCode, status);
    assert.match(e.message, text);
    return true;
  });
}

test("an export is refused before any QMP: another server, the same host VM, a NIC without a socket, no guest", async () => {
  await refused(req({ server: "s2" }), 400, /another server/);
  await refused(req({ hostVm: "h1" }), 400, /locally/);
  await refused(req({}, true), 400, /mirror socket/);
  await refused(req(), 404, /no guest ga/);
  const ex = new SecVmExports(host);
  ex.localWatcher = (g) => (g === "ga" ? "sl" : undefined);
  await assert.rejects(ex.create(req()), /already watched by security VM sl/);
});

test("a remote export is refused before any QMP: the same server, no certificate fingerprint, a NIC without a listener", async () => {
  const fp = Array.from({ length: 32 }, () => "AB").join(":");
  const remote = (
    over: Partial<CreateSecVmExportRequest["grantee"]>,
    nic = false,
  ): CreateSecVmExportRequest => ({
    ...req({ server: "s2", ...over }, nic),
    channel: "remote",
  });
  await refused(remote({ server: "s1", certFingerprint: fp }), 400, /channel direct, not remote/);
  await refused(remote({}), 400, /certificate fingerprint/);
  await refused(remote({ certFingerprint: fp }, true), 400, /mirror listener/);
  await refused(remote({ certFingerprint: fp }), 404, /no guest ga/);
  assert.ok(
    Value.Check(
      CreateSecVmExportBody,
      remote({ certFingerprint: fp, mirror: { host: "10.1.2.3", port: 7100 } }),
    ),
  );
  assert.ok(
    !Value.Check(CreateSecVmExportBody, remote({ certFingerprint: "ab:cd" })),
    "a fingerprint is SHA-256, upper case",
  );
});

test("export ids name the target and the grantee", () => {
  const t = { server: "s1", hostVm: "h1", guestId: "ga" };
  const g = { server: "s1", hostVm: "h2", secvmId: "sa" };
  const id = exportIdOf("tb", t, g);
  assert.match(id, /^x[0-9a-f]{12}$/);
  assert.equal(exportIdOf("tb", t, g), id, "stable: asked again, the same export");
  assert.notEqual(exportIdOf("tb", t, { ...g, secvmId: "sb" }), id);
  assert.notEqual(exportIdOf("tb", t, { ...g, hostVm: "h3" }), id);
  assert.notEqual(exportIdOf("tb", { ...t, guestId: "gb" }, g), id);
  assert.notEqual(exportIdOf("tb2", t, g), id);
});

test("request shapes: a grantee's mirror socket lies in a security VM's folder; via is direct or remote over http", () => {
  const ok = { ...req(), nic: "n0" };
  ok.grantee.mirrorSocket = "/run/ncsv/abc123-sa/mirror-ga.sock";
  assert.ok(Value.Check(CreateSecVmExportBody, ok));
  for (const bad of ["/tmp/x.sock", "/run/ncsv/../etc/mirror-ga.sock", "/run/ncsv/a/b/mirror-ga.sock"]) {
    ok.grantee.mirrorSocket = bad;
    assert.equal(Value.Check(CreateSecVmExportBody, ok), false, bad);
  }
  assert.equal(Value.Check(CreateSecVmExportBody, req({ uid: 0 })), false, "a uid of a security VM only");
  const sv = (via: unknown) => ({ secvmId: "sa", targets: [{ guestId: "ga", via }] });
  assert.ok(Value.Check(CreateSecVmBody, sv({ agentUrl: "http://10.1.2.3:4000", channel: "direct" })));
  assert.ok(Value.Check(CreateSecVmBody, sv({ agentUrl: "http://10.1.2.3:4000", channel: "remote" })));
  assert.equal(
    Value.Check(CreateSecVmBody, sv({ agentUrl: "http://10.1.2.3:4000", channel: "local" })),
    false,
    "local needs no via",
  );
  assert.equal(
    Value.Check(CreateSecVmBody, sv({ agentUrl: "file:///etc/passwd", channel: "direct" })),
    false,
  );
});

// `nestcloud up --provider openstack` with guests, on real QEMU guests: the fake Nova's
// instances are the host VMs of a testbed that hides placement (2 servers: a with two host
// VMs, b with one), each running nestcloud's host-VM agent; its pool service names each
// host's server agent by hostId. The controller (its own process) rents three host VMs
// through Nova, finds their agents from Nova's addresses and metadata, places them from
// hostId alone, runs a guest made through its API on one, and moves it by instant handover
// to the host VM with the same hostId, then by pre-copy to the other hostId: one running
// copy each time, its verify workload intact.
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  api,
  type ControllerProcess,
  startControllerProcess,
  stopGently,
  until,
} from "../support/controller-process.ts";
import { FakeOpenStack } from "../support/fake-openstack.ts";
import { assertOneIntactCopy, type Bed, bringUp, tearDown } from "./testbed-helpers.ts";

const PROJECT = "p-nest-0001";
let bed: Bed | undefined;
let cloud: FakeOpenStack | undefined;
let ctl: ControllerProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), "nc-os-"));

interface HostVmView {
  id: string;
  server: string | null;
  state: string;
}
interface MigrationView {
  id: string;
  guest: string;
  from: string;
  to: string;
  status: string;
  mechanism: string;
  error: string | null;
}

before(async () => {
  bed = await bringUp({
    placement: "hidden",
    servers: [
      { name: "a", hostVms: ["a1", "a2"].map((name) => ({ name, memoryMiB: 1024 })) },
      { name: "b", hostVms: [{ name: "b1", memoryMiB: 1024 }] },
    ],
  });
  const st = bed.state;
  // The cloud's operator knows where its instances run: the testbed's host VMs are its slots.
  cloud = await new FakeOpenStack({
    hosts: ["a", "b"],
    projects: [{ id: PROJECT, name: "nest" }],
    users: [{ name: "operator", password: "s3cret-pw", projects: [PROJECT] }],
    flavors: [{ id: "hv1", name: "nc.hostvm", vcpus: 1, ram: 1024, disk: 10 }],
    slots: st.hostVms.map((h) => {
      const u = new URL(h.agent!.url!);
      return {
        host: h.server,
        network: "nestcloud",
        address: u.hostname,
        agentPort: Number(u.port),
        label: `${h.server}/${h.name}`,
      };
    }),
    poolAgents: Object.fromEntries(st.servers.map((s) => [s.name, s.agent!.url!])),
  }).start();
});

after(async () => {
  if (ctl) await stopGently(ctl);
  await cloud?.stop();
  await tearDown(bed);
  rmSync(dir, { recursive: true, force: true });
});

test("up --provider openstack: a guest on a rented host VM, moved by instant handover (same hostId) and pre-copy (another)", async (t) => {
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const b = bed!;
  const c0 = cloud!;
  // Credentials in an openrc file (0600), never on the command line; no OS_* in the env.
  const creds = join(dir, "openrc");
  writeFileSync(
    creds,
    [
      "# nestcloud's project",
      "export OS_USERNAME=operator",
      "export OS_PASSWORD='s3cret-pw'",
      "export OS_USER_DOMAIN_NAME=Default",
      "export OS_PROJECT_DOMAIN_NAME=Default",
      "",
    ].join("\n"),
  );
  chmodSync(creds, 0o600);
  const env = Object.fromEntries(
    Object.keys(process.env)
      .filter((k) => k.startsWith("OS_"))
      .map((k) => [k, ""]),
  );
  ctl = await startControllerProcess(
    [
      ...["--provider", "openstack", "--os-auth-url", c0.authUrl, "--os-project", "nest"],
      ...["--os-credentials", creds, "--os-image", "img-nestcloud-hostvm"],
      ...["--agent-token-file", b.state.tokenFile],
      // Rounds every 20 s (the store follows the provider every 2 s), but nothing moves or
      // is released except what the test asks for: no draining, no relief, spares kept.
      ...["--data-dir", join(dir, "data"), "--port", "0", "--interval", "20"],
      ...["drainBelow=0", "spareHostVms=8", "targetUtilization=1.5", "overloadUtilization=1.5"].flatMap(
        (p) => ["--policy-param", p],
      ),
      ...["--policy-param", "reactIntervalSeconds=0"],
    ],
    90_000,
    env,
  );
  const c = ctl;
  assert.ok(!ctl.output().includes("s3cret-pw"), "the password is never printed");
  phase(`controller on ${c.url}`);

  // Three host VMs rented through Nova; its scheduler puts two on host a, one on b.
  const rented: string[] = [];
  for (const host of ["a", "a", "b"]) {
    const r = await api(c, "POST", "/api/hostvms", { type: "nc.hostvm" });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id = await until(
      "Nova to get the server",
      async () => c0.servers.find((s) => s.status === "BUILD")?.id,
      30_000,
    );
    c0.placePending(host);
    rented.push(id);
  }
  const slot = (id: string) => c0.slotOf(id)!.label.split("/") as [string, string];
  const [onA1, onA2, onB] = rented as [string, string, string];
  phase(`rented ${rented.map((id) => `${id.slice(0, 8)}=${c0.slotOf(id)!.label}`).join(", ")}`);
  assert.equal(c0.hostOf(onA1), "a");
  assert.equal(c0.hostOf(onA2), "a");
  assert.equal(c0.hostOf(onB), "b");
  // Nova's create request carried the rental's tag and the image; no host was asked for.
  assert.ok(
    c0.servers.every((s) => s.metadata.nestcloud === "host-vm" && s.imageRef === "img-nestcloud-hostvm"),
  );

  // Placement as the controller shows it: from hostId (Nova's word), two on one server.
  const hostVms = await until(
    "the three host VMs running and placed",
    async () => {
      const list = (await api(c, "GET", "/api/hostvms")).body as HostVmView[];
      const ours = rented.map((id) => list.find((h) => h.id === id));
      return ours.every((h) => h?.state === "running" && h.server) ? (ours as HostVmView[]) : undefined;
    },
    60_000,
    500,
  );
  const server = (id: string) => hostVms.find((h) => h.id === id)!.server;
  assert.equal(server(onA1), server(onA2), "same hostId: one server");
  assert.notEqual(server(onA1), server(onB), "another hostId: another server");
  const placement = (await api(c, "GET", "/api/placement")).body as {
    mode: string;
    hostVms: {
      hostVm: string;
      server: string | null;
      source: string | null;
      confidence: number;
      ageSeconds: number | null;
    }[];
  };
  assert.equal(placement.mode, "discovered");
  for (const id of rented) {
    const e = placement.hostVms.find((x) => x.hostVm === id);
    assert.equal(e?.source, "provider-hint", `${id}: placed from Nova's hostId`);
    assert.equal(e?.confidence, 0.9);
    assert.equal(e?.server, server(id));
    assert.ok(e?.ageSeconds !== null && e!.ageSeconds! < 60, "fresh");
  }
  // The servers are discovery's names for hostId groups, never the cloud's host names.
  assert.ok(rented.every((id) => !["a", "b"].includes(server(id)!)));
  phase(`placed from hostId: ${rented.map((id) => server(id)).join(", ")}`);

  // A guest made through the API runs on the first rented host VM: a real QEMU in testbed
  // host VM a/<slot>, found through Nova's address and metadata.
  const created = await api(c, "POST", "/api/vms", {
    id: "og1",
    tenant: "acme",
    mipsPerVcpu: 500,
    memoryMiB: 256,
    hostVm: onA1,
  });
  assert.ok(created.status >= 200 && created.status < 300, JSON.stringify(created.body));
  await until(
    "og1 running",
    async () => {
      const v = (await api(c, "GET", "/api/vms/og1")).body as { powerState: string; hostVm: string };
      return v.powerState === "running" && v.hostVm === onA1 ? v : undefined;
    },
    240_000,
    1000,
  );
  const [srv1, hv1] = slot(onA1);
  const g0 = await b.client(srv1, hv1).startWorkload("og1", { kind: "verify", mib: 16 });
  const bootId = g0.bootId;
  await assertOneIntactCopy(b, "og1", srv1, hv1);
  phase(`og1 runs on ${onA1.slice(0, 8)} (${srv1}/${hv1}), verify workload on`);

  const migrateTo = async (to: string, mechanism: string): Promise<MigrationView> => {
    const r = await api(c, "POST", "/api/vms/og1/migrate", { to, mechanism });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return until(
      `og1's migration to ${to.slice(0, 8)}`,
      async () => {
        const list = (await api(c, "GET", "/api/migrations")).body as MigrationView[];
        const m = list.find((x) => x.guest === "og1" && x.to === to);
        return m && m.status !== "running" ? m : undefined;
      },
      300_000,
      500,
    );
  };

  // Same hostId: the controller picks an instant handover from the placement it discovered
  // (the guest's memory stays in host a's pool).
  const instant = await migrateTo(onA2, "auto");
  assert.equal(instant.status, "completed", instant.error ?? "");
  assert.equal(instant.mechanism, "instant", "auto on one hostId is an instant handover");
  assert.equal(instant.from, onA1);
  const [srv2, hv2] = slot(onA2);
  const afterInstant = await assertOneIntactCopy(b, "og1", srv2, hv2);
  assert.equal(afterInstant.bootId, bootId, "the same boot: handed over, not restarted");
  phase(`instant handover to ${onA2.slice(0, 8)} (${srv2}/${hv2}) completed`);

  // Another hostId: pre-copy over the network to host b.
  const precopy = await migrateTo(onB, "auto");
  assert.equal(precopy.status, "completed", precopy.error ?? "");
  assert.equal(precopy.mechanism, "precopy", "auto across hostIds is a pre-copy");
  assert.equal(precopy.from, onA2);
  const [srv3, hv3] = slot(onB);
  const afterPrecopy = await assertOneIntactCopy(b, "og1", srv3, hv3);
  assert.equal(afterPrecopy.bootId, bootId, "the same boot after the pre-copy");
  phase(`pre-copy to ${onB.slice(0, 8)} (${srv3}/${hv3}) completed`);

  const migrations = (await api(c, "GET", "/api/migrations")).body as MigrationView[];
  assert.equal(migrations.filter((m) => m.guest === "og1").length, 2, "each move ran once");
  const guest = (await api(c, "GET", "/api/vms/og1")).body as { hostVm: string; powerState: string };
  assert.deepEqual([guest.hostVm, guest.powerState], [onB, "running"]);

  // The guest goes away through the API; its host VMs are released back to Nova.
  assert.equal((await api(c, "DELETE", "/api/vms/og1")).status, 204);
  await until("og1 gone from b", async () =>
    (await b.client(srv3, hv3).status()).guests.length === 0 ? true : undefined,
  );
});

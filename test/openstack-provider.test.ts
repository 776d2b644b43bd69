// The OpenStack rental against a fake of Keystone v3 and Nova v2.1 in their documented
// shapes (test/support/fake-openstack.ts): auth, paging, errors, hostId semantics.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fusePlacement, ProviderError, placementCorrectness } from "../src/providers/index.ts";
import { OpenStackRental, type OpenStackRentalOptions } from "../src/providers/openstack/rental.ts";
import { FakeOpenStack, hostIdOf } from "./support/fake-openstack.ts";

const cloud = new FakeOpenStack({
  hosts: ["cmp1", "cmp2"],
  projects: [
    { id: "p-alpha", name: "alpha", instances: 8 },
    { id: "p-beta", name: "beta" },
  ],
  users: [
    { name: "nest", password: "pw", projects: ["p-alpha", "p-beta"] },
    { name: "other", password: "pw2", projects: ["p-beta"] },
  ],
  maxLimit: 1000,
});

function rental(over: Partial<OpenStackRentalOptions> = {}): OpenStackRental {
  return new OpenStackRental({
    authUrl: cloud.authUrl,
    username: "nest",
    password: "pw",
    userDomain: "Default",
    projectName: "alpha",
    projectDomain: "Default",
    imageRef: "img-hostvm",
    pageSize: 2,
    ...over,
  });
}

before(async () => {
  await cloud.start();
});
after(async () => {
  await cloud.stop();
});

describe("OpenStack rental (fake Nova + Keystone)", () => {
  test("authenticates with a password, scoped to the project, and sends the token to Nova", async () => {
    const r = rental();
    const { hostVmTypes } = await r.describe();
    assert.deepEqual(
      hostVmTypes.map((t) => [t.name, t.vcpus, t.memoryMiB]),
      [
        ["m1.small", 1, 2048],
        ["m1.medium", 2, 4096],
      ],
    );
    assert.equal(await r.nova.projectId(), "p-alpha");
    assert.ok(cloud.requests.includes("POST /identity/v3/auth/tokens"));
    assert.ok(cloud.requests.includes("GET /compute/v2.1/flavors/detail"));
  });

  test("a wrong password is refused with Keystone's message, as unavailable", async () => {
    await assert.rejects(
      rental({ password: "nope" }).describe(),
      (e: unknown) =>
        e instanceof ProviderError &&
        e.code === "unavailable" &&
        /401 The request you have made requires authentication/.test(e.message),
    );
    // A user without a role on the project is refused the same way.
    await assert.rejects(rental({ username: "other", password: "pw2" }).describe(), /401/);
  });

  test("acquire creates a tagged server in BUILD; it runs once the scheduler placed it", async () => {
    const r = rental();
    const h = await r.acquireHostVm("m1.small", "server-2");
    assert.equal(h.state, "provisioning");
    assert.equal(h.server, undefined);
    assert.equal(h.type, "m1.small");
    // Not placed yet: an empty hostId is no evidence.
    assert.deepEqual(await r.placementEvidence(), []);
    cloud.placePending("cmp1");
    const [now] = await r.hostVms();
    assert.equal(now!.state, "running");
    assert.equal(now!.server, undefined, "Nova never names the host to a project");
    await assert.rejects(
      r.acquireHostVm("m9.huge", undefined),
      (e: unknown) => (e as ProviderError).code === "invalid",
    );
    await r.releaseHostVm(h.id);
    assert.deepEqual(await r.hostVms(), []);
    // Deleting again (already gone: Nova answers 404) is fine.
    await r.releaseHostVm(h.id);
  });

  test("lists every host VM across pages (limit + marker), skipping servers it did not make", async () => {
    const r = rental();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await r.acquireHostVm("m1.small", undefined)).id);
    cloud.placePending();
    // A server made by hand in the same project is not ours.
    cloud.servers.push({
      ...cloud.servers[0]!,
      id: "by-hand",
      metadata: {},
      created: "2029-01-01T00:00:00Z",
    });
    cloud.requests.length = 0;
    const got = await r.hostVms();
    assert.deepEqual(got.map((h) => h.id).sort(), [...ids].sort());
    const pages = cloud.requests.filter((q) => q.startsWith("GET /compute/v2.1/servers/detail"));
    assert.ok(pages.length >= 3, `paged in twos: ${pages.join(" | ")}`);
    assert.ok(pages.slice(1).every((q) => /marker=/.test(q)));
    cloud.servers.splice(
      cloud.servers.findIndex((s) => s.id === "by-hand"),
      1,
    );
  });

  test("hostId: equal on one host within a project, different across projects; fusion groups right", async () => {
    const alpha = rental();
    const beta = rental({ projectName: "beta" });
    for (const s of [...cloud.servers]) await alpha.releaseHostVm(s.id);
    const a: string[] = [];
    for (let i = 0; i < 4; i++) a.push((await alpha.acquireHostVm("m1.small", undefined)).id);
    cloud.placePending(); // round robin: cmp1, cmp2, cmp1, cmp2 (or shifted)
    const b = (await beta.acquireHostVm("m1.small", undefined)).id;
    cloud.placePending(cloud.hostOf(a[0]!));
    const ev = await alpha.placementEvidence();
    assert.equal(ev.length, 4);
    for (const e of ev) {
      assert.ok(e.kind === "key");
      assert.equal(e.key, hostIdOf("p-alpha", cloud.hostOf(e.hostVm)!));
      assert.equal(e.scope, "openstack-project:p-alpha");
      assert.equal(e.source, "provider-hint");
    }
    const [evB] = await beta.placementEvidence();
    assert.ok(evB?.kind === "key");
    // Same physical host as a[0], yet a different id: a project cannot compare across projects.
    assert.equal(cloud.hostOf(b), cloud.hostOf(a[0]!));
    const keyOfA0 = ev.find((e) => e.kind === "key" && e.hostVm === a[0]);
    assert.ok(keyOfA0?.kind === "key");
    assert.notEqual(evB.key, keyOfA0.key);
    assert.notEqual(evB.scope, keyOfA0.scope);
    const all = [...a, b];
    const f = fusePlacement(all, [...ev, evB], { now: alpha.now() });
    const truth = new Map(a.map((id) => [id, cloud.hostOf(id)!]));
    const found = new Map(f.hostVms.map((h) => [h.hostVm, h.group]));
    assert.deepEqual(placementCorrectness(truth, found), { correct: 4, total: 4 });
    // beta's host VM is not related to alpha's by anything: it is in no group of theirs.
    assert.equal(f.hostVms.find((h) => h.hostVm === b)!.group, undefined);
    // The operator migrates a[1] onto a[0]'s host: the next hints say so.
    cloud.migrate(a[1]!, cloud.hostOf(a[0]!)!);
    const f2 = fusePlacement(a, await alpha.placementEvidence(), { now: alpha.now() + 1 });
    assert.equal(
      f2.hostVms.find((h) => h.hostVm === a[1])!.group,
      f2.hostVms.find((h) => h.hostVm === a[0])!.group,
    );
    await beta.releaseHostVm(b);
  });

  test("an expired token is renewed once, transparently", async () => {
    const r = rental();
    await r.hostVms();
    const auths = () => cloud.requests.filter((q) => q === "POST /identity/v3/auth/tokens").length;
    const before = auths();
    cloud.expireTokens();
    await r.hostVms();
    assert.equal(auths(), before + 1);
  });

  test("Nova's errors become provider errors: quota is capacity, an unknown server is none, a refused token is 401", async () => {
    const r = rental();
    const have = cloud.servers.filter((s) => s.project === "p-alpha").length;
    for (let i = have; i < 8; i++) await r.acquireHostVm("m1.small", undefined);
    await assert.rejects(
      r.acquireHostVm("m1.small", undefined),
      (e: unknown) => e instanceof ProviderError && e.code === "capacity" && /Quota exceeded/.test(e.message),
    );
    const res = await fetch(`${cloud.url}/compute/v2.1/servers/detail?marker=nope`, {
      headers: { "x-auth-token": "invalid" },
    });
    assert.equal(res.status, 401);
    assert.equal(await r.nova.server("no-such-id"), undefined);
  });

  test("nestcloud up --provider openstack: the API shows placement discovered from hostIds", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const pino = (await import("pino")).default;
    const { runController } = await import("../src/controller/index.ts");
    cloud.placePending();
    const env = {
      OS_AUTH_URL: cloud.authUrl,
      OS_USERNAME: "nest",
      OS_PASSWORD: "pw",
      OS_PROJECT_NAME: "alpha",
      NESTCLOUD_OPENSTACK_IMAGE: "img-hostvm",
    };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    const dataDir = mkdtempSync(join(tmpdir(), "nc-openstack-"));
    try {
      const running = await runController({
        provider: "openstack",
        port: 0,
        host: "127.0.0.1",
        dataDir,
        intervalSeconds: 86_400,
        log: pino({ level: "silent" }),
      });
      try {
        const res = await fetch(`${running.url}/api/placement`, {
          headers: { authorization: `Bearer ${running.adminToken}` },
        });
        assert.equal(res.status, 200);
        const p = (await res.json()) as {
          mode: string;
          hostVms: { hostVm: string; server: string | null; source: string }[];
        };
        assert.equal(p.mode, "discovered");
        const ours = cloud.servers.filter((s) => s.project === "p-alpha");
        assert.equal(p.hostVms.length, ours.length);
        assert.ok(p.hostVms.every((h) => h.source === "provider-hint" && h.server !== null));
        const truth = new Map(ours.map((s) => [s.id, s.host!]));
        const found = new Map(p.hostVms.map((h) => [h.hostVm, h.server ?? undefined]));
        assert.deepEqual(placementCorrectness(truth, found), { correct: ours.length, total: ours.length });
      } finally {
        await running.close();
      }
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("the openstack provider names the first openrc variable missing", async () => {
    const { openStackOptionsFromEnv } = await import("../src/providers/index.ts");
    assert.throws(() => openStackOptionsFromEnv({ OS_AUTH_URL: "http://x" }), /needs OS_USERNAME/);
    assert.throws(
      () =>
        openStackOptionsFromEnv({
          OS_AUTH_URL: "http://x",
          OS_USERNAME: "u",
          OS_PASSWORD: "p",
          OS_PROJECT_NAME: "p",
          NESTCLOUD_OPENSTACK_IMAGE: "i",
          OS_INTERFACE: "weird",
        }),
      /OS_INTERFACE/,
    );
  });
});

// The openstack provider's settings (`up` flags, openrc credentials file, environment) and
// how it finds its host VMs' agents from Nova's documented fields (addresses, metadata,
// hostId and the pool service), against the fake Keystone and Nova; `up --provider
// openstack`'s errors when Keystone is unreachable or refuses, as an operator sees them.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { openStackFlagsOf } from "../src/cli/controller.ts";
import {
  OpenStackProvider,
  openStackOptionsFrom,
  openStackSettings,
  ProviderError,
  parseOpenrc,
} from "../src/providers/index.ts";
import { agentAddressOf, agentHostsOf, NovaAgentDirectory } from "../src/providers/openstack/directory.ts";
import type { NovaServer } from "../src/providers/openstack/nova.ts";
import { isHostVmServer, OpenStackRental } from "../src/providers/openstack/rental.ts";
import { FakeOpenStack, hostIdOf } from "./support/fake-openstack.ts";

const dir = mkdtempSync(join(tmpdir(), "nc-osa-"));
const bin = resolve(import.meta.dirname, "../bin/nestcloud.js");

/** Two fake host-VM agents on loopback: GET /v1/status answers their names, with the token. */
const agentToken = "agent-token-0123456789abcdef";
const agents: Server[] = [];
async function fakeAgent(name: string): Promise<number> {
  const s = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${agentToken}`) return void res.writeHead(401).end();
    if (req.url !== "/v1/status") return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        role: "hostvm",
        testbedId: "t",
        server: "ignored",
        hostVm: name,
        pid: 1,
        guests: [],
      }),
    );
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  agents.push(s);
  return (s.address() as AddressInfo).port;
}

let cloud: FakeOpenStack;
let bare: FakeOpenStack;
const users = [{ name: "nest", password: "pw-0123", projects: ["p-one", "p-two"] }];
const projects = [
  { id: "p-one", name: "one" },
  { id: "p-two", name: "two" },
];

before(async () => {
  const [p1, p2, p3] = [await fakeAgent("h1"), await fakeAgent("h2"), await fakeAgent("h3")];
  cloud = await new FakeOpenStack({
    hosts: ["cmp1", "cmp2"],
    projects,
    users,
    slots: [
      { host: "cmp1", network: "net", address: "127.0.0.1", agentPort: p1, label: "cmp1/h1" },
      { host: "cmp1", network: "net", address: "127.0.0.1", agentPort: p2, label: "cmp1/h2" },
      { host: "cmp2", network: "net", address: "127.0.0.1", agentPort: p3, label: "cmp2/h3" },
    ],
    poolAgents: { cmp1: "http://127.0.0.1:9101", cmp2: "http://127.0.0.1:9102" },
  }).start();
  // A cloud without the pool service: renting works, guests cannot.
  bare = await new FakeOpenStack({ hosts: ["cmp1"], projects, users }).start();
});

after(async () => {
  await cloud.stop();
  await bare.stop();
  for (const s of agents) await new Promise((r) => s.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const creds = (c: FakeOpenStack, over: Record<string, string> = {}) => ({
  authUrl: c.authUrl,
  username: "nest",
  password: "pw-0123",
  userDomain: "Default",
  projectName: "one",
  projectDomain: "Default",
  imageRef: "img",
  ...over,
});

describe("openstack settings: env, then the credentials file, then the flags", () => {
  test("an openrc file: export, quotes, comments; nothing is evaluated", () => {
    const text = [
      "#!/usr/bin/env bash",
      "# from Horizon",
      "export OS_AUTH_URL=https://cloud.example/identity/v3",
      "export OS_PASSWORD='p@ss w0rd$x'",
      'OS_USERNAME="nest"',
      "",
      "export NESTCLOUD_AGENT_TOKEN_FILE=/etc/nestcloud/agent-token",
    ].join("\n");
    assert.deepEqual(parseOpenrc(text), {
      OS_AUTH_URL: "https://cloud.example/identity/v3",
      OS_PASSWORD: "p@ss w0rd$x",
      OS_USERNAME: "nest",
      NESTCLOUD_AGENT_TOKEN_FILE: "/etc/nestcloud/agent-token",
    });
    for (const [line, why] of [
      ["export OS_PASSWORD=$(pass show cloud)", /nothing is evaluated/],
      ['export OS_PASSWORD="$SECRET"', /nothing is evaluated/],
      ["export OS_PASSWORD=`cat f`", /nothing is evaluated/],
      ["read -sr OS_PASSWORD_INPUT", /line 1: not a KEY=value assignment/],
      ["export PATH=/tmp", /PATH is not an OS_\* or NESTCLOUD_\* setting/],
    ] as const)
      assert.throws(() => parseOpenrc(line), why, line);
    assert.throws(() => parseOpenrc(`# ${"x".repeat(70_000)}`), /larger than 65536 bytes/);
  });

  test("the flags win over the file, the file over the env; the first missing one is named", () => {
    const env = {
      OS_AUTH_URL: "http://env.example/v3",
      OS_USERNAME: "env-user",
      OS_PASSWORD: "env-pw",
      OS_PROJECT_NAME: "env-project",
      NESTCLOUD_OPENSTACK_IMAGE: "env-image",
      OS_INTERFACE: "internal",
    };
    const s = openStackSettings(
      env,
      { authUrl: "https://flag.example/v3", project: "flag-project", agentNetwork: "nc-net" },
      { OS_USERNAME: "file-user", OS_PASSWORD: "file-pw", NESTCLOUD_AGENT_TOKEN_FILE: "/t" },
    );
    assert.deepEqual(
      [s.authUrl, s.username, s.password, s.projectName, s.imageRef, s.interface, s.userDomain],
      ["https://flag.example/v3", "file-user", "file-pw", "flag-project", "env-image", "internal", "Default"],
    );
    assert.equal(s.agentTokenFile, "/t");
    assert.equal(s.agentNetwork, "nc-net");
    assert.throws(() => openStackSettings({}, { authUrl: "http://x/v3" }), /needs OS_USERNAME/);
    assert.throws(() => openStackSettings({ ...env, OS_AUTH_URL: "" }), /needs OS_AUTH_URL .*--os-auth-url/);
    assert.throws(
      () => openStackSettings({ ...env, OS_INTERFACE: "private" }),
      /OS_INTERFACE: expected public/,
    );
    assert.throws(
      () => openStackSettings(env, { authUrl: "file:///etc/passwd" }),
      /expected an http\(s\) URL/,
    );
  });

  test("`up`'s flags: only those given, none of them a secret", () => {
    assert.deepEqual(openStackFlagsOf({ osProject: "p", agentTokenFile: "/t" }), {
      project: "p",
      agentTokenFile: "/t",
    });
    assert.deepEqual(openStackFlagsOf({}), {});
  });

  test("a credentials file others can read is refused; the agents' token is read from its file", () => {
    const file = join(dir, "openrc-open");
    writeFileSync(file, "OS_USERNAME=nest\nOS_PASSWORD=pw-0123\n");
    chmodSync(file, 0o644);
    assert.throws(
      () =>
        openStackOptionsFrom({ credentials: file, authUrl: "http://x/v3", project: "one", image: "i" }, {}),
      /readable by others \(mode 644\); chmod 600/,
    );
    chmodSync(file, 0o600);
    const tokenFile = join(dir, "agent-token");
    writeFileSync(tokenFile, `${agentToken}\n`, { mode: 0o600 });
    const o = openStackOptionsFrom(
      { credentials: file, authUrl: "http://x/v3", project: "one", image: "i", agentTokenFile: tokenFile },
      {},
    );
    assert.equal(o.password, "pw-0123");
    assert.equal(o.agents?.token, agentToken);
    assert.equal(
      openStackOptionsFrom({ credentials: file, authUrl: "http://x/v3", project: "one", image: "i" }, {})
        .agents,
      undefined,
    );
  });
});

/** A Nova server as NovaClient reads it, for the pure functions. */
const server = (over: Partial<NovaServer> = {}): NovaServer => ({
  id: "srv-1",
  name: "hv",
  status: "ACTIVE",
  hostId: "a".repeat(56),
  flavorId: undefined,
  flavorName: "m1.small",
  created: "",
  updated: "",
  metadata: { nestcloud: "host-vm", "nestcloud-agent-port": "7411" },
  addresses: {
    zeta: [{ addr: "10.9.0.5", version: 4, type: "fixed" }],
    alpha: [
      { addr: "203.0.113.7", version: 4, type: "floating" },
      { addr: "fd00::5", version: 6, type: "fixed" },
      { addr: "10.0.0.5", version: 4, type: "fixed" },
    ],
  },
  ...over,
});

describe("agents from Nova's fields", () => {
  test("the agent listens on the fixed IPv4 of the network asked for (else the first by name), at the metadata's port", () => {
    assert.deepEqual(agentAddressOf(server()), {
      ok: true,
      address: "10.0.0.5",
      url: "http://10.0.0.5:7411",
    });
    assert.deepEqual(agentAddressOf(server(), { network: "zeta", scheme: "https" }), {
      ok: true,
      address: "10.9.0.5",
      url: "https://10.9.0.5:7411",
    });
    const v6 = server({ addresses: { n: [{ addr: "fd00::5", version: 6, type: "fixed" }] }, metadata: {} });
    assert.deepEqual(agentAddressOf(v6), { ok: true, address: "fd00::5", url: "http://[fd00::5]:7310" });
    assert.deepEqual(
      agentAddressOf(server({ addresses: { n: [{ addr: "203.0.113.7", version: 4, type: "floating" }] } })),
      {
        ok: false,
        reason: "server srv-1 has no fixed address",
      },
    );
    assert.equal(agentAddressOf(server(), { network: "other" }).ok, false);
    for (const port of ["0", "65536", "80; rm", "x"])
      assert.match(
        (agentAddressOf(server({ metadata: { "nestcloud-agent-port": port } })) as { reason: string }).reason,
        /is no port/,
      );
  });

  test("a host VM is usable when ACTIVE with its address, its agent's name and its hostId's server agent", () => {
    const h = "b".repeat(56);
    const servers = [
      server({ id: "s1", hostId: h }),
      server({ id: "s2", hostId: h, status: "BUILD" }),
      server({ id: "s3", hostId: "c".repeat(56) }), // its host's server agent unknown
      server({ id: "s4", hostId: h }), // its agent not asked yet
    ];
    const hosts = agentHostsOf(
      servers,
      new Map([[h, "http://10.0.0.1:7300"]]),
      new Map([
        ["s1", { name: "h1" }],
        ["s2", { name: "h2" }],
        ["s3", { name: "h3" }],
      ]),
    );
    assert.deepEqual(
      hosts.map((x) => [x.hostVm, x.usable]),
      [
        ["s1", true],
        ["s2", false],
        ["s3", false],
        ["s4", false],
      ],
    );
    assert.deepEqual(hosts[0]!.endpoint, {
      server: h,
      hostVm: "h1",
      hostVmUrl: "http://10.0.0.5:7411",
      serverUrl: "http://10.0.0.1:7300",
      address: "10.0.0.5",
    });
  });

  test("the directory: Nova's servers, the pool service by hostId, each agent's own name", async () => {
    const rental = new OpenStackRental(creds(cloud));
    const ids = [];
    for (const host of ["cmp1", "cmp1", "cmp2"]) {
      ids.push((await rental.acquireHostVm("m1.small", undefined)).id);
      cloud.placePending(host);
    }
    // Not ours: a server the project runs for something else stays out of the directory.
    const dirOf = new NovaAgentDirectory(rental.nova, isHostVmServer, agentToken, "l", "i");
    await dirOf.refresh();
    const hosts = dirOf.hosts();
    assert.deepEqual(
      hosts.map((h) => [h.hostVm, h.usable, h.endpoint?.hostVm, h.endpoint?.serverUrl]).sort(),
      [
        [ids[0], true, "h1", "http://127.0.0.1:9101"],
        [ids[1], true, "h2", "http://127.0.0.1:9101"],
        [ids[2], true, "h3", "http://127.0.0.1:9102"],
      ].sort(),
    );
    const byId = new Map(hosts.map((h) => [h.hostVm, h.endpoint!]));
    assert.equal(byId.get(ids[0]!)!.server, hostIdOf("p-one", "cmp1"), "the endpoint's server is the hostId");
    assert.equal(byId.get(ids[0]!)!.server, byId.get(ids[1]!)!.server);
    assert.notEqual(byId.get(ids[0]!)!.server, byId.get(ids[2]!)!.server);
    assert.deepEqual(
      dirOf
        .serverAgents()
        .map((s) => s.url)
        .sort(),
      ["http://127.0.0.1:9101", "http://127.0.0.1:9102"],
    );
    // The pool service answers only this project's hostIds; malformed ids are never sent.
    assert.equal(await rental.nova.poolHost(hostIdOf("p-two", "cmp1")), undefined);
    await assert.rejects(rental.nova.poolHost("../../admin"), /not a hostId/);
    for (const id of ids) await rental.releaseHostVm(id);
    await dirOf.refresh();
    assert.deepEqual(dirOf.hosts(), []);
    assert.deepEqual(dirOf.serverAgents(), []);
  });
});

describe("opening the provider: clear errors when Keystone or Nova cannot be used", () => {
  test("Keystone unreachable, Keystone refusing, no pool service for guests", async () => {
    await assert.rejects(
      OpenStackProvider.open(creds(cloud, { authUrl: "http://127.0.0.1:9/identity/v3" })),
      (e: Error) =>
        e instanceof ProviderError &&
        /^Keystone at http:\/\/127\.0\.0\.1:9\/identity\/v3 is unreachable \(POST .*auth\/tokens: /.test(
          e.message,
        ),
    );
    await assert.rejects(
      OpenStackProvider.open(creds(cloud, { password: "wrong" })),
      /Keystone at .* refused user nest \(domain Default\) for project one: authenticating with Keystone: 401 The request you have made requires authentication/,
    );
    await assert.rejects(
      OpenStackProvider.open({ ...creds(bare), agents: { token: agentToken } }),
      /catalog lists no nestcloud-pool service/,
    );
    // Without agents it rents and places, and says why guests are refused.
    const p = await OpenStackProvider.open(creds(bare));
    await assert.rejects(p.createGuest({ id: "g", memoryMiB: 128 } as never, "x"), /--agent-token-file/);
    await p.close();
  });

  test("`up --provider openstack` prints one line naming the refusing party, exit 1", async () => {
    const file = join(dir, "openrc-up");
    writeFileSync(file, "export OS_USERNAME=nest\nexport OS_PASSWORD='not-the-password'\n", { mode: 0o600 });
    const up = (authUrl: string) =>
      new Promise<{ code: number | null; err: string }>((done) =>
        execFile(
          process.execPath,
          [
            bin,
            "up",
            ...["--provider", "openstack", "--os-auth-url", authUrl, "--os-project", "one"],
            ...[
              "--os-credentials",
              file,
              "--os-image",
              "img",
              "--port",
              "0",
              "--data-dir",
              join(dir, "data"),
            ],
          ],
          { encoding: "utf8", timeout: 60_000 },
          (e, _out, err) => done({ code: e ? (typeof e.code === "number" ? e.code : null) : 0, err }),
        ),
      );
    const refused = await up(cloud.authUrl);
    assert.equal(refused.code, 1, refused.err);
    assert.match(
      refused.err,
      /^nestcloud: Keystone at http:\/\/127\.0\.0\.1:\d+\/identity\/v3 refused user nest/,
    );
    assert.doesNotMatch(refused.err, /not-the-password/);
    assert.equal(refused.err.trim().split("\n").length, 1, refused.err);
    const away = await up("http://127.0.0.1:9/v3");
    assert.equal(away.code, 1, away.err);
    assert.match(away.err, /^nestcloud: Keystone at http:\/\/127\.0\.0\.1:9\/v3 is unreachable/);
  });
});

/**
 * A faithful fake of the parts of OpenStack a host-VM rental uses, since no OpenStack runs
 * here: Keystone v3 password auth (POST /identity/v3/auth/tokens -> 201, token in the
 * X-Subject-Token header, service catalog in the body; 401 with {"error": {...}} otherwise)
 * and Nova's compute API v2.1 (GET /flavors/detail; GET /servers/detail with limit/marker
 * paging and servers_links, newest first; POST /servers -> 202; GET /servers/{id}; DELETE ->
 * 204; errors as {"itemNotFound"|"badRequest"|"forbidden": {"code", "message"}}). A server
 * is BUILD with an empty hostId until the fake's scheduler places it; then ACTIVE with
 * hostId = sha224(project_id + host) (hex), so equal ids mean one host within a project and
 * ids differ across projects. Admin-side helpers place, migrate and expire tokens.
 *
 * For guests on the rented host VMs (nestcloud's agents in them), a fake cloud can also be
 * given `slots` (where its "instances" really run: a testbed host VM each, with the address
 * and port of its agent) and `poolAgents` (each host's nestcloud server agent). Placing a
 * server on a host then takes a free slot there: the server gets the slot's fixed address in
 * `addresses` and its agent's port in metadata `nestcloud-agent-port` (what the image's
 * first-boot script would publish), and the catalog lists a `nestcloud-pool` service whose
 * GET /pool/v1/hosts/{hostId} names the server agent behind one of the project's hostIds
 * (the cooperating cloud's shared memory pool; 404 for hostIds of other projects).
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

interface User {
  name: string;
  domain: string;
  password: string;
  projects: string[];
}
interface Project {
  id: string;
  name: string;
  domain: string;
  /** Max instances (Nova's quota). */
  instances: number;
}
interface FakeServer {
  id: string;
  slot: FakeSlot | undefined;
  name: string;
  project: string;
  flavorId: string;
  imageRef: string;
  metadata: Record<string, string>;
  host: string | undefined;
  status: string;
  created: string;
  updated: string;
}

export interface FakeSlot {
  readonly host: string;
  readonly network: string;
  readonly address: string;
  readonly agentPort: number;
  /** Who knows the slot (tests): e.g. the testbed's "a/a1". */
  readonly label: string;
}

export interface FakeOpenStackOptions {
  /** Where placed servers run (see the file's comment); none: servers have no addresses. */
  slots?: FakeSlot[];
  /** host -> the URL of its nestcloud server agent (the pool service's answers). */
  poolAgents?: Record<string, string>;
  hosts: string[];
  projects: { id: string; name: string; domain?: string; instances?: number }[];
  users: { name: string; password: string; domain?: string; projects: string[] }[];
  flavors?: { id: string; name: string; vcpus: number; ram: number; disk: number }[];
  /** Nova's max_limit: the largest page it returns. */
  maxLimit?: number;
}

export const hostIdOf = (projectId: string, host: string) =>
  createHash("sha224")
    .update(projectId + host)
    .digest("hex");

export class FakeOpenStack {
  private server: Server | undefined;
  private readonly users: User[];
  private readonly projects: Project[];
  private readonly flavors: NonNullable<FakeOpenStackOptions["flavors"]>;
  private readonly tokens = new Map<string, { project: string; expired: boolean }>();
  readonly servers: FakeServer[] = [];
  /** Every request, for assertions ("GET /compute/v2.1/servers/detail?limit=2"). */
  readonly requests: string[] = [];
  private clock = Date.parse("2030-01-01T00:00:00Z");
  private nextHost = 0;
  url = "";

  constructor(private readonly o: FakeOpenStackOptions) {
    this.users = o.users.map((u) => ({ ...u, domain: u.domain ?? "Default" }));
    this.projects = o.projects.map((p) => ({
      ...p,
      domain: p.domain ?? "Default",
      instances: p.instances ?? 100,
    }));
    this.flavors = o.flavors ?? [
      { id: "f1", name: "m1.small", vcpus: 1, ram: 2048, disk: 20 },
      { id: "f2", name: "m1.medium", vcpus: 2, ram: 4096, disk: 40 },
    ];
  }

  get authUrl(): string {
    return `${this.url}/identity/v3`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch((e) =>
        json(res, 500, { computeFault: { code: 500, message: String(e) } }),
      );
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  // ---- the cloud operator's side --------------------------------------------------------

  /** The scheduler places every BUILD server (round robin over hosts, or on `host`). */
  placePending(host?: string): void {
    for (const s of this.servers) {
      if (s.status !== "BUILD") continue;
      s.host = host ?? this.o.hosts[this.nextHost++ % this.o.hosts.length];
      if (this.o.slots) {
        const slot = this.o.slots.find((x) => x.host === s.host && !this.servers.some((y) => y.slot === x));
        if (!slot) throw new Error(`no free slot on host ${s.host}`);
        s.slot = slot;
        s.metadata["nestcloud-agent-port"] = String(slot.agentPort);
      }
      s.status = "ACTIVE";
      s.updated = this.stamp();
    }
  }

  /** The slot a server runs in (tests: which testbed host VM it is). */
  slotOf(serverId: string): FakeSlot | undefined {
    return this.servers.find((x) => x.id === serverId)?.slot;
  }

  /** A live migration by the operator (hostId changes; the user is not told otherwise). */
  migrate(serverId: string, host: string): void {
    const s = this.servers.find((x) => x.id === serverId);
    if (!s) throw new Error(`no server ${serverId}`);
    s.host = host;
    s.updated = this.stamp();
  }

  expireTokens(): void {
    for (const t of this.tokens.values()) t.expired = true;
  }

  hostOf(serverId: string): string | undefined {
    return this.servers.find((x) => x.id === serverId)?.host;
  }

  private stamp(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const url = new URL(req.url ?? "/", this.url);
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const body = await readBody(req);
    if (url.pathname === "/identity/v3/auth/tokens" && req.method === "POST") return this.auth(body, res);
    const pool = /^\/pool\/v1\/hosts\/([^/]+)$/.exec(url.pathname);
    if (pool && this.o.poolAgents && req.method === "GET") return this.poolHost(req, pool[1]!, res);
    const m = /^\/compute\/v2\.1(\/.*)$/.exec(url.pathname);
    if (!m)
      return json(res, 404, { itemNotFound: { code: 404, message: "The resource could not be found." } });
    const tok = this.tokens.get(String(req.headers["x-auth-token"] ?? ""));
    if (!tok || tok.expired)
      return json(res, 401, {
        error: {
          code: 401,
          title: "Unauthorized",
          message: "The request you have made requires authentication.",
        },
      });
    const path = m[1]!;
    const project = tok.project;
    if (path === "/flavors/detail" && req.method === "GET")
      return json(res, 200, {
        flavors: this.flavors.map((f) => ({ ...f, links: [], "OS-FLV-EXT-DATA:ephemeral": 0 })),
      });
    if (path === "/servers/detail" && req.method === "GET") return this.list(project, url, res);
    if (path === "/servers" && req.method === "POST") return this.create(project, body, res);
    const one = /^\/servers\/([^/]+)$/.exec(path);
    if (one) {
      const s = this.servers.find((x) => x.id === decodeURIComponent(one[1]!) && x.project === project);
      if (!s)
        return json(res, 404, {
          itemNotFound: { code: 404, message: `Instance ${decodeURIComponent(one[1]!)} could not be found.` },
        });
      if (req.method === "GET") return json(res, 200, { server: this.view(s) });
      if (req.method === "DELETE") {
        this.servers.splice(this.servers.indexOf(s), 1);
        res.writeHead(204).end();
        return;
      }
    }
    return json(res, 404, { itemNotFound: { code: 404, message: "The resource could not be found." } });
  }

  private poolHost(req: IncomingMessage, hostId: string, res: ServerResponse) {
    const tok = this.tokens.get(String(req.headers["x-auth-token"] ?? ""));
    if (!tok || tok.expired)
      return json(res, 401, {
        error: {
          code: 401,
          title: "Unauthorized",
          message: "The request you have made requires authentication.",
        },
      });
    // Only the hostIds of the token's project resolve: another project's ids say nothing.
    const host = Object.keys(this.o.poolAgents ?? {}).find((h) => hostIdOf(tok.project, h) === hostId);
    if (!host) return json(res, 404, { itemNotFound: { code: 404, message: `No host ${hostId}` } });
    json(res, 200, { host: { hostId, agent_url: this.o.poolAgents![host] } });
  }

  private auth(body: unknown, res: ServerResponse) {
    const a = (body as { auth?: Record<string, any> })?.auth;
    const pw = a?.identity?.password?.user;
    const scope = a?.scope?.project;
    const unauthorized = () =>
      json(res, 401, {
        error: {
          code: 401,
          title: "Unauthorized",
          message: "The request you have made requires authentication.",
        },
      });
    if (!Array.isArray(a?.identity?.methods) || !a.identity.methods.includes("password") || !pw)
      return json(res, 400, {
        error: { code: 400, title: "Bad Request", message: "Invalid input for field 'identity'" },
      });
    const user = this.users.find(
      (u) => u.name === pw.name && u.domain === pw.domain?.name && u.password === pw.password,
    );
    const project = this.projects.find((p) => p.name === scope?.name && p.domain === scope?.domain?.name);
    if (!user || !project || !user.projects.includes(project.id)) return unauthorized();
    const token = randomUUID().replaceAll("-", "");
    this.tokens.set(token, { project: project.id, expired: false });
    res.setHeader("X-Subject-Token", token);
    json(res, 201, {
      token: {
        methods: ["password"],
        expires_at: new Date(this.clock + 3600_000).toISOString(),
        user: { name: user.name, domain: { name: user.domain } },
        project: { id: project.id, name: project.name, domain: { name: project.domain } },
        catalog: [
          {
            type: "identity",
            name: "keystone",
            endpoints: [{ interface: "public", region: "RegionOne", url: this.authUrl }],
          },
          {
            type: "compute",
            name: "nova",
            endpoints: [
              { interface: "public", region: "RegionOne", url: `${this.url}/compute/v2.1` },
              { interface: "internal", region: "RegionOne", url: `${this.url}/internal-compute/v2.1` },
            ],
          },
          ...(this.o.poolAgents
            ? [
                {
                  type: "nestcloud-pool",
                  name: "nestcloud-pool",
                  endpoints: [{ interface: "public", region: "RegionOne", url: `${this.url}/pool/v1` }],
                },
              ]
            : []),
        ],
      },
    });
  }

  private list(project: string, url: URL, res: ServerResponse) {
    const max = this.o.maxLimit ?? 1000;
    const limitRaw = url.searchParams.get("limit");
    const limit = limitRaw === null ? max : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 0)
      return json(res, 400, { badRequest: { code: 400, message: "limit param must be an integer" } });
    // Newest first, as Nova sorts by default (created_at desc, then id).
    const all = this.servers
      .filter((s) => s.project === project)
      .sort((a, b) => b.created.localeCompare(a.created) || b.id.localeCompare(a.id));
    let start = 0;
    const marker = url.searchParams.get("marker");
    if (marker !== null) {
      const i = all.findIndex((s) => s.id === marker);
      if (i < 0)
        return json(res, 400, { badRequest: { code: 400, message: `marker [${marker}] not found` } });
      start = i + 1;
    }
    const n = Math.min(limit, max);
    const page = all.slice(start, start + n);
    const links =
      page.length === n && n > 0 && start + n <= all.length
        ? [
            {
              rel: "next",
              href: `${this.url}/compute/v2.1/servers/detail?limit=${n}&marker=${page[page.length - 1]!.id}`,
            },
          ]
        : undefined;
    json(res, 200, { servers: page.map((s) => this.view(s)), ...(links ? { servers_links: links } : {}) });
  }

  private create(project: string, body: unknown, res: ServerResponse) {
    const s = (body as { server?: Record<string, unknown> })?.server;
    if (!s || typeof s.name !== "string" || s.name === "")
      return json(res, 400, {
        badRequest: { code: 400, message: "Invalid input for field/attribute name." },
      });
    const flavor = this.flavors.find((f) => f.id === s.flavorRef);
    if (!flavor)
      return json(res, 400, {
        badRequest: { code: 400, message: `Flavor ${String(s.flavorRef)} could not be found.` },
      });
    if (typeof s.imageRef !== "string")
      return json(res, 400, {
        badRequest: { code: 400, message: "Invalid input for field/attribute imageRef." },
      });
    const p = this.projects.find((x) => x.id === project)!;
    if (this.servers.filter((x) => x.project === project).length >= p.instances)
      return json(res, 403, {
        forbidden: {
          code: 403,
          message: `Quota exceeded for instances: Requested 1, but already used ${p.instances} of ${p.instances} instances`,
        },
      });
    const now = this.stamp();
    const fs: FakeServer = {
      id: randomUUID(),
      name: s.name,
      project,
      flavorId: flavor.id,
      imageRef: s.imageRef,
      metadata: Object.fromEntries(
        Object.entries((s.metadata ?? {}) as Record<string, unknown>).filter(
          ([, v]) => typeof v === "string",
        ),
      ) as Record<string, string>,
      host: undefined,
      slot: undefined,
      status: "BUILD",
      created: now,
      updated: now,
    };
    this.servers.push(fs);
    json(res, 202, {
      server: { id: fs.id, links: [], adminPass: "x", "OS-DCF:diskConfig": "MANUAL", security_groups: [] },
    });
  }

  /** A server as GET /servers/detail shows it to its project (no host, only hostId). */
  private view(s: FakeServer) {
    const flavor = this.flavors.find((f) => f.id === s.flavorId)!;
    return {
      id: s.id,
      name: s.name,
      status: s.status,
      tenant_id: s.project,
      hostId: s.host === undefined ? "" : hostIdOf(s.project, s.host),
      // Microversion >= 2.47 shape: the flavor embedded.
      flavor: { original_name: flavor.name, vcpus: flavor.vcpus, ram: flavor.ram, disk: flavor.disk },
      image: { id: s.imageRef },
      metadata: s.metadata,
      created: s.created,
      updated: s.updated,
      addresses: s.slot
        ? {
            [s.slot.network]: [
              {
                addr: s.slot.address,
                version: 4,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
              },
            ],
          }
        : {},
      links: [],
    };
  }
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return undefined;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

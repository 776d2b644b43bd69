/**
 * A small client of the two OpenStack APIs a host-VM rental needs, in their documented
 * shapes: Keystone v3 password authentication (POST /v3/auth/tokens, the token in the
 * X-Subject-Token answer header, the service catalog in the body) and Nova's compute API
 * (servers: create, list with limit/marker paging, show, delete; flavors). Every call sends
 * X-Auth-Token; a 401 re-authenticates once (tokens expire). Answers are bounded and checked
 * before use: a cloud is an outside party.
 */
import { ProviderError } from "../types.ts";

export interface OpenStackCredentials {
  /** Keystone v3 base URL, e.g. https://cloud.example/identity/v3 */
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly userDomain: string;
  readonly projectName: string;
  readonly projectDomain: string;
  /** Which catalog endpoint to use (default public). */
  readonly interface?: "public" | "internal" | "admin";
  /** Region of the compute endpoint (default: the first one). */
  readonly region?: string;
}

/** A Nova server as the rental reads it (GET /servers/detail, /servers/{id}). */
export interface NovaServer {
  readonly id: string;
  readonly name: string;
  /** BUILD, ACTIVE, SHUTOFF, ERROR, DELETED, ... */
  readonly status: string;
  /** sha224(project_id + host) as hex; "" while the server is not placed. */
  readonly hostId: string;
  readonly flavorId: string | undefined;
  readonly flavorName: string | undefined;
  readonly created: string;
  readonly updated: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Its addresses by network name, as Nova lists them (fixed and floating, v4 and v6). */
  readonly addresses: Readonly<Record<string, readonly NovaAddress[]>>;
}

export interface NovaAddress {
  readonly addr: string;
  readonly version: 4 | 6;
  /** "fixed" or "floating" (OS-EXT-IPS:type); undefined when Nova does not say. */
  readonly type: string | undefined;
}

/**
 * A physical host's nestcloud server agent, as the cloud's pool service names it for one of
 * the project's hostIds (see NovaClient.poolHost).
 */
export interface PoolHost {
  readonly hostId: string;
  /** The server agent (memory pool, handover broker), http(s)://... */
  readonly agentUrl: string;
}

export interface NovaFlavor {
  readonly id: string;
  readonly name: string;
  readonly vcpus: number;
  /** MiB. */
  readonly ram: number;
  /** GiB. */
  readonly disk: number;
}

/**
 * The catalog's service type of the physical hosts' shared-memory pool (nestcloud's server
 * agents), which a cloud that offers co-resident VMs a shared pool would register: GET
 * {url}/hosts/{hostId} names the server agent of the host behind one of the project's hostIds.
 */
export const POOL_SERVICE_TYPE = "nestcloud-pool";

const MAX_ANSWER_BYTES = 8 * 1024 * 1024;
const MAX_PAGES = 1000;

export class NovaClient {
  private token:
    | { value: string; projectId: string; computeUrl: string; poolUrl: string | undefined }
    | undefined;

  constructor(
    private readonly creds: OpenStackCredentials,
    private readonly opts: { timeoutMs?: number; pageSize?: number } = {},
  ) {}

  /** The project the token is scoped to (hostIds are comparable only within it). */
  async projectId(): Promise<string> {
    return (await this.auth()).projectId;
  }

  private async auth(force = false): Promise<NonNullable<NovaClient["token"]>> {
    if (this.token && !force) return this.token;
    const c = this.creds;
    const url = `${c.authUrl.replace(/\/$/, "")}/auth/tokens`;
    const res = await this.fetch("POST", url, undefined, {
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: c.username, domain: { name: c.userDomain }, password: c.password } },
        },
        scope: { project: { name: c.projectName, domain: { name: c.projectDomain } } },
      },
    });
    if (res.status !== 201) throw this.failure("authenticating with Keystone", res);
    const value = res.headers.get("x-subject-token");
    const body = res.body as {
      token?: {
        project?: { id?: unknown };
        catalog?: {
          type?: unknown;
          endpoints?: { interface?: unknown; region?: unknown; url?: unknown }[];
        }[];
      };
    };
    const projectId = body?.token?.project?.id;
    const pick = (type: string) =>
      body?.token?.catalog
        ?.find((s) => s.type === type)
        ?.endpoints?.find(
          (e) =>
            e.interface === (c.interface ?? "public") && (c.region === undefined || e.region === c.region),
        );
    const ep = pick("compute");
    const pool = pick(POOL_SERVICE_TYPE);
    if (!value || typeof projectId !== "string" || typeof ep?.url !== "string")
      throw new ProviderError(
        "unavailable",
        "Keystone's token lacks X-Subject-Token, a project scope or a compute endpoint in its catalog",
      );
    this.token = {
      value,
      projectId,
      computeUrl: ep.url.replace(/\/$/, ""),
      poolUrl: typeof pool?.url === "string" ? pool.url.replace(/\/$/, "") : undefined,
    };
    return this.token;
  }

  /** The pool service's URL from the catalog; undefined when this cloud offers none. */
  async poolUrl(): Promise<string | undefined> {
    return (await this.auth()).poolUrl;
  }

  /** The server agent behind one of this project's hostIds; undefined when the pool service does not know it. */
  async poolHost(hostId: string): Promise<PoolHost | undefined> {
    if (!/^[0-9a-f]{56}$/.test(hostId))
      throw new ProviderError("invalid", `not a hostId: ${hostId.slice(0, 80)}`);
    let t = await this.auth();
    if (!t.poolUrl)
      throw new ProviderError(
        "unavailable",
        `the cloud's catalog has no ${POOL_SERVICE_TYPE} service: guests need each host's server agent (shared memory pool)`,
      );
    let res = await this.fetch("GET", `${t.poolUrl}/hosts/${hostId}`, t.value);
    if (res.status === 401) {
      t = await this.auth(true);
      res = await this.fetch("GET", `${t.poolUrl}/hosts/${hostId}`, t.value);
    }
    if (res.status === 404) return undefined;
    if (res.status !== 200)
      throw this.failure(`asking the pool service for host ${hostId.slice(0, 12)}`, res);
    const url = (res.body as { host?: { agent_url?: unknown } })?.host?.agent_url;
    if (typeof url !== "string" || !/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(url) || url.length > 2048)
      throw new ProviderError(
        "unavailable",
        `the pool service's answer for ${hostId.slice(0, 12)} has no agent_url`,
      );
    return { hostId, agentUrl: url.replace(/\/$/, "") };
  }

  /** A compute call with the token; re-authenticates once when the token was refused. */
  private async compute(method: string, path: string, body?: unknown) {
    let t = await this.auth();
    let res = await this.fetch(method, `${t.computeUrl}${path}`, t.value, body);
    if (res.status === 401) {
      t = await this.auth(true);
      res = await this.fetch(method, `${t.computeUrl}${path}`, t.value, body);
    }
    return res;
  }

  private async fetch(method: string, url: string, token: string | undefined, body?: unknown) {
    const headers: Record<string, string> = { accept: "application/json" };
    if (token) headers["x-auth-token"] = token;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw new ProviderError("unavailable", `${method} ${url}: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (text.length > MAX_ANSWER_BYTES)
      throw new ProviderError("unavailable", `${method} ${url}: answer of ${text.length} bytes is too large`);
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, method, url };
  }

  /** Nova's and Keystone's error bodies: {"itemNotFound": {"code", "message"}}, {"error": {...}}. */
  private failure(what: string, res: { status: number; body: unknown }): ProviderError {
    const b = res.body as Record<string, { message?: unknown }> | undefined;
    const inner = b && typeof b === "object" ? Object.values(b)[0] : undefined;
    const msg = typeof inner?.message === "string" ? inner.message.slice(0, 500) : `HTTP ${res.status}`;
    const code =
      res.status === 404
        ? "not-found"
        : res.status === 409
          ? "conflict"
          : res.status === 403 && /quota/i.test(msg)
            ? "capacity"
            : res.status === 400
              ? "invalid"
              : "unavailable";
    return new ProviderError(code, `${what}: ${res.status} ${msg}`);
  }

  async flavors(): Promise<NovaFlavor[]> {
    const res = await this.compute("GET", "/flavors/detail");
    if (res.status !== 200) throw this.failure("listing flavors", res);
    const list = (res.body as { flavors?: unknown })?.flavors;
    if (!Array.isArray(list))
      throw new ProviderError("unavailable", "Nova's flavor list has no flavors array");
    return list.flatMap((f: Record<string, unknown>) =>
      typeof f?.id === "string" &&
      typeof f.name === "string" &&
      Number.isInteger(f.vcpus) &&
      Number.isInteger(f.ram)
        ? [
            {
              id: f.id,
              name: f.name,
              vcpus: f.vcpus as number,
              ram: f.ram as number,
              disk: Number(f.disk) || 0,
            },
          ]
        : [],
    );
  }

  /** Every server of the project, page by page (limit + marker, following servers_links). */
  async servers(): Promise<NovaServer[]> {
    const out: NovaServer[] = [];
    const limit = this.opts.pageSize ?? 100;
    let marker: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = `?limit=${limit}${marker ? `&marker=${encodeURIComponent(marker)}` : ""}`;
      const res = await this.compute("GET", `/servers/detail${q}`);
      if (res.status !== 200) throw this.failure("listing servers", res);
      const body = res.body as { servers?: unknown; servers_links?: { rel?: unknown }[] };
      if (!Array.isArray(body?.servers))
        throw new ProviderError("unavailable", "Nova's server list has no servers array");
      const got = body.servers.map(toServer);
      out.push(...got);
      const next = Array.isArray(body.servers_links) && body.servers_links.some((l) => l?.rel === "next");
      if (!next || got.length === 0) return out;
      marker = got[got.length - 1]!.id;
    }
    throw new ProviderError("unavailable", `Nova's server list did not end after ${MAX_PAGES} pages`);
  }

  async server(id: string): Promise<NovaServer | undefined> {
    const res = await this.compute("GET", `/servers/${encodeURIComponent(id)}`);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw this.failure(`showing server ${id}`, res);
    return toServer((res.body as { server?: unknown })?.server);
  }

  async createServer(o: {
    name: string;
    flavorRef: string;
    imageRef: string;
    metadata: Record<string, string>;
  }): Promise<string> {
    const res = await this.compute("POST", "/servers", {
      server: {
        name: o.name,
        flavorRef: o.flavorRef,
        imageRef: o.imageRef,
        metadata: o.metadata,
        networks: "auto",
      },
    });
    if (res.status !== 202) throw this.failure(`creating server ${o.name}`, res);
    const id = (res.body as { server?: { id?: unknown } })?.server?.id;
    if (typeof id !== "string")
      throw new ProviderError("unavailable", "Nova's create answer has no server id");
    return id;
  }

  /** Deletes a server; one already gone is fine. */
  async deleteServer(id: string): Promise<void> {
    const res = await this.compute("DELETE", `/servers/${encodeURIComponent(id)}`);
    if (res.status === 404 || res.status === 204) return;
    throw this.failure(`deleting server ${id}`, res);
  }
}

function toServer(raw: unknown): NovaServer {
  const s = raw as Record<string, unknown>;
  if (!s || typeof s.id !== "string" || typeof s.status !== "string")
    throw new ProviderError("unavailable", "a Nova server without id or status");
  const flavor = (s.flavor ?? {}) as { id?: unknown; original_name?: unknown };
  const meta = (s.metadata ?? {}) as Record<string, unknown>;
  return {
    id: s.id,
    name: typeof s.name === "string" ? s.name : "",
    status: s.status,
    hostId: typeof s.hostId === "string" ? s.hostId : "",
    flavorId: typeof flavor.id === "string" ? flavor.id : undefined,
    flavorName: typeof flavor.original_name === "string" ? flavor.original_name : undefined,
    created: typeof s.created === "string" ? s.created : "",
    updated: typeof s.updated === "string" ? s.updated : "",
    metadata: Object.fromEntries(Object.entries(meta).filter(([, v]) => typeof v === "string")) as Record<
      string,
      string
    >,
    addresses: toAddresses(s.addresses),
  };
}

/** Nova's addresses ({network: [{addr, version, "OS-EXT-IPS:type"}]}), malformed entries dropped. */
function toAddresses(raw: unknown): Record<string, NovaAddress[]> {
  if (!raw || typeof raw !== "object") return {};
  const out: Record<string, NovaAddress[]> = {};
  for (const [net, list] of Object.entries(raw as Record<string, unknown>).slice(0, 64)) {
    if (!Array.isArray(list)) continue;
    out[net] = list.slice(0, 64).flatMap((a: Record<string, unknown>) =>
      a && typeof a.addr === "string" && a.addr.length <= 64 && (a.version === 4 || a.version === 6)
        ? [
            {
              addr: a.addr,
              version: a.version,
              type: typeof a["OS-EXT-IPS:type"] === "string" ? (a["OS-EXT-IPS:type"] as string) : undefined,
            },
          ]
        : [],
    );
  }
  return out;
}

/** A small client for the controller's REST API (bearer token on every call). */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export class Api {
  constructor(
    readonly token: string,
    private readonly base = "",
  ) {}

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>("GET", path, undefined, signal);
  }

  /**
   * Every row of a paged list (`?limit&offset`, total in x-total-count), e.g. /api/vms,
   * which answers 100 rows unless asked for more.
   */
  async getAll<T>(path: string, pageSize = 10_000): Promise<T[]> {
    const rows: T[] = [];
    const sep = path.includes("?") ? "&" : "?";
    for (;;) {
      const { data, headers } = await this.request<T[]>(
        "GET",
        `${path}${sep}limit=${pageSize}&offset=${rows.length}`,
      );
      rows.push(...data);
      const total = Number(headers.get("x-total-count"));
      if (data.length === 0 || !Number.isFinite(total) || rows.length >= total) return rows;
    }
  }

  /** One page of a paged list and the total the controller counts (x-total-count). */
  async page<T>(path: string, signal?: AbortSignal): Promise<{ rows: T[]; total: number }> {
    const { data, headers } = await this.request<T[]>("GET", path, undefined, signal);
    const total = Number(headers.get("x-total-count"));
    return { rows: data, total: Number.isFinite(total) ? total : data.length };
  }

  async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return (await this.request<T>(method, path, body, signal)).data;
  }

  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<{ data: T; headers: Headers }> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return { data: undefined as T, headers: res.headers };
    const text = await res.text();
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (!res.ok) {
      const msg =
        data && typeof data === "object" && "error" in data
          ? String(data.error)
          : `${res.status} ${res.statusText}`;
      throw new HttpError(res.status, msg);
    }
    return { data: data as T, headers: res.headers };
  }

  /** The server-sent event stream; EventSource cannot send headers, so the token rides in the query. */
  eventsUrl(): string {
    return `${this.base}/api/events?token=${encodeURIComponent(this.token)}`;
  }
}

/** Event kinds the controller emits (src/controller/*.ts); EventSource needs each by name. */
export const EVENT_KINDS = [
  // Sent first to a client that resumed from an id the controller no longer has: reload.
  "reset",
  "controller.leading",
  "hostvm.appeared",
  "hostvm.changed",
  "hostvm.acquired",
  "hostvm.released",
  "hostvm.rejuvenating",
  "hostvm.rejuvenation.progress",
  "hostvm.rejuvenated",
  "hostvm.rejuvenation.failed",
  "vm.appeared",
  "vm.created",
  "vm.start",
  "vm.stop",
  "vm.deleted",
  // The virtual AMT: a power action answered, and an entry added to a guest's event log.
  "vm.power",
  "vm.event",
  "plan.proposed",
  "plan.created",
  "plan.approved",
  "plan.applying",
  "plan.applied",
  "plan.failed",
  "plan.cancelled",
  "plan.superseded",
  "migration.started",
  "migration.progress",
  "migration.completed",
  "migration.failed",
  "migration.cancelled",
  // Security VMs: an alert raised, a pair's channel switched, a monitor moved to its target.
  "alert",
  "secvm.channel",
  "secvm.monitor.moved",
] as const;

/** Events their own listeners take in place: no refresh of the whole state after them. */
export const IN_PLACE_KINDS: ReadonlySet<string> = new Set(["alert", "secvm.monitor.moved"]);

const TOKEN_KEY = "nestcloud.token";

/** A token from `#token=...` (kept, then wiped from the address bar) or from localStorage. */
export function initialToken(): string | null {
  const fromHash = tokenFromHash();
  if (fromHash) {
    saveToken(fromHash);
    return fromHash;
  }
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Takes `token=...` out of the URL's fragment (so it is not left in the address bar or history). */
export function tokenFromHash(): string | null {
  const hash = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const token = hash.get("token");
  if (!token) return null;
  hash.delete("token");
  const rest = hash.toString();
  window.history.replaceState(
    null,
    "",
    `${window.location.pathname}${window.location.search}${rest ? `#${rest}` : ""}`,
  );
  return token;
}

export function saveToken(token: string | null): void {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // private mode or storage disabled: the token lives for this page only
  }
}

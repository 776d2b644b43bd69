/**
 * Typed clients of the agents' HTTP APIs (a thin fetch wrapper), for the orchestrator, the
 * CLI, tests and, later, the controller. A failed call says whether it reached the agent:
 * AgentHttpError (the agent answered), or AgentUnreachableError with `delivered` "no"
 * (refused or no route: the agent never saw it) or "unknown" (reset, timeout).
 */
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type {
  AlertPageAnswer,
  AttachRequest,
  BeginHandoverAnswer,
  ConfirmOutcome,
  ConsoleIdentity,
  ConsoleInputs,
  ContinuedLogs,
  CreateGuestRequest,
  CreateSecVmExportRequest,
  CreateSecVmRequest,
  DiskBaselineAnswer,
  DiskViewAnswerBody,
  ErrorBody,
  ExecRequest,
  GuestStatus,
  HandoverRequest,
  HandoverView,
  HostVmStatus,
  IncomingStatus,
  Inventory,
  OutgoingPhaseName,
  OutgoingStatus,
  PowerAnswer,
  PowerEventsPage,
  PowerRequest,
  PrepareIncomingRequest,
  ProbesSeenAnswer,
  ProbeWrittenAnswer,
  QmpRequest,
  RamDigest,
  ReservationRequest,
  SecVmExport,
  SecVmStatus,
  ServerStatus,
  StartOutgoingRequest,
  Workload,
} from "./api-types.ts";

export class AgentHttpError extends Error {
  override name = "AgentHttpError";
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(`${method} ${url}: ${status} ${body.error}: ${body.message}`);
  }
}

export class AgentUnreachableError extends Error {
  override name = "AgentUnreachableError";
  constructor(
    readonly method: string,
    readonly url: string,
    /** "no": the agent cannot have seen the request; "unknown": it may have. */
    readonly delivered: "no" | "unknown",
    readonly causeText: string,
  ) {
    super(`${method} ${url}: agent unreachable (${causeText})`);
  }
}

const NOT_DELIVERED = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

export interface ClientOptions {
  /** Bound per call unless a call says otherwise. Default 30 s. */
  timeoutMs?: number;
}

export class AgentClient {
  readonly baseUrl: string;
  constructor(
    baseUrl: string,
    private readonly token: string,
    private readonly opts: ClientOptions = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
  }

  async call<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs ?? this.opts.timeoutMs ?? 30_000),
      });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const code = err.cause?.code ?? err.name;
      throw new AgentUnreachableError(
        method,
        url,
        NOT_DELIVERED.has(code) ? "no" : "unknown",
        `${code}${err.cause?.message ? `: ${err.cause.message}` : ""}`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let b: ErrorBody;
      try {
        b = JSON.parse(text) as ErrorBody;
      } catch {
        b = { statusCode: res.status, error: "http_error", message: text.slice(0, 500) };
      }
      throw new AgentHttpError(method, url, res.status, b);
    }
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }

  /** Streams a binary answer into `file` (created, or appended to with `append`); returns its byte count. */
  async download(
    path: string,
    file: string,
    opts: { append?: boolean; timeoutMs?: number } = {},
  ): Promise<number> {
    const url = `${this.baseUrl}${path}`;
    let res: Response;
    const signal = AbortSignal.timeout(opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000);
    try {
      res = await fetch(url, { headers: { authorization: `Bearer ${this.token}` }, signal });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const code = err.cause?.code ?? err.name;
      throw new AgentUnreachableError("GET", url, NOT_DELIVERED.has(code) ? "no" : "unknown", code);
    }
    if (!res.ok || !res.body) {
      const text = await res.text();
      let b: ErrorBody;
      try {
        b = JSON.parse(text) as ErrorBody;
      } catch {
        b = { statusCode: res.status, error: "http_error", message: text.slice(0, 500) };
      }
      throw new AgentHttpError("GET", url, res.status, b);
    }
    const out = createWriteStream(file, { flags: opts.append ? "a" : "w", mode: 0o600 });
    let n = 0;
    const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
    body.on("data", (b: Buffer) => {
      n += b.length;
    });
    await pipeline(body, out);
    return n;
  }
}

const enc = encodeURIComponent;

export class HostVmAgentClient extends AgentClient {
  /** Writes a co-residency probe file into this host VM's server pool. */
  writeProbe(nonce: string): Promise<ProbeWrittenAnswer> {
    return this.call("POST", "/v1/placement/probes", { nonce });
  }
  /** The probe files this host VM sees in its server's pool. */
  probesSeen(): Promise<ProbesSeenAnswer> {
    return this.call("GET", "/v1/placement/probes");
  }
  removeProbe(nonce: string): Promise<void> {
    return this.call("DELETE", `/v1/placement/probes/${enc(nonce)}`);
  }
  status(): Promise<HostVmStatus> {
    return this.call("GET", "/v1/status");
  }
  /** Asks the agent to exit so that its supervisor starts a fresh one (which adopts the QEMUs). */
  restart(): Promise<{ pid: number }> {
    return this.call("POST", "/v1/restart", {});
  }
  /** The key this agent signs its console handshakes with. */
  consoleIdentity(): Promise<ConsoleIdentity> {
    return this.call("GET", "/v1/console/identity");
  }
  /** The keystrokes a logged serial port's console sessions have had delivered. */
  consoleInputs(guestId: string, deviceId: string, timeoutMs?: number): Promise<ConsoleInputs> {
    return this.call(
      "GET",
      `/v1/guests/${enc(guestId)}/devices/${enc(deviceId)}/console/inputs`,
      undefined,
      timeoutMs,
    );
  }
  /** The WebSocket URL of a logged serial port's console (open it with the bearer token). */
  consoleUrl(guestId: string, deviceId: string): string {
    return `${this.baseUrl.replace(/^http/, "ws")}/v1/guests/${enc(guestId)}/devices/${enc(deviceId)}/console`;
  }
  createSecVmExport(req: CreateSecVmExportRequest): Promise<SecVmExport> {
    return this.call("POST", "/v1/secvm-exports", req, 60_000);
  }
  secVmExports(): Promise<SecVmExport[]> {
    return this.call("GET", "/v1/secvm-exports");
  }
  secVmExport(id: string): Promise<SecVmExport> {
    return this.call("GET", `/v1/secvm-exports/${enc(id)}`);
  }
  secVmExportDiskView(id: string, open: boolean): Promise<DiskViewAnswerBody> {
    return this.call("POST", `/v1/secvm-exports/${enc(id)}/disk-view`, { open }, 60_000);
  }
  deleteSecVmExport(id: string): Promise<void> {
    return this.call("DELETE", `/v1/secvm-exports/${enc(id)}`, undefined, 60_000);
  }
  createSecVm(req: CreateSecVmRequest, timeoutMs = 120_000): Promise<SecVmStatus> {
    return this.call("POST", "/v1/secvms", req, timeoutMs);
  }
  secVms(): Promise<SecVmStatus[]> {
    return this.call("GET", "/v1/secvms");
  }
  secVm(id: string): Promise<SecVmStatus> {
    return this.call("GET", `/v1/secvms/${enc(id)}`);
  }
  /** A target's disk baseline as security VM `id` holds it (for the target's next monitor). */
  secVmDiskBaseline(id: string, guestId: string): Promise<DiskBaselineAnswer> {
    return this.call("GET", `/v1/secvms/${enc(id)}/disk-baseline?guestId=${enc(guestId)}`, undefined, 20_000);
  }
  deleteSecVm(id: string): Promise<void> {
    return this.call("DELETE", `/v1/secvms/${enc(id)}`, undefined, 120_000);
  }
  /** Alerts after `after` (0: from the oldest kept); with waitMs, waits that long for one. */
  secVmAlerts(
    id: string,
    q: { after?: number; limit?: number; waitMs?: number } = {},
  ): Promise<AlertPageAnswer> {
    const qs = Object.entries(q)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join("&");
    return this.call(
      "GET",
      `/v1/secvms/${enc(id)}/alerts${qs ? `?${qs}` : ""}`,
      undefined,
      (q.waitMs ?? 0) + 10_000,
    );
  }
  createGuest(req: CreateGuestRequest, timeoutMs = 180_000): Promise<GuestStatus> {
    return this.call("POST", "/v1/guests", req, timeoutMs);
  }
  guest(guestId: string): Promise<GuestStatus> {
    return this.call("GET", `/v1/guests/${enc(guestId)}`);
  }
  startGuest(guestId: string): Promise<GuestStatus> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/start`, {}, 180_000);
  }
  stopGuest(guestId: string): Promise<GuestStatus> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/stop`, {}, 60_000);
  }
  deleteGuest(guestId: string): Promise<void> {
    return this.call("DELETE", `/v1/guests/${enc(guestId)}`, undefined, 60_000);
  }
  startWorkload(guestId: string, w: Workload): Promise<GuestStatus> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/workloads`, w);
  }
  stopWorkload(guestId: string, kind: Workload["kind"]): Promise<GuestStatus> {
    return this.call("DELETE", `/v1/guests/${enc(guestId)}/workloads/${kind}`);
  }
  exec(guestId: string, req: ExecRequest): Promise<{ output: string; exitCode: number }> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/exec`, req, (req.timeoutMs ?? 10_000) + 5000);
  }
  qmp(guestId: string, req: QmpRequest): Promise<{ return: unknown }> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/qmp`, req);
  }
  /** A virtual AMT action (a shutdown waits up to its waitMs; rescue and back restart QEMU). */
  power(guestId: string, req: PowerRequest): Promise<PowerAnswer> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/power`, req, (req.waitMs ?? 30_000) + 60_000);
  }
  inventory(guestId: string): Promise<Inventory> {
    return this.call("GET", `/v1/guests/${enc(guestId)}/inventory`);
  }
  /** What the guests here did (powered off, reset, panicked, booted) after `after`. */
  powerEvents(after: number): Promise<PowerEventsPage> {
    return this.call("GET", `/v1/power/events?after=${after}`);
  }
  startOutgoing(guestId: string, req: StartOutgoingRequest): Promise<OutgoingStatus> {
    return this.call("POST", `/v1/guests/${enc(guestId)}/outgoing`, req, (req.waitMs ?? 0) + 30_000);
  }
  outgoing(
    migrationId: string,
    wait?: { waitMs: number; unless: OutgoingPhaseName },
  ): Promise<OutgoingStatus> {
    const q = wait ? `?waitMs=${wait.waitMs}&unless=${wait.unless}` : "";
    return this.call("GET", `/v1/outgoing/${enc(migrationId)}${q}`, undefined, (wait?.waitMs ?? 0) + 30_000);
  }
  cancelOutgoing(migrationId: string, reason?: string): Promise<OutgoingStatus> {
    return this.call("POST", `/v1/outgoing/${enc(migrationId)}/cancel`, reason ? { reason } : {}, 90_000);
  }
  continueOutgoing(migrationId: string): Promise<OutgoingStatus> {
    return this.call("POST", `/v1/outgoing/${enc(migrationId)}/continue`, {});
  }
  postcopyOutgoing(migrationId: string): Promise<OutgoingStatus> {
    return this.call("POST", `/v1/outgoing/${enc(migrationId)}/postcopy`, {});
  }
  confirmOutgoing(migrationId: string, outcome: ConfirmOutcome): Promise<OutgoingStatus> {
    return this.call("POST", `/v1/outgoing/${enc(migrationId)}/confirm`, { outcome }, 60_000);
  }
  /** The completed, paused source's RAM digest (the orchestrator's check before finish). */
  outgoingRamDigest(migrationId: string): Promise<RamDigest> {
    return this.call("GET", `/v1/outgoing/${enc(migrationId)}/ram-digest`, undefined, 60_000);
  }
  /** The loaded, never-started destination's RAM digest. */
  incomingRamDigest(migrationId: string): Promise<RamDigest> {
    return this.call("GET", `/v1/incoming/${enc(migrationId)}/ram-digest`, undefined, 60_000);
  }
  prepareIncoming(req: PrepareIncomingRequest): Promise<IncomingStatus> {
    return this.call("POST", "/v1/incoming", req, 60_000);
  }
  /** `renew` extends the incoming's lease (the orchestrator's heartbeat); observers leave it off. */
  incoming(migrationId: string, renew = false, timeoutMs?: number): Promise<IncomingStatus> {
    return this.call(
      "GET",
      `/v1/incoming/${enc(migrationId)}${renew ? "?renew=true" : ""}`,
      undefined,
      timeoutMs,
    );
  }
  finishIncoming(
    migrationId: string,
    opts: { arm?: boolean; timeoutMs?: number } = {},
  ): Promise<IncomingStatus> {
    return this.call(
      "POST",
      `/v1/incoming/${enc(migrationId)}/finish`,
      opts,
      (opts.timeoutMs ?? 30_000) + 5000,
    );
  }
  /**
   * Post-copy, the source paused before the switch: the destination appends what the
   * source's serial logs gained since it armed (their final bytes). Answers the bytes added.
   */
  continueIncomingLogs(migrationId: string, timeoutMs = 10_000): Promise<ContinuedLogs> {
    return this.call("POST", `/v1/incoming/${enc(migrationId)}/serial-logs`, {}, timeoutMs);
  }
  abortIncoming(migrationId: string, timeoutMs = 30_000): Promise<IncomingStatus> {
    return this.call("DELETE", `/v1/incoming/${enc(migrationId)}`, undefined, timeoutMs);
  }
  /** A disk's image (read-only disks, or any disk of a stopped guest) into `file`. */
  downloadDiskImage(guestId: string, deviceId: string, file: string, timeoutMs = 600_000): Promise<number> {
    return this.download(`/v1/guests/${enc(guestId)}/devices/${enc(deviceId)}/image`, file, { timeoutMs });
  }
  /** A logged serial port's log so far (from byte `from` on), appended to `file` with `append`. */
  downloadSerialLog(
    guestId: string,
    deviceId: string,
    file: string,
    opts: { append?: boolean; timeoutMs?: number; from?: number } = {},
  ): Promise<number> {
    const q = opts.from ? `?from=${opts.from}` : "";
    return this.download(`/v1/guests/${enc(guestId)}/devices/${enc(deviceId)}/log${q}`, file, opts);
  }
}

export class ServerAgentClient extends AgentClient {
  /** Makes a host VM one of this server's (the underlying cloud moved it here). */
  attachHostVm(hostVm: string, req: AttachRequest): Promise<void> {
    return this.call("PUT", `/v1/hostvms/${enc(hostVm)}`, req);
  }
  /** The host VM left this server (refused while it holds guests' memory). */
  detachHostVm(hostVm: string): Promise<void> {
    return this.call("DELETE", `/v1/hostvms/${enc(hostVm)}`);
  }
  status(): Promise<ServerStatus> {
    return this.call("GET", "/v1/status");
  }
  register(hostVm: string, url: string, pid: number): Promise<void> {
    return this.call("POST", `/v1/hostvms/${enc(hostVm)}/register`, { url, pid });
  }
  reserve(req: ReservationRequest): Promise<unknown> {
    return this.call("POST", "/v1/reservations", req);
  }
  release(hostVm: string, guestId: string, timeoutMs?: number): Promise<void> {
    return this.call("DELETE", `/v1/reservations/${enc(hostVm)}/${enc(guestId)}`, undefined, timeoutMs);
  }
  beginHandover(req: HandoverRequest): Promise<BeginHandoverAnswer> {
    return this.call("POST", "/v1/handovers", req);
  }
  commitHandover(handoverId: string): Promise<HandoverView> {
    return this.call("POST", `/v1/handovers/${enc(handoverId)}/commit`, {});
  }
  abortHandover(handoverId: string, timeoutMs?: number): Promise<HandoverView> {
    return this.call("POST", `/v1/handovers/${enc(handoverId)}/abort`, {}, timeoutMs);
  }
}

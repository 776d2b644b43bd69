// The setup the console tests (and bench:console) share: a testbed (server a with h1 and h2; server b with h1 when
// moves must cross servers), a controller on it that plans nothing by itself, and one running
// guest g1 of tenant acme on a-h1 with a tenant token. `held` is filled as each part comes up,
// so the caller's teardown stops what started even when a later step fails. Also the moves
// beyond a plain migration: a co-migration with a partner guest, a host VM's rejuvenation.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { HostVmAgentClient, testbedToken } from "../../src/agent/index.ts";
import { ConsoleClientSession, type Step } from "../../src/console/index.ts";
import { readTestbedState } from "../../src/testbed/index.ts";
import { api, type ControllerProcess, startControllerProcess, until } from "../support/controller-process.ts";
import { type Bed, bringUp } from "./testbed-helpers.ts";

export interface ConsoleBedParts {
  bed?: Bed;
  ctl?: ControllerProcess;
}

export async function bringUpConsoleBed(
  dataDir: string,
  held: ConsoleBedParts,
  opts: {
    serverB?: boolean;
    /** The controller's log level (its log is where the agents' pauses are read). */
    log?: "debug" | "info";
    /** How long g1 may take to boot. */
    bootMs?: number;
  } = {},
): Promise<{ bed: Bed; ctl: ControllerProcess; tenant: string }> {
  const bed = await bringUp({
    servers: [
      {
        name: "a",
        hostVms: [
          { name: "h1", cpus: 1, memoryMiB: 1024 },
          { name: "h2", cpus: 1, memoryMiB: 1024 },
        ],
      },
      // Pre-copy and post-copy go to another server (on one server the RAM is in its pool).
      ...(opts.serverB ? [{ name: "b", hostVms: [{ name: "h1", cpus: 1, memoryMiB: 1024 }] }] : []),
    ],
  });
  held.bed = bed;
  // No planning round during the test: the only moves are the ones asked for.
  const ctl = await startControllerProcess(
    [
      ...["--provider", "testbed", "--testbed", bed.state.stateDir],
      ...["--data-dir", dataDir, "--port", "0", "--interval", "3600"],
    ],
    90_000,
    { NESTCLOUD_LOG: opts.log ?? "debug" },
  );
  held.ctl = ctl;
  const created = await api(ctl, "POST", "/api/vms", {
    id: "g1",
    tenant: "acme",
    mipsPerVcpu: 800,
    memoryMiB: 192,
    hostVm: "a-h1",
    automation: "manual",
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const tenant = (await api(ctl, "POST", "/api/tokens", { role: "tenant", tenant: "acme" })).body
    .token as string;
  await until(
    "g1 running",
    async () => ((await api(ctl, "GET", "/api/vms/g1")).body.powerState === "running" ? true : undefined),
    opts.bootMs ?? 60_000,
    500,
  );
  return { bed, ctl, tenant };
}

/**
 * A console client of guest g1 in this process (the session the CLI and the dashboard run),
 * reconnecting to the controller with the same session; what it saw and when.
 */
export class ConsoleBedClient {
  readonly session = new ConsoleClientSession({ keyboard: true });
  readonly chunks: Buffer[] = [];
  /** Arrival times (performance.now()) of output events. */
  readonly times: number[] = [];
  /**
   * When (performance.now()) the steps of each re-attach reached this client: the source's
   * "moved" notice, the relay's "reattaching" and "agent" (it reached the destination agent),
   * the new handshake done ("attached"); made before broken, the relay's "standby" (before the
   * move) and "switched" (after "moved"). bench:console splits a move's stall with these.
   */
  readonly marks: Array<{
    at: number;
    what: "moved" | "reattaching" | "agent" | "attached" | "standby" | "switched";
  }> = [];
  attaches = 0;
  /** The client's link to the controller closed under it (the relay gave up on it): it reconnected. */
  readonly linkDrops: Array<{ code: number; reason: string }> = [];
  /** The serial stream's offset of the first byte in `chunks` (null before any output). */
  firstOffset: number | null = null;
  private ws: WebSocket | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly log?: (line: string) => void,
  ) {}

  text(): string {
    return Buffer.concat(this.chunks).toString("latin1");
  }

  private apply = (s: Step) => {
    for (const e of s.events) {
      const at = performance.now();
      if (e.kind === "output") {
        this.firstOffset ??= e.offset;
        this.chunks.push(Buffer.from(e.bytes));
        this.times.push(at);
      } else if (e.kind === "attached") {
        this.attaches++;
        this.marks.push({ at, what: "attached" });
      } else if (e.kind === "notice" && e.notice.kind === "moved") this.marks.push({ at, what: "moved" });
      else if (
        e.kind === "relay" &&
        (e.message.t === "reattaching" ||
          e.message.t === "agent" ||
          e.message.t === "standby" ||
          e.message.t === "switched")
      )
        this.marks.push({ at, what: e.message.t });
    }
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const t of s.sendText) ws.send(JSON.stringify(t));
    for (const b of s.send) ws.send(b);
  };

  connect(): void {
    const ws = new WebSocket(`${this.url.replace(/^http/, "ws")}/api/vms/g1/console`, {
      headers: { authorization: `Bearer ${this.token}` },
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on("open", () => void this.session.start().then(this.apply));
    ws.on("message", (data, isBinary) => {
      const b = data as Buffer;
      void (isBinary ? this.session.onBinary(b) : this.session.onText(b.toString("utf8"))).then(
        this.apply,
        (e: Error) => {
          // Without a log (tests), a session error stays an unhandled rejection: it fails the run.
          if (!this.log) throw e;
          this.log(`  client error: ${e.message}`);
        },
      );
    });
    ws.on("close", (code, reason) => {
      if (this.closed) return;
      this.linkDrops.push({ code, reason: reason.toString("utf8") });
      this.log?.(`  the link to the controller closed (${code}): reconnecting with the same session`);
      setTimeout(() => this.connect(), 500);
    });
    ws.on("error", () => {});
  }

  type(s: string): void {
    void this.session.type(Buffer.from(s, "latin1")).then(this.apply);
  }

  close(): void {
    this.closed = true;
    this.ws?.close(1000, "done");
  }
}

/**
 * g1's serial log where it runs now: every host VM's agent in the testbed's current state is
 * asked (a rejuvenation may have replaced its host VM, with an agent at a new URL).
 */
export async function serialLogOfG1(bed: Bed): Promise<string> {
  const state = readTestbedState(bed.state.stateDir) ?? bed.state;
  for (const h of state.hostVms) {
    if (!h.agent?.url) continue;
    const st = await new HostVmAgentClient(h.agent.url, testbedToken(state), { timeoutMs: 5000 })
      .guest("g1")
      .catch(() => null);
    if (st?.state !== "running") continue;
    return readFileSync(st.endpoints.find((e) => e.id === "console")!.log!).toString("latin1");
  }
  throw new Error("g1 runs on no host VM of the testbed");
}

/** A second guest of acme (g1's partner in co-migrations), on `hostVm`, running. */
/**
 * Moves g1 through the API and waits for its migration to complete; its pause as the agents
 * measured it (the migration's `detail.pauseMs`), null where not measured.
 */
export async function migrateG1(
  c: ControllerProcess,
  to: string,
  mechanism: "instant" | "precopy" | "postcopy",
): Promise<{ id: string; pausedMs: number | null }> {
  const moved = await api(c, "POST", "/api/vms/g1/migrate", { to, mechanism });
  if (moved.status !== 202)
    throw new Error(`${mechanism} to ${to}: ${moved.status} ${JSON.stringify(moved.body)}`);
  const plan = moved.body.plan as number;
  const m = await until(
    `${mechanism} to ${to}`,
    async () => {
      const list = (await api(c, "GET", "/api/migrations")).body as Array<{
        id: string;
        plan: number;
        status: string;
        detail: { pauseMs?: number | null };
      }>;
      const x = list.find((y) => y.plan === plan);
      if (x?.status === "failed") throw new Error(`migration failed: ${JSON.stringify(x)}`);
      return x?.status === "completed" ? x : undefined;
    },
    300_000,
    100,
  );
  return { id: m.id, pausedMs: m.detail.pauseMs ?? null };
}

export async function createPartner(ctl: ControllerProcess, id: string, hostVm: string): Promise<void> {
  const r = await api(ctl, "POST", "/api/vms", {
    id,
    tenant: "acme",
    mipsPerVcpu: 800,
    memoryMiB: 192,
    hostVm,
    automation: "manual",
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  await until(
    `${id} running`,
    async () => ((await api(ctl, "GET", `/api/vms/${id}`)).body.powerState === "running" ? true : undefined),
    60_000,
    500,
  );
}

/**
 * g1 and its partner co-migrated by instant handover from one host VM of server a to another:
 * what the agents' plane runs for a co-migrate action (MigrationBook.startGroup: each source
 * pauses before its switchover, one barrier, none switches before all are ready). Answers
 * each guest's pause and whether neither ran at the destination before both sources stopped.
 */
export async function coMigrateWithPartner(
  bed: Bed,
  partner: string,
  from: string,
  to: string,
): Promise<{ pausedMs: number | null; partnerPausedMs: number | null; lockStep: boolean }> {
  const [o1, o2] = await Promise.all(
    bed.orch
      .startGroup(
        ["g1", partner].map((guestId) => ({
          guestId,
          from: bed.ep("a", from),
          to: bed.ep("a", to),
          mechanism: "instant" as const,
        })),
      )
      .map((h) => h.done),
  );
  const lastStop = Math.max(o1.source.timing.stoppedAt!, o2.source.timing.stoppedAt!);
  const firstResume = Math.min(o1.destination.resumedAt!, o2.destination.resumedAt!);
  return { pausedMs: o1.downtimeMs, partnerPausedMs: o2.downtimeMs, lockStep: firstResume > lastStop };
}

export interface RejuvenationResult {
  guests: Array<{ guest: string; outcome: string; pauseMs: number | null }>;
  maxPauseMs: number | null;
  agentRestartMs: number | null;
  replacement?: string | null;
  spare: string | null;
}

/** A rejuvenation of a host VM through the controller's API, awaited until its plan action ended. */
export async function rejuvenateHostVm(
  ctl: ControllerProcess,
  hostVm: string,
  mode: "in-place" | "evacuate",
): Promise<{ status: string; error: string | null; result?: RejuvenationResult }> {
  const q = await api(ctl, "POST", `/api/hostvms/${hostVm}/rejuvenate`, { mode });
  assert.equal(q.status, 202, JSON.stringify(q.body));
  return until(
    `the ${mode} rejuvenation of ${hostVm} to end`,
    async () => {
      const p = (await api(ctl, "GET", `/api/plans/${q.body.plan}`)).body as {
        actions: Array<{ status: string; error: string | null; result?: RejuvenationResult }>;
      };
      const x = p.actions[0];
      return x.status === "done" || x.status === "failed" ? x : undefined;
    },
    300_000,
    200,
  );
}

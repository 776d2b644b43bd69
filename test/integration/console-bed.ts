// The setup the console tests (and bench:console) share: a testbed (server a with h1 and h2; server b with h1 when
// moves must cross servers), a controller on it that plans nothing by itself, and one running
// guest g1 of tenant acme on a-h1 with a tenant token. `held` is filled as each part comes up,
// so the caller's teardown stops what started even when a later step fails.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { ConsoleClientSession, type Step } from "../../src/console/index.ts";
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
    ws.on("close", (code) => {
      if (this.closed) return;
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

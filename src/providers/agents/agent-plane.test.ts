// The agent data plane's book-keeping without agents: guest load from QEMU CPU seconds
// (load.ts), and migrations as the orchestrator reports them (migrations.ts, against a
// scripted orchestrator).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  MigrationFailedError,
  type MigrationHandle,
  type MigrationOrchestrator,
  type MigrationOutcome,
  type MigrationProgressView,
} from "../../agent/index.ts";
import { ProviderError } from "../types.ts";
import { CpuMeter } from "./load.ts";
import { MigrationBook, type StartMove } from "./migrations.ts";

describe("CpuMeter: cores from QEMU CPU seconds", () => {
  test("a rate needs a window of 1.5 s; until then the last rate (0 at first)", () => {
    const m = new CpuMeter();
    assert.equal(m.observe("g", 100, 10, 1000), 0);
    assert.equal(m.observe("g", 100, 10.5, 1001), 0, "1 s is too short a window");
    assert.equal(m.observe("g", 100, 11, 1002), 0.5);
    assert.equal(m.observe("g", 100, 11.1, 1002.5), 0.5, "short window: the last rate");
    assert.equal(m.observe("g", 100, 13, 1004), 1);
  });

  test("no reading keeps the last rate", () => {
    const m = new CpuMeter();
    m.observe("g", 100, 0, 0);
    assert.equal(m.observe("g", 100, 1, 2), 0.5);
    assert.equal(m.observe("g", null, null, 4), 0.5);
    assert.equal(m.observe("g", 100, null, 6), 0.5);
  });

  test("a new QEMU (migrated, restarted) starts a new window; its counter starting at 0 is no negative rate", () => {
    const m = new CpuMeter();
    m.observe("g", 100, 50, 0);
    assert.equal(m.observe("g", 100, 52, 2), 1);
    // Moved: the destination QEMU's counter is small. Keeps the last rate meanwhile.
    assert.equal(m.observe("g", 200, 0.1, 3), 1);
    assert.equal(m.observe("g", 200, 0.6, 5), 0.25);
    // Same pid but the counter went back (pid reused): a new window too.
    assert.equal(m.observe("g", 200, 0.2, 6), 0.25);
    assert.equal(m.observe("g", 200, 0.2, 8), 0);
  });

  test("guests are independent, and retain() forgets the gone ones", () => {
    const m = new CpuMeter();
    m.observe("a", 1, 0, 0);
    m.observe("b", 2, 0, 0);
    assert.equal(m.observe("a", 1, 2, 2), 1);
    assert.equal(m.observe("b", 2, 0.2, 2), 0.1);
    m.retain(new Set(["b"]));
    assert.equal(m.observe("a", 1, 4, 4), 0, "a starts over");
    assert.equal(m.observe("b", 2, 0.2, 4), 0);
  });
});

/** An orchestrator whose runs the test drives by hand. */
class ScriptedOrchestrator {
  readonly runs: Array<{
    id: string;
    req: Parameters<MigrationOrchestrator["start"]>[0];
    resolve: (o: MigrationOutcome) => void;
    reject: (e: Error) => void;
    cancelled: string | undefined;
    refuseCancel: boolean;
  }> = [];

  start(req: Parameters<MigrationOrchestrator["start"]>[0]): MigrationHandle {
    const id = `m-${req.guestId}-${this.runs.length + 1}`;
    let resolve!: (o: MigrationOutcome) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<MigrationOutcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {});
    const run = { id, req, resolve, reject, cancelled: undefined as string | undefined, refuseCancel: false };
    this.runs.push(run);
    return {
      migrationId: id,
      done,
      cancel: async (reason) => {
        if (run.refuseCancel) throw new MigrationFailedError("past switchover", id, "refused", "destination");
        run.cancelled = reason;
        reject(new MigrationFailedError(`cancelled: ${reason}`, id, "cancelled", "source"));
      },
    };
  }
}

const flush = () => new Promise((r) => setImmediate(r));

function progress(percent: number, remainingBytes: number, etaMs: number | null): MigrationProgressView {
  return {
    status: "active",
    elapsedMs: 0,
    totalBytes: 0,
    transferredBytes: 0,
    remainingBytes,
    pass: 1,
    dirtyRateBytesPerSec: 0,
    throughputBytesPerSec: 0,
    expectedDowntimeMs: null,
    percent,
    etaMs,
    stalled: false,
  };
}

describe("MigrationBook: the orchestrator's runs as provider migrations", () => {
  const endpoint = (hostVm: string) =>
    ({
      server: "a",
      hostVm,
      hostVmUrl: "http://x",
      serverUrl: "http://y",
      address: "127.0.0.1",
    }) as StartMove["source"];
  const move = (guest: string, mechanism: StartMove["mechanism"] = "precopy"): StartMove => ({
    guest,
    from: "a-h1",
    to: "a-h2",
    source: endpoint("h1"),
    destination: endpoint("h2"),
    mechanism,
    estimateSeconds: 20,
    memoryBytes: 256 * 1024 * 1024,
  });

  function book() {
    const orch = new ScriptedOrchestrator();
    let now = 100;
    const logs: string[] = [];
    const b = new MigrationBook(
      orch as unknown as MigrationOrchestrator,
      () => now,
      (m) => logs.push(m),
    );
    return { orch, b, logs, at: (t: number) => (now = t) };
  }

  test("progress: prepared 0.1, QEMU's transfer between, 0.9 before finish, 1 when completed; never back", async () => {
    const { orch, b, at } = book();
    const m = b.start(move("g1"));
    assert.deepEqual(
      [m.status, m.progress, m.remainingBytes, m.etaSeconds, m.startedAt],
      ["running", 0, 256 * 1024 * 1024, 20, 100],
    );
    const run = orch.runs[0];
    assert.equal(run.req.mechanism, "precopy");
    at(105);
    assert.equal(b.get(m.id)?.etaSeconds, 15, "the planner's estimate counts down until QEMU has an ETA");
    await run.req.hooks?.afterPrepare?.({} as never);
    assert.equal(b.get(m.id)?.progress, 0.1);
    run.req.onProgress?.(progress(50, 1000, 4000));
    assert.equal(b.get(m.id)?.progress, 0.5);
    assert.equal(b.get(m.id)?.remainingBytes, 1000);
    assert.equal(b.get(m.id)?.etaSeconds, 4);
    run.req.onProgress?.(progress(20, 3000, 6000));
    assert.equal(b.get(m.id)?.progress, 0.5, "a new pass does not move progress back");
    await run.req.hooks?.beforeFinish?.({} as never);
    assert.equal(b.get(m.id)?.progress, 0.9);
    assert.equal(b.get(m.id)?.remainingBytes, 0);
    assert.equal(b.running().length, 1);
    at(110);
    run.resolve({ endToEndMs: 10_000, downtimeMs: 30 } as MigrationOutcome);
    await flush();
    const done = b.get(m.id)!;
    assert.deepEqual(
      [done.status, done.progress, done.remainingBytes, done.etaSeconds, done.finishedAt, done.error],
      ["completed", 1, 0, 0, 110, undefined],
    );
    assert.equal(b.running().length, 0);
    assert.deepEqual(
      b.views().map((v) => v.id),
      [m.id],
    );
  });

  test("an instant handover has nothing to copy", () => {
    const { b } = book();
    assert.equal(b.start(move("g1", "instant")).remainingBytes, 0);
  });

  test("failure and cancellation are told apart; where the guest is left goes with the error", async () => {
    const { orch, b } = book();
    const failed = b.start(move("g1"));
    const lost = b.start(move("g2"));
    const cancelled = b.start(move("g3"));
    orch.runs[0].reject(new MigrationFailedError("destination died", failed.id, "failed", "source"));
    orch.runs[1].reject(new MigrationFailedError("finish unknown", lost.id, "unresolved", "unknown"));
    await b.cancel(cancelled.id);
    await flush();
    assert.equal(orch.runs[2].cancelled, "cancelled by the controller");
    assert.deepEqual([b.get(failed.id)?.status, b.get(failed.id)?.error], ["failed", "destination died"]);
    assert.deepEqual(
      [b.get(lost.id)?.status, b.get(lost.id)?.error],
      ["failed", "finish unknown (the guest is at: unknown)"],
    );
    assert.equal(b.get(cancelled.id)?.status, "cancelled");
    assert.equal(b.running().length, 0);
  });

  test("cancel: unknown id, finished one, and past the switchover are refused as provider errors", async () => {
    const { orch, b } = book();
    await assert.rejects(b.cancel("nope"), (e) => e instanceof ProviderError && e.code === "not-found");
    const m = b.start(move("g1"));
    orch.runs[0].refuseCancel = true;
    await assert.rejects(b.cancel(m.id), (e) => e instanceof ProviderError && e.code === "conflict");
    assert.equal(b.get(m.id)?.status, "running", "still running: the orchestrator decides");
    orch.runs[0].resolve({ endToEndMs: 1, downtimeMs: 1 } as MigrationOutcome);
    await flush();
    await assert.rejects(b.cancel(m.id), (e) => e instanceof ProviderError && e.code === "conflict");
  });

  test("settle waits for running moves, up to its timeout", async () => {
    const { orch, b } = book();
    b.start(move("g1"));
    const t0 = Date.now();
    await b.settle(50);
    assert.ok(Date.now() - t0 >= 45, "timed out while the move ran");
    setTimeout(() => orch.runs[0].resolve({ endToEndMs: 1, downtimeMs: 1 } as MigrationOutcome), 10);
    await b.settle(5000);
    assert.equal(b.running().length, 0);
  });

  test("finished migrations are kept up to a bound, running ones always", async () => {
    const { orch, b } = book();
    for (let i = 0; i < 205; i++) b.start(move(`g${i}`));
    for (const r of orch.runs.slice(1)) r.resolve({ endToEndMs: 1, downtimeMs: 1 } as MigrationOutcome);
    await flush();
    const views = b.views();
    assert.equal(views.filter((v) => v.status === "completed").length, 200);
    assert.equal(views.filter((v) => v.status === "running").length, 1);
    assert.equal(views.find((v) => v.status === "running")?.guest, "g0");
  });
});

/**
 * Moves a guest between host VMs through the agents' HTTP APIs; the one place that knows
 * which agent to call in which order and how to undo each step.
 *
 *   1. accounting: same server -> begin a handover at the server agent (room on the
 *      destination host VM); across servers -> reserve at the destination's server agent;
 *   2. prepare: the destination agent starts QEMU paused (-S -incoming defer): on the same
 *      pool file (instant) or its own (pre-copy), and answers the URI it listens on;
 *   3. perform: the source agent migrates (unix socket for instant, TCP for pre-copy);
 *      post-copy: arm the destination, then switch; co-migration: wait at pre-switchover
 *      until every partner is there, then continue all;
 *   4. decide: the source completed -> finish the destination (it starts running) ->
 *      confirm the source (stop it) -> commit the accounting. The source failed or was
 *      cancelled -> it already runs again -> abort the destination -> undo the accounting.
 *
 * The decision point is finish. If it fails and the destination agent provably never got
 * the request (connection refused) or answered an error, the destination never ran (it
 * was started with -S), so the source resumes: a rollback with the guest's memory intact,
 * even for an instant handover that shares the RAM file. Only a finish whose fate is
 * unknown (reset or timeout mid-request) is not rolled back: the source stays paused and
 * the outcome is "unresolved" (never two running copies).
 *
 * Agents die and are restarted by their supervisors; a restarted agent adopts its QEMUs.
 * So an agent that stops answering is waited for (agentRecoveryMs) rather than given up
 * at once: the source's migration goes on in QEMU meanwhile and the destination's lease
 * is kept alive, so that the restarted source agent can report where the migration stands
 * and the move is finished or rolled back as usual. If the orchestrator gives up (or dies)
 * after the source completed, the source agent settles the migration itself once nobody
 * confirms it (it was told the destination: see outgoing.ts): it fences the destination
 * and resumes the guest, or stops its copy if the destination already runs it.
 *
 * One migration is a Run (orchestrator/run.ts), one method per phase; every time bound is
 * named in orchestrator/timing.ts.
 */
import { randomBytes } from "node:crypto";
import { Run } from "./orchestrator/run.ts";
import {
  Barrier,
  type MigrateRequest,
  MigrationFailedError,
  type MigrationHandle,
  type MigrationOutcome,
  type OrchestratorOptions,
} from "./orchestrator/types.ts";

export { MIGRATION_TIMING } from "./orchestrator/timing.ts";
export {
  type AgentEndpoint,
  type Mechanism,
  type MigrateRequest,
  MigrationFailedError,
  type MigrationHandle,
  type MigrationHooks,
  type MigrationOutcome,
  type OrchestratorOptions,
} from "./orchestrator/types.ts";

export class MigrationOrchestrator {
  private readonly log: (msg: string) => void;
  constructor(
    private readonly token: string,
    private readonly opts: OrchestratorOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
  }

  migrate(req: MigrateRequest): Promise<MigrationOutcome> {
    return this.start(req).done;
  }

  start(req: MigrateRequest, barrier?: Barrier): MigrationHandle {
    const migrationId = `m-${req.guestId}-${randomBytes(4).toString("hex")}`;
    const run = new Run(this.token, this.opts, this.log, migrationId, req, barrier);
    const done = run.execute();
    done.catch(() => {});
    return { migrationId, done, cancel: (reason) => run.cancel(reason ?? "cancelled on request") };
  }

  /**
   * Co-migration: every guest pauses before switchover and none switches until all are
   * ready; if any fails before that, the others are cancelled (their guests resume at their
   * sources). After the release each finishes on its own.
   */
  async coMigrate(reqs: MigrateRequest[]): Promise<MigrationOutcome[]> {
    const handles = this.startGroup(reqs);
    const settled = await Promise.allSettled(handles.map((h) => h.done));
    const errors = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : []));
    if (errors.length > 0) {
      // Name the partner that failed first-hand, not only those cancelled because of it.
      const root = errors.find((e) => !/co-migration partner/.test(e.message)) ?? errors[0];
      const where = (e: Error) => (e instanceof MigrationFailedError ? e.guestAt : "unknown");
      const at =
        errors.every((e) => where(e) === "source") && errors.length === reqs.length ? "source" : "unknown";
      throw new MigrationFailedError(
        `co-migration of ${reqs.map((r) => r.guestId).join(", ")} failed: ${root.message}` +
          (errors.length > 1 ? ` (${errors.length - 1} partner(s) cancelled)` : ""),
        root instanceof MigrationFailedError ? root.migrationId : handles[0].migrationId,
        root instanceof MigrationFailedError ? root.outcome : "failed",
        at,
      );
    }
    return settled.map((s) => (s as PromiseFulfilledResult<MigrationOutcome>).value);
  }

  /**
   * Starts a co-migration and returns each member's handle (a caller that tracks members one
   * by one, as the controller's agents' plane does): one barrier at pre-switchover, and a
   * member that fails before the release cancels the others.
   */
  startGroup(reqs: MigrateRequest[]): MigrationHandle[] {
    const barrier = new Barrier(reqs.length);
    const handles = reqs.map((r) => this.start(r, barrier));
    for (const h of handles) {
      h.done.catch((e: Error) => {
        if (barrier.released) return;
        // Before the release a partner's failure cancels the whole group: no guest of it
        // may run at its destination while another stays behind.
        barrier.abort(new Error(`co-migration partner ${h.migrationId} failed: ${e.message}`));
        for (const other of handles) {
          if (other !== h) void other.cancel(`co-migration partner ${h.migrationId} failed`).catch(() => {});
        }
      });
    }
    return handles;
  }
}

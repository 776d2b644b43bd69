/**
 * Plans and their actions: the executor's journal. An action is marked running before the
 * provider is called and gets the provider's ids (in its payload) and its outcome after.
 */
import type { Kysely, Selectable } from "kysely";
import type { ActionPayload } from "../../api/schemas/plans.ts";
import type { Database, PlanActionsTable, PlansTable } from "../schema.ts";

export interface StoredPlan {
  readonly id: number;
  readonly createdAt: number;
  /** proposed, approved, applying, applied, failed, cancelled or superseded. */
  readonly status: string;
  readonly source: string;
  readonly notes: readonly string[];
  readonly epoch: number;
}

export interface StoredAction {
  readonly planId: number;
  readonly idx: number;
  readonly kind: ActionPayload["kind"];
  readonly payload: ActionPayload;
  /** Indices of the actions of the same plan that must be done first. */
  readonly dependsOn: readonly number[];
  /** pending, running, done, failed or cancelled. */
  readonly status: string;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
  readonly error: string | null;
}

/** What a journal entry may change (fields left out stay). */
export type ActionChange = Partial<
  Pick<StoredAction, "payload" | "status" | "startedAt" | "finishedAt" | "error">
>;

export class PlanRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores a plan and its actions (each pending); run it in a transaction. Returns the plan's id. */
  async create(
    plan: Omit<StoredPlan, "id">,
    actions: ReadonlyArray<{ payload: ActionPayload; dependsOn: readonly number[] }>,
  ): Promise<number> {
    const row = await this.db
      .insertInto("plans")
      .values({
        created_at: plan.createdAt,
        status: plan.status,
        source: plan.source,
        notes: JSON.stringify(plan.notes),
        epoch: plan.epoch,
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    const planId = Number(row.id);
    for (const [idx, a] of actions.entries()) {
      await this.db
        .insertInto("plan_actions")
        .values({
          plan_id: planId,
          idx,
          kind: a.payload.kind,
          payload: JSON.stringify(a.payload),
          depends_on: JSON.stringify(a.dependsOn),
          status: "pending",
          started_at: null,
          finished_at: null,
          error: null,
        })
        .execute();
    }
    return planId;
  }

  async get(id: number): Promise<StoredPlan | undefined> {
    const row = await this.db.selectFrom("plans").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toPlan(row);
  }

  /** Newest first. */
  async list(opts: { status?: string; limit: number }): Promise<StoredPlan[]> {
    let q = this.db.selectFrom("plans").selectAll().orderBy("id", "desc").limit(opts.limit);
    if (opts.status) q = q.where("status", "=", opts.status);
    return (await q.execute()).map(toPlan);
  }

  async withStatus(status: string): Promise<StoredPlan[]> {
    return (await this.db.selectFrom("plans").selectAll().where("status", "=", status).execute()).map(toPlan);
  }

  /** The id of some plan in one of these states, if there is one. */
  async anyWithStatus(statuses: readonly string[]): Promise<number | undefined> {
    const row = await this.db
      .selectFrom("plans")
      .select("id")
      .where("status", "in", statuses)
      .executeTakeFirst();
    return row && Number(row.id);
  }

  /**
   * Plans the executor advances, in id order: approved and applying ones, and cancelled ones
   * while migrations they started are still running (polled to their end).
   */
  async toAdvance(): Promise<StoredPlan[]> {
    const rows = await this.db
      .selectFrom("plans")
      .selectAll()
      .where((eb) =>
        eb.or([
          eb("status", "in", ["approved", "applying"]),
          eb.and([
            eb("status", "=", "cancelled"),
            eb.exists(
              eb
                .selectFrom("plan_actions")
                .select("plan_actions.idx")
                .whereRef("plan_actions.plan_id", "=", "plans.id")
                .where("plan_actions.status", "=", "running"),
            ),
          ]),
        ]),
      )
      .orderBy("id")
      .execute();
    return rows.map(toPlan);
  }

  /** Sets a plan's status (only if it is `from`, when given); how many plans changed. */
  async setStatus(id: number, status: string, from?: string): Promise<number> {
    let q = this.db.updateTable("plans").set({ status }).where("id", "=", id);
    if (from !== undefined) q = q.where("status", "=", from);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** A plan's actions in order (an action's index is its position). */
  async actions(planId: number): Promise<StoredAction[]> {
    const rows = await this.db
      .selectFrom("plan_actions")
      .selectAll()
      .where("plan_id", "=", planId)
      .orderBy("idx")
      .execute();
    return rows.map(toAction);
  }

  async action(planId: number, idx: number): Promise<StoredAction | undefined> {
    const row = await this.db
      .selectFrom("plan_actions")
      .selectAll()
      .where("plan_id", "=", planId)
      .where("idx", "=", idx)
      .executeTakeFirst();
    return row && toAction(row);
  }

  async updateAction(planId: number, idx: number, change: ActionChange): Promise<void> {
    await this.db
      .updateTable("plan_actions")
      .set({
        payload: change.payload === undefined ? undefined : JSON.stringify(change.payload),
        status: change.status,
        started_at: change.startedAt,
        finished_at: change.finishedAt,
        error: change.error,
      })
      .where("plan_id", "=", planId)
      .where("idx", "=", idx)
      .execute();
  }

  /**
   * Per host VM id, what the journal says about its rejuvenations: when the last one finished
   * (its hypervisor's start), and whether one is pending or running now (the rollout's input).
   */
  async rejuvenations(): Promise<Map<string, { renewedAt?: number; underway: boolean }>> {
    const rows = await this.db
      .selectFrom("plan_actions")
      .innerJoin("plans", "plans.id", "plan_actions.plan_id")
      .select([
        "plan_actions.payload",
        "plan_actions.status",
        "plan_actions.finished_at",
        "plans.status as plan",
      ])
      .where("plan_actions.kind", "=", "rejuvenate")
      .execute();
    const out = new Map<string, { renewedAt?: number; underway: boolean }>();
    for (const r of rows) {
      const p = JSON.parse(r.payload) as ActionPayload;
      if (p.kind !== "rejuvenate") continue;
      const e = out.get(p.hostVm) ?? { underway: false };
      if (r.status === "done" && r.finished_at !== null)
        e.renewedAt = Math.max(e.renewedAt ?? r.finished_at, r.finished_at);
      // Pending counts only in a plan that will run (applying or approved); proposals wait.
      if (
        r.status === "running" ||
        (r.status === "pending" && (r.plan === "applying" || r.plan === "approved"))
      )
        e.underway = true;
      out.set(p.hostVm, e);
    }
    return out;
  }

  /** Cancels a plan's pending actions. */
  async cancelPending(planId: number, at: number): Promise<void> {
    await this.db
      .updateTable("plan_actions")
      .set({ status: "cancelled", finished_at: at })
      .where("plan_id", "=", planId)
      .where("status", "=", "pending")
      .execute();
  }
}

function toPlan(r: Selectable<PlansTable>): StoredPlan {
  return {
    id: Number(r.id),
    createdAt: r.created_at,
    status: r.status,
    source: r.source,
    notes: JSON.parse(r.notes) as string[],
    epoch: Number(r.epoch),
  };
}

function toAction(r: Selectable<PlanActionsTable>): StoredAction {
  return {
    planId: Number(r.plan_id),
    idx: r.idx,
    kind: r.kind as ActionPayload["kind"],
    payload: JSON.parse(r.payload) as ActionPayload,
    dependsOn: JSON.parse(r.depends_on) as number[],
    status: r.status,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
  };
}

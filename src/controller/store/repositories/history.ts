/** The cloud's size and cost over time (provider clock), one row per sample. */
import type { Kysely } from "kysely";
import type { HistorySample } from "../../api/schemas/cloud.ts";
import type { Database, OverviewHistoryTable } from "../schema.ts";

export class HistoryRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores a sample; a second one at the same time is dropped. */
  async insert(s: HistorySample): Promise<void> {
    await this.db
      .insertInto("overview_history")
      .values({ at: s.at, host_vms: s.hostVms, cost_per_hour: s.costPerHour, guests: s.guests })
      .onConflict((oc) => oc.column("at").doNothing())
      .execute();
  }

  async newest(): Promise<HistorySample | undefined> {
    const r = await this.db
      .selectFrom("overview_history")
      .selectAll()
      .orderBy("at", "desc")
      .limit(1)
      .executeTakeFirst();
    return r && toSample(r);
  }

  /** Keeps the newest `rows` samples, drops the older ones. */
  async keepNewest(rows: number): Promise<void> {
    const cut = await this.db
      .selectFrom("overview_history")
      .select("at")
      .orderBy("at", "desc")
      .offset(rows - 1)
      .limit(1)
      .executeTakeFirst();
    if (cut) await this.db.deleteFrom("overview_history").where("at", "<", cut.at).execute();
  }

  /** Samples from `at` on, oldest first. */
  async since(at: number): Promise<HistorySample[]> {
    const rows = await this.db
      .selectFrom("overview_history")
      .selectAll()
      .where("at", ">=", at)
      .orderBy("at")
      .execute();
    return rows.map(toSample);
  }
}

function toSample(r: OverviewHistoryTable): HistorySample {
  return {
    at: Number(r.at),
    hostVms: Number(r.host_vms),
    costPerHour: Number(r.cost_per_hour),
    guests: Number(r.guests),
  };
}

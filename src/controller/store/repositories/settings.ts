/** The cloud's settings (key -> value). */
import type { Kysely } from "kysely";
import type { Automation } from "../../api/schemas/common.ts";
import type { Database } from "../schema.ts";

export class SettingsRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** The cloud's automation level; undefined if it was never set. */
  async automation(): Promise<Automation | undefined> {
    const row = await this.db
      .selectFrom("settings")
      .select("value")
      .where("key", "=", "automation")
      .executeTakeFirst();
    return row?.value as Automation | undefined;
  }

  async setAutomation(value: Automation): Promise<void> {
    await this.db
      .insertInto("settings")
      .values({ key: "automation", value })
      .onConflict((oc) => oc.column("key").doUpdateSet({ value }))
      .execute();
  }
}

/** The provider's own saved state (the simulated world, a testbed's rentals), JSON by key. */
import type { Kysely } from "kysely";
import type { Database } from "../schema.ts";

export class ProviderStateRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async load(key: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom("provider_state")
      .select("value")
      .where("key", "=", key)
      .executeTakeFirst();
    return row?.value;
  }

  /** Saves a state, stamped with the epoch of the leader that wrote it. */
  async save(key: string, value: string, epoch: number): Promise<void> {
    await this.db
      .insertInto("provider_state")
      .values({ key, value, epoch })
      .onConflict((oc) => oc.column("key").doUpdateSet({ value, epoch }))
      .execute();
  }
}

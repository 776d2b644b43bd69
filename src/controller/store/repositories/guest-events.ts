/** The virtual AMT's event log: what happened to each guest and who did it, newest first, bounded per guest. */
import type { Kysely, Selectable } from "kysely";
import type { Database, GuestEventsTable } from "../schema.ts";

/** Rows kept per guest: the oldest go beyond this (checked every PRUNE_EVERY appends of a guest). */
export const GUEST_EVENTS_KEPT = 5000;
const PRUNE_EVERY = 100;

export interface StoredGuestEvent {
  readonly id: number;
  readonly guest: string;
  readonly tenant: string;
  readonly at: number;
  readonly kind: string;
  readonly actor: string | null;
  readonly detail: string;
}

export class GuestEventRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async append(e: Omit<StoredGuestEvent, "id">): Promise<number> {
    const row = await this.db
      .insertInto("guest_events")
      .values({
        guest_id: e.guest,
        tenant: e.tenant,
        at: e.at,
        kind: e.kind,
        actor: e.actor,
        detail: e.detail,
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    const id = Number(row.id);
    if (id % PRUNE_EVERY === 0) await this.keepNewest(e.guest, GUEST_EVENTS_KEPT);
    return id;
  }

  /** One page of a guest's events, newest first, and how many it has. */
  async page(
    guest: string,
    offset: number,
    limit: number,
  ): Promise<{ events: StoredGuestEvent[]; total: number }> {
    const [rows, count] = await Promise.all([
      this.db
        .selectFrom("guest_events")
        .selectAll()
        .where("guest_id", "=", guest)
        .orderBy("id", "desc")
        .offset(offset)
        .limit(limit)
        .execute(),
      this.db
        .selectFrom("guest_events")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("guest_id", "=", guest)
        .executeTakeFirstOrThrow(),
    ]);
    return { events: rows.map(toEvent), total: Number(count.n) };
  }

  /** Drops a guest's oldest events beyond `rows`. */
  async keepNewest(guest: string, rows: number): Promise<void> {
    const cut = await this.db
      .selectFrom("guest_events")
      .select("id")
      .where("guest_id", "=", guest)
      .orderBy("id", "desc")
      .offset(rows - 1)
      .limit(1)
      .executeTakeFirst();
    if (cut)
      await this.db
        .deleteFrom("guest_events")
        .where("guest_id", "=", guest)
        .where("id", "<", cut.id)
        .execute();
  }
}

function toEvent(r: Selectable<GuestEventsTable>): StoredGuestEvent {
  return {
    id: Number(r.id),
    guest: r.guest_id,
    tenant: r.tenant,
    at: Number(r.at),
    kind: r.kind,
    actor: r.actor,
    detail: r.detail,
  };
}

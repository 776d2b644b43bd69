/** Host VMs the controller rents (or found rented: the audit adopts them). */
import type { Kysely, Selectable } from "kysely";
import type { HostVmState } from "../../../model/index.ts";
import type { Database, HostVmsTable } from "../schema.ts";

export interface StoredHostVm {
  readonly id: string;
  readonly type: string;
  /** Physical server, when known. */
  readonly server: string | null;
  readonly state: HostVmState;
  readonly stateSince: number;
  readonly acquiredAt: number;
  /** Acquired explicitly by an operator: released only by the operator or an approved plan. */
  readonly kept: boolean;
}

/** What the provider reports of a host VM (the audit copies it). */
export type ReportedHostVm = Omit<StoredHostVm, "kept">;

export class HostVmRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** In id order; `rented`: without the released ones. */
  async list(opts: { rented?: boolean } = {}): Promise<StoredHostVm[]> {
    let q = this.db.selectFrom("host_vms").selectAll().orderBy("id");
    if (opts.rented) q = q.where("state", "!=", "released");
    return (await q.execute()).map(toHostVm);
  }

  async get(id: string): Promise<StoredHostVm | undefined> {
    const row = await this.db.selectFrom("host_vms").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toHostVm(row);
  }

  async insert(h: StoredHostVm): Promise<void> {
    await this.db
      .insertInto("host_vms")
      .values({ id: h.id, ...columns(h), kept: h.kept ? 1 : 0 })
      .execute();
  }

  /** Copies what the provider reports (type, server, state, times); `kept` stays. */
  async update(h: ReportedHostVm): Promise<void> {
    await this.db.updateTable("host_vms").set(columns(h)).where("id", "=", h.id).execute();
  }

  /**
   * Records a host VM this controller acquired: inserted, or (an audit adopted it first)
   * marked kept all the same if `kept`.
   */
  async recordAcquired(h: StoredHostVm): Promise<void> {
    const exists = await this.db
      .selectFrom("host_vms")
      .select("id")
      .where("id", "=", h.id)
      .executeTakeFirst();
    if (!exists) await this.insert(h);
    else if (h.kept) await this.db.updateTable("host_vms").set({ kept: 1 }).where("id", "=", h.id).execute();
  }

  async released(id: string, at: number): Promise<void> {
    await this.db
      .updateTable("host_vms")
      .set({ state: "released", state_since: at })
      .where("id", "=", id)
      .execute();
  }
}

function columns(h: ReportedHostVm) {
  return {
    type: h.type,
    server_id: h.server,
    state: h.state,
    state_since: h.stateSince,
    acquired_at: h.acquiredAt,
  };
}

function toHostVm(r: Selectable<HostVmsTable>): StoredHostVm {
  return {
    id: r.id,
    type: r.type,
    server: r.server_id,
    state: r.state as HostVmState,
    stateSince: r.state_since,
    acquiredAt: r.acquired_at,
    kept: Boolean(r.kept),
  };
}

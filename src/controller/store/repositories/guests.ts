/** Guest VMs (tenant guests and security VMs), and the ids of deleted ones (never reused). */
import type { Kysely, Selectable } from "kysely";
import type { GuestSpec } from "../../../model/index.ts";
import type { SecurityVmOptions } from "../../../providers/index.ts";
import type { Automation } from "../../api/schemas/common.ts";
import type { Database, GuestsTable } from "../schema.ts";

export type PowerState = "running" | "stopped";

/** A guest's spec (the model's one guest shape) with what the controller records of it. */
export interface StoredGuest extends GuestSpec {
  readonly affinityGroup: string | null;
  readonly antiAffinityGroup: string | null;
  readonly role: "tenant" | "security";
  /** The guests a security VM watches (none for a tenant guest). */
  readonly targets: readonly string[];
  /** A security VM's monitors, signatures and rules (absent or null: the defaults). */
  readonly monitoring?: SecurityVmOptions | null;
  readonly hostVm: string | null;
  readonly powerState: PowerState;
  /** Its own automation level; null: the cloud's. */
  readonly automation: Automation | null;
  readonly createdAt: number;
}

/** Whether a new guest may take an id. */
export type GuestIdStatus = { kind: "free" } | { kind: "taken"; tenant: string } | { kind: "retired" };

export class GuestRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async get(id: string): Promise<StoredGuest | undefined> {
    const row = await this.db.selectFrom("guests").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toGuest(row);
  }

  /** In id order, optionally of one role and one tenant. */
  async list(opts: { role?: StoredGuest["role"]; tenant?: string } = {}): Promise<StoredGuest[]> {
    let q = this.db.selectFrom("guests").selectAll().orderBy("id");
    if (opts.role) q = q.where("role", "=", opts.role);
    if (opts.tenant !== undefined) q = q.where("tenant", "=", opts.tenant);
    return (await q.execute()).map(toGuest);
  }

  /** Where each guest runs and whether it runs (what an audit compares). */
  async placements(): Promise<Array<Pick<StoredGuest, "id" | "tenant" | "hostVm" | "powerState">>> {
    const rows = await this.db
      .selectFrom("guests")
      .select(["id", "host_vm_id", "power_state", "tenant"])
      .execute();
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant,
      hostVm: r.host_vm_id,
      powerState: r.power_state as PowerState,
    }));
  }

  /** Each guest's memory and host VM (what fills host VMs). */
  async sizes(): Promise<Array<Pick<StoredGuest, "id" | "hostVm" | "memoryMiB">>> {
    const rows = await this.db.selectFrom("guests").select(["id", "host_vm_id", "memory_mib"]).execute();
    return rows.map((r) => ({ id: r.id, hostVm: r.host_vm_id, memoryMiB: r.memory_mib }));
  }

  async tenantOf(id: string): Promise<string | undefined> {
    return (await this.db.selectFrom("guests").select("tenant").where("id", "=", id).executeTakeFirst())
      ?.tenant;
  }

  /** Ids of the guests on a host VM, in id order. */
  async idsOn(hostVm: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("guests")
      .select("id")
      .where("host_vm_id", "=", hostVm)
      .orderBy("id")
      .execute();
    return rows.map((r) => r.id);
  }

  /** How many guests (of a tenant) there are, and how many run. */
  async count(tenant?: string): Promise<{ guests: number; running: number }> {
    let q = this.db.selectFrom("guests").select(["id", "power_state"]);
    if (tenant !== undefined) q = q.where("tenant", "=", tenant);
    const rows = await q.execute();
    return { guests: rows.length, running: rows.filter((g) => g.power_state === "running").length };
  }

  /** A guest the store does not know yet (an audit adopting one). */
  async insert(g: StoredGuest): Promise<void> {
    await this.db.insertInto("guests").values(toRow(g)).execute();
  }

  /** A guest as the API defined it: inserted, or replacing what an audit adopted meanwhile. */
  async put(g: StoredGuest): Promise<void> {
    const { id: _, ...rest } = toRow(g);
    await this.db
      .insertInto("guests")
      .values(toRow(g))
      .onConflict((oc) => oc.column("id").doUpdateSet(rest))
      .execute();
  }

  async setPlacement(id: string, hostVm: string | null, powerState: PowerState): Promise<void> {
    await this.db
      .updateTable("guests")
      .set({ host_vm_id: hostVm, power_state: powerState })
      .where("id", "=", id)
      .execute();
  }

  async setHostVm(id: string, hostVm: string | undefined): Promise<void> {
    await this.db.updateTable("guests").set({ host_vm_id: hostVm }).where("id", "=", id).execute();
  }

  async setPowerState(id: string, powerState: PowerState): Promise<void> {
    await this.db.updateTable("guests").set({ power_state: powerState }).where("id", "=", id).execute();
  }

  async setAutomation(id: string, automation: Automation | null): Promise<void> {
    await this.db.updateTable("guests").set({ automation }).where("id", "=", id).execute();
  }

  /**
   * Deletes a guest and retires its id: history (migrations, events, metrics) names guests by
   * id, so it is never handed out again. Run it in a transaction.
   */
  async retire(id: string, tenant: string, at: number): Promise<void> {
    await this.db.deleteFrom("guests").where("id", "=", id).execute();
    await this.db
      .insertInto("retired_guest_ids")
      .values({ id, tenant, retired_at: at })
      .onConflict((oc) => oc.column("id").doNothing())
      .execute();
  }

  async idStatus(id: string): Promise<GuestIdStatus> {
    const g = await this.db.selectFrom("guests").select("tenant").where("id", "=", id).executeTakeFirst();
    if (g) return { kind: "taken", tenant: g.tenant };
    const r = await this.db
      .selectFrom("retired_guest_ids")
      .select("id")
      .where("id", "=", id)
      .executeTakeFirst();
    return r ? { kind: "retired" } : { kind: "free" };
  }
}

function toRow(g: StoredGuest): GuestsTable {
  return {
    id: g.id,
    tenant: g.tenant,
    vcpus: g.vcpus,
    mips_per_vcpu: g.mipsPerVcpu,
    memory_mib: g.memoryMiB,
    dirty_rate_mibps: g.dirtyRateMiBps,
    affinity_group: g.affinityGroup,
    anti_affinity_group: g.antiAffinityGroup,
    role: g.role,
    targets: JSON.stringify(g.targets),
    monitoring: g.monitoring ? JSON.stringify(g.monitoring) : null,
    host_vm_id: g.hostVm,
    power_state: g.powerState,
    automation: g.automation,
    created_at: g.createdAt,
  };
}

function toGuest(r: Selectable<GuestsTable>): StoredGuest {
  return {
    id: r.id,
    tenant: r.tenant,
    vcpus: r.vcpus,
    mipsPerVcpu: r.mips_per_vcpu,
    memoryMiB: r.memory_mib,
    dirtyRateMiBps: r.dirty_rate_mibps,
    affinityGroup: r.affinity_group,
    antiAffinityGroup: r.anti_affinity_group,
    role: r.role === "security" ? "security" : "tenant",
    targets: JSON.parse(r.targets) as string[],
    monitoring: r.monitoring ? (JSON.parse(r.monitoring) as SecurityVmOptions) : null,
    hostVm: r.host_vm_id,
    powerState: r.power_state as PowerState,
    automation: r.automation as Automation | null,
    createdAt: r.created_at,
  };
}

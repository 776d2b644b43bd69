/** The cloud's description as the provider gave it: physical servers and host-VM types. */
import type { Kysely } from "kysely";
import type { HostVmType, PhysicalServer } from "../../../model/index.ts";
import type { Database, HostVmTypesTable, ServersTable } from "../schema.ts";

export class ServerRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async list(): Promise<PhysicalServer[]> {
    return (await this.db.selectFrom("servers").selectAll().orderBy("id").execute()).map(toServer);
  }

  async put(s: PhysicalServer): Promise<void> {
    const row: ServersTable = {
      id: s.id,
      cores: s.cores,
      mips_per_core: s.mipsPerCore,
      memory_mib: s.memoryMiB,
      network_mbps: s.networkMbps,
      power: JSON.stringify(s.power.watts),
      host_vm_slots: s.hostVmSlots,
    };
    await this.db
      .insertInto("servers")
      .values(row)
      .onConflict((oc) => oc.column("id").doUpdateSet(row))
      .execute();
  }
}

export class HostVmTypeRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async list(): Promise<HostVmType[]> {
    return (await this.db.selectFrom("host_vm_types").selectAll().orderBy("name").execute()).map(toType);
  }

  async get(name: string): Promise<HostVmType | undefined> {
    const row = await this.db
      .selectFrom("host_vm_types")
      .selectAll()
      .where("name", "=", name)
      .executeTakeFirst();
    return row && toType(row);
  }

  async put(t: HostVmType): Promise<void> {
    const row: HostVmTypesTable = {
      name: t.name,
      vcpus: t.vcpus,
      mips_per_vcpu: t.mipsPerVcpu,
      memory_mib: t.memoryMiB,
      overhead_mib: t.hypervisorOverheadMiB,
      price_per_hour: t.pricePerHour,
      provision_seconds: t.provisionSeconds,
      billing_increment_seconds: t.billingIncrementSeconds,
      minimum_billing_seconds: t.minimumBillingSeconds,
    };
    await this.db
      .insertInto("host_vm_types")
      .values(row)
      .onConflict((oc) => oc.column("name").doUpdateSet(row))
      .execute();
  }
}

function toServer(s: ServersTable): PhysicalServer {
  return {
    id: s.id,
    cores: s.cores,
    mipsPerCore: s.mips_per_core,
    memoryMiB: s.memory_mib,
    networkMbps: s.network_mbps,
    power: { watts: JSON.parse(s.power) as number[] },
    hostVmSlots: s.host_vm_slots,
  };
}

function toType(t: HostVmTypesTable): HostVmType {
  return {
    name: t.name,
    vcpus: t.vcpus,
    mipsPerVcpu: t.mips_per_vcpu,
    memoryMiB: t.memory_mib,
    hypervisorOverheadMiB: t.overhead_mib,
    pricePerHour: t.price_per_hour,
    provisionSeconds: t.provision_seconds,
    billingIncrementSeconds: t.billing_increment_seconds,
    minimumBillingSeconds: t.minimum_billing_seconds,
    bareMetal: false,
  };
}

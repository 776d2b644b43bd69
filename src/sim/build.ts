/**
 * Builds the starting cloud of a scenario: physical servers, host VMs (or bare-metal bins),
 * and one guest per trace series with its type, tenant and groups.
 */
import { Cloud, type GuestVm, type HostVmType } from "../model/index.ts";
import type { Scenario } from "./scenario.ts";
import type { Trace } from "./trace.ts";

export interface BuiltCloud {
  readonly cloud: Cloud;
  /** Type a policy acquires (nested); undefined for bare metal. */
  readonly acquireType: HostVmType | undefined;
  /** Per guest: index into scenario.guestTypes. */
  readonly guestType: Int32Array;
}

export function bareMetalType(s: Scenario["servers"][number]): HostVmType {
  return {
    name: `bare-metal ${s.cores}x${s.mipsPerCore}`,
    vcpus: s.cores,
    mipsPerVcpu: s.mipsPerCore,
    memoryMiB: s.memoryMiB,
    hypervisorOverheadMiB: 0,
    pricePerHour: 0,
    provisionSeconds: 0,
    billingIncrementSeconds: 1,
    minimumBillingSeconds: 0,
    bareMetal: true,
  };
}

export function buildCloud(scenario: Scenario, trace: Trace): BuiltCloud {
  const cloud = new Cloud();
  const bareTypes = new Map<string, HostVmType>();
  for (const s of scenario.servers) {
    const si = cloud.addServer(s);
    if (!scenario.nested) {
      const key = `${s.cores}x${s.mipsPerCore}x${s.memoryMiB}`;
      let type = bareTypes.get(key);
      if (!type) bareTypes.set(key, (type = bareMetalType(s)));
      cloud.addHostVm(s.id, type, si, "running", 0);
    } else {
      const init = scenario.initialHostVms!;
      for (let k = 0; k < init.perServer; k++) cloud.addHostVm(`${s.id}/hv${k}`, init.type, si, "running", 0);
    }
  }
  const n = trace.names.length;
  const types = scenario.guestTypes;
  // CloudSim's rule: contiguous equal blocks of the guest list per type.
  const block = Math.ceil(n / types.length);
  const guestType = new Int32Array(n);
  const sec = scenario.securityVms;
  const rowOf = (i: number) => Math.floor(i / scenario.tenants);
  for (let i = 0; i < n; i++) {
    const isSecurity = sec !== undefined && rowOf(i) % sec.every === 0;
    const ti =
      isSecurity && sec.type !== undefined ? sec.type : Math.min(types.length - 1, Math.floor(i / block));
    guestType[i] = ti;
    const t = types[ti];
    const pairEvery = scenario.antiAffinityPairsEvery;
    const pair = pairEvery > 0 && Math.floor(i / 2) % pairEvery === 0 ? `aa-${Math.floor(i / 2)}` : undefined;
    const guest: GuestVm = {
      id: `vm-${i}`,
      tenant: `tenant-${i % scenario.tenants}`,
      vcpus: t.vcpus,
      mipsPerVcpu: t.mipsPerVcpu,
      memoryMiB: t.memoryMiB,
      dirtyRateMiBps: t.dirtyRateMiBps,
      role: isSecurity ? securityRole(i, n, scenario.tenants, sec) : { kind: "tenant" },
      ...(pair ? { antiAffinityGroup: pair } : {}),
    };
    cloud.addGuest(guest);
  }
  return { cloud, acquireType: scenario.initialHostVms?.type, guestType };
}

/** Security VM i watches its tenant's guests of the next rows (same tenant: i + k x tenants). */
function securityRole(
  i: number,
  n: number,
  tenants: number,
  sec: NonNullable<Scenario["securityVms"]>,
): GuestVm["role"] {
  const targets: string[] = [];
  for (let k = 1; k <= sec.targets; k++) if (i + k * tenants < n) targets.push(`vm-${i + k * tenants}`);
  return { kind: "security", targets, requires: sec.requires };
}

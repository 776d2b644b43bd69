/**
 * Builders for planner tests: a small nested or bare-metal cloud with loads and histories,
 * and a PlannerInput over it. Test support only (not exported from index.ts).
 */
import { DEFAULT_CALIBRATION, DEFAULT_MECHANISM_POLICY } from "../migration/index.ts";
import {
  type Cloud,
  type GuestVm,
  type HostVmType,
  LoadHistory,
  type PhysicalServer,
} from "../model/index.ts";
import { type CapacityRules, NESTED_RULES, type PlannerInput } from "./input.ts";
import { UNLIMITED } from "./plan.ts";

export const FLAT_POWER = { watts: [100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200] };

export function server(id: string, slots = 4, cores = 16): PhysicalServer {
  return {
    id,
    cores,
    mipsPerCore: 1000,
    memoryMiB: 262144,
    networkMbps: 10000,
    power: FLAT_POWER,
    hostVmSlots: slots,
  };
}

export const HOST_TYPE: HostVmType = {
  name: "t.4x16",
  vcpus: 4,
  mipsPerVcpu: 1000,
  memoryMiB: 16384,
  hypervisorOverheadMiB: 0,
  pricePerHour: 1,
  provisionSeconds: 60,
  billingIncrementSeconds: 1,
  minimumBillingSeconds: 0,
  bareMetal: false,
};

/** A guest of `mips` total MIPS, split over as many 1000-MIPS vCPUs as it needs. */
export function guest(id: string, mips = 1000, memoryMiB = 1024, extra: Partial<GuestVm> = {}): GuestVm {
  const vcpus = Math.max(1, Math.ceil(mips / 1000));
  return {
    id,
    tenant: "t",
    vcpus,
    mipsPerVcpu: mips / vcpus,
    memoryMiB,
    dirtyRateMiBps: 10,
    role: { kind: "tenant" },
    ...extra,
  };
}

export interface TestCloud {
  cloud: Cloud;
  load: LoadHistory;
}

/** Utilization history per guest, oldest first (fractions of the guest's MIPS). */
export function withHistory(cloud: Cloud, histories: number[][]): LoadHistory {
  const load = new LoadHistory(30, cloud.guests.length);
  histories.forEach((h, g) => {
    for (const u of h) load.push(g, u);
  });
  return load;
}

export function plannerInput(
  cloud: Cloud,
  load: LoadHistory,
  opts: Partial<PlannerInput> & { rules?: CapacityRules } = {},
): PlannerInput {
  const G = cloud.guests.length;
  const H = cloud.hostVms.length;
  const request = new Float64Array(G);
  for (let g = 0; g < G; g++)
    request[g] = load.latest(g) * cloud.guests[g].vcpus * cloud.guests[g].mipsPerVcpu;
  const measured = new Float64Array(H);
  for (let g = 0; g < G; g++) if (cloud.guestHost[g] >= 0) measured[cloud.guestHost[g]] += request[g];
  let seed = 7;
  return {
    cloud,
    now: 3600,
    intervalSeconds: 300,
    load,
    requestMips: request,
    measuredMips: measured,
    inMigration: new Uint8Array(G),
    inboundTarget: new Int32Array(G).fill(-1),
    residentMiB: Float64Array.from(cloud.guests, (g) => g.memoryMiB / 2),
    dirtyRateMiBps: new Float64Array(G).fill(5),
    lastMovedAt: new Float64Array(G).fill(Number.NEGATIVE_INFINITY),
    pendingAcquisitions: new Int32Array(cloud.servers.length),
    rules: NESTED_RULES,
    calibration: DEFAULT_CALIBRATION,
    mechanism: DEFAULT_MECHANISM_POLICY,
    caps: UNLIMITED,
    random: {
      next() {
        seed = (seed * 48271) % 2147483647;
        return seed / 2147483647;
      },
    },
    ...opts,
  };
}

/**
 * The datacenter `nestcloud up --provider sim` starts with: a few servers carrying host VMs
 * spread out the way a cloud places them, and tenants' guests packed loosely — so the
 * planner has something to consolidate from the first minute.
 */
import { type HostVmType, HP_ML110_G5, type PhysicalServer } from "../../model/index.ts";
import type { World } from "./world.ts";

export interface DemoOptions {
  readonly servers?: number;
  readonly guests?: number;
  readonly speed?: number;
  readonly seed?: number;
  readonly wallNow?: number;
}

export const DEMO_HOST_VM_TYPE: HostVmType = {
  name: "hvm.4x32",
  vcpus: 4,
  mipsPerVcpu: 2660,
  memoryMiB: 32768,
  hypervisorOverheadMiB: 1024,
  pricePerHour: 0.252,
  provisionSeconds: 120,
  billingIncrementSeconds: 1,
  minimumBillingSeconds: 60,
  bareMetal: false,
};

export function demoWorld(opts: DemoOptions = {}): World {
  const serverCount = opts.servers ?? 4;
  const guestCount = opts.guests ?? 48;
  const power = { watts: HP_ML110_G5.watts.map((w) => Math.round(w * 4 * 10) / 10) };
  const servers: PhysicalServer[] = Array.from({ length: serverCount }, (_, i) => ({
    id: `srv-${i + 1}`,
    cores: 32,
    mipsPerCore: 2660,
    memoryMiB: 262144,
    networkMbps: 10000,
    power,
    hostVmSlots: 6,
  }));
  const hostVms: World["hostVms"] = [];
  // Three host VMs per server to start with: more than the load needs.
  for (const s of servers) {
    for (let k = 0; k < 3; k++) {
      hostVms.push({
        id: `${s.id}-hv${k + 1}`,
        type: DEMO_HOST_VM_TYPE.name,
        server: s.id,
        state: "running" as const,
        acquiredAt: 0,
        stateSince: 0,
        readyAt: 0,
      });
    }
  }
  const kinds = [
    { mips: 2500, mem: 1740 },
    { mips: 2000, mem: 2048 },
    { mips: 1000, mem: 1024 },
    { mips: 500, mem: 512 },
  ];
  const tenants = ["acme", "globex", "initech", "umbrella"];
  const guests = Array.from({ length: guestCount }, (_, i) => {
    const k = kinds[i % kinds.length];
    return {
      id: `vm-${String(i + 1).padStart(3, "0")}`,
      tenant: tenants[i % tenants.length],
      vcpus: 1,
      mipsPerVcpu: k.mips,
      memoryMiB: k.mem,
      dirtyRateMiBps: 20,
      // Round-robin over all host VMs: spread thin, as guests arrive over time.
      hostVm: hostVms[i % hostVms.length].id,
      running: true,
      series: i,
    };
  });
  return {
    version: 1,
    clock: { worldT0: 8 * 3600, wallT0: (opts.wallNow ?? Date.now()) / 1000, speed: opts.speed ?? 60 },
    seed: opts.seed ?? 42,
    series: Math.max(guestCount, 64),
    servers,
    hostVmTypes: [DEMO_HOST_VM_TYPE],
    hostVms,
    guests,
    migrations: [],
    nextId: 1,
  };
}

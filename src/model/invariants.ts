/**
 * Every rule a valid cloud obeys, checked in one place. The planner's property tests and the
 * simulator's debug mode run this after each change; the API runs it before committing one.
 */
import type { Cloud } from "./cloud.ts";
import { UNPLACED } from "./cloud.ts";
import { hostVmGuestMemory } from "./topology.ts";

export interface Violation {
  readonly rule:
    | "guest-on-unusable-host-vm"
    | "memory-overcommitted"
    | "vcpus-exceed-host-vm"
    | "anti-affinity"
    | "affinity"
    | "unknown-target"
    | "index-inconsistent"
    | "server-slots-exceeded";
  readonly message: string;
}

export function findViolations(cloud: Cloud): Violation[] {
  const out: Violation[] = [];
  const memory = new Float64Array(cloud.hostVms.length);
  const counted = new Int32Array(cloud.hostVms.length);

  for (let g = 0; g < cloud.guests.length; g++) {
    const h = cloud.guestHost[g];
    if (h === UNPLACED) continue;
    const guest = cloud.guests[g];
    const host = cloud.hostVms[h];
    if (host.state !== "running" && host.state !== "draining") {
      out.push({
        rule: "guest-on-unusable-host-vm",
        message: `guest VM ${guest.id} is on host VM ${host.id}, which is ${host.state}`,
      });
    }
    if (guest.vcpus > host.type.vcpus) {
      out.push({
        rule: "vcpus-exceed-host-vm",
        message: `guest VM ${guest.id} has more vCPUs than host VM ${host.id}`,
      });
    }
    memory[h] += guest.memoryMiB;
    counted[h]++;
    if (!cloud.hostGuests[h].includes(g)) {
      out.push({
        rule: "index-inconsistent",
        message: `guest VM ${guest.id} missing from host VM ${host.id}'s list`,
      });
    }
  }

  const slots = new Int32Array(cloud.servers.length);
  for (let h = 0; h < cloud.hostVms.length; h++) {
    const host = cloud.hostVms[h];
    const cap = hostVmGuestMemory(host.type);
    if (memory[h] > cap + 1e-6) {
      out.push({
        rule: "memory-overcommitted",
        message: `host VM ${host.id}: guests reserve ${memory[h]} MiB of ${cap} MiB`,
      });
    }
    if (counted[h] !== cloud.hostGuests[h].length || Math.abs(memory[h] - cloud.hostMemoryUsed[h]) > 1e-6) {
      out.push({
        rule: "index-inconsistent",
        message: `host VM ${host.id}: cached guest list or memory is stale`,
      });
    }
    if (host.server !== undefined && host.state !== "released") slots[host.server]++;
  }
  for (let s = 0; s < cloud.servers.length; s++) {
    if (slots[s] > cloud.servers[s].hostVmSlots) {
      out.push({
        rule: "server-slots-exceeded",
        message: `physical server ${cloud.servers[s].id} carries ${slots[s]} host VMs, room for ${cloud.servers[s].hostVmSlots}`,
      });
    }
  }

  out.push(...groupViolations(cloud));
  for (const guest of cloud.guests) {
    if (guest.role.kind !== "security") continue;
    for (const t of guest.role.targets) {
      if (!cloud.hasGuest(t))
        out.push({
          rule: "unknown-target",
          message: `security VM ${guest.id} targets unknown guest VM ${t}`,
        });
    }
  }
  return out;
}

function groupViolations(cloud: Cloud): Violation[] {
  const out: Violation[] = [];
  const affinity = new Map<string, number>();
  // anti-affinity group -> (placement key -> guest id); a host VM with unknown server is its own key.
  const anti = new Map<string, Map<string, string>>();
  for (let g = 0; g < cloud.guests.length; g++) {
    const h = cloud.guestHost[g];
    if (h === UNPLACED) continue;
    const guest = cloud.guests[g];
    if (guest.affinityGroup !== undefined) {
      const first = affinity.get(guest.affinityGroup);
      if (first === undefined) affinity.set(guest.affinityGroup, h);
      else if (first !== h) {
        out.push({
          rule: "affinity",
          message: `affinity group ${guest.affinityGroup} is split (guest VM ${guest.id})`,
        });
      }
    }
    if (guest.antiAffinityGroup !== undefined) {
      const key = antiAffinityKey(cloud, h);
      let seen = anti.get(guest.antiAffinityGroup);
      if (!seen) anti.set(guest.antiAffinityGroup, (seen = new Map()));
      const other = seen.get(key);
      if (other !== undefined) {
        out.push({
          rule: "anti-affinity",
          message: `anti-affinity group ${guest.antiAffinityGroup}: guest VMs ${other} and ${guest.id} share ${key}`,
        });
      } else seen.set(key, guest.id);
    }
  }
  return out;
}

/**
 * Anti-affinity keeps guests on different physical servers; where a host VM's server is not
 * known, different host VMs is the best that can be checked.
 */
export function antiAffinityKey(cloud: Cloud, h: number): string {
  const s = cloud.hostVms[h].server;
  return s === undefined ? `host VM ${cloud.hostVms[h].id}` : `physical server ${cloud.servers[s].id}`;
}

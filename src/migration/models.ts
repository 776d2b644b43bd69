/**
 * Cost models of each migration mechanism: how long a move takes, how long the guest is
 * paused, and how many bytes cross the network. Pure functions of the guest's memory and
 * dirtying and of the calibration, so the simulator and the live planner agree.
 *
 * Notation (migration.md): M memory, R bandwidth, D dirty rate, W writable working set.
 */
import type { MigrationCalibration } from "./calibration.ts";

export type MigrationMechanism = "instant" | "precopy" | "postcopy";
/** How a migration's cost is modelled: QEMU's behaviour, or CloudSim's RAM/(bw/2) for the reference. */
export type MigrationModelKind = "qemu" | "cloudsim";

export interface MigrationSubject {
  /** Configured guest RAM, MiB. */
  readonly memoryMiB: number;
  /** Memory the guest has touched (non-zero pages), MiB; <= memoryMiB. */
  readonly residentMiB: number;
  /** Current dirty rate, MiB/s. */
  readonly dirtyRateMiBps: number;
}

export interface MigrationEstimate {
  readonly mechanism: MigrationMechanism;
  readonly totalSeconds: number;
  readonly downtimeSeconds: number;
  /** Bytes sent over the migration channel. */
  readonly bytes: number;
  /** False for instant handover: its channel is a local socket, not the datacenter network. */
  readonly crossesNetwork: boolean;
  /** RAM passes (pre-copy) before the switch; 0 for instant. */
  readonly rounds: number;
  /** Pre-copy reached QEMU's switchover condition within the round limit. */
  readonly converged: boolean;
  /** Highest auto-converge vCPU throttle applied, percent. */
  readonly throttlePercent: number;
}

const MiB = 1024 * 1024;

/** Link Mbit/s -> MiB/s. */
export function mbpsToMiBps(mbps: number): number {
  return (mbps * 1e6) / 8 / MiB;
}

export interface PrecopyOptions {
  readonly autoConverge: boolean;
}

/**
 * QEMU pre-copy: pass 0 walks all RAM and sends resident pages; each later pass sends what
 * the guest dirtied meanwhile (bounded by the working set); QEMU switches over once the
 * remainder fits in downtime-limit at the current bandwidth. Auto-converge throttles vCPUs
 * (20 %, +10 % per trigger) when a pass dirties more than half of what it sent, twice.
 */
export function estimatePrecopy(
  s: MigrationSubject,
  linkMbps: number,
  cal: MigrationCalibration,
  opts: PrecopyOptions = { autoConverge: false },
): MigrationEstimate {
  const c = cal.precopy;
  const R = Math.max(1e-9, mbpsToMiBps(linkMbps) * c.linkEfficiency);
  const resident = Math.min(s.residentMiB, s.memoryMiB);
  const W = c.workingSetFraction * resident;
  const switchAt = R * c.downtimeLimitSeconds;
  let v = resident;
  let sent = 0;
  let t = c.setupSeconds;
  let throttle = 0;
  let highPasses = 0;
  let rounds = 0;
  let converged = false;
  for (; rounds < c.maxRounds; rounds++) {
    if (rounds > 0 && v <= switchAt) {
      converged = true;
      break;
    }
    const scanned = rounds === 0 ? s.memoryMiB : v;
    const T = Math.max(v / R, scanned / c.scanMiBps);
    sent += v;
    t += T;
    const dirtied = Math.min(s.dirtyRateMiBps * (1 - throttle / 100) * T, W);
    if (opts.autoConverge && rounds > 0 && dirtied > c.autoConverge.triggerRatio * v) {
      highPasses++;
      if (highPasses >= 2) {
        highPasses = 0;
        throttle =
          throttle === 0
            ? c.autoConverge.initialPercent
            : Math.min(c.autoConverge.maxPercent, throttle + c.autoConverge.incrementPercent);
      }
    }
    v = dirtied;
  }
  if (!converged && v <= switchAt && rounds > 0) converged = true;
  const downtime = (v + c.deviceStateMiB) / R + c.switchoverSeconds;
  return {
    mechanism: "precopy",
    totalSeconds: t + downtime,
    downtimeSeconds: downtime,
    bytes: (sent + v + c.deviceStateMiB) * MiB,
    crossesNetwork: true,
    rounds,
    converged,
    throttlePercent: throttle,
  };
}

/**
 * Post-copy: a few pre-copy passes, switch (pause = device state only), then the pages
 * dirtied meanwhile are fetched on demand, slower than streaming.
 */
export function estimatePostcopy(
  s: MigrationSubject,
  linkMbps: number,
  cal: MigrationCalibration,
): MigrationEstimate {
  const c = cal.precopy;
  const R = Math.max(1e-9, mbpsToMiBps(linkMbps) * c.linkEfficiency);
  const resident = Math.min(s.residentMiB, s.memoryMiB);
  const W = c.workingSetFraction * resident;
  let v = resident;
  let sent = 0;
  let t = c.setupSeconds;
  const rounds = Math.max(1, cal.postcopy.precopyRounds);
  for (let i = 0; i < rounds; i++) {
    const T = Math.max(v / R, (i === 0 ? s.memoryMiB : v) / c.scanMiBps);
    sent += v;
    t += T;
    v = Math.min(s.dirtyRateMiBps * T, W);
  }
  const downtime = c.deviceStateMiB / R + c.switchoverSeconds;
  const demand = (v * cal.postcopy.faultSlowdown) / R;
  return {
    mechanism: "postcopy",
    totalSeconds: t + downtime + demand,
    downtimeSeconds: downtime,
    bytes: (sent + v + c.deviceStateMiB) * MiB,
    crossesNetwork: true,
    rounds,
    converged: true,
    throttlePercent: 0,
  };
}

/**
 * Zero-copy handover on one physical server: the destination maps the same RAM file, only
 * device state crosses a local socket. Independent of the dirty rate; all of the switch is
 * downtime.
 */
export function estimateInstant(s: MigrationSubject, cal: MigrationCalibration): MigrationEstimate {
  const c = cal.instant;
  const downtime =
    c.deviceStateMiB / Math.max(1e-9, c.localMiBps) +
    (c.perGiBSeconds * s.memoryMiB) / 1024 +
    c.switchoverSeconds;
  return {
    mechanism: "instant",
    totalSeconds: c.setupSeconds + downtime,
    downtimeSeconds: downtime,
    bytes: c.deviceStateMiB * MiB,
    crossesNetwork: false,
    rounds: 0,
    converged: true,
    throttlePercent: 0,
  };
}

/**
 * CloudSim 3.0.3's model, used only to reproduce the reference experiment:
 * time = RAM / (bandwidth / 2), dirty pages ignored, no pause.
 */
export function estimateCloudSim(s: MigrationSubject, linkMbps: number): MigrationEstimate {
  // CloudSim: delay = ram / (bw / (2 * 8000)) with bw in kbit/s and ram in MB.
  const seconds = s.memoryMiB / ((linkMbps * 1000) / 16000);
  return {
    mechanism: "precopy",
    totalSeconds: seconds,
    downtimeSeconds: 0,
    bytes: s.memoryMiB * MiB,
    crossesNetwork: true,
    rounds: 1,
    converged: true,
    throttlePercent: 0,
  };
}

/**
 * What a planning round sees. The simulator and the controller fill it the same way, so a
 * decision made in the simulator is the decision the live system would make.
 */
import type { MechanismPolicy, MigrationCalibration } from "../migration/index.ts";
import type { Cloud, LoadHistory, RandomSource } from "../model/index.ts";
import type { ParallelismCaps } from "./plan.ts";

export interface CapacityRules {
  /**
   * reserved: a guest's memory is reserved in its host VM at all times (nestcloud's guarantee).
   * at-creation: memory (and the per-host VM count of `maxGuestsAtCreation`) binds only when a
   * guest is first placed — CloudSim 3.0.3's behaviour, for the reference experiment.
   */
  readonly memory: "reserved" | "at-creation";
  /** Upper bound of sum(guaranteed MIPS) / host VM MIPS; Infinity = no bound. */
  readonly cpuOvercommit: number;
  /** At creation only: most guests per host VM (CloudSim's bandwidth reservation: 10). */
  readonly maxGuestsAtCreation: number;
}

export const NESTED_RULES: CapacityRules = {
  memory: "reserved",
  cpuOvercommit: Number.POSITIVE_INFINITY,
  maxGuestsAtCreation: Number.POSITIVE_INFINITY,
};
export const CLOUDSIM_RULES: CapacityRules = {
  memory: "at-creation",
  cpuOvercommit: Number.POSITIVE_INFINITY,
  maxGuestsAtCreation: 10,
};

export interface PlannerInput {
  readonly cloud: Cloud;
  readonly now: number;
  readonly intervalSeconds: number;
  /** Per-guest CPU history, fractions of guaranteed MIPS, one sample per interval. */
  readonly load: LoadHistory;
  /** Per guest: the MIPS it asks for now. */
  readonly requestMips: Float64Array;
  /** Per host VM: MIPS its guests were granted at the last measurement. */
  readonly measuredMips: Float64Array;
  /** Per guest: 1 while a migration of it runs. */
  readonly inMigration: Uint8Array;
  /** Per guest: the host VM a running migration takes it to, or -1. */
  readonly inboundTarget: Int32Array;
  /** The guests in migration (those with inMigration set), when the caller has the list. */
  readonly inFlightGuests?: readonly number[];
  /**
   * Per host VM: MIPS its guests ask for right now, when the caller tracks it (agents'
   * load reports); planners sum requestMips otherwise.
   */
  readonly hostDemandMips?: Float64Array;
  /**
   * Per host VM, HISTORY_LENGTH (30) values newest first: the summed MIPS history of the
   * guests it holds now, when the caller keeps it up to date (saves the planner a pass
   * over every guest's history each round).
   */
  readonly hostHistoryMips?: Float64Array;
  /** Per guest: resident (touched) memory, MiB, and current dirty rate, MiB/s — for migration estimates. */
  readonly residentMiB: Float64Array;
  readonly dirtyRateMiBps: Float64Array;
  /** Per guest: time of its last completed move (-Infinity if never), for hysteresis. */
  readonly lastMovedAt: Float64Array;
  /** Host VMs whose acquisition is under way (count per server), so the planner does not ask twice. */
  readonly pendingAcquisitions: Int32Array;
  readonly rules: CapacityRules;
  readonly calibration: MigrationCalibration;
  readonly mechanism: MechanismPolicy;
  readonly caps: ParallelismCaps;
  readonly random: RandomSource;
  /**
   * Per host VM: when its hypervisor layer (guest QEMUs, agent) last started, i.e. its
   * acquisition or its last rejuvenation; absent: the acquisition (rolling-rejuvenation.ts).
   */
  readonly hypervisorSince?: Float64Array;
  /** Per host VM: 1 while a rejuvenation of it is planned or running. */
  readonly rejuvenating?: Uint8Array;
}

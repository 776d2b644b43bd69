export { type BuildOptions, buildPlan, type Move } from "./builder.ts";
export { planCoMove } from "./co-move.ts";
export {
  InterQuartileRange,
  LocalRegression,
  MedianAbsoluteDeviation,
  type OverloadDetector,
  StaticThreshold,
} from "./detectors.ts";
export { type CapacityRules, CLOUDSIM_RULES, NESTED_RULES, type PlannerInput } from "./input.ts";
export { NESTCLOUD_DEFAULTS, type NestcloudParams, nestcloudParams, nestcloudPolicy } from "./nestcloud.ts";
export { findBinForGuest, fits } from "./pabfd.ts";
export {
  accountChannels,
  type ChannelRequirement,
  type ChannelSeconds,
  channelBetween,
  channelRank,
  emptyChannelSeconds,
  followPays,
  MONITORING_CHANNELS,
  type MonitoringChannel,
  type MonitoringPair,
  meets,
  monitoringPairs,
  type PairPricing,
  type PairStepHooks,
  type PairStepResult,
  pairStep,
} from "./pairs.ts";
export {
  ACTION_KINDS,
  type AcquireHostVmAction,
  type Action,
  type ActionKind,
  type ActionPlan,
  type CoMigrateAction,
  type CoMigrationMember,
  emptyPlan,
  type HostVmRef,
  type MigrateAction,
  type MoveReason,
  type ParallelismCaps,
  PlanError,
  REJUVENATION_MODES,
  type RejuvenateAction,
  type RejuvenationMode,
  type ReleaseHostVmAction,
  UNLIMITED,
  unhandledKind,
  validatePlan,
} from "./plan.ts";
export {
  createPolicy,
  dvfsPolicy,
  POLICY_NAMES,
  type PolicyContext,
  REFERENCE_POLICY_PATTERN,
  referencePolicy,
} from "./policy.ts";
export { type Placement, type Policy, PolicyError } from "./policy-base.ts";
export { referencePlan } from "./reference.ts";
export {
  type MoveDecision,
  type MoveRefusal,
  type MoveRefusalReason,
  type MoveRequest,
  placeRequested,
  planMove,
  type RequestedMechanism,
} from "./requested.ts";
export {
  dueHostVms,
  EVACUATE_CPU_HEADROOM,
  isDue,
  nextRejuvenation,
  type RolloutPolicy,
  type RolloutStep,
  spareFor,
  touchedBy,
  validateRollout,
  withRollingRejuvenation,
  withRolloutStep,
} from "./rolling-rejuvenation.ts";
export {
  maximumCorrelation,
  minimumMigrationTime,
  minimumUtilization,
  randomSelection,
  type VmSelection,
} from "./selection.ts";
export { iqr, mad, median, olsOnIndex, rSquared } from "./stats.ts";
export { HISTORY_LENGTH, Workspace } from "./workspace.ts";

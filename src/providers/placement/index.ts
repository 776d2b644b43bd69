// Physical-placement discovery: evidence from each source, fused into one map (pure), and
// the probes that gather it (I/O).
export { correlateFrontEnds, type RecordedMove, type RentedHostVm } from "./correlation.ts";
export { type DiscoveryOptions, PlacementDiscovery } from "./discovery.ts";
export {
  type KeyEvidence,
  keyEvidence,
  MEASUREMENT_CONFIDENCE,
  type PairEvidence,
  type PlacementEvidence,
  type PlacementSource,
  pairEvidence,
  SOURCE_CONFIDENCE,
} from "./evidence.ts";
export {
  assignServers,
  type DiscoveredHostVm,
  type FusedPlacement,
  fusePlacement,
  type PairVerdict,
  placementCorrectness,
} from "./fusion.ts";
export { type ProbeTarget, probeSharedMemory } from "./probe.ts";
export type { PlacementEntry, PlacementReport } from "./report.ts";
export {
  PROBE_GUEST_MIB,
  PROBE_GUEST_RE,
  type TrialCandidate,
  type TrialHost,
  type TrialResult,
  trialCandidates,
  trialHandover,
} from "./trial.ts";

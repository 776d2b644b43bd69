export { Rng } from "../model/index.ts";
export type { SeriesPoint } from "./accounts.ts";
export { buildCloud } from "./build.ts";
export { type SimDecision, Simulation, SimulationError, type SimulationOptions } from "./engine.ts";
export { ScenarioError, TraceError } from "./errors.ts";
export { type LowerBound, lowerBound, lowerBoundHostVmHours } from "./lower-bound.ts";
export { loadPlanetlabFolder, planetlabDays, resolvePlanetlabFolder } from "./planetlab.ts";
export { createPolicy } from "./policies.ts";
export {
  DEFAULT_REJUVENATION_COST,
  type RejuvenationCost,
  type RenewalTimes,
  renewalTimes,
} from "./rejuvenation-cost.ts";
export { type ReportRenderer, renderReport, startReportRenderer } from "./report-render.ts";
export {
  type RolloutCost,
  type RolloutResult,
  type RunTiming,
  type SimulationResult,
  summarizeTiming,
} from "./results.ts";
export {
  loadCalibration,
  loadTrace,
  parseTraceSpec,
  policyParamsFor,
  type RunOptions,
  type RunOutput,
  rolloutCost,
  rolloutCostOf,
  rolloutLine,
  runScenario,
} from "./run.ts";
export { loadScenario, parseScenario, type Scenario } from "./scenario.ts";
export { syntheticTrace } from "./synthetic.ts";
export { type Trace, utilizationAt } from "./trace.ts";

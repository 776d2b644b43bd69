/** Picks a scenario's simulation rules: nestcloud's own, or the simulator it is compatible with. */
import type { Scenario } from "../scenario.ts";
import { cloudsimRules } from "./cloudsim.ts";
import { nestedRules } from "./nested.ts";
import type { SimulationRules } from "./rules.ts";

export { cloudsimRules } from "./cloudsim.ts";
export { nestedRules } from "./nested.ts";
export type {
  CompletedMigration,
  MigrationLoss,
  RuleSetName,
  RunEnd,
  SimulationKernel,
  SimulationRules,
} from "./rules.ts";

const BY_COMPAT: Record<NonNullable<Scenario["compat"]>, SimulationRules> = {
  "cloudsim-3.0.3": cloudsimRules,
};

export function rulesFor(scenario: Pick<Scenario, "compat">): SimulationRules {
  return scenario.compat === undefined ? nestedRules : BY_COMPAT[scenario.compat];
}

/** Policy names -> policies, with parameters from the scenario file. */
import {
  POLICY_NAMES,
  type Policy,
  type PolicyContext,
  PolicyError,
  REFERENCE_POLICY_PATTERN,
  referencePolicy,
} from "../planner/index.ts";

export function createPolicy(
  name: string,
  _params: Readonly<Record<string, number | boolean | string>>,
  ctx: PolicyContext,
): Policy {
  if (REFERENCE_POLICY_PATTERN.test(name)) return referencePolicy(name, ctx);
  throw new PolicyError(
    `unknown policy ${name} (known: ${POLICY_NAMES.join(", ")}, or <thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>)`,
  );
}

/** Policy names -> policies, with parameters from the scenario file. */
import {
  dvfsPolicy,
  nestcloudParams,
  nestcloudPolicy,
  POLICY_NAMES,
  type Policy,
  type PolicyContext,
  PolicyError,
  REFERENCE_POLICY_PATTERN,
  referencePolicy,
} from "../planner/index.ts";

export function createPolicy(
  name: string,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: PolicyContext,
): Policy {
  if (REFERENCE_POLICY_PATTERN.test(name)) return referencePolicy(name, ctx);
  if (name === "dvfs") return dvfsPolicy();
  if (name === "nestcloud") return nestcloudPolicy(nestcloudParams(params), ctx.acquireType);
  throw new PolicyError(
    `unknown policy ${name} (known: ${POLICY_NAMES.join(", ")}, or <thr|iqr|mad|lr|lrr>-<mmt|rs|mc|mu>-<parameter>)`,
  );
}

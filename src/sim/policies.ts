/** Policy names -> policies: the registry lives with the planner; re-exported for the simulator's callers. */
export { createPolicy } from "../planner/index.ts";

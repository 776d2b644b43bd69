/**
 * The fixed values a flag may take. Commands are registered with these (commander checks a
 * flag when it parses it, see output.ts `choice`), so this module imports nothing: the
 * controller's own lists (src/controller/api/schemas/choices.ts) would load the controller with
 * every command, even `--version`. cli.test.ts checks that the API's lists and these agree.
 */

/** How the planner acts (`settings automation`): the controller's AUTOMATION_LEVELS. */
export const AUTOMATION_LEVELS = ["manual", "suggest", "automatic"] as const;
/** `vms migrate --mechanism`: the controller's MIGRATION_MECHANISMS. */
export const MIGRATION_MECHANISMS = ["auto", "instant", "precopy", "postcopy"] as const;
/** `hostvms rejuvenate --mode`: the controller's REJUVENATION_MODES. */
export const REJUVENATION_MODES = ["in-place", "evacuate"] as const;
/** `token create --role`: the controller's TOKEN_ROLES. */
export const TOKEN_ROLES = ["admin", "tenant", "metrics"] as const;
/** `plans --status`: the controller's PLAN_STATUSES. */
export const PLAN_STATUSES = [
  "proposed",
  "approved",
  "applying",
  "applied",
  "failed",
  "cancelled",
  "superseded",
] as const;
/** `migrations --status`: the controller's MIGRATION_STATUSES. */
export const MIGRATION_STATUSES = ["running", "completed", "failed", "cancelled"] as const;

/** `up --provider`. */
export const PROVIDERS = ["sim", "testbed", "openstack"] as const;
/** `up --log-format` (see logging.ts). */
export const LOG_FORMATS = ["auto", "pretty", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
/** `-o, --output` of the API client commands. */
export const OUTPUTS = ["table", "json"] as const;
/** `vm power <vm> <action>`: the controller's POWER_ACTIONS (virtual AMT). */
export const POWER_ACTIONS = ["on", "off", "shutdown", "reset", "rescue", "normal"] as const;

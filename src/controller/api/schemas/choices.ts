/**
 * The fixed values of the API's fields, as plain lists: the schemas make enums of them
 * (`Type.Enum`: a bad value gets one error listing them, `body/mechanism must be one of auto,
 * instant, precopy, postcopy`), and the dashboard uses them without bundling TypeBox. The
 * CLI keeps its own copy (src/cli/choices.ts, so that its commands need not load the
 * controller); cli.test.ts checks that the two agree.
 */

/** How far the controller acts by itself: never moves, proposes for approval, or applies. */
export const AUTOMATION_LEVELS = ["manual", "suggest", "automatic"] as const;
/** How a guest may be moved (`auto`: the controller chooses). */
export const MIGRATION_MECHANISMS = ["auto", "instant", "precopy", "postcopy"] as const;
/** How a host VM is rejuvenated (agent/rejuvenation.ts REJUVENATION_MODES). */
export const REJUVENATION_MODES = ["in-place", "evacuate"] as const;
export const TOKEN_ROLES = ["admin", "tenant", "metrics"] as const;
export const PLAN_STATUSES = [
  "proposed",
  "approved",
  "applying",
  "applied",
  "failed",
  "cancelled",
  "superseded",
] as const;
export const MIGRATION_STATUSES = ["running", "completed", "failed", "cancelled"] as const;
/** What the provider's times count: Unix seconds, or seconds of a simulated world. */
export const PROVIDER_CLOCKS = ["wall", "simulated"] as const;
/** A security VM's monitors, their channels and their alerts' severities (src/monitor/alert.ts). */
export const MONITOR_KINDS = ["memory", "disk", "network"] as const;
export const MONITOR_CHANNELS = ["local", "direct", "remote"] as const;
export const ALERT_SEVERITIES = ["info", "warning", "critical"] as const;
/** The virtual AMT (agent/schemas/power.ts): power and boot actions, power states, boots. */
export const POWER_ACTIONS = ["on", "off", "shutdown", "reset", "rescue", "normal"] as const;
export const POWER_STATES = ["on", "off", "panicked"] as const;
export const BOOT_MODES = ["normal", "rescue"] as const;
export const POWER_OUTCOMES = ["done", "ignored", "forced"] as const;

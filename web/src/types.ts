/**
 * What the controller's API answers, derived from its TypeBox schemas
 * (src/controller/api/schemas/): a change there breaks this build instead of the page.
 */
import type { Static } from "typebox";
import type * as Cloud from "../../src/controller/api/schemas/cloud.ts";
import type * as Common from "../../src/controller/api/schemas/common.ts";
import type * as HostVms from "../../src/controller/api/schemas/hostvms.ts";
import type * as Migrations from "../../src/controller/api/schemas/migrations.ts";
import type * as Plans from "../../src/controller/api/schemas/plans.ts";
import type * as Power from "../../src/controller/api/schemas/power.ts";
import type * as SecurityVms from "../../src/controller/api/schemas/security-vms.ts";
import type * as Settings from "../../src/controller/api/schemas/settings.ts";
import type * as Vms from "../../src/controller/api/schemas/vms.ts";

// Plain lists (no TypeBox in the bundle).
export {
  ALERT_SEVERITIES,
  AUTOMATION_LEVELS,
  MONITOR_KINDS,
} from "../../src/controller/api/schemas/choices.ts";

export type Automation = Static<typeof Common.Automation>;
export type Mechanism = Static<typeof Common.Mechanism>;
export type SettingsBody = Static<typeof Settings.Settings>;
export type PatchVmBody = Static<typeof Vms.PatchVm>;

export type Overview = Static<typeof Cloud.Overview>;
export type Server = Static<typeof Cloud.Server>;
/** GET /api/placement: where each host VM is and how that is known. */
export type Placement = Static<typeof Cloud.Placement>;
export type PlacementEntry = Placement["hostVms"][number];
/** One sample of GET /api/history (provider clock). */
export type HistoryPoint = Static<typeof Cloud.HistorySample>;
export type HostVm = Static<typeof HostVms.HostVm>;
export type Guest = Static<typeof Vms.Guest>;
export type PlanAction = Static<typeof Plans.PlanAction>;
export type Plan = Static<typeof Plans.Plan>;
export type Migration = Static<typeof Migrations.Migration>;
/** The virtual AMT: GET /api/vms/:id/inventory, POST /api/vms/:id/power, GET /api/vms/:id/events. */
export type Inventory = Static<typeof Power.Inventory>;
export type PowerResult = Static<typeof Power.PowerResult>;
export type GuestEvent = Static<typeof Power.GuestEvent>;

/** Security VMs' monitoring: GET /api/alerts and GET /api/security-vms/:id/channels. */
export type ControllerAlert = Static<typeof SecurityVms.ControllerAlert>;
export type AlertPage = Static<typeof SecurityVms.AlertPage>;
export type SecurityVmPair = Static<typeof SecurityVms.SecurityVmPair>;
export type Channel = NonNullable<SecurityVmPair["channel"]>;
export type Severity = ControllerAlert["severity"];
export type MonitorKind = ControllerAlert["monitor"];

/** One /api/overview poll, kept client-side for the charts. */
export interface Sample {
  readonly now: number;
  readonly costPerHour: number;
  readonly hostVms: number;
}

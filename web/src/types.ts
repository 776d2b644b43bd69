/**
 * What the controller's API answers (src/controller/api/routes.ts). Request bodies come from
 * the API's own TypeBox schemas, so a change there breaks this build instead of the page.
 */
import type { Static } from "@fastify/type-provider-typebox";
import type * as S from "../../src/controller/api/schemas.ts";

export type Automation = Static<typeof S.Automation>;
export type SettingsBody = Static<typeof S.Settings>;
export type PatchVmBody = Static<typeof S.PatchVm>;

export const AUTOMATION_LEVELS: readonly Automation[] = ["manual", "suggest", "automatic"];

export interface Overview {
  readonly now: number;
  readonly provider: string;
  readonly speed: number;
  readonly leader: boolean;
  readonly guests: number;
  readonly runningGuests: number;
  readonly hostVms?: number;
  readonly costPerHour?: number;
  readonly activeMigrations?: number;
  readonly proposedPlans?: number;
}

export interface Server {
  readonly id: string;
  readonly cores: number;
  readonly mipsPerCore: number;
  readonly memoryMiB: number;
  readonly hostVmSlots: number;
  readonly hostVms: readonly string[];
}

export interface HostVm {
  readonly id: string;
  readonly type: string;
  readonly server: string | null;
  readonly state: string;
  readonly acquiredAt: number;
  /** Acquired by an operator: released only by the operator or a plan the operator approved. */
  readonly kept: boolean;
  readonly pricePerHour: number;
  readonly guests: readonly string[];
  readonly memoryUsedMiB: number;
  readonly memoryMiB: number;
  /** Requested CPU of its guests as a fraction of its capacity (null before the first audit). */
  readonly cpu: number | null;
}

export interface Guest {
  readonly id: string;
  readonly tenant: string;
  readonly vcpus: number;
  readonly mipsPerVcpu: number;
  readonly memoryMiB: number;
  readonly hostVm: string | null;
  readonly server: string | null;
  readonly powerState: string;
  readonly automation: Automation | null;
  readonly role: "tenant" | "security";
  readonly targets: readonly string[];
  readonly cpu: number | null;
}

export type PlanAction = {
  readonly idx: number;
  readonly status: string;
  readonly dependsOn: readonly number[];
  readonly error: string | null;
} & (
  | {
      readonly kind: "migrate";
      readonly guest: string;
      readonly from: string;
      readonly to: { readonly hostVm: string } | { readonly acquire: number };
      readonly mechanism: Mechanism;
      readonly seconds: number;
      readonly reason: string;
      readonly migration?: string;
    }
  | {
      readonly kind: "acquire-host-vm";
      readonly type: string;
      readonly server?: string;
      readonly hostVm?: string;
    }
  | { readonly kind: "release-host-vm"; readonly hostVm: string }
);

export interface Plan {
  readonly id: number;
  readonly createdAt: number;
  readonly status: string;
  readonly source: string;
  readonly actions: readonly PlanAction[];
}

export type Mechanism = "instant" | "precopy" | "postcopy";

export interface Migration {
  readonly id: string;
  readonly guest: string;
  readonly tenant: string;
  readonly from: string;
  readonly to: string;
  readonly mechanism: Mechanism | string;
  readonly status: string;
  readonly progress: number;
  readonly detail: Readonly<Record<string, number>>;
  readonly plan: number | null;
  readonly startedAt: number;
  readonly finishedAt: number | null;
  readonly error: string | null;
}

/** One sample of GET /api/history (provider clock). */
export interface HistoryPoint {
  readonly at: number;
  readonly hostVms: number;
  readonly costPerHour: number;
  readonly guests: number;
}

/** One /api/overview poll, kept client-side for the charts. */
export interface Sample {
  readonly now: number;
  readonly costPerHour: number;
  readonly hostVms: number;
}

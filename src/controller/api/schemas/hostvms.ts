/** Host VMs (rented from the underlying cloud): /api/hostvms. */
import { type Static, Type } from "typebox";
import { REJUVENATION_MODES } from "./choices.ts";
import { Id, Nullable } from "./common.ts";

export const AcquireHostVm = Type.Object(
  { type: Id, server: Type.Optional(Id) },
  { additionalProperties: false },
);

export const RejuvenateHostVm = Type.Object(
  {
    mode: Type.Optional(Type.Enum(REJUVENATION_MODES, { default: "in-place" })),
    moveBack: Type.Optional(
      Type.Boolean({ description: "evacuate: the guests move back to the renewed host VM (default true)" }),
    ),
  },
  { additionalProperties: false },
);

export const HostVm = Type.Object({
  id: Type.String(),
  type: Type.String(),
  server: Nullable(Type.String()),
  state: Type.String({ description: "provisioning, running, draining or released" }),
  acquiredAt: Type.Number(),
  kept: Type.Boolean({
    description: "acquired by an operator: released only by the operator or a plan the operator approved",
  }),
  pricePerHour: Type.Number(),
  guests: Type.Array(Type.String()),
  memoryUsedMiB: Type.Number(),
  memoryMiB: Type.Number(),
  cpu: Nullable(
    Type.Number({
      description: "requested CPU of its guests as a fraction of its capacity (null before the first audit)",
    }),
  ),
});
export type HostVm = Static<typeof HostVm>;

export const HostVmList = Type.Array(HostVm);

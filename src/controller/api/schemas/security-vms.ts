/** Security VMs (guests that watch other guests of their tenant): /api/security-vms. */
import { Type } from "typebox";
import { Id } from "./common.ts";

export const CreateSecurityVm = Type.Object(
  {
    id: Id,
    tenant: Type.Optional(Id),
    targets: Type.Array(Id, { minItems: 1, maxItems: 64 }),
    memoryMiB: Type.Optional(Type.Number({ minimum: 64, maximum: 65536 })),
  },
  { additionalProperties: false },
);

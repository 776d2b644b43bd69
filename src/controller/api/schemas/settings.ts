/** The cloud's settings: /api/settings. */
import { Type } from "typebox";
import { Automation } from "./common.ts";

export const Settings = Type.Object({ automation: Automation }, { additionalProperties: false });

/** The controller itself: health, metrics, the API's own description. */
import { Type } from "typebox";

export const Health = Type.Object({
  status: Type.Literal("ok"),
  leader: Type.Boolean(),
  provider: Type.String(),
});

export const MetricsText = {
  description: "Prometheus text exposition",
  content: { "text/plain": { schema: Type.String() } },
} as const;

/** The OpenAPI document (its shape is OpenAPI's). */
export const OpenApiDocument = Type.Record(Type.String(), Type.Unknown());

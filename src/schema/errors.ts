/** Turns TypeBox validation errors into one line naming the field, e.g. `servers[0].name: ...`. */
import type { TSchema } from "typebox";
import Value from "typebox/value";

export function firstSchemaProblem(schema: TSchema, raw: unknown): string {
  const errors = [...Value.Errors(schema, raw)];
  const unknown = errors.find((e) => e.keyword === "additionalProperties");
  if (unknown) {
    const names = (unknown.params as { additionalProperties?: string[] }).additionalProperties ?? [];
    const at = pathOf(unknown.instancePath);
    return `${at ? `${at}: ` : ""}unknown field ${names.join(", ")}`;
  }
  const missing = errors.find((e) => e.keyword === "required");
  if (missing) {
    const names = (missing.params as { requiredProperties?: string[] }).requiredProperties ?? [];
    const at = pathOf(missing.instancePath);
    return `${at ? `${at}: ` : ""}missing field ${names.join(", ")}`;
  }
  // The deepest error is the most specific; unions report their members' errors too.
  const best = errors
    .filter((e) => e.keyword !== "anyOf" && e.keyword !== "boolean")
    .sort((a, b) => b.instancePath.split("/").length - a.instancePath.split("/").length)[0];
  const e = best ?? errors[0];
  if (!e) return "invalid document";
  return `${pathOf(e.instancePath) || "(top)"}: ${e.message}`;
}

/** "/servers/0/cores" -> "servers[0].cores" */
export function pathOf(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), "");
}

/**
 * Turns schema validation errors into one line naming the field, e.g. `servers[0].name: ...`,
 * and a field with a fixed set of values into one error listing them
 * (`mechanism: must be one of auto, instant, precopy, postcopy`), whether the schema declares
 * it as an enum or as a union of literals (ajv and TypeBox report a union member by member:
 * "must be equal to constant" once per value, then "must match a schema in anyOf").
 *
 * Works on TypeBox's errors (scenario, testbed and agent config files, the agents' APIs) and
 * on ajv's (the controller's API): both have the same shape.
 */
import type { TSchema } from "typebox";
import Value from "typebox/value";

/** One validation error as ajv and TypeBox report it. */
export interface SchemaIssue {
  readonly keyword: string;
  readonly instancePath: string;
  readonly schemaPath: string;
  readonly params: Record<string, unknown>;
  readonly message?: string;
}

export function firstSchemaProblem(schema: TSchema, raw: unknown): string {
  const errors = foldSchemaIssues([...Value.Errors(schema, raw)] as unknown as SchemaIssue[]);
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
  // The deepest error is the most specific.
  const best = errors
    .filter((e) => e.keyword !== "anyOf" && e.keyword !== "boolean")
    .sort((a, b) => b.instancePath.split("/").length - a.instancePath.split("/").length)[0];
  const e = best ?? errors[0];
  if (!e) return "invalid document";
  return `${pathOf(e.instancePath) || "(top)"}: ${e.message}`;
}

/**
 * A fastify `schemaErrorFormatter`: the errors of one request part as one line, each naming
 * its field (`body/mechanism must be one of auto, instant, precopy, postcopy`).
 */
export function schemaErrorFormatter(errors: readonly unknown[], dataVar: string): Error {
  // TypeBox also reports each unknown property as "schema is false": additionalProperties says it.
  const folded = foldSchemaIssues(errors as SchemaIssue[]).filter(
    (e) => e.keyword !== "anyOf" && e.keyword !== "boolean",
  );
  const lines = folded.flatMap((e) => {
    // ajv names one unknown property, TypeBox all of them.
    const extra = e.params.additionalProperty ?? e.params.additionalProperties;
    if (e.keyword === "additionalProperties" && extra !== undefined)
      return [extra].flat().map((name) => `${dataVar}${e.instancePath}/${name} is not a known field`);
    return [`${dataVar}${e.instancePath} ${e.message}`];
  });
  return new Error([...new Set(lines)].join(", ") || `${dataVar} is invalid`);
}

const CHOICE = new Set(["const", "enum"]);

/**
 * Errors with every union (anyOf) decided: a value that has the right type for some members
 * keeps only those members' errors (an object union's members whose tag, e.g. `kind`, did not
 * match are dropped); a value that fits no member becomes one error listing the allowed
 * values and the other kinds of value. Enum and const errors list their values.
 */
export function foldSchemaIssues(errors: readonly SchemaIssue[]): SchemaIssue[] {
  let out = errors.map((e) => (CHOICE.has(e.keyword) ? { ...e, message: oneOf(allowedOf(e)) } : e));
  // Innermost unions first: an inner union's verdict is one error of its outer member.
  const unions = out
    .filter((e) => e.keyword === "anyOf")
    .sort((a, b) => anyOfBase(b).length - anyOfBase(a).length);
  for (const u of unions) {
    if (!out.includes(u)) continue;
    const prefix = `${anyOfBase(u)}/anyOf/`;
    const members = new Map<string, SchemaIssue[]>();
    for (const e of out) {
      if (e === u || !e.schemaPath.startsWith(prefix)) continue;
      const index = e.schemaPath.slice(prefix.length).split("/")[0];
      members.set(index, [...(members.get(index) ?? []), e]);
    }
    const own = (es: SchemaIssue[]) => es.filter((e) => e.instancePath === u.instancePath);
    // A member is "not this kind of value" when it fails at the value itself on its type or
    // its fixed values, or when a property of an object member has a constant (its tag, such
    // as `kind: verify`) that the value does not have.
    const wrongKind = (es: SchemaIssue[]) =>
      own(es).some((e) => e.keyword === "type" || CHOICE.has(e.keyword)) ||
      tagsOf(es, u.instancePath).length > 0;
    const candidates = [...members.values()].filter((es) => !wrongKind(es));
    let replacement: SchemaIssue[];
    if (candidates.length > 0) {
      // The value is of a kind the union takes: its problems are those of the closest member.
      replacement = candidates.sort((a, b) => a.length - b.length)[0];
    } else {
      const tags = tagErrors([...members.values()], u.instancePath);
      replacement = tags ?? [choiceError(u, [...members.values()])];
    }
    const drop = new Set<SchemaIssue>([u, ...[...members.values()].flat()]);
    out = out.flatMap((e) => (e === u ? replacement : drop.has(e) ? [] : [e]));
  }
  return out;
}

/** "#/properties/m/anyOf" (ajv) or "#/properties/m" (TypeBox) -> "#/properties/m" */
function anyOfBase(e: SchemaIssue): string {
  return e.schemaPath.replace(/\/anyOf$/, "");
}

function isChildOf(path: string, parent: string): boolean {
  return path.startsWith(`${parent}/`) && !path.slice(parent.length + 1).includes("/");
}

function tagsOf(es: readonly SchemaIssue[], at: string): SchemaIssue[] {
  return es.filter((e) => e.keyword === "const" && isChildOf(e.instancePath, at));
}

function allowedOf(e: SchemaIssue): unknown[] {
  if (e.keyword === "const") return [e.params.allowedValue];
  return (e.params.allowedValues as unknown[] | undefined) ?? [];
}

/** Every member of an object union refused the same tag property: one error listing the tags. */
function tagErrors(members: SchemaIssue[][], at: string): SchemaIssue[] | undefined {
  const tags = members.map((es) => tagsOf(es, at));
  if (tags.some((t) => t.length === 0)) return undefined;
  const path = tags[0][0].instancePath;
  if (!tags.every((t) => t.every((e) => e.instancePath === path))) return undefined;
  const values = [...new Set(tags.flat().flatMap(allowedOf))];
  return [{ ...tags[0][0], keyword: "enum", params: { allowedValues: values }, message: oneOf(values) }];
}

/** A value that fits no member of a union: one error with the values and kinds it takes. */
function choiceError(u: SchemaIssue, members: SchemaIssue[][]): SchemaIssue {
  const values: unknown[] = [];
  const kinds: string[] = [];
  for (const es of members) {
    const choices = es.filter((e) => CHOICE.has(e.keyword) && e.instancePath === u.instancePath);
    if (choices.length > 0) values.push(...choices.flatMap(allowedOf));
    else {
      const type = es.find((e) => e.keyword === "type" && e.instancePath === u.instancePath);
      if (type) kinds.push(...[type.params.type].flat().map((t) => KIND[String(t)] ?? String(t)));
    }
  }
  const unique = [...new Set(values)];
  if (unique.length === 0 && kinds.length === 0) return u;
  const message =
    unique.length === 0
      ? `must be ${listOr(kinds)}`
      : kinds.length === 0
        ? oneOf(unique)
        : `${oneOf(unique)}, or ${listOr(kinds)}`;
  return { ...u, keyword: "enum", params: { allowedValues: unique }, message };
}

const KIND: Record<string, string> = {
  null: "null",
  array: "an array",
  object: "an object",
  string: "a string",
  number: "a number",
  integer: "an integer",
  boolean: "true or false",
};

function oneOf(values: readonly unknown[]): string {
  const shown = values.map((v) => (typeof v === "string" ? v : JSON.stringify(v)));
  return shown.length === 1 ? `must be ${shown[0]}` : `must be one of ${shown.join(", ")}`;
}

function listOr(items: readonly string[]): string {
  const u = [...new Set(items)];
  return u.length <= 1 ? (u[0] ?? "") : `${u.slice(0, -1).join(", ")} or ${u[u.length - 1]}`;
}

/** "/servers/0/cores" -> "servers[0].cores" */
export function pathOf(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), "");
}

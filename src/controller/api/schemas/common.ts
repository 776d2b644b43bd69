/**
 * Shapes every resource of the API shares. The schema files import TypeBox only (no node
 * module, nothing of the controller): the dashboard derives its types from them. A field
 * with fixed values is an enum of a list in choices.ts, not a union of literals: a bad value
 * gets one error listing the allowed values.
 */
import { type Static, type TSchema, Type } from "typebox";
import { AUTOMATION_LEVELS } from "./choices.ts";

export const Id = Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" });
export const IdParams = Type.Object({ id: Id }, { additionalProperties: false });

/** A value of `s`, or null. */
export const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);

/** How far the controller acts by itself: never moves, proposes for approval, or applies. */
export const Automation = Type.Enum(AUTOMATION_LEVELS);
export type Automation = Static<typeof Automation>;

export const Mechanism = Type.Union([
  Type.Literal("instant"),
  Type.Literal("precopy"),
  Type.Literal("postcopy"),
]);
export type Mechanism = Static<typeof Mechanism>;

/** Paging and the tenant (an admin's filter) of a list; lists with a status add theirs. */
export const listFields = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  tenant: Type.Optional(Id),
};

export const ListQuery = Type.Object(listFields, { additionalProperties: false });

/** Every error answer: one line saying what is wrong, naming the field or the id at fault. */
export const ErrorBody = Type.Object({ error: Type.String() });

/** The error answers of a route (added to each route's responses). */
export const ERRORS = { "4xx": ErrorBody, "5xx": ErrorBody } as const;

/** The answer to a write that became a plan (applied by the executor). */
export const PlanAccepted = Type.Object({ plan: Type.Integer() });

/** The answer to a delete: no body. */
export const NoContent = Type.Null({ description: "no content" });

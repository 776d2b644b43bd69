// Validation errors as one line naming the field; a field with fixed values lists them once.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Type } from "typebox";
import Value from "typebox/value";
import { firstSchemaProblem, type SchemaIssue, schemaErrorFormatter } from "./errors.ts";

const Workload = Type.Union([
  Type.Object(
    { kind: Type.Literal("verify"), mib: Type.Integer({ minimum: 1 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { kind: Type.Literal("dirty"), rate: Type.Number({ minimum: 0 }) },
    { additionalProperties: false },
  ),
]);

const Doc = Type.Object(
  {
    mechanism: Type.Optional(Type.Enum(["auto", "instant", "precopy", "postcopy"])),
    literals: Type.Optional(Type.Union([Type.Literal("a"), Type.Literal("b"), Type.Literal("c")])),
    power: Type.Optional(
      Type.Union([Type.Enum(["g4", "g5"]), Type.Array(Type.Number(), { minItems: 3, maxItems: 3 })]),
    ),
    automation: Type.Optional(Type.Union([Type.Enum(["manual", "automatic"]), Type.Null()])),
    label: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    compat: Type.Optional(Type.Literal("cloudsim-3.0.3")),
    workloads: Type.Optional(Type.Array(Workload)),
  },
  { additionalProperties: false },
);

const problem = (v: unknown) => firstSchemaProblem(Doc, v);
const formatted = (v: unknown) =>
  schemaErrorFormatter([...Value.Errors(Doc, v)] as unknown as SchemaIssue[], "body").message;

describe("fields with fixed values", () => {
  test("an enum lists its values, once", () => {
    assert.equal(
      problem({ mechanism: "bogus" }),
      "mechanism: must be one of auto, instant, precopy, postcopy",
    );
    assert.equal(
      formatted({ mechanism: "bogus" }),
      "body/mechanism must be one of auto, instant, precopy, postcopy",
    );
  });

  test("a union of literals is folded into one error listing them", () => {
    assert.equal(problem({ literals: "d" }), "literals: must be one of a, b, c");
    assert.equal(formatted({ literals: "d" }), "body/literals must be one of a, b, c");
    assert.doesNotMatch(formatted({ literals: 5 }), /constant|anyOf/);
  });

  test("a single constant names it", () => {
    assert.equal(problem({ compat: "cloudsim" }), "compat: must be cloudsim-3.0.3");
  });

  test("values and other kinds of value together", () => {
    assert.equal(problem({ power: "g9" }), "power: must be one of g4, g5, or an array");
    assert.equal(
      problem({ automation: "sometimes" }),
      "automation: must be one of manual, automatic, or null",
    );
    assert.equal(formatted({ label: 5 }), "body/label must be a string or null");
  });

  test("a value of a kind the union takes gets that member's own problem", () => {
    assert.equal(problem({ power: [1, 2] }), "power: must not have fewer than 3 items");
    assert.equal(problem({ power: [1, 2, "x"] }), "power[2]: must be number");
  });
});

describe("unions of objects told apart by a tag", () => {
  test("an unknown tag lists the tags", () => {
    assert.equal(
      problem({ workloads: [{ kind: "busy" }] }),
      "workloads[0].kind: must be one of verify, dirty",
    );
  });

  test("a known tag reports only its own member's problems", () => {
    assert.equal(problem({ workloads: [{ kind: "verify", mib: 0 }] }), "workloads[0].mib: must be >= 1");
    assert.equal(problem({ workloads: [{ kind: "dirty", rate: -1 }] }), "workloads[0].rate: must be >= 0");
    assert.equal(
      problem({ workloads: [{ kind: "dirty", rate: 1, mib: 2 }] }),
      "workloads[0]: unknown field mib",
    );
    assert.equal(
      formatted({ workloads: [{ kind: "dirty" }] }),
      "body/workloads/0 must have required properties rate",
    );
  });
});

test("unknown fields are named by the formatter", () => {
  assert.equal(formatted({ colour: "red" }), "body/colour is not a known field");
});

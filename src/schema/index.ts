export { firstSchemaProblem, pathOf } from "./errors.ts";

export {
  DocumentError,
  MAX_DOCUMENT_BYTES,
  MAX_YAML_ALIASES,
  parseYaml,
  readBoundedText,
} from "./document.ts";
export {
  firstSchemaProblem,
  foldSchemaIssues,
  pathOf,
  type SchemaIssue,
  schemaErrorFormatter,
} from "./errors.ts";

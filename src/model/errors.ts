/** Errors of the model: each says which entity and which rule, so a user can act. */
export class ModelError extends Error {
  constructor(
    readonly code:
      | "unknown-entity"
      | "duplicate-id"
      | "invalid-transition"
      | "capacity"
      | "placement"
      | "invalid-value",
    message: string,
  ) {
    super(message);
    this.name = "ModelError";
  }
}

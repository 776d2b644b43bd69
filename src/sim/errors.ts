/**
 * A mistake in what the user gave us (scenario file, trace folder, policy name). The CLI
 * prints its message as one line and exits 2, without a stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

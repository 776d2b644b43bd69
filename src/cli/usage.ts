/**
 * Mistakes in a command's arguments that the CLI finds itself. Kept in the cli module, not
 * imported from sim, so that the commands that do not simulate (the API client, testbed,
 * vmi) do not load the simulator to report them.
 */

/**
 * A mistake of the user's: main prints its message as one line and exits 2, as it does for
 * the domain errors that name one (sim's ScenarioError and TraceError, PolicyError, ...).
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function intOption(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} ${v}: expected an integer from ${min} to ${max}`);
  return n;
}

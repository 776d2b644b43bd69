/**
 * What the simulator refuses to run, each naming what is wrong in one line: a scenario
 * (its file, a field, its calibration) or a trace (a --trace spec, a trace folder or file,
 * samples that do not fit the scenario). The CLI reports them as the user's mistakes.
 */
export class ScenarioError extends Error {
  override name = "ScenarioError";
}

export class TraceError extends Error {
  override name = "TraceError";
}

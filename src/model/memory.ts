/**
 * The one estimate of memory a trace does not give (see docs/architecture.md, "Memory a trace
 * does not give"): a guest's resident (touched) memory grows with the highest CPU load it has
 * seen recently, from a 35 % floor, and its dirty rate is its full-load rate scaled by its
 * current load. The simulator, the simulated provider and the controller's planner input all
 * use these functions, so a migration estimate is the same wherever it is made.
 */

/** Per sample of the remembered load peak: decay with a half-life of 12 samples (1 h at 300 s). */
export const PEAK_DECAY = 0.5 ** (1 / 12);

/** The load peak after one more sample `u` (fractions of the guest's guarantee). */
export function decayedPeak(previousPeak: number, u: number): number {
  return Math.max(u, previousPeak * PEAK_DECAY);
}

/** Resident memory, MiB, of a guest of `memoryMiB` whose recent load peak is `peak`. */
export function residentMemoryMiB(memoryMiB: number, peak: number): number {
  return memoryMiB * Math.min(1, 0.35 + 0.65 * peak);
}

/** Dirty rate, MiB/s, of a guest whose full-load rate is `fullLoadMiBps`, at load `u`. */
export function dirtyRateAt(fullLoadMiBps: number, u: number): number {
  return fullLoadMiBps * u;
}

/**
 * The only source of randomness decisions may use: a seeded stream handed in by the caller,
 * so that the same seed gives the same plan and the same simulation.
 */
export interface RandomSource {
  /** Uniform in [0, 1). */
  next(): number;
}

/** Uniform integer in [0, n). */
export function randomInt(r: RandomSource, n: number): number {
  return Math.floor(r.next() * n);
}

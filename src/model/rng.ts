/** Seeded random streams (xoroshiro128+), one per purpose so that adding draws in one place does not shift another. */

import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { RandomSource } from "./random.ts";

export class Rng implements RandomSource {
  private readonly gen: ReturnType<typeof xoroshiro128plus>;

  constructor(seed: number) {
    this.gen = xoroshiro128plus(seed | 0);
    // The first outputs of a small seed are poorly mixed: discard a few.
    for (let i = 0; i < 8; i++) uniformFloat64(this.gen);
  }

  /** An independent stream derived from this seed and a label. */
  static derive(seed: number, label: string | number): Rng {
    return new Rng(mix(seed, typeof label === "number" ? label : hashString(label)));
  }

  next(): number {
    return uniformFloat64(this.gen);
  }

  normal(): number {
    // Box-Muller; 1 - u keeps log away from 0.
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h | 0;
}

function mix(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b ^ 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h | 0;
}

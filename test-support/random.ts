/**
 * A seeded PRNG (mulberry32), so "random" test scenarios, fuzz plans and generated guest programs are the same on
 * every machine and every run.
 *
 * @module
 */

/** A deterministic source of random numbers. */
export class Random {
  #s: number;

  /** @param seed - any 32-bit integer */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** A 32-bit unsigned integer. */
  u32(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A number in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** An integer in `lo..hi` (both included). */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)] as T;
  }
}

/** A function returning the next number in [0, 1) of a {@link Random} seeded with `seed`. */
export function prng(seed: number): () => number {
  const r = new Random(seed);
  return () => r.float();
}

/**
 * A small seeded generator (mulberry32), so the guest programs are the same on every machine and run.
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

  /** An integer in `lo..hi` (both included). */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }

  /** A byte. */
  u8(): number {
    return this.u32() & 0xff;
  }

  /** A 16-bit word, biased towards edge values (0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff) one time in four. */
  u16(): number {
    if (this.int(0, 3) === 0) return this.pick([0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0xfffe]);
    return this.u32() & 0xffff;
  }

  /** A byte, biased towards edge values one time in four. */
  byte(): number {
    if (this.int(0, 3) === 0) return this.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x0f, 0x10]);
    return this.u8();
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)] as T;
  }
}
